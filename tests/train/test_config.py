"""Strict typed config: unknown keys name key + line + suggestion, --set overrides, shipped YAMLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneloop.errors import ConfigError
from tuneloop.train.config import TrainConfig, config_fingerprint, load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_names_key_line_and_suggestion(tmp_path):
    """An unknown nested key: error with file:line, the dotted key, and 'did you mean'."""
    path = _write(tmp_path, "data:\n  train: [a.jsonl]\ntraining:\n  batch_size: 2\n"
                            "  learning_rat: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"{path}:5" in msg
    assert "unknown key 'training.learning_rat'" in msg
    assert "did you mean 'learning_rate'" in msg


def test_bad_value_names_key_and_value(tmp_path):
    """A wrong value says which key, the value received, and the line."""
    path = _write(tmp_path, "data:\n  train: [a.jsonl]\ntraining:\n  scheduler: cosin\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"{path}:4" in msg and "training.scheduler" in msg and "'cosin'" in msg


def test_missing_required_and_bad_yaml(tmp_path):
    """No data.train → error naming it; broken YAML → error with its line."""
    with pytest.raises(ConfigError, match="data"):
        load_config(_write(tmp_path, "method: full\n"))
    with pytest.raises(ConfigError, match=r"c\.yaml:3: not valid YAML"):
        load_config(_write(tmp_path, "data:\n  train: [a\n  x: 1\n"))


def test_set_overrides_are_typed_and_checked(tmp_path):
    """--set a.b=v parses v as YAML; an unknown --set key is an error naming --set."""
    path = _write(tmp_path, "data:\n  train: [a.jsonl]\n")
    cfg = load_config(path, ["training.max_steps=12", "method=full", "lora.target_modules=[q_proj]",
                             "training.learning_rate=3e-4", "data.max_length=64"])
    assert cfg.training.max_steps == 12 and cfg.method == "full"
    assert cfg.lora.target_modules == ["q_proj"]
    assert cfg.training.learning_rate == pytest.approx(3e-4)
    with pytest.raises(ConfigError, match=r"--set: unknown key 'training.max_step'"):
        load_config(path, ["training.max_step=3"])
    with pytest.raises(ConfigError, match="no '='"):
        load_config(path, ["training.max_steps"])


def test_relative_data_paths_resolve_against_the_config_file(tmp_path):
    """Paths in a config file that exist next to it become absolute; hub ids stay as given."""
    (tmp_path / "d.jsonl").write_text("{}\n")
    cfg = load_config(_write(tmp_path, "data:\n  train: [d.jsonl, org/hub-set]\n"))
    assert cfg.data.train == [str(tmp_path / "d.jsonl"), "org/hub-set"]


def test_fingerprint_ignores_intervals_and_counts_global_batch(tmp_path):
    """R6/R28: save/eval/log settings do not change the fingerprint; accum x processes does."""
    base = TrainConfig.model_validate({"data": {"train": ["a"]}})
    other = base.model_copy(deep=True)
    other.save.interval = 99
    other.logging.interval = 3
    assert config_fingerprint(base) == config_fingerprint(other)
    accum2 = base.model_copy(deep=True)
    accum2.training.gradient_accumulation = 2
    assert config_fingerprint(accum2, world_size=1) == config_fingerprint(base, world_size=2)
    assert config_fingerprint(accum2) != config_fingerprint(base)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    """Every YAML under examples/configs validates and points at files that exist."""
    cfg = load_config(path)
    for name in [*cfg.data.train, *cfg.data.eval]:
        assert Path(name).exists(), name
    assert cfg.to_yaml()


def test_shipped_configs_cover_lora_full_and_pretraining():
    """The three recipes are shipped."""
    cfgs = [load_config(p) for p in EXAMPLES.glob("*.yaml")]
    assert {c.method for c in cfgs} == {"lora", "full"}
    assert any(c.data.format == "text" for c in cfgs)
