"""Problems and benchmarks as one normalised record, from a local file, the offline JSONL kit or the Hugging Face Hub.

Every source (MATH train, the five benchmarks, a researcher's own benchmark, imported teacher responses) becomes a
list of :class:`Problem` with ``id``, ``problem``, ``answer`` (gold final answer), ``solution`` and ``meta``. Where a
source's rows are (:func:`source_kind`): its ``path`` (a local JSONL or Parquet file: absolute, or relative to the
folder ``launch.py`` runs in, :func:`local_file`), else with ``paths.data`` (``MIXGAP_DATA``) set its ``kit_path``
(a file of the offline kit, laid out ``math/``, ``gsm8k/``, ``eval/``, ``traces/``), else its Hub dataset
(``hub_id``). Every row is read through the source's field map (``fields``) and ``answer_format``; a kit file in the
kit's own normalised layout (every row has ``id``, ``problem`` and ``answer``) is read as it is.

What identifies a source's content goes into the keys of the artifacts built from it (:func:`source_digest`): the
SHA-256 of the local or kit file read (never its location), or the resolved revision (commit) of a Hub dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixgap.core.config import to_container
from mixgap.core.digests import file_sha256, inventory
from mixgap.core.errors import MixgapError
from mixgap.grading.extract import extract_answer
from mixgap.grading.official import boxed_answer

log = logging.getLogger(__name__)
UNRESOLVED = "unresolved"  # the revision of a Hub dataset that is neither reachable nor in the local cache
_REVISIONS: dict[str, str] = {}  # Hub dataset id -> resolved revision, once per process

KIT_LAYOUT = "math/math_train.jsonl, math/math_test.jsonl, math/math500_test.jsonl, gsm8k/, eval/, traces/"


class DataError(MixgapError, RuntimeError):
    """Data that cannot be found or read; the message is one line saying what to do."""


@dataclass
class Problem:
    """One normalised record: a problem with its gold final answer."""
    id: str
    problem: str
    answer: str
    solution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def normalize_text(text: str) -> str:
    """Problem text normalised for decontamination: NFKC, lower case, every whitespace run removed."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text).lower())


def fill_prompt(template: str, problem: str) -> str:
    """The prompt for one problem: ``{problem}`` in the template replaced by its text (no other field)."""
    if "{problem}" not in template:
        raise ValueError(f"prompt template {template[:60]!r}... has no {{problem}} placeholder")
    return template.replace("{problem}", problem)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSONL file; DataError names the file and line of a bad record."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{n}: not JSON ({err.msg})") from None
    return rows


def kit_file(data_root: Path, relative: str) -> Path:
    """A file of the offline kit; DataError names ``MIXGAP_DATA`` and the expected layout when absent."""
    path = Path(relative) if Path(relative).is_absolute() else data_root / relative
    if not path.is_file():
        raise DataError(
            f"{path} not found: MIXGAP_DATA (paths.data={data_root}) must hold the offline kit ({KIT_LAYOUT})"
        )
    return path


def kit_digest(data_root: Path, relative: str) -> dict[str, Any]:
    """``{"kit": relative path, "sha256": digest}`` of a kit file (``sha256`` None when the file is absent: the
    build then fails naming it). Digests are cached by (path, size, mtime_ns), so a sweep hashes a file once."""
    path = Path(relative) if Path(relative).is_absolute() else Path(data_root) / relative
    return {"kit": str(relative), "sha256": file_sha256(path) if path.is_file() else None}


def local_file(value: str) -> Path:
    """The file a ``path:`` field names: ``~`` expanded, a relative path read from the current folder (where
    ``launch.py`` runs; Hydra's jobs keep it, ``hydra.job.chdir=false``), made absolute."""
    return Path(os.path.expanduser(str(value))).resolve()


def local_digest(path: Path) -> dict[str, Any]:
    """``{"file": name, "sha256": digest}`` of a local file (a folder, an exported dataset: the SHA-256 of its files'
    inventory, :func:`mixgap.core.digests.inventory`; None when absent). Never the location: a copy elsewhere gives
    the same keys, an edited file a new one."""
    if path.is_dir():
        listing = json.dumps(inventory(path), sort_keys=True)
        return {"file": path.name, "sha256": hashlib.sha256(listing.encode()).hexdigest()}
    return {"file": path.name, "sha256": file_sha256(path) if path.is_file() else None}


