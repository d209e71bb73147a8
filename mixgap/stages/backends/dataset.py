"""The ``dataset`` backend: existing teacher responses imported through a field map, no model loaded.

The rows come from a local file of the researcher's own, the kit's ``traces/`` JSONL files or the authors' released
UWNSL data on the Hub (``teacher.dataset``: ``path``, a JSONL file, a Parquet file or an exported dataset folder,
:func:`mixgap.stages.data.read_file_rows`; ``kit_path``, the same under ``MIXGAP_DATA``; or
``hub_id``/``hub_config``/``split``; and ``fields``, the row keys of problem, response, id and answer). They become ``samples.jsonl`` rows like a generation's
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
        return import_responses(teacher, read_rows(teacher, root), problems, where(teacher))


def read_rows(teacher: Any, root: Path | None) -> list[dict[str, Any]]:
    """The raw rows of ``teacher.dataset``: a local file (``path``: JSONL, Parquet or an exported dataset folder,
    :func:`mixgap.stages.data.read_file_rows`), a file of the offline kit (``kit_path``, relative to ``root``) or a
    Hub dataset (``hub_id``, ``hub_config``, ``split``), the first one given.

    Raises:
        DataError: the file is not there, ``kit_path`` without a kit root, none of the three given, or no rows.
    """
    ds = teacher.dataset
    if ds.get("path"):
        path = data.local_file(ds.path)
        rows, where = data.read_file_rows(path, f"teacher {teacher.name}: dataset.path={ds.path}"), str(path)
    elif ds.get("kit_path"):
        if root is None and not Path(ds.kit_path).is_absolute():
            raise data.DataError(
                f"teacher {teacher.name}: dataset.kit_path={ds.kit_path!r} is a file of the offline data kit, but "
                "MIXGAP_DATA (paths.data) is not set; point it at the kit folder (math/, gsm8k/, eval/, traces/), or "
                "give a local file with dataset.path"
            )
        path = Path(ds.kit_path) if Path(ds.kit_path).is_absolute() else (root or Path("/")) / ds.kit_path
        if not path.exists():
            data.kit_file(root or Path("/"), ds.kit_path)  # the kit's one-line error: MIXGAP_DATA and its layout
        rows, where = data.read_file_rows(path, f"teacher {teacher.name}: dataset.kit_path"), str(path)
    elif ds.hub_id:
        rows, where = data.load_hub_rows(ds.hub_id, ds.hub_config, ds.split, in_kit=False), ds.hub_id
    else:
        raise data.DataError(f"teacher {teacher.name}: dataset needs path, kit_path or hub_id (all are null)")
    if not rows:  # an empty file would become an empty pool and a mixture of nothing, all marked finished
        raise data.DataError(f"teacher {teacher.name}: {where} holds no rows; give the teacher's responses")
    return rows


def where(teacher: Any) -> str:
    """The file or Hub dataset a teacher's responses are read from, as a message names it."""
    ds = teacher.dataset
    return str(data.local_file(ds.path)) if ds.get("path") else str(ds.get("kit_path") or ds.hub_id)


def import_responses(teacher: Any, rows: Sequence[dict[str, Any]], problems: Sequence[data.Problem] | None,
                     source: str = "the dataset") -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Existing responses as ``samples.jsonl`` rows, through the field map ``teacher.dataset.fields``.

    When ``fields.id`` or ``fields.answer`` is null, the row's problem text is matched to ``problems`` by
    :func:`mixgap.stages.data.normalize_text` (repeated texts take the matching ids in order). Rows that match no
    problem or have no response are counted (``unmatched``, ``missing_response``) and left out. Token counts
    and finish reasons are unknown for imports (null); the status is ``ok``.

    Raises:
        DataError: a mapped field is absent from a row (one line naming ``source``, the row number, the field and
            the row's fields).
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
        for role in ("problem", "response", "id", "answer"):
            if f[role] is not None and f[role] not in row:
                raise data.DataError(f"teacher {teacher.name}: {source}: row {n} has no field {f[role]!r} (dataset.fields."
                                     f"{role}); its fields: {', '.join(sorted(map(str, row)))}")
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
