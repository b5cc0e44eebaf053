"""Training configs fuzzed: a random YAML value of a random type at any key gives a clear
ConfigError naming that key (or loads, when the value is valid), never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tuneloop.errors import ConfigError
from tuneloop.train.config import load_config

BASE = {
    "name": "fuzz", "model": "some/model", "method": "lora",
    "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
    "data": {"train": ["train.jsonl"], "eval_fraction": 0.1, "max_length": 96},
    "training": {"max_steps": 12, "batch_size": 4, "learning_rate": 2e-3, "seed": 3,
                 "scheduler": "cosine", "warmup_steps": 2, "gradient_accumulation": 1},
    "save": {"interval": 2, "keep_last": 2},
    "eval": {"interval": 5, "batch_size": 4},
    "logging": {"interval": 1, "report_to": [], "progress": False},
}


def _keys(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        out.append(prefix + k)
        if isinstance(v, dict):
            out += _keys(v, prefix + k + ".")
    return out


KEYS = _keys(BASE)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)
COUNTS = {"configs": 0, "loaded": 0, "refused naming the key": 0}


def _set(tree: dict, key: str, value) -> dict:
    import copy

    tree = copy.deepcopy(tree)
    *parents, last = key.split(".")
    node = tree
    for p in parents:
        node = node[p]
    node[last] = value
    return tree


@seed(20261203)
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(KEYS + ["training.no_such_key", "no_such_section"]), value=VALUES)
def test_random_yaml_types_per_key_name_the_key(key, value):
    """300 seeded configs, each with one key (any level, or an unknown one) set to a random
    YAML value (null, bool, huge int, NaN/inf, text, nested lists/maps): load_config either
    accepts it or raises ConfigError whose message names that key."""
    COUNTS["configs"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.yaml"
        path.write_text(yaml.safe_dump(_set(BASE, key, value)), encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as exc:
            assert key in exc.message(), (key, value, exc.message())
            COUNTS["refused naming the key"] += 1
            return
        COUNTS["loaded"] += 1


def test_config_fuzz_counts():
    """Runs after the fuzz test in this file: both outcomes were exercised."""
    print(f"\nconfig fuzz: {COUNTS}")
    assert COUNTS["configs"] == 0 or (COUNTS["loaded"] and COUNTS["refused naming the key"])
