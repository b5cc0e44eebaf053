"""`training.compile` on a CPU: each layer's MLP and norms compiled, same training numbers."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tuneloop.rundir import read_metrics
from tuneloop.train import setup, train
from tuneloop.train.config import load_config

cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path of compile")


@cpu_only
def test_compile_on_cpu_compiles_the_regions_and_trains_the_same(make_config, tmp_path,
                                                                monkeypatch):
    """3 steps of the tiny model with and without `compile: true`: every MLP and RMSNorm module
    (2 layers x 3 + the final norm) is compiled, and the losses agree to 1e-5 (fusion reorders
    float ops, nothing else)."""
    compiled_counts = []
    real = setup.compile_regions

    def counting(model):
        compiled_counts.append(real(model))
        # Really compiled in place (nn.Module.compile sets the call that forward goes through).
        regions = [m for m in model.modules() if type(m).__name__.endswith(("MLP", "RMSNorm"))]
        assert len(regions) == compiled_counts[-1]
        assert all(m._compiled_call_impl is not None for m in regions)
        return compiled_counts[-1]

    monkeypatch.setattr(setup, "compile_regions", counting)
    curves, weights = {}, {}
    for compile_ in (False, True):
        cfg = load_config(make_config(f"c{compile_}.yaml", training={
            "max_steps": 3, "compile": compile_}, save={"interval": 100}, eval={"interval": 100}))
        res = train(cfg, output_dir=tmp_path / f"run-{compile_}", progress=False)
        curves[compile_] = [r["loss"] for r in read_metrics(res.run_dir) if r["kind"] == "train"]
        weights[compile_] = load_file(res.run_dir / "model" / "model.safetensors")
    assert compiled_counts == [7]
    assert len(curves[True]) == 3
    assert curves[True] == pytest.approx(curves[False], rel=1e-5, abs=1e-5)
    # The saved model is the plain one: same tensor names (no compile wrapper), same values.
    assert weights[True].keys() == weights[False].keys()
    for name, tensor in weights[False].items():
        torch.testing.assert_close(weights[True][name], tensor, rtol=1e-4, atol=1e-5)


@cpu_only
def test_compile_on_cpu_without_a_compiler_is_a_clear_error(make_config, tmp_path, monkeypatch):
    """No C++ compiler on PATH: a config error naming the fix, not inductor's traceback at
    the first step."""
    from tuneloop.errors import ConfigError

    monkeypatch.setenv("CXX", "no-such-compiler-here")
    cfg = load_config(make_config("nocxx.yaml", training={"max_steps": 1, "compile": True}))
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler") as err:
        train(cfg, output_dir=tmp_path / "run", progress=False)
    assert "training.compile: false" in err.value.fix
