"""Files → Records: JSONL/JSON/CSV/Parquet/`save_to_disk` dirs/hub ids, format detection, field maps.

Every input row becomes either a Record (parsed; validation comes later) or a Rejected row that
keeps its original text, its file:line and the reasons, so nothing is ever lost silently.

Raw text files (.txt, .md, .markdown) are continued-pretraining data (`format: text`): each file
is ONE document, one text record holding the whole file (training chunks long text itself, so
nothing is cut here). Any other file type is refused by `check_sources` before anything is read.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.data.records import Issue, Record, Rejected
from tuneloop.errors import DataError, UsageError

FORMATS = ("alpaca", "chat", "sharegpt", "prompt_completion", "text", "preference")
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
TEXT_FILE_SUFFIXES = (".txt", ".md", ".markdown")  # one file = one `text` document
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}
# How many rows of a file are looked at to detect its format.
_DETECT_ROWS = 50


@dataclass
class FileInfo:
    """What was read from one input: its detected format and row counts."""

    path: str
    format: str | None
    rows: int = 0
    skipped_blank: int = 0


@dataclass
class LoadResult:
    """Parsed rows (not yet validated) and rows that could not be parsed at all."""

    records: list[Record] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)
    files: list[FileInfo] = field(default_factory=list)

    @property
    def skipped_blank(self) -> int:
        """Blank lines in JSONL files: not rows, but counted so nothing vanishes unexplained."""
        return sum(f.skipped_blank for f in self.files)

    @property
    def rows_read(self) -> int:
        """Every input row: parsed plus unparseable."""
        return len(self.records) + len(self.rejects)


def parse_field_map(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """`"question=instruction,answer=output"` → {"question": "instruction", "answer": "output"}."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return dict(spec)
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        src, sep, dst = part.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise UsageError(f"field map entry {part!r} is not SOURCE=TARGET",
                             fix="write it like --field-map question=instruction,answer=output")
        mapping[src.strip()] = dst.strip()
    return mapping


def detect_format(rows: Iterable[Mapping[str, Any]]) -> str | None:
    """The format most of these rows look like, by their keys; None if none fits."""
    votes: Counter[str] = Counter()  # float votes: Counter only needs addable values
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        keys = set(row)
        if keys & {"chosen", "rejected"}:
            # A pair missing one side still votes (half), so it is reported as exactly that.
            votes["preference"] += 1 if {"chosen", "rejected"} <= keys else 0.5
        elif "messages" in keys:
            votes["chat"] += 1
        elif "conversations" in keys:
            votes["sharegpt"] += 1
        elif "instruction" in keys and "output" in keys:
            votes["alpaca"] += 1
        elif "prompt" in keys and "completion" in keys:
            votes["prompt_completion"] += 1
        elif "text" in keys:
            votes["text"] += 1
        # Half votes for partial matches, so a row missing `output` is reported as exactly that.
        elif keys & {"instruction", "output"}:
            votes["alpaca"] += 0.5
        elif keys & {"prompt", "completion"}:
            votes["prompt_completion"] += 0.5
    return votes.most_common(1)[0][0] if votes else None


class _RowError(Exception):
    """A row that has the wrong shape for its format (becomes a Rejected, never escapes)."""

    def __init__(self, kind: str, field: str | None, message: str):
        super().__init__(message)
        self.issue = Issue(kind, field, message)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _get_str(row: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    if key not in row or row[key] is None:
        if required:
            raise _RowError("missing_field", key, f"field '{key}' is missing")
        return None
    value = row[key]
    if not isinstance(value, str):
        raise _RowError("wrong_type", key,
                        f"field '{key}' must be a string, got {_type_name(value)}")
    return value


def _maybe_json_list(value: Any, key: str) -> Any:
    # CSV cells hold strings: a `messages` column may carry a JSON-encoded list.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise _RowError("malformed_json", key,
                            f"field '{key}' holds a string that is not a JSON list ({exc.msg})"
                            ) from None
    return value


