"""File digests: what the store records of every file of an artifact, and what identifies a file read from outside.

A file's record is its size in bytes, its SHA-256 and, for JSONL, its row count (lines). Digests are cached per
process by (path, size, mtime_ns): a sweep run in one process hashes a 517 MB checkpoint or a kit file once, and a
file changed in place gets a new size or mtime and is hashed again. (An edit that keeps both size and mtime_ns is
not seen within one process; the next process hashes the file afresh.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

CHUNK = 1 << 20  # bytes read at a time
_CACHE: dict[tuple[str, int, int], tuple[str, int]] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = os.stat(path)
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


def file_digest(path: str | os.PathLike) -> tuple[str, int]:
    """``(hex SHA-256, number of b"\\n")`` of a file, cached by (resolved path, size, mtime_ns).

    Raises:
        OSError: the file cannot be read.
    """
    key = _stat_key(Path(path))
    if key not in _CACHE:
        sha, lines = hashlib.sha256(), 0
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                sha.update(chunk)
                lines += chunk.count(b"\n")
        _CACHE[key] = (sha.hexdigest(), lines)
    return _CACHE[key]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (:func:`file_digest`, cached)."""
    return file_digest(path)[0]


def forget() -> None:
    """Empty the per-process digest cache (the benchmark measures a cold check with it)."""
    _CACHE.clear()


def inventory(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes", "sha256"[, "rows"]}}`` of every file under ``folder`` but ``skip`` (top-level
    names); ``rows`` (lines) for ``.jsonl`` files. Sorted by path."""
    out = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in skip:
            continue
        sha, lines = file_digest(path)
        out[rel] = {"bytes": path.stat().st_size, "sha256": sha, **({"rows": lines} if rel.endswith(".jsonl") else {})}
    return out


def remember(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Seed the cache with ``files`` (an :func:`inventory`) for their paths under ``folder``: a folder renamed into
    place keeps sizes and mtimes, so the process that built it never hashes it again."""
    for rel, rec in files.items():
        try:
            key = _stat_key(Path(folder) / rel)
        except OSError:
            continue
        if key[1] == rec["bytes"]:
            _CACHE[key] = (rec["sha256"], rec.get("rows", 0))


def _size_problem(path: Path, rel: str, rec: dict[str, Any], size: int) -> str:
    if "rows" not in rec:
        return f"{rel} is {size:,} bytes, the manifest records {rec['bytes']:,}"
    rows = file_digest(path)[1]
    return f"{rel} has {rows:,} rows ({size:,} bytes), the manifest records {rec['rows']:,} rows ({rec['bytes']:,} bytes)"


def damage(folder: Path, files: dict[str, dict[str, Any]], digests: bool = True) -> str | None:
    """The first way ``folder`` differs from its recorded ``files`` (missing file, size, rows, SHA-256), or None.

    Args:
        folder: the artifact folder.
        files: its manifest's ``files`` (:func:`inventory`).
        digests: compare SHA-256 and rows too (sizes are always compared).
    """
    for rel, rec in files.items():
        path = Path(folder) / rel
        try:
            size = path.stat().st_size
        except OSError:
            return f"{rel} is missing"
        if size != rec["bytes"]:
            return _size_problem(path, rel, rec, size)
        if digests:
            sha, lines = file_digest(path)
            if "rows" in rec and lines != rec["rows"]:
                return f"{rel} has {lines:,} rows, the manifest records {rec['rows']:,}"
            if sha != rec["sha256"]:
                return f"{rel} has SHA-256 {sha[:12]}..., the manifest records {rec['sha256'][:12]}..."
    return None
