"""Atomic file writers: every artifact file, record and report goes to a temporary name in its folder, is flushed
to disk and renamed into place (``os.replace``), so a reader sees the old file or the whole new one, never a part.
Mode 0644 (``mkstemp`` makes 0600): results are read by the whole team."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any


def write_atomic(path: Path, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (made with its suffix, e.g. for matplotlib's
    ``savefig``), then rename it into place; the parent folders are made.

    Returns:
        ``path``. The temporary file is removed when ``write`` raises; an ``OSError`` that names no file (a
        write on a full disk) is raised again naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None:  # a write or flush on a full disk names no file: name the one being written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def probe_writable(folder: Path) -> None:
    """Make and remove an empty folder in ``folder``'s nearest existing ancestor: what creating ``folder`` would
    meet there (a read-only file system, a folder not ours, a full disk).

    Raises:
        OSError: the ancestor refuses the write (the OS's ``errno``; ``filename`` the ancestor).
    """
    ancestor = Path(folder).expanduser().absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".mixgap-probe-", dir=ancestor))
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(ancestor)) from err


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (:func:`write_atomic`), fsynced before the rename.

    Returns:
        ``path``.
    """
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return write_atomic(path, write)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON (indented, UTF-8) to ``path`` atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False, default=str))


def write_jsonl_atomic(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write one JSON object per line to ``path`` atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows))
