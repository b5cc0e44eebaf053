"""User-facing failures: every one says what went wrong, where, and how to fix it."""

from __future__ import annotations


class TuneloopError(Exception):
    """A failure the user can act on; the CLI prints it as one message and exits non-zero."""

    exit_code = 1

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message())

    def message(self) -> str:
        """One readable line (or a few): `where: what. Fix: fix`."""
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class UsageError(TuneloopError):
    """Bad command-line arguments or options (exit 2, like argparse/click)."""

    exit_code = 2


class ConfigError(TuneloopError):
    """A config file or --set override that does not validate."""

    exit_code = 2


class DataError(TuneloopError):
    """Input data that cannot be used (unreadable file, nothing usable left)."""


class ModelError(TuneloopError):
    """A model reference that cannot be resolved or loaded."""


class CheckpointError(TuneloopError):
    """A checkpoint that cannot be written, found or resumed from."""


class TrainingError(TuneloopError):
    """Training had to stop (NaN/inf loss, no trainable examples, ...)."""


class EvalError(TuneloopError):
    """An evaluation input (suite, benchmark file, judge output) that cannot be used."""


class ServeError(TuneloopError):
    """A server that refuses to start (unsafe bind, bad options)."""


class ExportError(TuneloopError):
    """An export that cannot be made, or whose result failed its own check (exit 1)."""
