"""The ``dataset`` backend: existing teacher responses imported through a field map, no model loaded.

The rows come from the authors' released UWNSL data on the Hub or from the kit's ``traces/`` JSONL files
(``teacher.dataset``: ``hub_id``/``hub_config``/``split`` or ``path``: a JSONL file, a Parquet file or an exported
dataset folder (:func:`read_parquet_rows`); and ``fields``, the row keys of
problem, response, id and answer). They become ``samples.jsonl`` rows like a generation's
(:func:`mixgap.stages.generate.sample_rows`), with unknown token counts and finish reasons.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mixgap.stages import data
from mixgap.stages.backends.registry import register


@register("dataset")
class DatasetImport:
    """Imports a teacher's existing responses (``teacher.backend=dataset``): loads no model, needs no GPU."""

    generates = False

    @staticmethod
    def needs_problems(teacher: Any) -> bool:
        """True when the field map lacks ``id`` or ``answer``: rows are then matched to the problems by text."""
        return teacher.dataset.fields.id is None or teacher.dataset.fields.answer is None

    @staticmethod
    def import_samples(teacher: Any, root: Path | None,
                       problems: Sequence[data.Problem] | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """``samples.jsonl`` rows and counts of the teacher's dataset (:func:`read_rows`, :func:`import_responses`)."""
        return import_responses(teacher, read_rows(teacher, root), problems)


def read_rows(teacher: Any, root: Path | None) -> list[dict[str, Any]]:
    """The raw rows of ``teacher.dataset``: a JSONL of the offline kit (``path``, relative to ``root``) or a
    Hub dataset (``hub_id``, ``hub_config``, ``split``).

    Raises:
        DataError: a relative ``path`` without a kit root, neither ``hub_id`` nor ``path`` given, or no rows.
    """
    ds = teacher.dataset
    if ds.path:
        if root is None and not Path(ds.path).is_absolute():
            raise data.DataError(
                f"teacher {teacher.name}: dataset.path={ds.path!r} is a file of the offline data kit, but "
                "MIXGAP_DATA (paths.data) is not set; point it at the kit folder (math/, gsm8k/, eval/, traces/)"
            )
        path = Path(ds.path) if Path(ds.path).is_absolute() else (root or Path("/")) / ds.path
        if path.is_dir() or path.suffix == ".parquet":  # a dataset folder (stage=export) or one Parquet file
            rows = read_parquet_rows(path)
        else:
            rows = data.read_jsonl(data.kit_file(root or Path("/"), ds.path))
        where = str(path)
    elif ds.hub_id:
        rows, where = data.load_hub_rows(ds.hub_id, ds.hub_config, ds.split, in_kit=False), ds.hub_id
    else:
        raise data.DataError(f"teacher {teacher.name}: dataset needs hub_id or path (both are null)")
    if not rows:  # an empty file would become an empty pool and a mixture of nothing, all marked finished
        raise data.DataError(f"teacher {teacher.name}: {where} holds no rows; give the teacher's responses")
    return rows


def read_parquet_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of one Parquet file, or of a dataset folder's shards (``data/*.parquet``, else ``*.parquet``, in
    name order), as ``mixgap.stages.export`` writes them.

    Raises:
        DataError: a folder without Parquet shards.
    """
    import datasets  # heavy: datasets (pyarrow), only for Parquet imports

    files = [path] if path.is_file() else sorted(path.glob("data/*.parquet")) or sorted(path.glob("*.parquet"))
    if not files:
        raise data.DataError(f"{path}: no Parquet shard (data/*.parquet or *.parquet); give a dataset folder or a file")
    return datasets.Dataset.from_parquet([str(f) for f in files], keep_in_memory=True).to_list()


def import_responses(teacher: Any, rows: Sequence[dict[str, Any]],
                     problems: Sequence[data.Problem] | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Existing responses as ``samples.jsonl`` rows, through the field map ``teacher.dataset.fields``.

    When ``fields.id`` or ``fields.answer`` is null, the row's problem text is matched to ``problems`` by
    :func:`mixgap.stages.data.normalize_text` (repeated texts take the matching ids in order). Rows that match no
    problem or have no response are counted (``unmatched``, ``missing_response``) and left out. Token counts
    and finish reasons are unknown for imports (null); the status is ``ok``.

    Raises:
        DataError: a mapped field is absent from a row (names the field and the row number).
    """
    f = teacher.dataset.fields
    by_text: dict[str, list[data.Problem]] = {}
    for p in problems or ():
        by_text.setdefault(data.normalize_text(p.problem), []).append(p)
    used: Counter[str] = Counter()
    per_id: Counter[str] = Counter()
    counts: Counter[str] = Counter(rows=len(rows))
    out = []
    for n, row in enumerate(rows):
        for name in (f.problem, f.response, f.id, f.answer):
            if name is not None and name not in row:
                raise data.DataError(f"teacher.dataset.fields: row {n} has no field {name!r} (keys: {sorted(row)})")
        text = str(row[f.problem])
        if row[f.response] is None or str(row[f.response]) == "":
            counts["missing_response"] += 1
            continue
        match = None
        if f.id is None or f.answer is None:
            key = data.normalize_text(text)
            candidates = by_text.get(key, [])
            if not candidates:
                counts["unmatched"] += 1
                continue
            match = candidates[min(used[key], len(candidates) - 1)]
            used[key] += 1
        pid = str(row[f.id]) if f.id is not None else match.id
        answer = str(row[f.answer]) if f.answer is not None else match.answer
        out.append({"id": pid, "problem": text, "answer": answer, "sample_index": per_id[pid],
                    "response": str(row[f.response]), "finish_reason": None, "prompt_tokens": None,
                    "completion_tokens": None, "status": "ok", "teacher": teacher.name})
        per_id[pid] += 1
    counts["samples"] = len(out)
    counts["problems"] = len(per_id)
    return out, dict(counts)
