"""The run directory that describes itself: config, fingerprints, metrics, run.json, final model.

Only the main process writes here (R27); every write that a reader might race with is atomic
(write a temp file, fsync, rename).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from tuneloop.errors import ConfigError

CONFIG_FILE = "config.yaml"
FINGERPRINT_FILE = "data/fingerprint.json"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"


def write_atomic(path: Path, text: str) -> None:
    """Write text to path via a temp file + fsync + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Atomic pretty JSON."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf: keep them visible as strings rather than averaging them away (R8)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Metrics:
    """Appends events to metrics.jsonl and forwards numbers to the accelerate trackers."""

    def __init__(self, run_dir: Path, accelerator: Any, *, enabled: bool):
        self.path = run_dir / METRICS_FILE
        self.accelerator = accelerator
        self.enabled = enabled

    def log(self, kind: str, step: int, **values: Any) -> None:
        """One event: {"step", "kind", ...} to metrics.jsonl and to the trackers."""
        if not self.enabled:
            return
        row = {"step": step, "kind": kind, **{k: _clean(v) for k, v in values.items()}}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
        numbers = {
            f"{kind}/{k}": v for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if numbers and self.accelerator.trackers:
            self.accelerator.log(numbers, step=step)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All events of a run's metrics.jsonl, in order."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def check_trackers(report_to: list[str]) -> list[str]:
    """Validate tracker names against what accelerate supports and what is installed."""
    from accelerate import tracking

    available = {
        "tensorboard": tracking.is_tensorboard_available,
        "wandb": tracking.is_wandb_available,
        "mlflow": tracking.is_mlflow_available,
        "trackio": tracking.is_trackio_available,
        "comet_ml": tracking.is_comet_ml_available,
        "aim": tracking.is_aim_available,
        "clearml": tracking.is_clearml_available,
        "dvclive": tracking.is_dvclive_available,
        "swanlab": tracking.is_swanlab_available,
    }
    out = []
    for name in report_to:
        if name == "none":
            continue
        if name not in available:
            raise ConfigError(
                f"logging.report_to: unknown tracker {name!r}",
                fix=f"use one of {', '.join(available)} (or [] for metrics.jsonl only)",
            )
        if not available[name]():
            raise ConfigError(
                f"logging.report_to: {name} is not installed",
                fix=f"pip install {name} or remove it from logging.report_to",
            )
        out.append(name)
    return out


def _base_reference(ref: str) -> str:
    """A model reference that still resolves from another working directory."""
    p = Path(ref)
    return str(p.resolve()) if p.exists() else ref


def save_final_model(
    model: Any, tokenizer: Any, renderer: Any, run_dir: Path, *, base_model: str, method: str,
    data_format: str,
) -> Path:
    """Write RUN/model (adapter or full weights, tokenizer + template, tuneloop_model.json)."""
    from tuneloop.models import save_model_metadata

    final = run_dir / MODEL_DIR
    tmp = run_dir / f".tmp-{MODEL_DIR}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    # peft writes a placeholder model card; the run's own files describe the model instead
    (tmp / "README.md").unlink(missing_ok=True)
    template_ref = renderer.template_name  # chat, alpaca, or the path of a user Jinja file
    if template_ref not in ("chat", "alpaca"):
        # a user Jinja file: keep a copy beside the weights and make it the tokenizer's template
        (tmp / "template.jinja").write_text(renderer.template_source, encoding="utf-8")
        template_ref = "template.jinja"
        tokenizer.chat_template = renderer.template_source
    tokenizer.save_pretrained(tmp)
    save_model_metadata(tmp, base_model=_base_reference(base_model), method=method,
                        template=template_ref, format=data_format)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final
