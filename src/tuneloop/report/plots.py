"""Report figures drawn with matplotlib's Agg backend and returned as inline PNG data URIs."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from tuneloop.report.evals import Column
from tuneloop.report.runs import RunData


def _figure(width: float = 7.0, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display; never opens a window
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _label(text: str) -> str:
    """User text as a literal matplotlib label: `$` would otherwise start mathtext (and can raise)."""
    return text.replace("$", r"\$")


def _xy(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [
        (r["step"], r[key])
        for r in rows
        if isinstance(r.get("step"), (int, float)) and isinstance(r.get(key), (int, float))
    ]
    pts.sort()
    return [p[0] for p in pts], [p[1] for p in pts]


def loss_curves(runs: list[RunData]) -> str | None:
    """Train loss (line) and eval loss (markers) per run against step; None if nothing logged."""
    if not any(r.train or r.eval for r in runs):
        return None
    fig, ax = _figure()
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        xs, ys = _xy(run.train, "loss")
        if xs:
            ax.plot(xs, ys, color=color, lw=1.4, label=_label(f"{run.name} train"))
        xs, ys = _xy(run.eval, "eval_loss")
        if xs:
            ax.plot(xs, ys, color=color, ls="--", marker="o", ms=4, label=_label(f"{run.name} eval"))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _data_uri(fig)


def mfu_over_steps(runs: list[RunData]) -> str | None:
    """Model-FLOPs utilisation (%) per logged train step, one line per run; None if no run
    logged it (runs written before tuneloop logged MFU)."""
    if not any(_xy(r.train, "mfu")[0] for r in runs):
        return None
    fig, ax = _figure(height=2.8)
    for i, run in enumerate(runs):
        xs, ys = _xy(run.train, "mfu")
        if xs:
            peak = run.run_info.get("peak_dtype")
            tag = f" ({peak})" if isinstance(peak, str) else ""
            ax.plot(xs, [100 * y for y in ys], color=f"C{i % 10}", lw=1.4,
                    label=_label(f"{run.name}{tag}"))
    ax.set_xlabel("step")
    ax.set_ylabel("MFU (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _data_uri(fig)


def suite_over_steps(runs: list[RunData]) -> str | None:
    """Suite pass rate per checkpoint step, one line per run and suite; None if none logged."""
    if not any(r.suite for r in runs):
        return None
    fig, ax = _figure()
    for i, run in enumerate(runs):
        suites = sorted({str(r.get("suite", "")) for r in run.suite})
        for j, suite in enumerate(suites):
            xs, ys = _xy([r for r in run.suite if str(r.get("suite", "")) == suite], "pass_rate")
            if xs:
                ax.plot(xs, [100 * y for y in ys], color=f"C{i % 10}",
                        ls=("-", "--", ":", "-.")[j % 4], marker="s", ms=4,
                        label=_label(f"{run.name} {Path(suite).name}".strip()))
    ax.set_xlabel("step")
    ax.set_ylabel("pass rate (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _data_uri(fig)


def pass_rate_bars(columns: list[Column]) -> str | None:
    """Horizontal bars: pass rate per variant/run column; None if no column has a rate."""
    cols = [c for c in columns if c.pass_rate is not None]
    if not cols:
        return None
    fig, ax = _figure(height=max(1.6, 0.45 * len(cols) + 0.8))
    labels = [_label(c.label) for c in cols]
    values = [100 * c.pass_rate for c in cols]
    bars = ax.barh(range(len(cols)), values, color=[f"C{i % 10}" for i in range(len(cols))])
    ax.bar_label(bars, labels=[f"{v:.1f}%" for v in values], padding=3, fontsize=8)
    ax.set_yticks(range(len(cols)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 112)
    ax.set_xlabel("pass rate (%)")
    ax.grid(axis="x", alpha=0.3)
    return _data_uri(fig)
