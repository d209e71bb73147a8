"""The report's tables: CSV and Markdown (``report.md``) with the published numbers beside ours, the loud
warnings, and the W&B summary tables. ``mixgap.results.report`` computes, this package renders. Published
numbers: Li et al. (2025), Tables 1-3, shipped as ``mixgap/published/li2025.json``. Every file is written to a
temporary name in its folder and renamed into place.

Modules: :mod:`~.published` (the paper's numbers), :mod:`~.markdown` (pipe tables, benchmark labels),
:mod:`~.names` (row and column names, realised weight), :mod:`~.files` (atomic writers, CSV), :mod:`~.flags`
(length-stop warnings), :mod:`~.gaps` (Tables 1/2, the CSV rows), :mod:`~.table3` (Table 3, the LLM re-judge),
:mod:`~.settings` (settings, training data, seeds), :mod:`~.document` (``report.md``, W&B). Import each name from the module
that defines it.
"""
