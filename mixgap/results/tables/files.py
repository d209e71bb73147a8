"""The report's file writers: every file goes to a temporary name in its folder and is renamed into place
(``os.replace``), so a reader never meets half a file: :mod:`mixgap.core.files` (``write_text_atomic``; anything
another library writes, a PNG from matplotlib, through ``atomic_write`` = ``write_atomic``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mixgap.core.files import write_text_atomic


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """A CSV with the union of the rows' keys as columns (first-seen order); missing cells are empty."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())

