#!/usr/bin/env bash
# Everything a lent GPU machine is asked to do, in one call of under 10 minutes (issue 16):
#   1. what the machine is (GPU, CPU flags: does its CPU have native bf16?) and package versions;
#   2. benchmarks/gpu_bench.py on the GPU: TRL's defaults vs the shipped loop (and compiled), for
#      the SmolLM2-135M shape and a Llama-3.2-1B shape, random init;
#   3. on the same machine's CPU, pinned to 2 cores like the 2-core dev machine: the shipped
#      loop in fp32 vs bf16 (only meaningful when oneDNN reports native bf16 there);
#   4. the bf16 parity tests (tests/train/test_bf16.py) on that CPU with the GPU hidden.
#
# The machine has torch/transformers/accelerate/peft but no registry: the other Python packages
# travel as wheels in .gpu/whl and the model's config + tokenizer (no weights: random init is
# enough for throughput) in .gpu/smollm2. To prepare them on the dev machine:
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu/smollm2
#   cp ~/.cache/tuneloop/models/smollm2-135m-instruct/{*.jinja,*.json} .gpu/smollm2/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .gpu/whl trl datasets dill multiprocess pydantic \
#     pydantic_core annotated_types typing_inspection platformdirs datasketch
# Do not carry transformers/huggingface_hub/accelerate/peft: the machine's own set is consistent,
# and huggingface_hub 2.x needs httpx2/httpcore2, which the machine lacks (a lost call, seen).
# then run `bash benchmarks/gpu_session.sh` there with .gpu carried. Results land in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
MODEL=${MODEL:-.gpu/smollm2}
GPU_BUDGET=${GPU_BUDGET:-250}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TUNELOOP_CACHE=$(mktemp -d) TUNELOOP_HOME=$(mktemp -d)
if ls .gpu/whl/*.whl >/dev/null 2>&1; then
  rm -rf /tmp/site  # a warm machine keeps the last call's packages
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
echo "cpu bf16 flags: $(grep -o -w -E 'avx512_bf16|amx_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
python3 - <<'EOF'
import importlib
for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "pyarrow",
             "pydantic", "tuneloop"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}")
    except Exception as exc:  # report every missing piece at once
        print(f"{name} FAILED: {exc!r}")
import torch
print("oneDNN native bf16:", bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))
EOF

echo "== GPU: TRL defaults vs tuneloop (budget ${GPU_BUDGET} s)"
timeout $((GPU_BUDGET + 60)) python3 benchmarks/gpu_bench.py --device cuda --model "$MODEL" \
  --shapes smollm2-135m,llama-1b --budget "$GPU_BUDGET" --json "$OUT/gpu.json" 2>&1 \
  | grep -v -E "it/s\]|s/it\]" | tee "$OUT/gpu.log"

echo "== CPU (2 cores): the shipped loop in fp32 vs bf16"
OMP_NUM_THREADS=2 CUDA_VISIBLE_DEVICES= timeout 150 taskset -c 0,1 python3 \
  benchmarks/train_throughput.py --device cpu --shape smollm2-135m --model "$MODEL" \
  --lengths heldout --sides tuneloop --variant bf16=0 --variant bf16=1 --steps 3 --warmup 1 \
  --json "$OUT/cpu_bf16.json" 2>&1 | grep -v -E "it/s\]|s/it\]" | tee "$OUT/cpu.log"

echo "== CPU: bf16 parity tests"
CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=4 timeout 90 python3 -m pytest -q -p no:cacheprovider \
  tests/train/test_bf16.py 2>&1 | tail -15 | tee "$OUT/bf16_tests.log"
echo "== done"
