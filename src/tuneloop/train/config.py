"""The training config (`tuneloop train CONFIG.yaml`): strict YAML load (unknown keys are errors naming key and line), --set k=v.

Every field has a one-line description (shown by `docs/training.md`). Loading never guesses: an
unknown key is a ConfigError with `file:line`, the key, and a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from tuneloop.errors import ConfigError
from tuneloop.yamllines import yaml_key_lines

# The CPU's default token budget per micro-batch. Smaller packed micro-batches keep each layer's
# activations closer to the caches and bound the peak: on the embedded model, full fine-tuning,
# batch 8 of held-out-like rows, 1024 tokens ran faster than no cap at under half the memory
# (docs/benchmarks.md "Token budget"). A GPU wants large matrices and has its own memory plan.
CPU_TOKEN_BUDGET = 1024


class _Strict(BaseModel):
    """Base: unknown keys are errors; values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the training/eval rows come from and how they become tokens."""

    train: list[str] = Field(description="Training data files (jsonl/json/csv/parquet/dir/hub id).")
    eval: list[str] = Field(default_factory=list, description="Eval data files; empty = split.")
    eval_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of train rows held out for eval when `eval` is empty."
    )
    split_seed: int = Field(0, description="Seed of the train/eval split (as in `data split`).")
    format: str | None = Field(
        None,
        description="Force a format (alpaca/chat/sharegpt/prompt_completion/text/preference); "
        "None = auto.",
    )
    field_map: dict[str, str] | None = Field(
        None, description="Rename source fields, e.g. {question: instruction, answer: output}."
    )
    template: str = Field("auto", description="Chat template: auto, chat, alpaca or a .jinja path.")
    max_length: int = Field(1024, gt=1, description="Max tokens per example (prompt cut first).")
    train_on_prompt: bool = Field(False, description="Also train on prompt tokens (default: answers).")

    @model_validator(mode="after")
    def _needs_train(self) -> DataConfig:
        if not self.train:
            raise ValueError("data.train must list at least one file")
        return self


class LoraSettings(_Strict):
    """PEFT LoRA settings (used when method is lora)."""

    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules to adapt: 'all-linear' or a list of module names."
    )


class DPOSettings(_Strict):
    """Preference tuning (objective: dpo); see docs/preferences.md."""

    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference model.")
    loss: Literal["sigmoid", "ipo", "hinge"] = Field(
        "sigmoid", description="sigmoid (DPO), ipo (squared, per-token log-probs) or hinge."
    )
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=0.5, description="sigmoid only: assumed share of wrongly labelled pairs."
    )
    sft_weight: float = Field(
        0.0, ge=0.0, description="Add this x the chosen answer's mean token NLL (0 = off)."
    )


class TrainingSettings(_Strict):
    """Optimisation: length of training, learning rate schedule, batch shape, numerics."""

    epochs: float = Field(1.0, gt=0, description="Passes over the training set (if max_steps unset).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (AdamW).")
    scheduler: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="LR schedule after warmup."
    )
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps (overrides warmup_ratio).")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Warmup as a share of all steps.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW beta1.")
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0, description="AdamW beta2.")
    max_grad_norm: float | None = Field(1.0, description="Clip gradients to this norm; null = off.")
    batch_size: int = Field(8, gt=0, description="Examples per batch per process "
                            "(packed; the token budget may run it as several micro-batches).")
    gradient_accumulation: int = Field(1, gt=0, description="Batches per optimizer step.")
    max_tokens_per_batch: PositiveInt | Literal["auto"] | None = Field(
        "auto", description="Cap on the tokens of one packed micro-batch: a batch longer than "
        "this runs as several micro-batches whose gradients accumulate into the same step (the "
        "optimisation is unchanged; only activation memory and speed change). auto: "
        f"{CPU_TOKEN_BUDGET} on a CPU, none on a GPU; null: no cap."
    )
    seed: int = Field(0, description="Seed for init, dropout and data order.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs and CPUs with native bf16 (AVX512-BF16/AMX), "
        "else fp32. bf16 is autocast over fp32 master weights and optimizer state."
    )
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on only when estimated memory exceeds free GPU memory."
    )
    compile: bool = Field(False, description="torch.compile: the whole model on a GPU, each "
                          "layer's MLP and norms on a CPU (~30 s of compiling on first use).")
    nan_policy: Literal["stop", "skip"] = Field(
        "stop", description="On NaN/inf loss: stop with the step named, or skip the step."
    )
    on_divergence: Literal["stop", "warn"] = Field(
        "stop", description="When the loss blows up or the model dies (uniform-level loss, 3x "
        "its start, zero gradients): stop with status diverged, or warn and go on."
    )


class EvalConfig(_Strict):
    """Held-out evaluation during training."""

    interval: int | None = Field(None, gt=0, description="Eval every N steps (and at the end).")
    batch_size: int = Field(8, gt=0, description="Examples per eval micro-batch.")
    at_start: bool = Field(True, description="Also evaluate before the first step (the baseline).")
    suites: list[str] = Field(
        default_factory=list, description="Suite YAML files run at every save (suite-gated)."
    )
    best_metric: Literal["eval_loss", "suite"] = Field(
        "eval_loss", description="What picks the best checkpoint: eval_loss or suite pass rate."
    )
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Stop after N evals without eval-loss improvement."
    )
    early_stopping_min_delta: float = Field(
        0.0, ge=0.0, description="An eval loss must beat the best by more than this to count."
    )


class SaveConfig(_Strict):
    """Checkpointing."""

    interval: int | None = Field(None, gt=0, description="Save a checkpoint every N steps.")
    keep_last: int = Field(2, gt=0, description="Keep the newest N complete checkpoints.")
    keep_best: bool = Field(True, description="Also keep the best checkpoint (never deleted).")


class LoggingConfig(_Strict):
    """Metrics logging."""

    interval: int = Field(10, gt=0, description="Log train metrics every N steps.")
    report_to: list[str] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Trackers: tensorboard (default), wandb, mlflow, trackio; [] = metrics.jsonl only.",
    )
    progress: bool = Field(True, description="Show a progress bar with ETA.")


class ResumeConfig(_Strict):
    """Resume behaviour."""

    force: bool = Field(
        False, description="Resume even if the data or config fingerprint changed (R6)."
    )


class TrainConfig(_Strict):
    """A whole fine-tuning run."""

    name: str = Field("run", description="Run name (prefix of the run directory).")
    model: str = Field(
        "smollm2-135m-instruct", description="Model reference: alias, hub id, HF dir or run dir."
    )
    method: Literal["lora", "full"] = Field("lora", description="lora (PEFT adapter) or full.")
    objective: Literal["sft", "dpo"] = Field(
        "sft", description="What is optimised: sft (chat rows; text rows = continued pretraining) "
        "or dpo (preference pairs: prompt, chosen, rejected)."
    )
    data: DataConfig = Field(description="Training and eval data.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings.")
    dpo: DPOSettings = Field(default_factory=DPOSettings, description="DPO settings.")
    training: TrainingSettings = Field(
        default_factory=TrainingSettings, description="Optimisation."
    )
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation during training.")
    save: SaveConfig = Field(default_factory=SaveConfig, description="Checkpointing.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    resume: ResumeConfig = Field(default_factory=ResumeConfig, description="Resume behaviour.")

    def to_yaml(self) -> str:
        """The resolved config as YAML (what a run directory stores as config.yaml)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# Sections that do not change the trajectory of training; left out of the config fingerprint so a
