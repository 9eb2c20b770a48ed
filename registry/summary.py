"""Summarise a tabular file: digest, size, rows, inferred schema, null counts.

Pure Python (csv module), streaming, so memory stays flat for large files.
"""

from __future__ import annotations

import csv
import hashlib
import io
from typing import IO, Any

_NULLS = {"", "na", "n/a", "null", "none", "nan"}


def _kind(value: str) -> str:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return "boolean"
    try:
        int(value)
        return "integer"
    except ValueError:
        pass
    try:
        float(value)
        return "number"
    except ValueError:
        return "string"


_WIDER = {("integer", "number"): "number", ("number", "integer"): "number"}


def _merge(a: str | None, b: str) -> str:
    if a is None or a == b:
        return b
    return _WIDER.get((a, b), "string")


def summarize_csv(stream: IO[bytes], *, max_distinct: int = 1000) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0

    def chunks() -> Any:
        nonlocal size
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
            yield chunk

    text = io.TextIOWrapper(_ChunkReader(chunks()), encoding="utf-8", newline="")
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        raise ValueError("the file is empty")
    columns = [h.strip() for h in header]
    kinds: list[str | None] = [None] * len(columns)
    nulls = [0] * len(columns)
    distinct: list[set[str] | None] = [set() for _ in columns]
    rows = 0
    for row in reader:
        if len(row) != len(columns):
            raise ValueError(f"row {rows + 2} has {len(row)} fields; the header has {len(columns)}")
        rows += 1
        for i, value in enumerate(row):
            if value.strip().lower() in _NULLS:
                nulls[i] += 1
                continue
            kinds[i] = _merge(kinds[i], _kind(value))
            seen = distinct[i]
            if seen is not None:
                seen.add(value)
                if len(seen) > max_distinct:
                    distinct[i] = None
    return {
        "sha256": digest.hexdigest(),
        "size_bytes": size,
        "row_count": rows,
        "schema": [
            {"name": c, "type": k or "unknown"} for c, k in zip(columns, kinds, strict=True)
        ],
        "quality_summary": {
            "columns": {
                c: {
                    "nulls": n,
                    "null_rate": round(n / rows, 6) if rows else 0.0,
                    "distinct": len(d) if d is not None else f">{max_distinct}",
                }
                for c, n, d in zip(columns, nulls, distinct, strict=True)
            }
        },
    }


class _ChunkReader(io.RawIOBase):
    """A readable raw stream over an iterator of byte chunks."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n
