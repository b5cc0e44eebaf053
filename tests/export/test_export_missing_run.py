"""`tuneloop export no-such-run` names the missing run directory; it never tries the hub."""

from __future__ import annotations

import tuneloop.export
from tuneloop.cli import main
from tuneloop.workspace import runs_root


def test_a_missing_run_is_named_not_downloaded(tmp_path, monkeypatch, capsys):
    def no_download(*args, **kwargs):
        raise AssertionError("export_model (and a hub download) must not be reached")

    monkeypatch.setattr(tuneloop.export, "export_model", no_download)
    monkeypatch.chdir(tmp_path)
    code = main(["export", "no-such-run", "--format", "hf", "--out", str(tmp_path / "o")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "no run directory 'no-such-run'" in err
    assert str(tmp_path / "no-such-run") in err and "tuneloop runs" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()
    # a run of that name in the workspace is pointed at
    (runs_root() / "no-such-run-20250101-120000").mkdir(parents=True)
    assert main(["export", "no-such-run", "--format", "hf", "--out", str(tmp_path / "o")]) == 1
    assert "no-such-run-20250101-120000" in capsys.readouterr().err
