"""The votes in an arena database → one results document (`tuneloop arena results [--json]`).

The document (a plain dict, JSON-ready) is the one format every reader goes through: the CLI table,
`--json`, and the report's arena section. Its fields are described in docs/arena.md.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

from tuneloop.arena import ratings
from tuneloop.arena.store import open_existing
from tuneloop.errors import UsageError

SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


def _verdict(vote: dict[str, Any]) -> str:
    """The vote in side-free terms: the winning model's name, or "=" for no preference."""
    return {"a": vote["model_a"], "b": vote["model_b"]}.get(vote["winner"], "=")


def _rate(agree: int, n: int) -> dict[str, Any]:
    return {"agree": agree, "n": n, "rate": agree / n if n else None}


def _agreement(votes: list[dict[str, Any]], rating_of: dict[str, float]) -> tuple[dict, dict]:
    """Overall and per-rater agreement: with other raters on the same item, and with the ratings.

    An item is a prompt and an unordered model pair; two verdicts agree when they name the same
    winner or both name none (tie and both-bad are one "no preference" verdict, as in the fit).
    """
    by_item: dict[tuple[str, frozenset], list[tuple[str, str]]] = defaultdict(list)
    for v in votes:
        by_item[(v["prompt_id"], frozenset((v["model_a"], v["model_b"])))].append(
            (v["rater"], _verdict(v)))
    overall = [0, 0]
    others: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for verdicts in by_item.values():
        for (r1, v1), (r2, v2) in combinations(verdicts, 2):
            if r1 == r2:
                continue
            same = int(v1 == v2)
            overall[0] += same
            overall[1] += 1
            for r in (r1, r2):
                others[r][0] += same
                others[r][1] += 1
    with_ratings: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for v in votes:
        winner = _verdict(v)
        if winner == "=":
            continue
        loser = v["model_b"] if winner == v["model_a"] else v["model_a"]
        if rating_of.get(winner) is None or rating_of.get(loser) is None:
            continue
        with_ratings[v["rater"]][0] += int(rating_of[winner] > rating_of[loser])
        with_ratings[v["rater"]][1] += 1
    per_rater = {r: {"with_others": _rate(*others[r]), "with_ratings": _rate(*with_ratings[r])}
                 for r in {v["rater"] for v in votes}}
    return _rate(*overall), per_rater


def summarise(votes: list[dict[str, Any]], models: list[str], *, rounds: int = 1000,
              seed: int = 0, anchor: str | None = None) -> dict[str, Any]:
    """The results document for `votes` (dicts with model_a, model_b, winner, rater, prompt_id)."""
    if anchor is not None and anchor not in models:
        raise UsageError(f"--anchor {anchor!r} is not a model in this arena", where="--anchor",
                         fix=f"use one of: {', '.join(models)}")
    counts = {m: {"votes": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0} for m in models}
    pair: dict[tuple[str, str], dict[str, float]] = defaultdict(
        lambda: {"wins": 0, "losses": 0, "ties": 0, "n": 0})
    for v in votes:
        a, b, w = v["model_a"], v["model_b"], v["winner"]
        for me, other, mine in ((a, b, "a"), (b, a, "b")):
            c = counts[me]
            c["votes"] += 1
            cell = pair[(me, other)]
            cell["n"] += 1
            if w == mine:
                c["wins"] += 1
                cell["wins"] += 1
            elif w in ("a", "b"):
                c["losses"] += 1
                cell["losses"] += 1
            else:
                c["ties" if w == "tie" else "both_bad"] += 1
                cell["ties"] += 1
    rated = [m for m in models if counts[m]["votes"] > 0]
    outcomes = [ratings.Outcome(v["model_a"], v["model_b"], SCORE[v["winner"]]) for v in votes]
    doc: dict[str, Any] = {
        "votes": len(votes),
        "decisive": sum(v["winner"] in ("a", "b") for v in votes),
        "ties": sum(v["winner"] == "tie" for v in votes),
        "both_bad": sum(v["winner"] == "both_bad" for v in votes),
        "raters": len({v["rater"] for v in votes}),
        "models": models,
        "method": {
            "bradley_terry": {"scale": ratings.SCALE, "base": ratings.BASE,
                              "anchor": {"rating": ratings.ANCHOR, "model": anchor or "mean"},
                              "ties": "half a win to each side (ties and both-bad)",
                              "interval": "95% percentile bootstrap over votes",
                              "bootstrap_rounds": rounds, "seed": seed,
                              "prior_sd_if_no_mle": ratings.PRIOR_SD},
            "elo": {"k": ratings.ELO_K, "initial": ratings.ANCHOR, "order": "votes as cast"},
        },
        "mle_exists": None,
        "bootstrap_with_prior": None,
    }
    rating_of: dict[str, float] = {}
    low = high = elo = None
    if len(rated) >= 2:
        anchor_index = rated.index(anchor) if anchor in rated else None
        wins = ratings.win_matrix(outcomes, rated)
        values, exact = ratings.bradley_terry(wins, anchor_index)
        rating_of = dict(zip(rated, values.tolist()))
        low, high, with_prior = ratings.bootstrap(outcomes, rated, rounds=rounds, seed=seed,
                                                  anchor_index=anchor_index)
        elo = dict(zip(rated, ratings.online_elo(outcomes, rated).tolist()))
        low, high = dict(zip(rated, low.tolist())), dict(zip(rated, high.tolist()))
        doc["mle_exists"], doc["bootstrap_with_prior"] = exact, with_prior
    rows = []
    for m in models:
        rows.append({"model": m, "rating": rating_of.get(m),
                     "ci_low": low.get(m) if low else None,
                     "ci_high": high.get(m) if high else None,
                     "elo": elo.get(m) if elo else None, **counts[m]})
    rows.sort(key=lambda r: (r["rating"] is None, -(r["rating"] or 0.0), r["model"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank if row["rating"] is not None else None
    doc["ratings"] = rows
    doc["win_rates"] = {
        m: {o: ({**pair[(m, o)], "win_rate": (pair[(m, o)]["wins"] + 0.5 * pair[(m, o)]["ties"])
                 / pair[(m, o)]["n"]} if (m, o) in pair else None)
            for o in models if o != m}
        for m in models}
    overall, per_rater = _agreement(votes, rating_of)
    doc["agreement"] = overall
    by_rater: dict[str, dict[str, int]] = defaultdict(
        lambda: {"votes": 0, "decisive": 0, "ties": 0, "both_bad": 0})
    for v in votes:
        r = by_rater[v["rater"]]
        r["votes"] += 1
        w = v["winner"]
        r["decisive" if w in ("a", "b") else "ties" if w == "tie" else "both_bad"] += 1
    doc["per_rater"] = [{"rater": name, **by_rater[name], **per_rater[name]}
                        for name in sorted(by_rater)]
    return doc


def arena_results(db: str | Path, *, rounds: int = 1000, seed: int = 0,
                  anchor: str | None = None) -> dict[str, Any]:
    """The results document for the arena database `db` (which must exist)."""
    store = open_existing(db)
    try:
        return summarise(store.votes(), store.models(), rounds=rounds, seed=seed, anchor=anchor)
    finally:
        store.close()
