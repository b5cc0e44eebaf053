"""The import contract and CLI start-up: imports flow one way, `tuneloop --help` stays light.

The layers live in pyproject.toml ([tool.importlinter]) and are drawn in docs/architecture.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    # This checkout's sources first: the editable install may point at another tree.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def test_import_contract_holds(tmp_path):
    """`lint-imports` keeps every contract: layers (no upward import) and no cycles in packages."""
    exe = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(exe), "--cache-dir", str(tmp_path / "cache"), "--no-logo"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"import contract broken:\n{proc.stdout}\n{proc.stderr}"


def test_help_loads_only_the_command_layer():
    """`tuneloop --help` imports click, the command modules and errors: no library modules, no
    torch/transformers/pydantic (command modules import what they call inside the command)."""
    code = ("import sys\nfrom tuneloop.cli import main\nmain(['--help'])\n"
            "print('\\n'.join(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    ours = {m for m in loaded if m.split(".")[0] == "tuneloop"}
    allowed = {"tuneloop", "tuneloop.cli", "tuneloop.commands", "tuneloop.errors",
               "tuneloop.data", "tuneloop.data.load", "tuneloop.data.records",  # data.load.FORMATS
               # stdlib-only: generate's flags are checked by GenParams before any model loads
               "tuneloop.infer", "tuneloop.infer.params"}
    extra = sorted(m for m in ours - allowed if not m.startswith("tuneloop.commands."))
    assert extra == [], f"`tuneloop --help` imports library modules: {extra}"
    heavy = {"torch", "transformers", "peft", "accelerate", "datasets", "numpy", "pydantic",
             "yaml", "fastapi", "uvicorn", "rich", "jinja2", "matplotlib"}
    assert sorted(heavy & {m.split(".")[0] for m in loaded}) == []


def test_architecture_doc_draws_the_contract_layers():
    """docs/architecture.md's layer diagram lists exactly the contract's layers, in order."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers")
    want = [[f"tuneloop.{m.strip().strip('()')}" for m in layer.split("|")]
            for layer in contract["layers"]]
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = doc.split("## Layers", 1)[1].split("```", 2)[1]
    drawn = [[m.strip() for m in line.split("  ")[0].split("|")]
             for line in diagram.splitlines() if line.startswith("tuneloop.")]
    assert drawn == want
