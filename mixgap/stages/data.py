"""Problems and benchmarks as one normalised record, from the Hugging Face Hub or the offline JSONL kit.

Every source (MATH train, the five benchmarks, imported teacher responses) becomes a list of
:class:`Problem` with ``id``, ``problem``, ``answer`` (gold final answer), ``solution`` and ``meta``.
Hub ids and field names live in the config (``conf/benchmark/*.yaml``, ``conf/problems/*.yaml``); when
``paths.data`` (``MIXGAP_DATA``) names a folder laid out like the kit (``math/``, ``gsm8k/``, ``eval/``,
``traces/``), the same loaders read its already-normalised JSONL files instead.

Decontamination compares training and evaluation problems by normalised text (:func:`normalize_text`).

What identifies a source's content goes into the keys of the artifacts built from it (:func:`source_digest`): the
SHA-256 of each kit file read, or the resolved revision (commit) of a Hub dataset.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixgap.core.digests import file_sha256
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


def source_digest(source: Any, data_root: Path | None) -> dict[str, Any]:
    """What identifies a source's content, for the keys of the artifacts built from it: the kit file's
    :func:`kit_digest` (``source.kit_path``) when ``data_root`` is set, else ``{"hub": id, "revision": ...}``
    (:func:`hub_revision`). Never the kit's absolute path: a kit copied elsewhere gives the same keys."""
    if data_root is not None:
        return kit_digest(data_root, source.kit_path)
    return {"hub": source.hub_id, "revision": hub_revision(str(source.hub_id))}


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
                      "(the pool is then in the store), or give a local copy (dataset.path)")
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


def _normalise_hub_row(row: Mapping[str, Any], index: int, source: Any) -> Problem | None:
    """The :class:`Problem` of Hub row number ``index``, or None when it has no gold answer (:func:`gold_answer`)."""
    f = source.fields
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


def subset(problems: Sequence[Problem], limit: int | None, seed: int) -> list[Problem]:
    """The first ``limit`` problems of a seeded shuffle, kept in source order (all when ``limit`` is None)."""
    if limit is None or limit >= len(problems):
        return list(problems)
    chosen = set(random.Random(seed).sample(range(len(problems)), limit))
    return [p for i, p in enumerate(problems) if i in chosen]


def read_problems(source: Any, data_root: Path | None) -> tuple[list[Problem], int]:
    """Every problem of a source (``SourceConfig``/``BenchmarkConfig`` node), normalised, no subset taken, and how
    many Hub rows were skipped for having no gold answer (:func:`gold_answer`; one warning names them). A skipped
    row keeps its number: numbered ids (``fields.id=null``) stay the Hub row's index. The kit's rows are read as
    normalised (their ``answer`` as written).

    Args:
        source: config node with ``name``, ``hub_id``, ``hub_config``, ``split``, ``kit_path``, ``fields``,
            ``answer_format``.
        data_root: the offline kit folder, or None to read the Hub.

    Raises:
        DataError: the kit file or the Hub dataset cannot be read, or ids repeat.
    """
    skipped: list[int] = []
    if data_root is not None:
        problems = [_normalise_kit_row(r) for r in read_jsonl(kit_file(data_root, source.kit_path))]
    else:
        rows = load_hub_rows(source.hub_id, source.hub_config, source.split)
        problems = []
        for i, row in enumerate(rows):
            problem = _normalise_hub_row(row, i, source)
            if problem is None:
                skipped.append(i)
            else:
                problems.append(problem)
        if skipped:
            log.warning("%s: %d of %d rows of %s (%s) have no gold answer (%s) and are skipped: rows %s",
                        source.name, len(skipped), len(rows), source.hub_id, source.split, source.answer_format,
                        ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else ""))
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise DataError(f"{source.name}: problem ids repeat; set fields.id=null to number the rows")
    return problems, len(skipped)


def load_all(source: Any, data_root: Path | None) -> list[Problem]:
    """Every problem of a source, normalised, no subset taken (:func:`read_problems`, without the skipped count)."""
    return read_problems(source, data_root)[0]


def _cap(*limits: int | None) -> int | None:
    caps = [c for c in limits if c is not None]
    return min(caps) if caps else None


def load_problems(source: Any, data_root: Path | None, *, limit: int | None = None) -> tuple[list[Problem], int]:
    """A source's problems (:func:`read_problems`), then the seeded subset of ``source.limit`` / ``limit`` (the
    smaller applies; ``source.subset_seed`` picks it), and the rows of the whole source skipped for having no gold
    answer (the subset is taken from the problems that have one)."""
    problems, skipped = read_problems(source, data_root)
    return subset(problems, _cap(source.limit, limit), source.subset_seed), skipped


def load_source(source: Any, data_root: Path | None, *, limit: int | None = None) -> list[Problem]:
    """A source's problems, subset (:func:`load_problems`, without the skipped count)."""
    return load_problems(source, data_root, limit=limit)[0]


def evaluation_sets(
    benchmarks: Mapping[str, Any], data_root: Path | None, train: Sequence[Problem], policy: str,
    limit: int | None = None,
) -> tuple[dict[str, list[Problem]], dict[str, int]]:
    """The problems each benchmark is evaluated on: decontaminated first, then subset.

    Decontamination (:func:`decontaminate`) runs on the whole benchmark, so a ``limit`` subset always has
    ``limit`` problems and none of them is a training problem (``drop``).

    Returns:
        (benchmark name -> problems, benchmark name -> overlap count over the whole benchmark).
    """
    full = {name: load_all(bench, data_root) for name, bench in benchmarks.items()}
    kept, counts = decontaminate(train, full, policy)
    return {
        name: subset(kept[name], _cap(bench.limit, limit), bench.subset_seed) for name, bench in benchmarks.items()
    }, counts


def overlap(train: Iterable[Problem], bench: Iterable[Problem]) -> list[str]:
    """Ids of benchmark problems whose normalised text equals a training problem's."""
    seen = {normalize_text(p.problem) for p in train}
    return [p.id for p in bench if normalize_text(p.problem) in seen]


def decontaminate(
    train: Sequence[Problem], benchmarks: Mapping[str, Sequence[Problem]], policy: str
) -> tuple[dict[str, list[Problem]], dict[str, int]]:
    """Check evaluation benchmarks against the training problems (normalised text).

    Args:
        train: the problems a mixture trains on.
        benchmarks: benchmark name -> its evaluation problems.
        policy: ``error`` (overlap raises), ``drop`` (overlapping problems are removed from evaluation),
            or ``allow`` (kept, counted).

    Returns:
        (benchmarks to evaluate, overlap count per benchmark).

    Raises:
        DataError: policy ``error`` and a benchmark overlaps; the message names it and the count.
    """
    kept, counts = {}, {}
    for name, problems in benchmarks.items():
        hits = set(overlap(train, problems))
        counts[name] = len(hits)
        if hits and policy == "error":
            raise DataError(
                f"{len(hits)} of {len(problems)} {name} problems are in the training mixture; evaluate without "
                "them with data.decontamination=drop, or allow it with data.decontamination=allow"
            )
        kept[name] = [p for p in problems if p.id not in hits] if policy == "drop" else list(problems)
    return kept, counts