def read_file_rows(path: Path, what: str) -> list[dict[str, Any]]:
    """The rows of a local file: JSONL, or Parquet (one file, or a dataset folder's shards: :func:`read_parquet_rows`).

    Raises:
        DataError: the file is not there (``what`` names the field that gave it) or a line is not JSON.
    """
    if not path.exists():
        raise DataError(f"{what}: {path} does not exist (a relative path is read from the folder launch.py runs in, "
                        f"{Path.cwd()}); give an absolute path")
    if path.is_dir() or path.suffix == ".parquet":
        return read_parquet_rows(path)
    return read_jsonl(path)


def read_parquet_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of one Parquet file, or of a dataset folder's shards (``data/*.parquet``, else ``*.parquet``, in
    name order), as ``mixgap.stages.export`` writes them.

    Raises:
        DataError: a folder without Parquet shards.
    """
    import datasets  # heavy: datasets (pyarrow), only for Parquet files

    files = [path] if path.is_file() else sorted(path.glob("data/*.parquet")) or sorted(path.glob("*.parquet"))
    if not files:
        raise DataError(f"{path}: no Parquet shard (data/*.parquet or *.parquet); give a dataset folder or a file")
    return datasets.Dataset.from_parquet([str(f) for f in files], keep_in_memory=True).to_list()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def cached_revision(hub_id: str, cache_dir: str | os.PathLike | None = None) -> str | None:
    """The commit of a Hub dataset's local snapshot (``<hub cache>/datasets--<owner>--<name>/refs/main``), or None."""
    if cache_dir is None:
        from huggingface_hub import constants  # heavy: huggingface_hub, only for a Hub dataset's revision

        cache_dir = constants.HF_HUB_CACHE
    ref = Path(cache_dir) / f"datasets--{hub_id.replace('/', '--')}" / "refs" / "main"
    return (ref.read_text().strip() or None) if ref.is_file() else None


def hub_revision(hub_id: str) -> str:
    """The revision (commit SHA) of a Hub dataset, once per process: ``HfApi().dataset_info(id).sha`` online;
    with ``HF_HUB_OFFLINE=1`` (or the Hub unreachable) the local cache's snapshot (:func:`cached_revision`), else
    ``"unresolved"`` with a warning (its artifacts are then keyed without knowing the data's version)."""
    if hub_id not in _REVISIONS:
        revision = None
        if not _offline():
            from huggingface_hub import HfApi  # heavy: huggingface_hub, only for a Hub dataset's revision

            try:
                revision = HfApi().dataset_info(hub_id, timeout=10).sha
            except Exception as err:  # offline, auth, missing: fall back to the local cache
                log.info("cannot resolve %s on the Hub (%s); using the local cache", hub_id, type(err).__name__)
        revision = revision or cached_revision(hub_id)
        if revision is None:
            log.warning("the revision of Hub dataset %s is unresolved (not reachable, not in the local cache): "
                        "its artifacts' keys do not follow a change of the data", hub_id)
        _REVISIONS[hub_id] = revision or UNRESOLVED
    return _REVISIONS[hub_id]


def source_kind(source: Any, data_root: Path | None) -> str:
    """Where a source's rows are read (``SourceConfig``: a benchmark, the problems): ``file`` (its ``path``), ``kit``
    (its ``kit_path`` under ``data_root``, the offline kit) or ``hub`` (its ``hub_id``)."""
    if source.get("path"):
        return "file"
    return "kit" if data_root is not None and source.get("kit_path") else "hub"


def source_digest(source: Any, data_root: Path | None) -> dict[str, Any]:
    """What identifies a source's content, for the keys of the artifacts built from it (:func:`source_kind`): the
    local file's :func:`local_digest`, the kit file's :func:`kit_digest` or ``{"hub": id, "revision": ...}``
    (:func:`hub_revision`). Never an absolute path: a kit or a file copied elsewhere gives the same keys."""
    kind = source_kind(source, data_root)
    if kind == "file":
        return local_digest(local_file(source.path))
    if kind == "kit":
        return kit_digest(data_root, source.kit_path)  # type: ignore[arg-type]
    return {"hub": source.hub_id, "revision": hub_revision(str(source.hub_id))}


def keyed_source(source: Any) -> dict[str, Any]:
    """A source's config fields as keys take them: without ``path`` (a local file is keyed by its content,
    :func:`source_digest`, not where it lies)."""
    return {k: v for k, v in to_container(source).items() if k != "path"}