def _content(value: Any, field_name: str) -> str:
    # OpenAI-style content may be a list of parts; keep the text parts, in order.
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, Mapping) for p in value):
        texts = [p.get("text") for p in value if p.get("type", "text") == "text"]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    raise _RowError("wrong_type", field_name,
                    f"'{field_name}' must be a string, got {_type_name(value)}")


def _turns(row: Mapping[str, Any], key: str, role_key: str, content_key: str,
           role_map: Mapping[str, str] | None) -> list[dict[str, str]]:
    if key not in row or row[key] is None:
        raise _RowError("missing_field", key, f"field '{key}' is missing")
    turns = _maybe_json_list(row[key], key)
    if not isinstance(turns, list):
        raise _RowError("wrong_type", key, f"field '{key}' must be a list of turns, "
                        f"got {_type_name(turns)}")
    messages = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, Mapping):
            raise _RowError("wrong_type", where,
                            f"'{where}' must be an object, got {_type_name(turn)}")
        role = turn.get(role_key)
        if not isinstance(role, str):
            kind = "missing_field" if role is None else "wrong_type"
            raise _RowError(kind, f"{where}.{role_key}",
                            f"'{where}.{role_key}' must be a string, got {_type_name(role)}")
        if content_key not in turn or turn[content_key] is None:
            raise _RowError("missing_field", f"{where}.{content_key}",
                            f"'{where}.{content_key}' is missing")
        content = _content(turn[content_key], f"{where}.{content_key}")
        if role_map is not None:
            role = role_map.get(role.lower(), role)
        messages.append({"role": role, "content": content})
    return messages


def row_to_record(row: Any, fmt: str) -> Record:
    """Convert one row dict of format `fmt` into a Record (raises _RowError on a bad shape)."""
    if not isinstance(row, Mapping):
        raise _RowError("wrong_type", None,
                        f"row must be a JSON object, got {_type_name(row)}")
    meta: dict[str, Any] = {"format": fmt}
    if fmt == "alpaca":
        instruction = _get_str(row, "instruction")
        extra = _get_str(row, "input", required=False) or ""
        output = _get_str(row, "output")
        system = _get_str(row, "system", required=False)
        user = instruction + ("\n\n" + extra if extra else "")
        meta["has_input"] = bool(extra.strip())
        messages = ([{"role": "system", "content": system}] if system else [])
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
        return Record(messages=messages, meta=meta)
    if fmt == "chat":
        return Record(messages=_turns(row, "messages", "role", "content", None), meta=meta)
    if fmt == "sharegpt":
        return Record(messages=_turns(row, "conversations", "from", "value", SHAREGPT_ROLES),
                      meta=meta)
    if fmt == "prompt_completion":
        prompt = _get_str(row, "prompt")
        completion = _get_str(row, "completion")
        return Record(messages=[{"role": "user", "content": prompt},
                                {"role": "assistant", "content": completion}], meta=meta)
    if fmt == "text":
        return Record(text=_get_str(row, "text"), meta=meta)
    if fmt == "preference":
        return _preference(row, meta)
    raise UsageError(f"unknown format {fmt!r}", fix=f"use one of: {', '.join(FORMATS)}")


def _answer(row: Mapping[str, Any], key: str) -> str:
    """`chosen`/`rejected`: a string, or a message list holding one assistant turn (hub format)."""
    if key not in row or row[key] is None:
        raise _RowError("missing_field", key, f"field '{key}' is missing")
    value = _maybe_json_list(row[key], key) if isinstance(row[key], str) and \
        row[key].lstrip().startswith("[{") else row[key]
    if isinstance(value, str):
        return value
    turns = _turns({key: value}, key, "role", "content", None)
    if len(turns) != 1 or turns[0]["role"] != "assistant":
        roles = [t["role"] for t in turns]
        raise _RowError("wrong_type", key, f"field '{key}' must be a string or one assistant "
                        f"message, got turns {roles}")
    return turns[0]["content"]


