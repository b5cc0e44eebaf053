"""--param parsing and its checks against the training config (no training)."""

from __future__ import annotations

import pytest

from tuneloop.errors import ConfigError
from tuneloop.sweep.params import Param, format_values, parse_param, parse_params


def test_each_spec_kind_parses():
    """log/float/int ranges and YAML-scalar choices, with their Optuna kinds."""
    assert parse_param("training.learning_rate=log:1e-5..1e-2") == Param(
        "training.learning_rate", "log", 1e-5, 1e-2)
    assert parse_param("lora.dropout=float:0..0.2") == Param("lora.dropout", "float", 0.0, 0.2)
    assert parse_param("training.epochs = int:1..3") == Param("training.epochs", "int", 1, 3)
    assert parse_param("lora.r=8,16,32").choices == (8, 16, 32)
    assert parse_param("training.scheduler=cosine,linear").choices == ("cosine", "linear")
    # numbers stay numbers (plain YAML would read 1e-5 as a string), YAML scalars their type
    assert parse_param("training.learning_rate=1e-5,3E-4").choices == (1e-5, 3e-4)
    assert parse_param("eval.interval=null,5").choices == (None, 5)
    assert parse_param("training.compile=true,false").choices == (True, False)


@pytest.mark.parametrize(("text", "says"), [
    ("training.learning_rate=1e-3", "neither a range nor a list"),
    ("training.learning_rate", "expected KEY=SPEC"),
    ("training.learning_rate=log:1e-2..1e-5", "LOW must be below HIGH"),
    ("training.learning_rate=log:0..1e-2", "a log range needs LOW > 0"),
    ("training.learning_rate=log:1e-5-1e-2", "a log range is LOW..HIGH"),
    ("training.epochs=int:1..2.5", "'2.5' is not an integer"),
    ("training.learning_rate=float:a..1", "'a' is not a number"),
    ("training.learning_rate=exp:1..2", "unknown range kind 'exp'"),
    ("lora.r=8,,16", "a choice is empty"),
    ("lora.target_modules=[q_proj],all-linear", "is not a single value"),
    ("lora.r=8,8", "listed twice"),
    ("training..seed=1,2", "empty part"),
])
def test_bad_syntax_is_a_config_error_with_the_syntax_as_fix(text, says):
    """Every malformed spec names itself and what is wrong, and the fix shows the syntax."""
    with pytest.raises(ConfigError) as info:
        parse_param(text)
    assert says in info.value.what and text.split("=")[0].strip() in info.value.what
    assert "KEY=log:1e-5..1e-2" in info.value.fix


@pytest.mark.parametrize(("spec", "says"), [
    ("lora.rr=2,4", "unknown key 'lora.rr' (did you mean 'r'?)"),
    ("trainin.seed=1,2", "unknown key 'trainin.seed' (did you mean 'training'?)"),
    ("lora=1,2", "'lora' is a section, not a setting"),
    ("name.x=1,2", "'name' is a value, not a section"),
    ("lora.r=float:4..8", "a float range over an integer setting"),
    ("lora.r=0,8", "0 is not a valid value (lora.r: Input should be greater than 0"),
    ("training.scheduler=cosine,bogus", "'bogus' is not a valid value"),
    ("data.eval_fraction=float:0..1.5", "1.5 is not a valid value"),
])
def test_params_are_checked_against_the_config(sweep_config, spec, says):
    """Keys are TrainConfig settings (as --set checks them); every end of a range and every
    choice must validate."""
    with pytest.raises(ConfigError) as info:
        parse_params([spec], sweep_config())
    assert says in info.value.what


def test_a_key_cannot_be_searched_twice_or_also_set(sweep_config):
    """One --param per key, never also a --set; at least one --param."""
    cfg = sweep_config()
    with pytest.raises(ConfigError, match="given twice"):
        parse_params(["lora.r=2,4", "lora.r=int:2..4"], cfg)
    with pytest.raises(ConfigError, match="both searched"):
        parse_params(["lora.r=2,4"], cfg, ["lora.r=8"])
    with pytest.raises(ConfigError, match="nothing to search"):
        parse_params([], cfg)
    ok = parse_params(["lora.r=2,4", "training.learning_rate=log:1e-4..1e-2"], cfg,
                      ["training.seed=3"])
    assert [p.key for p in ok] == ["lora.r", "training.learning_rate"]


def test_suggest_stays_in_the_range_and_values_format_short():
    """Sampled through a real Optuna trial: inside the bounds, the right types."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    lr = parse_param("training.learning_rate=log:1e-5..1e-2").suggest(trial)
    epochs = parse_param("training.epochs=int:1..3").suggest(trial)
    r = parse_param("lora.r=8,16,32").suggest(trial)
    assert 1e-5 <= lr <= 1e-2 and isinstance(lr, float)
    assert epochs in (1, 2, 3) and isinstance(epochs, int) and r in (8, 16, 32)
    assert format_values({"a": 0.000123456, "b": 8}) == "a=0.0001235, b=8"