# resume may change them (e.g. a longer save interval) without --force.
_NON_TRAJECTORY = ("name", "eval", "save", "logging", "resume")


def token_budget(training: TrainingSettings, device_type: str) -> int | None:
    """The tokens per packed micro-batch `training.max_tokens_per_batch` means on this device."""
    budget = training.max_tokens_per_batch
    if budget == "auto":
        return CPU_TOKEN_BUDGET if device_type == "cpu" else None
    return budget


def config_fingerprint(config: TrainConfig, *, world_size: int = 1) -> str:
    """sha256 of the settings that shape the run; grad accumulation counted over all processes."""
    data = config.model_dump(mode="json")
    for key in _NON_TRAJECTORY:
        data.pop(key, None)
    if data.get("objective") == "sft":
        # `objective` came after the first runs; the default keeps their fingerprints (R6).
        data.pop("objective")
    if data.get("objective") != "dpo":
        data.pop("dpo", None)  # unused outside DPO; keeps earlier runs' fingerprints (R6)
    # The data order is defined over the global batch (R28): 1 process x accum 2 == 2 x accum 1.
    training = data["training"]
    training["gradient_accumulation"] = training["gradient_accumulation"] * world_size
    training.pop("precision", None)
    training.pop("compile", None)
    training.pop("gradient_checkpointing", None)
    training.pop("on_divergence", None)  # what to do when it goes wrong, not how it trains
    # The budget only cuts a step's batches into micro-batches that accumulate (same gradients up
    # to float rounding, like precision); None is what the runs before the budget recorded (R6).
    training["max_tokens_per_batch"] = None
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------------------- loading


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=v` → (["a", "b"], yaml.safe_load("v"))."""
    if "=" not in text:
        raise ConfigError(
            f"override {text!r} has no '='", where="--set", fix="write --set key.sub=value"
        )
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key", where="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"value of {key} is not valid YAML: {exc}", where="--set") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Set each `a.b=v` into the nested mapping (unknown keys are caught at validation)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return data


def _fields_at(loc: tuple) -> list[str]:
    """Field names of the model that owns the last key in `loc` (for "did you mean")."""
    model: Any = TrainConfig
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _describe(error: dict, source: str, lines: dict, overridden: set[tuple[str, ...]]) -> str:
    loc = tuple(str(p) for p in error["loc"])
    dotted = ".".join(loc) or "<root>"
    where = source
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in overridden:
            where = "--set"
            break
        if loc[:cut] in lines:
            where = f"{source}:{lines[loc[:cut]]}"
            break
    if error["type"] == "extra_forbidden":
        known = _fields_at(loc)
        text = f"{where}: unknown key '{dotted}'"
        close = difflib.get_close_matches(loc[-1], known, n=1)
        if close:
            text += f" (did you mean '{close[0]}'?)"
        elif known:
            text += f" (known keys: {', '.join(known)})"
        return text
    got = error.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{where}: {dotted}: {error['msg']}{got_text}"


def _resolve_paths(data: dict, base: Path) -> None:
    """Make relative paths written in the file relative to the file (if they exist there)."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            candidate = base / value
            if candidate.exists():
                return str(candidate.resolve())
        return value

    section = data.get("data")
    if isinstance(section, dict):
        for key in ("train", "eval"):
            if isinstance(section.get(key), list):
                section[key] = [fix(v) for v in section[key]]
            elif isinstance(section.get(key), str):
                section[key] = [fix(section[key])]
        if isinstance(section.get("template"), str):
            section["template"] = fix(section["template"])
    if isinstance(data.get("eval"), dict) and isinstance(data["eval"].get("suites"), list):
        data["eval"]["suites"] = [fix(v) for v in data["eval"]["suites"]]
    if isinstance(data.get("model"), str):
        data["model"] = fix(data["model"])


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Load a YAML config strictly, apply `--set a.b=v` overrides, validate; ConfigError if bad."""
    source = str(path) if path is not None else "<overrides>"
    text = ""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}", fix="pass the path of a YAML file")
        text = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=where) from None
    if not isinstance(data, dict):
        raise ConfigError("the config must be a YAML mapping of keys", where=source)
    overridden = {tuple(parse_override(o)[0]) for o in overrides}
    if path is not None:
        _resolve_paths(data, Path(path).resolve().parent)
    data = apply_overrides(data, overrides)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        lines = yaml_key_lines(text)
        problems = [_describe(e, source, lines, overridden) for e in exc.errors()]
        raise ConfigError(
            "invalid config:\n  " + "\n  ".join(problems),
            fix="see docs/training.md for every key and its meaning",
        ) from None
