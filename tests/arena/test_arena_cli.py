"""`tuneloop arena serve|results|export` from the command line (the serve test runs a real process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from arenahelp import Rater, write_prompts
from fakeserver import free_port
from pagehelp import src_env, wait_healthy

from tuneloop.arena.export import preference_rows
from tuneloop.cli import main


def _cast(prepared, plan: list[tuple[str, str, str, str, str]]) -> None:
    """Cast votes straight into the store: (rater, prompt, model_a, model_b, winner)."""
    sessions = {}
    for rater, prompt, a, b, winner in plan:
        if rater not in sessions:
            sessions[rater] = prepared.store.create_session(rater)[1]
        battle = prepared.store.issue_battle(sessions[rater], prompt, a, b)
        prepared.store.cast_vote(sessions[rater], battle, winner, reason=f"{rater} on {prompt}")


PLAN = [
    ("ann", "q1", "alpha", "beta", "a"),
    ("bob", "q1", "beta", "alpha", "b"),   # agrees with ann: alpha better on q1
    ("ann", "q2", "alpha", "gamma", "a"),
    ("bob", "q2", "gamma", "alpha", "a"),  # disagrees with ann on q2
    ("ann", "q3", "beta", "gamma", "tie"),
    ("bob", "q3", "gamma", "beta", "both_bad"),  # no preference both times: agree
    ("cat", "q1", "gamma", "beta", "b"),
    ("cat", "q2", "beta", "alpha", "b"),
]


def test_results_json_counts_win_rates_and_agreement(prepared, capsys):
    """`arena results --json`: counts, win-rate matrix, per-rater agreement on shared items."""
    _cast(prepared, PLAN)
    assert main(["arena", "results", "--db", str(prepared.db), "--json", "--bootstrap", "50"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["votes"], doc["decisive"], doc["ties"], doc["both_bad"], doc["raters"]) == (
        8, 6, 1, 1, 3)
    by_model = {r["model"]: r for r in doc["ratings"]}
    assert {m: (r["votes"], r["wins"], r["losses"], r["ties"], r["both_bad"])
            for m, r in by_model.items()} == {
        "alpha": (5, 4, 1, 0, 0), "beta": (6, 1, 3, 1, 1), "gamma": (5, 1, 2, 1, 1)}
    assert [r["rank"] for r in doc["ratings"]] == [1, 2, 3]
    assert doc["ratings"][0]["model"] == "alpha"
    cell = doc["win_rates"]["alpha"]["beta"]
    assert (cell["wins"], cell["losses"], cell["ties"], cell["n"], cell["win_rate"]) == (
        3, 0, 0, 3, 1.0)
    assert doc["win_rates"]["beta"]["gamma"]["win_rate"] == pytest.approx((1 + 0.5 * 2) / 3)
    # Shared items by different raters: (q1, alpha-beta) ann+bob agree, (q2, alpha-gamma) ann+bob
    # disagree, (q3, beta-gamma) tie vs both-bad agree.
    assert doc["agreement"] == {"agree": 2, "n": 3, "rate": pytest.approx(2 / 3)}
    raters = {r["rater"]: r for r in doc["per_rater"]}
    assert raters["ann"]["with_others"] == {"agree": 2, "n": 3, "rate": pytest.approx(2 / 3)}
    assert raters["cat"]["with_others"]["n"] == 0 and raters["cat"]["votes"] == 2
    assert (raters["bob"]["decisive"], raters["bob"]["ties"], raters["bob"]["both_bad"]) == (
        2, 0, 1)
    assert doc["method"]["bradley_terry"]["bootstrap_rounds"] == 50
    # The table form prints the same numbers.
    assert main(["arena", "results", "--db", str(prepared.db), "--bootstrap", "50"]) == 0
    text = capsys.readouterr().out
    assert "8 vote(s) from 3 rater(s): 6 decisive, 1 tie(s), 1 both bad" in text
    assert "alpha" in text and "100% (3)" in text


def test_export_writes_preference_pairs_from_decisive_votes(prepared, tmp_path, capsys):
    """`arena export`: one row per decisive vote with prompt messages, chosen/rejected text, ids."""
    _cast(prepared, PLAN)
    out = tmp_path / "out" / "prefs.jsonl"
    assert main(["arena", "export", "--db", str(prepared.db), "--out", str(out)]) == 0
    assert "wrote 6 preference pair(s)" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    votes = {v["vote_id"]: v for v in prepared.store.votes()}
    assert len(rows) == 6 and len({r["vote_id"] for r in rows}) == 6
    for row in rows:
        vote = votes[row["vote_id"]]
        assert vote["winner"] in ("a", "b")
        winner = vote["model_a"] if vote["winner"] == "a" else vote["model_b"]
        loser = vote["model_b"] if vote["winner"] == "a" else vote["model_a"]
        assert (row["chosen_model"], row["rejected_model"]) == (winner, loser)
        assert row["chosen"] == prepared.store.answer(vote["prompt_id"], winner)
        assert row["rejected"] == prepared.store.answer(vote["prompt_id"], loser)
        assert row["prompt"] == prepared.store.prompt_messages(vote["prompt_id"])
        assert row["battle_id"] == vote["battle_id"] and row["rater"] == vote["rater"]
    first = rows[0]
    assert first["prompt"] == [{"role": "user", "content": "Name a prime number."}]
    assert first["chosen"] == "(ahpla) answer to: Name a prime number."
    assert set(first) == {"prompt", "chosen", "rejected", "chosen_model", "rejected_model",
                          "vote_id", "battle_id", "prompt_id", "rater", "reason"}
    assert not any(r["prompt_id"] == "q3" for r in rows)  # q3 had only a tie and a both-bad
    assert preference_rows(prepared.db)[1:] == (1, 1)


def test_bad_inputs_are_clean_errors(tmp_path, capsys):
    """Missing db, non-loopback bind without a key (R21), one model: a message, non-zero exit."""
    assert main(["arena", "results", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert "no arena database here" in capsys.readouterr().err
    prompts = write_prompts(tmp_path / "p.jsonl")
    rc = main(["arena", "serve", "--prompts", str(prompts), "--model", "a", "--model", "b",
               "--host", "0.0.0.0", "--db", str(tmp_path / "a.sqlite")])
    err = capsys.readouterr().err
    assert rc == 1 and "refusing to listen on '0.0.0.0' without an API key" in err
    assert not (tmp_path / "a.sqlite").exists()  # refused before anything was generated
    assert main(["arena", "serve", "--prompts", str(prompts), "--model", "a",
                 "--db", str(tmp_path / "a.sqlite"), "--port", "0"]) == 2
    assert "at least two models" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": 3}\n', encoding="utf-8")
    assert main(["arena", "serve", "--prompts", str(bad), "--model", "a", "--model", "b",
                 "--db", str(tmp_path / "a.sqlite"), "--port", "0"]) == 1
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main(["arena", "results", "--db", str(bad)]) == 1
    assert "arena database" in capsys.readouterr().err


def test_arena_serve_process_end_to_end(tmp_path, fake_backend):
    """`tuneloop arena serve` as a real process: answers from an endpoint, a vote over HTTP with
    the access key, then `results --json` and `export` read what it stored."""
    url, _ = fake_backend
    prompts = write_prompts(tmp_path / "p.jsonl")
    db = tmp_path / "team.sqlite"
    port = free_port()
    env = src_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneloop", "arena", "serve", "--prompts", str(prompts),
         "--model", f"base=openai:{url}#base", "--model", f"tuned=openai:{url}#tuned",
         "--db", str(db), "--port", str(port), "--api-key", "team-key", "--max-new-tokens", "16"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base, "arena serve")
        rater = Rater(base, "dana", key="team-key")
        assert rater.login_response.status_code == 303
        battle_id, csrf, _ = rater.battle()
        assert rater.vote(battle_id, csrf, "b", reason="shorter").status_code == 303
        assert rater.vote(battle_id, csrf, "a").status_code == 409
        rater.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "open http://127.0.0.1:" in err and "access key required" in err
    done = subprocess.run([sys.executable, "-m", "tuneloop", "arena", "results", "--db", str(db),
                           "--json", "--bootstrap", "20"], env=env, capture_output=True,
                          text=True, check=True)
    doc = json.loads(done.stdout)
    assert doc["votes"] == 1 and doc["decisive"] == 1
    assert {r["model"] for r in doc["ratings"]} == {"base", "tuned"}
    out = tmp_path / "prefs.jsonl"
    subprocess.run([sys.executable, "-m", "tuneloop", "arena", "export", "--db", str(db), "--out",
                    str(out)], env=env, check=True, capture_output=True)
    row = json.loads(out.read_text(encoding="utf-8"))
    assert row["reason"] == "shorter" and row["rater"] == "dana"
    assert {row["chosen_model"], row["rejected_model"]} == {"base", "tuned"}
