"""The report's tables: CSV and Markdown (``report.md``) with the published numbers beside ours, the loud
warnings, and the W&B summary tables. ``mixgap.results.report`` computes, this package renders. Published
numbers: Li et al. (2025), Tables 1-3, shipped as ``mixgap/published/li2025.json``. Every file is written to a
temporary name in its folder and renamed into place.

Modules: :mod:`~.published` (the paper's numbers), :mod:`~.markdown` (pipe tables, benchmark labels),
:mod:`~.names` (row and column names, realised weight), :mod:`~.files` (atomic writers, CSV), :mod:`~.flags`
(length-stop warnings), :mod:`~.gaps` (Tables 1/2, the CSV rows), :mod:`~.table3` (Table 3, the LLM re-judge),
:mod:`~.settings` (settings, training data, seeds), :mod:`~.document` (``report.md``, W&B). Every public name
is importable from ``mixgap.results.tables``.
"""

from mixgap.core.files import write_atomic as atomic_write
from mixgap.core.files import write_text_atomic
from mixgap.results.tables.document import method_note, report_markdown, track
from mixgap.results.tables.files import write_csv
from mixgap.results.tables.flags import (
    LENGTH_BUG,
    LENGTH_UNTUNED,
    flagged_any,
    length_flags,
    warnings_markdown,
)
from mixgap.results.tables.gaps import gap_csv_rows, gap_markdown, result_rows
from mixgap.results.tables.markdown import (
    AVERAGE_LABEL,
    NO_LABELS,
    bench_label,
    benchmark_labels,
    math_variant,
    md_table,
    status_line,
    with_n,
)
from mixgap.results.tables.names import by_pair, method_name, pair_kind, realised_weight, weight_label
from mixgap.results.tables.published import (
    PAPER_MATH_LABEL,
    PUBLISHED,
    paper_gap,
    paper_math_label,
    paper_method,
    paper_table3,
    paper_teacher,
    published,
)
from mixgap.results.tables.settings import (
    SEEDS_NOTE,
    SETTINGS,
    data_markdown,
    seeds_varied,
    settings_markdown,
)
from mixgap.results.tables.table3 import extract_markdown, judge_markdown, table3_markdown

__all__ = [
    "AVERAGE_LABEL", "LENGTH_BUG", "LENGTH_UNTUNED", "NO_LABELS", "PAPER_MATH_LABEL", "PUBLISHED", "SEEDS_NOTE",
    "SETTINGS", "atomic_write", "bench_label", "benchmark_labels", "by_pair", "data_markdown", "extract_markdown",
    "flagged_any",
    "gap_csv_rows", "gap_markdown", "judge_markdown", "length_flags", "math_variant", "md_table", "method_name",
    "method_note", "pair_kind", "paper_gap", "paper_math_label", "paper_method", "paper_teacher", "paper_table3", "published",
    "realised_weight", "report_markdown", "result_rows", "seeds_varied", "settings_markdown", "status_line",
    "table3_markdown", "track", "warnings_markdown", "weight_label", "with_n", "write_csv", "write_text_atomic",
]