def load_hub_rows(hub_id: str, hub_config: str | None, split: str, *, in_kit: bool = True) -> list[dict[str, Any]]:
    """Rows of a Hub dataset split through ``datasets.load_dataset``; DataError when it cannot be reached, whose
    advice depends on ``in_kit``: whether the offline kit has a copy (problems and benchmarks do; a teacher's
    released responses do not)."""
    import datasets  # heavy: datasets (pyarrow), imported only when used

    try:
        return list(datasets.load_dataset(hub_id, hub_config, split=split))
    except Exception as err:  # the Hub raises many kinds: offline, auth, missing config
        if in_kit:
            advice = f"without the Hub, set MIXGAP_DATA to the offline kit folder ({KIT_LAYOUT})"
        else:
            advice = ("it is on the Hub only (the offline kit has no copy): run this once where the Hub is reachable "
                      "(the pool is then in the store), or give a local copy (dataset.path: a JSONL or Parquet file)")
        raise DataError(
            f"cannot load {hub_id} ({split}) from the Hugging Face Hub ({type(err).__name__}); {advice}"
        ) from err


def gold_answer(row: Mapping[str, Any], answer_field: str | None, solution_field: str | None, fmt: str) -> str | None:
    """The gold final answer of a Hub row written in ``fmt``, one of ``SourceConfig.answer_format``'s choices; None
    when it has none.

    ``plain``: the field as text (AMC floats stay ``27.0``; the grader matches them to integers);
    ``boxed_in_solution``: the last ``\\boxed{}`` of the solution (MATH; :func:`mixgap.grading.extract_answer`),
    else the authors' extraction (:func:`mixgap.grading.official.boxed_answer`, their ``last_boxed_only_string`` +
    ``remove_boxed``: ``\\boxed 2`` without braces is ``2``), stripped; None for no box, an unclosed one or an
    empty ``\\boxed{}`` (the kit's copy of MATH train: 2 ``\\boxed 2``-style and 2 empty boxes of 7,500);
    ``after_hashes``: the text after ``####`` with thousands commas removed (GSM8K); ``list_join``: a list joined
    with ", ", outer ``$`` removed (OlympiadBench ``final_answer``).
    """
    if fmt == "boxed_in_solution":
        solution = str(row[solution_field or "solution"])
        answer = extract_answer(solution, "boxed")
        if answer is None:  # e.g. "\boxed 2": the authors' extraction reads it; an empty box is no answer
            answer = (boxed_answer(solution) or "").strip() or None
        return answer
    value = row[answer_field] if answer_field else None
    if fmt == "after_hashes":
        return str(value).split("####")[-1].strip().replace(",", "")
    if fmt == "list_join":
        items = value if isinstance(value, list) else [value]
        return ", ".join(str(x).strip().strip("$").strip() for x in items)
    return str(value).strip()


def _field(row: Mapping[str, Any], name: str, role: str, where: str, index: int, source: Any) -> Any:
    """``row[name]``; DataError (one line) naming the file, the field, the source's field map entry and the fields
    the row has."""
    if name not in row:
        hint = "; set fields.id: null to number the rows" if role == "id" else ""
        raise DataError(f"{where}: row {index} has no field {name!r} (fields.{role} of {source.name}); its fields: "
                        f"{', '.join(sorted(map(str, row)))}{hint}")
    return row[name]


def _normalise_row(row: Mapping[str, Any], index: int, source: Any, where: str) -> Problem | None:
    """The :class:`Problem` of row number ``index`` through the source's field map and ``answer_format``, or None
    when it has no gold answer (:func:`gold_answer`). ``fields.id`` null numbers it ``<name>-<index>``."""
    f = source.fields
    gold = "solution" if source.answer_format == "boxed_in_solution" else "answer"  # what gold_answer reads
    for role in ("id", "problem", gold):
        if f[role] is not None:
            _field(row, f[role], role, where, index, source)
    solution = row.get(f.solution) if f.solution else None
    if isinstance(solution, list):
        solution = solution[0] if solution else None
    known = {f.id, f.problem, f.answer, f.solution}
    answer = gold_answer(row, f.answer, f.solution, source.answer_format)
    if not answer:
        return None
    return Problem(
        id=str(row[f.id]) if f.id else f"{source.name}-{index}",
        problem=str(row[f.problem]),
        answer=answer,
        solution=None if solution is None else str(solution),
        meta={k: v for k, v in row.items() if k not in known and isinstance(v, (str, int, float, bool))},
    )


