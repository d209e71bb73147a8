"""The report's file writers: every file goes to a temporary name in its folder and is renamed into place
(``os.replace``), so a reader never meets half a file. Text through ``mixgap.core.store.write_text_atomic``;
anything another library writes (a PNG from matplotlib) through :func:`atomic_write`."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mixgap.core.store import write_text_atomic


def atomic_write(path: Path, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place (``os.replace``).

    Returns:
        ``path``. The temporary file is removed when ``write`` raises.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are for the whole team
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """A CSV with the union of the rows' keys as columns (first-seen order); missing cells are empty."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())

