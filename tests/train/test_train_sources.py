"""A training file no reader takes fails before the plan and the model load (#22 item 9)."""

from __future__ import annotations

import yaml

from tuneloop.cli import main


def test_a_wrong_file_type_fails_before_the_model_loads(tmp_path, capsys):
    """The model reference cannot even resolve: reaching it would say so instead."""
    data = tmp_path / "notes.docx"
    data.write_bytes(b"PK\x03\x04 not text")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": str(tmp_path / "no-such-model"), "method": "lora",
                                      "data": {"train": [str(data)]}}), encoding="utf-8")
    rc = main(["train", str(config), "--output-dir", str(tmp_path / "run")])
    out = capsys.readouterr()
    assert rc == 2 and "unsupported file type '.docx'" in out.err
    assert "plan" not in out.out and "no-such-model" not in out.err
    assert not (tmp_path / "run").exists()
