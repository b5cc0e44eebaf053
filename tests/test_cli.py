"""The CLI shell: help is fast to reach, user errors are one message with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import click

from tuneloop.cli import cli, main
from tuneloop.errors import DataError


def test_every_area_registers_its_commands():
    """Each command module's register() ran: the top-level commands all exist."""
    names = set(cli.commands)
    assert {"data", "train", "generate", "chat", "eval", "serve", "runs", "report", "demo"} <= names
    assert {"check", "split", "preview"} <= set(cli.commands["data"].commands)
    assert {"suite", "compare", "loss", "mc", "judge"} <= set(cli.commands["eval"].commands)


def test_user_error_is_one_message_not_a_traceback(tmp_path, capsys):
    """R10-style: a missing input file exits non-zero with a message naming it, no traceback."""
    missing = tmp_path / "nope.jsonl"
    rc = main(["data", "check", str(missing)])
    err = capsys.readouterr().err
    assert rc != 0
    assert "nope.jsonl" in err
    assert "Traceback" not in err


def test_ctx_exit_code_is_kept():
    """A command that exits through ctx.exit(n) keeps n (click returns it without standalone mode)."""

    @cli.command("_exit_probe", hidden=True)
    @click.pass_context
    def _probe(ctx):
        ctx.exit(3)

    try:
        assert main(["_exit_probe"]) == 3
    finally:
        cli.commands.pop("_exit_probe")


def test_debug_flag_shows_the_traceback(tmp_path):
    """--debug re-raises library errors so the traceback is visible."""
    result = subprocess.run(
        [sys.executable, "-m", "tuneloop", "--debug", "data", "check", str(tmp_path / "x.jsonl")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_error_type_maps_to_exit_code():
    """Data errors exit 1, usage errors 2 (click's own convention)."""
    assert DataError("x").exit_code == 1
    assert main(["data", "check", "--no-such-option"]) == 2
