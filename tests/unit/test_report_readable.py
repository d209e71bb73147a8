"""A report that reads: warnings in one table after the results; Figure 6 with the untuned
student as a reference line and its legend outside the plot; one student: no empty log axis, one bar labelled by
its size; the rank-shift figure's tick labels under their bars."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixgap.results import figures
from mixgap.results.analysis import render
from mixgap.results.analysis.rank_shift import TokenStat
from mixgap.results.tables.document import report_markdown
from mixgap.results.tables.flags import LENGTH_UNTUNED
from mixgap.results.tables.names import pair_kind
from mixgap.stats.bootstrap import accuracy, compare

LENGTH = ("LENGTH STOP: untuned smollm2_135m {b}: {p}% of the answers stopped by length (> 20%); "
          + LENGTH_UNTUNED)


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib Figures the code saves (still drawable after saving)."""
    from matplotlib.figure import Figure

    saved = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def test_warnings_are_one_table_after_the_results():
    warnings = [LENGTH.format(b=b, p=p) for b, p in (("math", 50), ("gsm8k", 75), ("math", 50))] + ["odd ids"]
    labels = {"math": "MATH 5k", "gsm8k": "GSM8K"}
    text = report_markdown(["s"], [], "GAPS", {}, [], [], warnings, {"confidence": 0.95, "n_boot": 10, "seed": 0},
                                  labels)
    assert text.count("LENGTH STOP") == 0 and text.count(LENGTH_UNTUNED) == 1  # said once, under the table
    assert "| length stop | untuned smollm2_135m | MATH 5k | 50% |" in text
    assert "| length stop | untuned smollm2_135m | GSM8K | 75% |" in text and "| other | odd ids |  |  |" in text
    assert text.index("GAPS") < text.index("## Warnings") and "3 warnings" in text.split("GAPS")[0]


def _rows():
    ones = lambda k, n: [1] * k + [0] * (n - k)  # noqa: E731
    s_arm, w_arm = {"math": ones(2, 8)}, {"math": ones(1, 8)}
    gaps = [{"strong": "a", "weak": "b", "names": pair_kind("long"), "student": "smollm2_135m",
             "family": "smollm", "size_b": 0.135, "mode": "full", "paper": None, "missing": None,
             "comparison": compare(s_arm, w_arm, n_boot=200), "length_stop": False}]
    acc = lambda arm: accuracy(arm, n_boot=200)  # noqa: E731
    table3 = {"smollm2_135m": [
        {"weight": None, "mode": "—", "strong": None, "weak": None, "cells": acc({"math": ones(3, 8)})},
        {"weight": 1, "mode": "full", "strong": "a", "weak": "b", "cells": acc(s_arm)},
        {"weight": 0, "mode": "full", "strong": "a", "weak": "b", "cells": acc(w_arm)}]}
    return gaps, table3


def test_figure6_has_the_untuned_reference_and_its_legend_outside(tmp_path, captured):
    gaps, table3 = _rows()
    figures.draw_all(gaps, table3, tmp_path)
    size_fig, weight_fig = captured
    ax = weight_fig.axes[0]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [37.5, 37.5]  # untuned 3/8
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["smollm2_135m", "smollm2_135m, untuned (37.5)"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(weight_fig).draw()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # right of the plot, off the band
    (size_ax,) = size_fig.axes  # one family, one student: one panel, one bar labelled by its size
    assert size_ax.get_xscale() == "linear" and [t.get_text() for t in size_ax.get_xticklabels()] == ["0.135B"]
    assert size_ax.get_title() == "SmolLM" and size_ax.get_legend() is None  # one series: nothing to tell apart


def test_rank_shift_tick_labels_end_under_their_bars(tmp_path, captured):
    arms = [{"arm": name, "shares": {"unshifted": 0.9, "marginal": 0.06, "shifted": 0.04, "positions": 5000},
             "stats": {t: TokenStat(occurrences=9, shifted=t + k + 1) for t in range(4)},
             "decode": {t: f"tok{t}" for t in range(4)}}
            for k, name in enumerate(["w=0 (Short)", "w=0.2 (Mix-Long)", "w=1 (Long)"])]
    render.chart("cell", arms, Path(tmp_path / "chart.png"))
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    (fig,) = captured
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    left = fig.axes[0]
    renderer = canvas.get_renderer()
    centres = [p.get_window_extent().x0 + p.get_window_extent().width / 2 for p in left.patches[:3]]
    ends = [t.get_window_extent(renderer).x1 for t in left.get_xticklabels()]
    assert ends == pytest.approx(centres, abs=12)  # the rotated label ends at its bar centre (its corner: ~8 px)
