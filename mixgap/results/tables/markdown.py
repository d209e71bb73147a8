"""Markdown building blocks of the report: pipe tables, benchmark labels, an accuracy with its interval.

A benchmark is printed by its label (``label`` in ``conf/benchmark/<name>.yaml``, carried in each job's
``result.json`` as ``job.benchmark_labels``); a benchmark without one is printed by its name, the average
over benchmarks as ``Average``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from mixgap.stats.bootstrap import AVERAGE
from mixgap.stats.intervals import Interval

#: no labels: every benchmark printed by its name
NO_LABELS: Mapping[str, str] = MappingProxyType({})
AVERAGE_LABEL = "Average"


def bench_label(bench: str, labels: Mapping[str, str] = NO_LABELS) -> str:
    """How ``bench`` is printed: ``labels[bench]``, else ``Average`` for the average, else the name itself."""
    return labels.get(bench) or (AVERAGE_LABEL if bench == AVERAGE else bench)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown pipe table: the header, the ``---`` rule, one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def with_n(value: Interval) -> str:
    """``"12.5 [2.2, 47.1] n=8"``: an accuracy with its interval and the problems behind it."""
    return value.fmt() + (f" n={value.n}" if value.n is not None else "")


def math_variant(benchmarks: Sequence[str], labels: Mapping[str, str] = NO_LABELS) -> str:
    """Which MATH test a run used, for labels beside published numbers: the labels of ``math500`` and
    ``math`` among ``benchmarks`` (``MATH-500``, ``MATH 5k``, both joined by `` + ``), or ``no MATH``.

    The paper's MATH column is read as the full 5,000-problem test (``published()["math_variant_note"]``).
    """
    names = [bench_label(b, labels) for b in ("math500", "math") if b in benchmarks]
    return " + ".join(names) or "no MATH"


def status_line(jobs: Sequence[Any]) -> str:
    """``"5 jobs: 3 done (counted), not counted: 1 interrupted, 1 running"``: every status apart from done
    (``running``, ``interrupted``, ``failed``, ``planned``, ``missing``); only done jobs enter a table."""
    counts: dict[str, int] = defaultdict(int)
    for job in jobs:
        counts[job.status] += 1
    others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "done")
    return f"{len(jobs)} jobs: {counts.get('done', 0)} done (counted)" + (f", not counted: {others}" if others else "")


def benchmark_labels(jobs: Sequence[Any]) -> dict[str, str]:
    """Benchmark name -> label over ``jobs``: each job's ``identity["benchmark_labels"]`` (``result.json``
    ``job.benchmark_labels``, from ``conf/benchmark/<name>.yaml``'s ``label``) merged in job order, a later
    job's label replacing an earlier one. Jobs without labels add none (their benchmarks print by name)."""
    labels: dict[str, str] = {}
    for job in jobs:
        labels.update(job.identity.get("benchmark_labels") or {})
    return labels