def _preference(row: Mapping[str, Any], meta: dict[str, Any]) -> Record:
    """A pair: `prompt` (text or messages), `chosen`, `rejected` (strings or one message)."""
    if "prompt" not in row or row["prompt"] is None:
        raise _RowError("missing_field", "prompt", "field 'prompt' is missing")
    prompt = row["prompt"]
    if isinstance(prompt, str) and not prompt.lstrip().startswith("[{"):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = _turns(row, "prompt", "role", "content", None)
    chosen, rejected = _answer(row, "chosen"), _answer(row, "rejected")
    return Record(messages=[*messages, {"role": "assistant", "content": chosen}],
                  rejected=rejected, meta=meta)


# ---------------------------------------------------------------- raw rows per file type
# Each reader yields (line, raw_text, row_or_None, issue_or_None).
_Row = tuple[int, str, Any, "Issue | None"]


def _dump(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False, default=str)


def _read_jsonl(path: Path, info: FileInfo) -> Iterator[_Row]:
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a BOM some editors add
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line does not start a row
    for number, bline in enumerate(lines, start=1):
        if bline.endswith(b"\r"):
            bline = bline[:-1]
        try:
            text = bline.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = bline.decode("utf-8", errors="backslashreplace")
            yield number, raw, None, Issue(
                "non_utf8", None, f"bytes at column {exc.start + 1} are not valid UTF-8 "
                "(re-save the file as UTF-8)")
            continue
        if not text.strip():
            info.skipped_blank += 1
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, text, None, Issue(
                "malformed_json", None, f"malformed JSON: {exc.msg} at column {exc.colno}")
            continue
        yield number, text, row, None


def _read_json(path: Path, info: FileInfo) -> Iterator[_Row]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"bytes at offset {exc.start} are not valid UTF-8",
                        where=f"{path}:{line}", fix="re-save the file as UTF-8") from None
    start = len(text) - len(text.lstrip())
    if text[start:start + 1] != "[":
        try:  # one pretty-printed object is one row
            row = json.loads(text)
        except json.JSONDecodeError:
            # Many ".json" files are really JSON Lines; read them as such.
            yield from _read_jsonl(path, info)
            return
        yield text.count("\n", 0, start) + 1, text[start:].rstrip(), row, None
        return
    # Walk the array element by element so each row knows the line it starts on.
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = start + 1
    line, counted = 1, 0
    pos = ws.match(text, pos).end()
    if text[pos:pos + 1] == "]":
        return
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            row, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON array: {exc.msg} (column {exc.colno})",
                            where=f"{path}:{exc.lineno}",
                            fix="fix the JSON at that line, or convert the file to JSON Lines "
                            "so one bad row does not stop the whole file") from None
        yield line, text[pos:end], row, None
        pos = ws.match(text, end).end()
        sep = text[pos:pos + 1]
        if sep == "]":
            return
        if sep != ",":
            bad_line = text.count("\n", 0, pos) + 1
            raise DataError("malformed JSON array: expected ',' or ']' between elements",
                            where=f"{path}:{bad_line}", fix="fix the JSON at that line")
        pos = ws.match(text, pos + 1).end()


def _read_csv(path: Path, info: FileInfo) -> Iterator[_Row]:
    # surrogateescape keeps undecodable bytes visible per row instead of failing the whole file.
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    if any(_has_surrogates(h) for h in header):
        raise DataError("the CSV header is not valid UTF-8", where=f"{path}:1",
                        fix="re-save the file as UTF-8")
    while True:
        line = reader.line_num + 1  # physical line where the next record starts
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"malformed CSV: {exc}", where=f"{path}:{line}") from None
        if not cells:
            info.skipped_blank += 1
            continue
        row = dict(zip(header, cells))
        if any(_has_surrogates(c) for c in cells):
            raw = _dump({k: _unescape(v) for k, v in row.items()})
            yield line, raw, None, Issue("non_utf8", _first_bad(row),
                                         "bytes that are not valid UTF-8 (re-save as UTF-8)")
            continue
        if len(cells) != len(header):
            yield line, _dump(cells), None, Issue(
                "wrong_columns", None,
                f"row has {len(cells)} cells but the header has {len(header)} columns")
            continue
        yield line, _dump(row), row, None


