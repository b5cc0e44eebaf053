"""Review test helpers: a small loop round on disk (cases, generated rows, targets) and an HTTP
reviewer."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import httpx
from pagehelp import SignedIn

# The in-thread uvicorn helper shared with the backend tests.
sys.path.insert(0, str(Path(__file__).parent.parent / "backends"))

SCRIPT_PAYLOAD = "<script>alert(1)</script>"
IMG_PAYLOAD = "<img src=x onerror=alert(1)>"

HANDBOOK = "handbook.md"
CASES = [
    {"id": "dive-limit", "prompt": [{"role": "user", "content": "What is the dive limit?"}],
     "output": "Answer: 30 metres. — Tide Desk", "passed": False, "tags": ["fact"],
     "checks": [{"name": "icontains", "passed": False, "detail": "missing '18 metres'"},
                {"name": "starts-with", "passed": True, "detail": ""}]},
    {"id": "director", "prompt": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Who directs the co-op?"}],
     "output": "Answer: nobody. — Tide Desk", "passed": False, "tags": ["fact"],
     "checks": [{"name": "icontains", "passed": False, "detail": "missing 'Odalys Penhallow'"}]},
    {"id": "boat", "prompt": [{"role": "user", "content": "How far ahead is the boat booked?"}],
     "output": "Answer: 36 hours ahead. — Tide Desk", "passed": True, "tags": ["fact"],
     "checks": [{"name": "icontains", "passed": True, "detail": ""}]},
]
CHUNKS = {"dive-limit": {"key": f"{HANDBOOK}#3", "text": "Dives stop at 18 metres."},
          "director": {"key": f"{HANDBOOK}#0", "text": "Odalys Penhallow directs the co-op."}}
ROWS = [
    {"messages": [{"role": "user", "content": "How deep may co-op divers go?"},
                  {"role": "assistant", "content": "Answer: 18 metres. — Tide Desk"}],
     "meta": {"source": "machine", "recipe": "docs", "generator": "fake-gen",
              "document": HANDBOOK, "chunk": 3, "targets": ["dive-limit"], "round": 2}},
    {"messages": [{"role": "user", "content": "Who leads the Marrowick Tide Co-op?"},
                  {"role": "assistant", "content": "Answer: Odalys Penhallow. — Tide Desk"}],
     "meta": {"source": "machine", "recipe": "docs", "generator": "fake-gen",
              "document": HANDBOOK, "chunk": 0, "targets": ["director"], "round": 2}},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSONL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def write_round(root: Path, cases: list[dict] = CASES, rows: list[dict] = ROWS,
                chunks: dict | None = CHUNKS) -> dict[str, Path]:
    """LOOP/round-002's files as iterate writes them: evals/cases.jsonl, synth/train.jsonl,
    targets.json (with case_chunks unless `chunks` is None)."""
    round_dir = root / "round-002"
    cases_path = write_jsonl(round_dir / "evals" / "round-2" / "cases.jsonl", cases)
    rows_path = write_jsonl(round_dir / "synth" / "train.jsonl", rows)
    targets = {"round": 2, "parent_round": 1, "result": str(cases_path), "groups": [],
               "chunks": {f"{HANDBOOK}#3": ["dive"], f"{HANDBOOK}#0": ["directs"]}}
    if chunks is not None:
        targets["case_chunks"] = chunks
    targets_path = round_dir / "targets.json"
    targets_path.write_text(json.dumps(targets), encoding="utf-8")
    return {"result": cases_path, "rows": rows_path, "targets": targets_path}


_FIELD = re.compile(r'<article class="item (case|row)" id="([^"]+)"')
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Reviewer(SignedIn):
    """One browser-less reviewer: a cookie jar and the page's item ids and CSRF token."""

    timeout = 60.0
    csrf = ""

    def page(self) -> tuple[dict[str, list[str]], str]:
        """GET / → ({"case": ids, "row": ids}, html); remembers the CSRF token."""
        r = self.http.get("/")
        assert r.status_code == 200, r.text
        self.csrf = _CSRF.search(r.text).group(1)
        ids: dict[str, list[str]] = {"case": [], "row": []}
        for kind, item_id in _FIELD.findall(r.text):
            ids[kind].append(item_id)
        return ids, r.text

    def save(self, item: str, action: str, **fields: str) -> httpx.Response:
        """POST /save as the page's forms do."""
        return self.http.post("/save", data={"item": item, "csrf": self.csrf, "action": action,
                                             **fields})


def message(response: httpx.Response) -> str:
    """The text of a refusal page's message (unescaped)."""
    found = re.search(r'id="message">(.*?)</p>', response.text, re.DOTALL)
    assert found, response.text
    return html.unescape(found.group(1))
