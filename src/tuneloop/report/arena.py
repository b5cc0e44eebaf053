"""The report's arena section: ratings with their 95% intervals drawn, from the results document.

It reads the plain dict `tuneloop arena results --json` prints (built by tuneloop.arena.results;
the `report` command passes it in), so the report draws votes without computing ratings itself.
"""

from __future__ import annotations

from typing import Any

from tuneloop.report.plots import _data_uri, _figure, _label


def ratings_plot(doc: dict[str, Any]) -> str | None:
    """Each rated model's BT rating as a dot with its 95% interval as a bar; best at the top."""
    rows = [r for r in doc.get("ratings", []) if r.get("rating") is not None]
    if not rows:
        return None
    fig, ax = _figure(height=max(1.8, 0.45 * len(rows) + 1.0))
    ys = list(range(len(rows)))
    values = [r["rating"] for r in rows]
    low = [r["rating"] - r["ci_low"] if r.get("ci_low") is not None else 0.0 for r in rows]
    high = [r["ci_high"] - r["rating"] if r.get("ci_high") is not None else 0.0 for r in rows]
    ax.errorbar(values, ys, xerr=[low, high], fmt="o", color="C0", ecolor="C0", elinewidth=2,
                capsize=4, label="Bradley-Terry (95% bootstrap interval)")
    elos = [(r["elo"], y) for r, y in zip(rows, ys) if r.get("elo") is not None]
    if elos:
        ax.plot([e for e, _ in elos], [y for _, y in elos], "x", color="C1", label="online Elo")
    ax.axvline(1000, color="grey", lw=0.8, ls=":")
    ax.set_yticks(ys, [_label(f"{r['model']} ({r['votes']} votes)") for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("rating (400 points = 10:1 odds)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _data_uri(fig)


def arena_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What the template shows: headline counts, the plot, rating rows and the win-rate matrix."""
    models = [r["model"] for r in doc.get("ratings", [])]
    matrix = []
    for m in models:
        cells = []
        for o in models:
            cell = doc.get("win_rates", {}).get(m, {}).get(o) if o != m else None
            cells.append(None if cell is None else (cell["win_rate"], cell["n"]))
        matrix.append((m, cells))
    return {
        "votes": doc.get("votes", 0), "decisive": doc.get("decisive", 0),
        "ties": doc.get("ties", 0), "both_bad": doc.get("both_bad", 0),
        "raters": doc.get("raters", 0), "mle_exists": doc.get("mle_exists"),
        "rounds": doc.get("method", {}).get("bradley_terry", {}).get("bootstrap_rounds"),
        "agreement": doc.get("agreement") or {},
        "ratings": doc.get("ratings", []), "models": models, "matrix": matrix,
        "png": ratings_plot(doc),
    }
