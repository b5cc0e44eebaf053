"""The sweep trials migration (m006_sweep_trials) and record_trial/list_trials, on real sqlite."""

from __future__ import annotations

import pytest

from tuneloop import index


def test_an_index_from_before_sweeps_gains_the_trials_table_without_losing_rows(tmp_path):
    """Migrated up to the migration before m006, with a run row; opening it again adds
    sweep_trials last and keeps the run."""
    names = [fn.__name__ for fn in index.MIGRATIONS]
    assert names[-1] == "m006_sweep_trials"  # appended at the end, never in between
    path = tmp_path / "old.sqlite"
    db = index.connect(path)
    index.migrate(db, upto=names.index("m006_sweep_trials"))
    index.record_run(tmp_path / "r", name="r", model="m", method="lora", data_fingerprint=None,
                     steps=3, best_eval_loss=1.5, status="completed", config={}, index=db)
    assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sweep_trials'").fetchone()
    db.close()

    db = index.open_index(path)
    try:
        assert index.applied_migrations(db)[-1] == "m006_sweep_trials"
        assert [r["name"] for r in index.list_runs(index=db)] == ["r"]
        sweep = tmp_path / "sweep"
        index.record_trial(sweep, 1, params={"lora.r": 16}, state="pruned", steps=2,
                           run_dir=sweep / "trial-001", index=db)
        index.record_trial(sweep, 0, params={"lora.r": 8, "training.learning_rate": 1e-4},
                           state="complete", value=0.25, steps=6, extra={"metric": "eval_loss"},
                           index=db)
        index.record_trial(tmp_path / "other", 0, params={}, state="failed", index=db)
        rows = index.list_trials(sweep, index=db)
        assert [(r["trial"], r["state"], r["value"], r["steps"]) for r in rows] == [
            (0, "complete", 0.25, 6), (1, "pruned", None, 2)]
        assert rows[0]["params"] == {"lora.r": 8, "training.learning_rate": 1e-4}
        assert rows[0]["extra"] == {"metric": "eval_loss"} and rows[1]["extra"] is None
        assert rows[1]["run_dir"] == str((sweep / "trial-001").resolve())
        assert rows[0]["sweep"] == str(sweep.resolve()) and rows[0]["created_at"]
    finally:
        db.close()


def test_a_trial_is_recorded_once_with_a_known_state(tmp_path):
    """A trial number is unique per sweep; the state is complete, pruned or failed."""
    path = tmp_path / "i.sqlite"
    index.record_trial(tmp_path / "s", 0, params={}, state="complete", value=1.0, index=path)
    with pytest.raises(index.IndexDBError, match="trial 0 of this sweep is already recorded"):
        index.record_trial(tmp_path / "s", 0, params={}, state="complete", index=path)
    with pytest.raises(index.IndexDBError, match="unknown trial state 'running'"):
        index.record_trial(tmp_path / "s", 1, params={}, state="running", index=path)
    assert len(index.list_trials(tmp_path / "s", index=path)) == 1
