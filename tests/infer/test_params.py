"""GenParams: the one sampling-parameters type, validated once, with one error class."""

from __future__ import annotations

import pytest

from tuneloop.backends import GenParams as BackendGenParams
from tuneloop.errors import UsageError
from tuneloop.infer.params import MAX_N, GenParams, ParamError, check_count


def test_backends_reexport_the_same_type():
    assert BackendGenParams is GenParams
    assert GenParams(stop=["x"]).stop == ("x",) and hash(GenParams(stop=["x"]))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"seed": 2**70}, "seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": [""]}, "stop"),
    ({"stop": ["x" * 300]}, "stop"),
])
def test_out_of_range_values_raise_one_error_class_naming_the_field(kwargs, field):
    with pytest.raises(ParamError) as exc:
        GenParams(**kwargs)
    assert exc.value.field == field and str(exc.value).startswith(field)
    assert isinstance(exc.value, UsageError) and exc.value.fix


def test_fronts_ends_rename_the_field():
    with pytest.raises(ParamError) as exc:
        GenParams(max_tokens=0)
    renamed = exc.value.named({"max_tokens": "--max-new-tokens"})
    assert str(renamed).startswith("--max-new-tokens must be") and renamed.field == "max_tokens"


def test_counts():
    assert check_count("n", MAX_N, MAX_N) == MAX_N
    for bad in (0, MAX_N + 1, True):
        with pytest.raises(ParamError, match="^n must"):
            check_count("n", bad, MAX_N)


def test_cli_names_the_flag(tmp_path, capsys):
    """A bad sampling flag is a usage error (exit 2) naming the flag, before any model loads."""
    from tuneloop.cli import main

    for flag, value in [("--temperature", "3"), ("--top-p", "0"), ("--max-new-tokens", "0"),
                        ("--batch-size", "0")]:
        rc = main(["generate", "--model", "no-such-model", "--input", str(tmp_path / "in.jsonl"),
                   "--out", str(tmp_path / "o"), flag, value])
        err = capsys.readouterr().err
        assert rc == 2 and f"{flag} must be" in err and "Traceback" not in err


@pytest.mark.parametrize("params", [
    GenParams(temperature=1.0, top_p=5.2e-278, seed=0),   # below float32's range: 0 in fp32
    GenParams(temperature=1e-45, seed=0),                  # logits / t overflow to inf
    GenParams(temperature=1e-45, top_p=1e-30, seed=0),
])
def test_extreme_but_valid_sampling_params_pick_the_top_token(params):
    """Valid values at the edge of float range never yield NaN probabilities (found by fuzzing
    serve: top_p=5.2e-278 answered 500); all the mass goes to the most likely token."""
    import torch

    from tuneloop.infer.decode import Decoder

    logits = torch.tensor([[0.5, 3.0, -1.0, 2.9], [10.0, -10.0, 0.0, 9.0]])
    picked = Decoder._pick(logits, params, torch.Generator().manual_seed(0))
    assert picked.tolist() == [1, 0]
