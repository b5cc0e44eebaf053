"""docs/reliability.md defines every reliability id the code cites, and names only real tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
_CITED = re.compile(r"\bR([1-9][0-9]?)\b")
_DEFINED = re.compile(r"^### R([1-9][0-9]?) — ", re.MULTILINE)
_TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _cited_ids() -> dict[int, list[str]]:
    cited: dict[int, list[str]] = {}
    for top in ("src", "tests"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in (".py", ".md", ".yaml", ".yml", ".html", ".txt", ".jinja"):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for m in _CITED.finditer(text):
                cited.setdefault(int(m.group(1)), []).append(str(path.relative_to(ROOT)))
    return cited


def test_every_cited_reliability_id_is_defined():
    """Each R-id cited in src/ or tests/ has its own section in docs/reliability.md."""
    defined = {int(n) for n in _DEFINED.findall(DOC.read_text(encoding="utf-8"))}
    assert defined == set(range(1, 29)), sorted(set(range(1, 29)) ^ defined)
    cited = _cited_ids()
    assert len(cited) > 20, "the scan found almost no citations; is the pattern broken?"
    missing = {f"R{n}": files[:3] for n, files in cited.items() if n not in defined}
    assert missing == {}, f"cited but not defined in docs/reliability.md: {missing}"


def test_tests_named_in_the_doc_exist():
    """Every `tests/…py::test_name` the doc names is a test function in that file."""
    refs = _TEST_REF.findall(DOC.read_text(encoding="utf-8"))
    assert len(refs) > 40
    gone = []
    for file, name in refs:
        path = ROOT / file
        names = set()
        if path.is_file():
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {n.name for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if name not in names:
            gone.append(f"{file}::{name}")
    assert gone == [], f"docs/reliability.md names tests that do not exist: {gone}"