def _normalise_kit_row(row: Mapping[str, Any]) -> Problem:
    known = ("id", "problem", "answer", "solution")
    return Problem(
        id=str(row["id"]),
        problem=str(row["problem"]),
        answer=str(row["answer"]),
        solution=row.get("solution"),
        meta={k: v for k, v in row.items() if k not in known},
    )


def in_kit_layout(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every row has the kit's normalised fields ``id``, ``problem`` and ``answer`` (the kit's README)."""
    return all("id" in r and "problem" in r and "answer" in r for r in rows)


def subset(problems: Sequence[Problem], limit: int | None, seed: int) -> list[Problem]:
    """The first ``limit`` problems of a seeded shuffle, kept in source order (all when ``limit`` is None)."""
    if limit is None or limit >= len(problems):
        return list(problems)
    chosen = set(random.Random(seed).sample(range(len(problems)), limit))
    return [p for i, p in enumerate(problems) if i in chosen]


def read_problems(source: Any, data_root: Path | None) -> tuple[list[Problem], int]:
    """Every problem of a source, normalised, no subset taken, and how many rows were skipped for having no gold
    answer (:func:`gold_answer`; one warning names them). Rows are read from the source's local file, kit file or
    Hub dataset (:func:`source_kind`) through its field map and ``answer_format``; a kit file in the kit's normalised
    layout (:func:`in_kit_layout`) is read as it is. A skipped row keeps its number: numbered ids (``fields.id=null``,
    said in one log line) stay the row's index.

    Args:
        source: config node with ``name``, ``path``, ``hub_id``, ``hub_config``, ``split``, ``kit_path``,
            ``fields``, ``answer_format``.
        data_root: the offline kit folder, or None to read the Hub.

    Raises:
        DataError: the file or the Hub dataset cannot be read, a mapped field is missing from a row (one line
            naming the file, the field and the row's fields), or ids repeat.
    """
    kind = source_kind(source, data_root)
    if kind == "file":
        where = str(local_file(source.path))
        rows = read_file_rows(Path(where), f"{source.name}: path={source.path}")
    elif kind == "kit":
        path = kit_file(data_root, source.kit_path)  # type: ignore[arg-type]
        rows, where = read_jsonl(path), str(path)
    else:
        rows, where = load_hub_rows(source.hub_id, source.hub_config, source.split), f"{source.hub_id} ({source.split})"
    skipped: list[int] = []
    if kind == "kit" and in_kit_layout(rows):
        problems = [_normalise_kit_row(r) for r in rows]
    else:
        problems = []
        for i, row in enumerate(rows):
            problem = _normalise_row(row, i, source, where)
            if problem is None:
                skipped.append(i)
            else:
                problems.append(problem)
        if source.fields.id is None:
            log.info("%s: fields.id is null: its problems are numbered by row, %s-0 to %s-%d", source.name, source.name,
                     source.name, len(rows) - 1)
    if skipped:
        log.warning("%s: %d of %d rows of %s have no gold answer (%s) and are skipped: rows %s", source.name,
                    len(skipped), len(rows), where, source.answer_format,
                    ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else ""))
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise DataError(f"{source.name}: problem ids repeat; set fields.id=null to number the rows")
    return problems, len(skipped)


def load_all(source: Any, data_root: Path | None) -> list[Problem]:
    """Every problem of a source, normalised, no subset taken (:func:`read_problems`, without the skipped count)."""
    return read_problems(source, data_root)[0]


def cap(*limits: int | None) -> int | None:
    """The smallest of the limits that are set (None when none is)."""
    caps = [c for c in limits if c is not None]
    return min(caps) if caps else None


def load_problems(source: Any, data_root: Path | None, *, limit: int | None = None) -> tuple[list[Problem], int]:
    """A source's problems (:func:`read_problems`), then the seeded subset of ``source.limit`` / ``limit`` (the
    smaller applies; ``source.subset_seed`` picks it), and the rows of the whole source skipped for having no gold
    answer (the subset is taken from the problems that have one)."""
    problems, skipped = read_problems(source, data_root)
    return subset(problems, cap(source.limit, limit), source.subset_seed), skipped


def load_source(source: Any, data_root: Path | None, *, limit: int | None = None) -> list[Problem]:
    """A source's problems, subset (:func:`load_problems`, without the skipped count)."""
    return load_problems(source, data_root, limit=limit)[0]
