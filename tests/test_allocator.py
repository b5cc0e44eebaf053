"""The console script runs with jemalloc where the system has it (tuneloop/allocator.py).

The Makefile installs Debian's libjemalloc2, so on a machine set up by `make test` the re-exec
must really happen: these tests run the real entry point in a child process and read which
malloc it ended up with from its own memory map.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuneloop import allocator

ROOT = Path(__file__).resolve().parents[1]
# The child runs the console script's entry point (pyproject's [project.scripts]) with a real
# argv, then reports on itself.
PROBE = """
import os, sys
sys.argv = ["tuneloop", "runs", "--help"]
from tuneloop.__main__ import run
run()
from tuneloop import allocator
print(json.dumps({"allocator": allocator.active(), "pid": os.getpid(),
                  "ld_preload": os.environ.get("LD_PRELOAD"),
                  "marks": sorted(k for k in os.environ if k.startswith("_TUNELOOP"))}))
""".replace("import os, sys", "import json, os, sys")


def _probe(**env: str) -> tuple[dict, subprocess.CompletedProcess]:
    full = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.CHOICE_ENV)}
    full.update(env)
    proc = subprocess.Popen([sys.executable, "-c", PROBE], env=full, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    report["popen_pid"] = proc.pid
    return report, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def jemalloc() -> str:
    path = allocator.find_jemalloc({})
    assert path, ("libjemalloc.so.2 not found: `make test` installs Debian's libjemalloc2 "
                  "(apt-get install -y libjemalloc2)")
    return path


def test_the_command_reexecutes_itself_with_jemalloc(jemalloc):
    """Same PID (execve), jemalloc mapped in, and the caller's environment given back."""
    report, _ = _probe()
    assert report["allocator"] == "jemalloc"
    assert report["pid"] == report["popen_pid"]
    assert report["ld_preload"] is None and report["marks"] == []


def test_the_callers_ld_preload_is_kept_for_the_programs_it_starts(jemalloc):
    # A real library the caller preloads (jemalloc itself stands in): it stays preloaded and is
    # what children of the re-executed process see, not our prefix.
    report, _ = _probe(LD_PRELOAD=jemalloc)
    assert report["allocator"] == "jemalloc" and report["ld_preload"] == jemalloc


def test_system_keeps_the_system_allocator(jemalloc):
    report, _ = _probe(**{allocator.CHOICE_ENV: "system"})
    assert report["allocator"] == "system"


def test_a_missing_library_named_by_the_user_is_said_not_hidden(tmp_path):
    missing = tmp_path / "libjemalloc.so.2"
    report, proc = _probe(**{allocator.CHOICE_ENV: str(missing)})
    assert report["allocator"] == "system"
    assert f"{allocator.CHOICE_ENV}={missing}: not a readable file" in proc.stderr


def test_reexec_env_never_loops_and_prefixes_the_library(jemalloc):
    env = allocator.reexec_env({"LD_PRELOAD": "/opt/x.so", "PATH": "/bin"})
    if allocator.active() == "jemalloc":  # this test process already has it: nothing to do
        assert env is None
    else:
        assert env["LD_PRELOAD"] == f"{jemalloc} /opt/x.so"
        assert env["_TUNELOOP_CALLER_LD_PRELOAD"] == "/opt/x.so" and env["PATH"] == "/bin"
    # Already re-executed once (even if the library then failed to load): never again.
    assert allocator.reexec_env({"_TUNELOOP_CALLER_LD_PRELOAD": ""}) is None
    assert allocator.reexec_env({allocator.CHOICE_ENV: "system"}) is None
