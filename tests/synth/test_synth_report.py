"""The synth quality numbers reach `tuneloop report` and `tuneloop data check`."""

from __future__ import annotations

import json

from fake_llm import FakeLLM, spec
from test_synth_self_instruct import SEEDS, scripted

from tuneloop.cli import main
from tuneloop.report.build import write_report
from tuneloop.synth.self_instruct import SelfInstructOptions, run_self_instruct


def _synth_dir(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    out = tmp_path / "synth"
    with FakeLLM(scripted).serve() as url:
        run_self_instruct(seeds, spec(url), out, SelfInstructOptions(
            target=3, instances=2, batch=1, max_tokens=60, progress=False))
    return out


def test_data_check_prints_human_machine_share(tmp_path, capsys):
    """`data check` on a synth train.jsonl shows who wrote the rows (7 seeds, 4 machine)."""
    out = _synth_dir(tmp_path)
    capsys.readouterr()
    assert main(["data", "check", str(out / "train.jsonl")]) == 0
    text = capsys.readouterr().out
    assert "provenance: human 7 (63.6%), machine 4 (36.4%)" in text


def test_report_has_a_synth_section_for_a_run_trained_on_synth_data(tmp_path):
    """A run whose fingerprint lists a synth train.jsonl gets the section: drops by filter,
    novelty histogram, lengths, first words, machine share."""
    out = _synth_dir(tmp_path)
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"name": "r", "status": "completed"}))
    (run / "data" / "fingerprint.json").write_text(json.dumps({
        "id": "ab" * 32, "files": [{"path": str(out / "train.jsonl"), "sha256": "0" * 64,
                                    "rows": 11}]}))
    summary = write_report([run], out=tmp_path / "report.html")
    html = summary.out.read_text()
    assert 'id="synth"' in html and "self-instruct" in html
    for reason in ("too_similar", "blacklisted_word", "conflicting_outputs", "cut_off_last_item"):
        assert f"<code>{reason}</code>" in html
    assert "machine share 36.4%" in html
    assert "0.9–1.0" in html and "Top first words" in html and "<code>write</code>" in html


def test_report_without_synth_data_has_no_section(tmp_path):
    """Runs trained on ordinary data show no synth section."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"name": "r", "status": "completed"}))
    html = write_report([run], out=tmp_path / "r.html").out.read_text()
    assert 'id="synth"' not in html
