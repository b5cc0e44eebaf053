"""The `tuneloop` command: thin commands that parse, call one library function and print.

This is the only place that exits. Library code raises TuneloopError; here it becomes one clean
message on stderr and a non-zero exit (`--debug` shows the traceback instead).
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

import click

from tuneloop.errors import TuneloopError

# Each area owns one module under tuneloop.commands that exposes `register(group)`.
# Modules are imported when the CLI starts, so each command imports the library modules it calls
# inside its function (marked `# lazy: CLI start-up`): `tuneloop --help` loads click, these
# modules and tuneloop.errors, nothing else (tests/test_imports.py checks that).
COMMAND_MODULES = ("data", "data_preview", "train", "infer", "eval", "eval_judge", "serve", "runs",
                   "demo", "arena", "synth", "export", "iterate", "sweep", "review")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="tuneloop")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Fine-tuning as a loop: check data, train, evaluate, compare with prompting, repeat."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug:
        os.environ["TUNELOOP_DEBUG"] = "1"


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"tuneloop.commands.{name}").register(cli)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the CLI and turn user errors into clean exits."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # Without standalone mode click returns the code of ctx.exit(n) instead of exiting.
        rc = cli.main(args=argv, prog_name="tuneloop", standalone_mode=False)
    except TuneloopError as exc:
        if debug:
            raise
        click.secho(f"error: {exc.message()}", fg="red", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # not a user error: still one message, the traceback on --debug
        if debug:
            raise
        click.secho(f"error: {_unexpected(exc)}", fg="red", err=True)
        return 1
    return rc if isinstance(rc, int) else 0


def _unexpected(exc: Exception) -> str:
    """One line for an exception that is not a TuneloopError (a full disk, a library bug)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return (f"no space left on device writing {exc.filename or 'a file'}\n"
                "  fix: free disk space, then run the command again (train: with --resume)")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (f"unexpected {type(exc).__name__}: {first}\n"
            "  fix: this is likely a bug; run again with --debug for the traceback and report it")


if __name__ == "__main__":
    sys.exit(main())
