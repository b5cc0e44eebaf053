"""One progress-bar style for every long step (training, eval, generation): label, bar, n/N, ETA."""

from __future__ import annotations

from typing import Any


def eta_progress(label: str = "{task.description}", *extra_columns: Any, enabled: bool = True,
                 transient: bool = False, console: Any = None):
    """A rich Progress on stderr with elapsed time and ETA; extra columns go after the ETA."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), *extra_columns,
                    console=console or Console(stderr=True), disable=not enabled,
                    transient=transient)


def optional_progress(enabled: bool, what: str):
    """An eta_progress bar labelled `what` with an `info` field column, or a null context (None).

    `with optional_progress(show, "train") as prog:` then `if prog: prog.add_task(..., info="")`.
    """
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.progress import TextColumn

    return eta_progress(f"[bold]{what}", TextColumn("{task.fields[info]}"))
