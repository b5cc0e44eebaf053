"""SFT training data: load clean records, split off eval rows, render to token ids + labels, count drops.

Examples the Renderer drops (answer cut by max length, no trainable tokens) are counted by reason
and reported (R13); an example whose labels are all masked never reaches the loss.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tuneloop.errors import TrainingError
from tuneloop.train.config import DataConfig
from tuneloop.train.objectives.base import PreparedData


def _split(records: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Hold out `fraction` of records for eval the way `tuneloop data split` does."""
    from tuneloop.data import split as split_mod

    result = split_mod.split_records(records, test_size=fraction, seed=seed)
    return list(result.train), list(result.test)


def _render_all(renderer: Any, records: list[Any], dropped: Counter) -> list[Any]:
    out = []
    for record in records:
        # render_chunks: chat records render once; long text (pretraining) becomes chunks
        for result in renderer.render_chunks(record):
            ex = result.example
            if ex is None or ex.n_trained <= 0 or all(label == -100 for label in ex.labels):
                dropped[result.reason or "no_trainable_tokens"] += 1  # never reaches the loss
                continue
            out.append(ex)
    return out


def prepare_data(data: DataConfig, renderer: Any) -> PreparedData:
    """Load, split and render the configured data; TrainingError if no example remains (R13)."""
    from tuneloop.data.check import load_clean_records
    from tuneloop.train.fingerprint import data_fingerprint

    load_kw: dict[str, Any] = {"format": data.format, "field_map": data.field_map}
    train_records = load_clean_records(list(data.train), **load_kw)
    rows = Counter(r.source for r in train_records)
    if data.eval:
        eval_records = load_clean_records(list(data.eval), **load_kw)
        rows.update(r.source for r in eval_records)
    elif data.eval_fraction > 0 and len(train_records) > 1:
        train_records, eval_records = _split(train_records, data.eval_fraction, data.split_seed)
    else:
        eval_records = []
    dropped: Counter = Counter()
    train = _render_all(renderer, train_records, dropped)
    eval_dropped: Counter = Counter()
    evals = _render_all(renderer, eval_records, eval_dropped)
    if not train:
        reasons = ", ".join(f"{k}: {v}" for k, v in dropped.items()) or "no rows"
        raise TrainingError(
            f"no training example remains after rendering ({reasons})",
            where=", ".join(data.train),
            fix="raise data.max_length or fix the rows (`tuneloop data check --max-length N`)",
        )
    dropped_all = {f"train.{k}": v for k, v in dropped.items()}
    dropped_all.update({f"eval.{k}": v for k, v in eval_dropped.items()})
    fp = data_fingerprint(
        [*data.train, *data.eval],
        rows=dict(rows),
        train_examples=train,
        eval_examples=evals,
        dropped=dropped_all,
    )
    fmt = "text" if all(r.text is not None for r in train_records) else "chat"
    return PreparedData(train=train, eval=evals, dropped=dropped_all, fingerprint=fp, format=fmt)
