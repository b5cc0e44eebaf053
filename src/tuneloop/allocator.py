"""The memory allocator a tuneloop process runs with: jemalloc where the system has it.

Why: with glibc's malloc a training process keeps the memory of its freed activations and
backward temporaries in fragmented heap space, so its peak RSS sits far above what it ever holds
at once. Measured on the embedded model (docs/benchmarks.md, the "jemalloc" entries): LoRA on
1540-token micro-batches peaked at 4865 MiB with glibc and 3363 MiB with jemalloc; full
fine-tuning at the benchmark's settings 4916-4950 vs 4269-4333 MiB, at the same tokens/s. glibc
can be made to return that memory (a fixed mmap threshold) but then every large tensor is fresh
pages and the same run was 25-30 % slower.

A process cannot change its malloc once it runs, so the console script re-executes itself once
with jemalloc in ``LD_PRELOAD`` (same PID, same arguments) before anything heavy is imported;
the re-executed process puts the caller's ``LD_PRELOAD`` back, so programs it starts see the
environment the user gave. ``TUNELOOP_ALLOCATOR=system`` keeps the system allocator; a path
there names the jemalloc library to use. Without jemalloc (not Linux, not installed: `make`
installs Debian's libjemalloc2) tuneloop runs as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

CHOICE_ENV = "TUNELOOP_ALLOCATOR"
# Set for the re-executed process only: the caller's LD_PRELOAD ("" when it had none). Its
# presence also means "already re-executed": a library that failed to load never loops.
_CALLER_PRELOAD_ENV = "_TUNELOOP_CALLER_LD_PRELOAD"
JEMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",  # Debian/Ubuntu libjemalloc2
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",  # Fedora/RHEL
    "/usr/lib/libjemalloc.so.2",  # Arch, Alpine
    "/usr/local/lib/libjemalloc.so.2",  # built from source
)


def find_jemalloc(environ: Mapping[str, str] = os.environ) -> str | None:
    """The jemalloc library to preload: TUNELOOP_ALLOCATOR's path, else the first system one."""
    choice = environ.get(CHOICE_ENV, "").strip()
    if choice == "system" or not sys.platform.startswith("linux"):
        return None
    candidates = (choice,) if choice and choice != "jemalloc" else JEMALLOC_CANDIDATES
    for path in candidates:
        if Path(path).is_file() and os.access(path, os.R_OK):
            return path
    return None


def active() -> str:
    """"jemalloc" if this process's malloc is jemalloc (it is mapped in), else "system"."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "system"
    return "jemalloc" if "libjemalloc" in maps else "system"


def reexec_env(environ: Mapping[str, str] = os.environ) -> dict[str, str] | None:
    """The environment to re-execute with, or None when this process should run as it is."""
    if _CALLER_PRELOAD_ENV in environ or active() == "jemalloc":
        return None
    env = preload_env(environ)
    if env is None:
        return None
    env[_CALLER_PRELOAD_ENV] = environ.get("LD_PRELOAD", "")
    return env


def preload_env(environ: Mapping[str, str] = os.environ) -> dict[str, str] | None:
    """A copy of `environ` with jemalloc first in LD_PRELOAD (None where there is none): for a
    process started directly (benchmark children) to run as the tuneloop command would."""
    library = find_jemalloc(environ)
    if library is None:
        return None
    env = dict(environ)
    env["LD_PRELOAD"] = f"{library} {environ.get('LD_PRELOAD', '')}".strip()
    return env


def use_jemalloc() -> None:
    """Re-execute this command with jemalloc preloaded (no return), or restore the caller's
    environment if this is the re-executed process. Call first thing in the console script."""
    if _CALLER_PRELOAD_ENV in os.environ:
        caller = os.environ.pop(_CALLER_PRELOAD_ENV)
        if caller:
            os.environ["LD_PRELOAD"] = caller
        else:
            os.environ.pop("LD_PRELOAD", None)
        return
    env = reexec_env()
    argv = getattr(sys, "orig_argv", None)
    if env is None or not argv:
        choice = os.environ.get(CHOICE_ENV, "").strip()
        if choice not in ("", "system", "jemalloc") and find_jemalloc() is None:
            # A library asked for by path: say why it is not used rather than quietly run
            # without it (said here, once per command, not by every lookup).
            print(f"warning: {CHOICE_ENV}={choice}: not a readable file; using the system "
                  f"allocator (fix: the path of libjemalloc.so.2, or {CHOICE_ENV}=system)",
                  file=sys.stderr)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError:
        return  # cannot re-execute here (odd interpreter setup): keep the system allocator