def _has_surrogates(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _unescape(s: str) -> str:
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _first_bad(row: Mapping[str, str]) -> str | None:
    return next((k for k, v in row.items() if _has_surrogates(v)), None)


def _read_parquet(path: Path, info: FileInfo) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a broken file
        raise DataError(f"cannot read Parquet file: {exc}", where=str(path)) from None
    index = 0
    batches = pfile.iter_batches(batch_size=4096)
    while True:
        try:  # a corrupt page (or invalid UTF-8 in a string column) shows only when decoded
            rows = next(batches).to_pylist()
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a broken page
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot read Parquet file after row {index}: {first}",
                            where=str(path),
                            fix="re-export the file; it is truncated or corrupt") from None
        for row in rows:
            index += 1
            yield index, _dump(row), row, None


def _read_text_file(path: Path, info: FileInfo) -> Iterator[_Row]:
    """The whole file as one `text` row (line 1): a raw document for continued pretraining."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield 1, data.decode("utf-8", errors="backslashreplace"), None, Issue(
            "non_utf8", None, f"bytes at line {line} are not valid UTF-8 (re-save the file as "
            "UTF-8)")
        return
    yield 1, text, {"text": text}, None


def check_sources(paths: str | Path | Sequence[str | Path], format: str | None = None) -> None:
    """Refuse, before anything is loaded (a model included), a path of a file type no reader
    takes, or a raw text file forced to a format other than `text`."""
    for p in _listify(paths):
        path = Path(str(p))
        if not path.is_file():
            continue  # directories, hub ids and missing paths are reported by the reader
        suffix = path.suffix.lower()
        if suffix in TEXT_FILE_SUFFIXES:
            if format not in (None, "text"):
                raise UsageError(f"a {suffix} file is raw text (one document), not "
                                 f"{format!r} rows", where=str(p),
                                 fix="use format: text (--format text) for continued "
                                 "pretraining, or convert it to JSONL rows of that format")
        elif suffix not in FILE_SUFFIXES:
            raise UsageError(f"unsupported file type {suffix or '(none)'!r}", where=str(p),
                             fix="use .jsonl, .json, .csv, .parquet, a save_to_disk dir, or "
                             ".txt/.md (one text document per file); convert other documents "
                             "to text first")


def _read_dataset(ds: Any) -> Iterator[_Row]:
    for index, row in enumerate(ds, start=1):
        yield index, _dump(row), row, None


def _open_saved_dataset(path: Path, split: str | None) -> Any:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises several types for a non-dataset
        raise DataError(f"not a dataset saved with save_to_disk: {exc}", where=str(path),
                        fix="pass a .jsonl/.json/.csv/.parquet file or a save_to_disk dir"
                        ) from None
    return _pick_split(ds, split, str(path))


def _pick_split(ds: Any, split: str | None, where: str) -> Any:
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        name = split or ("train" if "train" in ds else None)
        if name is None or name not in ds:
            raise UsageError(f"choose a split: this dataset has {', '.join(ds)}", where=where,
                             fix=f"append ':SPLIT', e.g. {where}:{next(iter(ds))}")
        return ds[name]
    return ds


def _open_hub_dataset(ref: str) -> Any:
    import datasets

    name, _, split = ref.removeprefix("hf:").partition(":")
    try:
        return datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # noqa: BLE001 - network/hub errors come in many types
        raise DataError(f"cannot load hub dataset {name!r}: {exc}", where=ref,
                        fix="check the id and your network, or pass a local file") from None


def _source_rows(path_str: str, info: FileInfo) -> Iterator[_Row]:
    path = Path(path_str)
    base, colon, split = path_str.rpartition(":")
    if not path.exists() and colon and Path(base).is_dir():
        return _read_dataset(_open_saved_dataset(Path(base), split))
    if path.is_dir():
        return _read_dataset(_open_saved_dataset(path, None))
    if path.is_file():
        suffix = path.suffix.lower()
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
                   ".parquet": _read_parquet, **{t: _read_text_file for t in TEXT_FILE_SUFFIXES}}
        check_sources([path_str])
        return readers[suffix](path, info)
    looks_local = (path_str.startswith((".", "/", "~"))
                   or path.suffix.lower() in FILE_SUFFIXES + TEXT_FILE_SUFFIXES
                   or "/" not in path_str)
    if looks_local and not path_str.startswith("hf:"):
        raise UsageError("no such file or directory", where=path_str,
                         fix="check the path (hub datasets are 'owner/name' or 'hf:name')")
    return _read_dataset(_open_hub_dataset(path_str))


def load_records(paths: str | Path | Sequence[str | Path], *, format: str | None = None,
                 field_map: str | Mapping[str, str] | None = None) -> LoadResult:
    """Read every path into Records (parsed, not validated) and Rejected unparseable rows."""
    paths = _listify(paths)
    if format is not None and format not in FORMATS:
        raise UsageError(f"unknown format {format!r}", fix=f"use one of: {', '.join(FORMATS)}")
    check_sources(paths, format)  # every file's type, before the first is read
    mapping = parse_field_map(field_map)
    result = LoadResult()
    for p in paths:
        source = str(p)
        info = FileInfo(path=source, format=format)
        result.files.append(info)
        rows = _source_rows(source, info)
        _load_one(source, rows, info, format, mapping, result)
    return result


def _rename(row: Any, mapping: Mapping[str, str]) -> Any:
    if not mapping or not isinstance(row, Mapping):
        return row
    return {mapping.get(k, k): v for k, v in row.items()}


def _load_one(source: str, rows: Iterator[_Row], info: FileInfo, fmt: str | None,
              mapping: Mapping[str, str], result: LoadResult) -> None:
    pending: list[_Row] = []
    if fmt is None:
        # Buffer the first object rows to detect the format, then stream the rest.
        objects: list[Mapping[str, Any]] = []
        for item in rows:
            pending.append(item)
            if isinstance(item[2], Mapping):
                objects.append(_rename(item[2], mapping))
                if len(objects) >= _DETECT_ROWS:
                    break
        fmt = detect_format(objects)
        if fmt is None and objects:
            keys = sorted({k for r in objects for k in r})
            raise DataError(
                f"cannot tell the data format from the fields {keys[:12]}", where=source,
                fix="pass --format (alpaca, chat, sharegpt, prompt_completion, text, preference) "
                "or map your fields, e.g. --field-map question=instruction,answer=output")
        info.format = fmt
    for line, raw, row, issue in _chain(pending, rows):
        info.rows += 1
        if issue is not None:
            result.rejects.append(Rejected(source, line, raw, [issue]))
            continue
        if fmt is None and isinstance(row, Mapping):
            # Only when no sampled row was an object, so there was nothing to detect from.
            result.rejects.append(Rejected(source, line, raw, [Issue(
                "unknown_format", None, "cannot tell this row's format; pass --format")]))
            continue
        try:
            record = row_to_record(_rename(row, mapping), fmt)  # type: ignore[arg-type]
        except _RowError as exc:
            result.rejects.append(Rejected(source, line, raw, [exc.issue]))
            continue
        record.source, record.line, record.raw = source, line, raw
        result.records.append(record)


def _chain(first: list[_Row], rest: Iterator[_Row]) -> Iterator[_Row]:
    yield from first
    yield from rest


def _listify(paths: Any) -> list[Any]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)
