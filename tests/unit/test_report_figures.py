"""The report's figures as the paper draws them, read back from the matplotlib objects (not pixels): Figures 2/3 as
bars per student size in one panel per family with CI error bars; Figure 6 with error bars at the measured weights
and nothing drawn between them; titles that name models by their display names and break only between phrases."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg
from mixgap.results import figures, sweep
from mixgap.results.tables.names import pair_kind
from mixgap.stats.bootstrap import AVERAGE
from mixgap.stats.intervals import Interval

NAMES = sweep.DisplayNames({"qwen3b_base": "Qwen2.5-3B"}, {"qwq32b": "QwQ-32B-Preview", "qwen32b": "Qwen2.5-32B-Instruct"})


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib Figures the code saves."""
    from matplotlib.figure import Figure

    saved = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: saved.append(self) or original(self, *a, **k))
    return saved


def gap(student, family, size, mode, delta, paper=None):
    """A ``report.gap_rows`` row of qwq32b / qwen32b; ``delta`` (estimate, low, high) or None (a missing arm)."""
    return {"strong": "qwq32b", "weak": "qwen32b", "names": pair_kind("long"), "student": student,
            "family": family, "size_b": size, "mode": mode, "paper": {"delta": paper} if paper is not None else None,
            "comparison": {AVERAGE: SimpleNamespace(delta=Interval(*delta))} if delta else None,
            "missing": None if delta else "w=0"}


GAPS = [gap("llama8b", "llama", 8.03, "full", (3.0, -1.0, 7.0), 2.5),
        gap("qwen3b", "qwen", 3.09, "full", (1.0, -3.0, 5.0), 1.6),
        gap("qwen0.5b", "qwen", 0.49, "full", (-4.0, -9.0, 0.0), -4.7),
        gap("qwen7b", "qwen", 7.62, "full", None),  # w=0 never finished: no bar
        gap("llama1b", "llama", 1.24, "full", (-6.0, -11.0, -1.0))]


def bars(ax):
    """``[(x centre, height)]`` of an axes' bars, left to right."""
    return sorted((round(p.get_x() + p.get_width() / 2, 6), p.get_height()) for p in ax.patches)


def error_bars(ax):
    """``[(x, low, high)]`` of an axes' vertical error-bar segments."""
    return sorted((round(s[0][0], 6), s[0][1], s[1][1]) for c in ax.collections for s in c.get_segments())


def test_figure2_is_bars_per_student_size_one_panel_per_family(tmp_path, captured):
    figures.gap_vs_size(GAPS, tmp_path / "gap.png", names=NAMES)
    (fig,) = captured
    qwen, llama = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["Qwen", "Llama"]  # the paper's order, whatever the rows' order
    # Qwen: 0.49B and 3.09B only -- qwen7b has no comparison, so neither a bar nor a tick (not a zero bar)
    assert [t.get_text() for t in qwen.get_xticklabels()] == ["0.49B", "3.09B"]
    assert bars(qwen) == [(0.0, -4.0), (1.0, 1.0)]
    assert error_bars(qwen) == [(0.0, -9.0, 0.0), (1.0, -3.0, 5.0)]
    assert [t.get_text() for t in llama.get_xticklabels()] == ["1.24B", "8.03B"]
    assert bars(llama) == [(0.0, -6.0), (1.0, 3.0)]
    assert error_bars(llama) == [(0.0, -11.0, -1.0), (1.0, -1.0, 7.0)]
    for ax in fig.axes:  # the zero line, under the caps
        zero = [line for line in ax.get_lines() if list(line.get_ydata()) == [0.0, 0.0]]
        caps = [line for line in ax.get_lines() if line.get_marker() == "_"]
        assert len(zero) == 1 and caps and all(c.get_zorder() > zero[0].get_zorder() for c in caps)
    paper = {ax.get_title(): [(list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()
                              if line.get_marker() == "s"] for ax in fig.axes}
    assert paper == {"Qwen": [([0, 1], [-4.7, 1.6])], "Llama": [([1], [2.5])]}  # llama1b: not in the paper
    assert qwen.get_ylabel() == r"$\Delta_{\rm Long}$ $= P_{\rm Long} - P_{\rm Short}$ (percentage points)"
    assert fig.get_suptitle() == ("QwQ-32B-Preview vs Qwen2.5-32B-Instruct\n"
                                  r"average-accuracy gap $\Delta_{\rm Long}$, error bars = 95% CI")
    assert [t.get_text() for t in llama.get_legend().get_texts()] == ["ours", "paper (Li et al. 2025)"]


def test_figure2_sets_modes_side_by_side_and_names_students_that_share_a_size(tmp_path, captured):
    rows = [gap("qwen14b", "qwen", 14.7, "full", (4.0, 1.0, 7.0)), gap("qwen14b", "qwen", 14.7, "lora", (6.0, 2.0, 10.0)),
            gap("qwen3b", "qwen", 3.09, "full", (1.0, -3.0, 5.0)), gap("qwen3b_base", "qwen", 3.09, "full", (-5.0, -9.0, -1.0))]
    figures.gap_vs_size(rows, tmp_path / "gap.png", names=NAMES)
    (ax,) = captured[0].axes
    # students by size: qwen3b, qwen3b_base (3.09B, named where the size is shared), qwen14b (two modes, 0.4 apart)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["3.09B qwen3b", "3.09B Qwen2.5-3B", "14.7B"]
    assert bars(ax) == [(0.0, 1.0), (1.0, -5.0), (1.8, 4.0), (2.2, 6.0)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ours, full", "ours, lora"]


def test_figure2_without_any_comparison_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="needs a row with a comparison"):
        figures.gap_vs_size([gap("qwen7b", "qwen", 7.62, "full", None)], tmp_path / "gap.png")


def test_figure6_draws_error_bars_at_the_measured_weights_and_no_band_between_them(tmp_path, captured):
    series = {"Qwen2.5-3B-Instruct": [(1.0, Interval(36, 28, 44)), (0.0, Interval(30, 22, 38)), (0.2, Interval(34, 26, 42))]}
    figures.accuracy_vs_weight(series, tmp_path / "w.png", "QwQ-32B-Preview", "Qwen2.5-32B-Instruct")
    (fig,) = captured
    (ax,) = fig.axes
    from matplotlib.collections import PolyCollection

    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]  # no fill_between band
    assert error_bars(ax) == [(0.0, 22, 38), (0.2, 26, 42), (1.0, 28, 44)]  # an interval only where measured
    markers = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(markers) == 1 and list(markers[0].get_xdata()) == [0.0, 0.2, 1.0]
    assert list(markers[0].get_ydata()) == [30, 34, 36] and markers[0].get_linestyle() == "None"
    (guide,) = [line for line in ax.get_lines() if line.get_linestyle() == ":"]  # a thin dotted guide, no more
    assert list(guide.get_xdata()) == [0.0, 0.2, 1.0] and guide.get_linewidth() < 1
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.2", "1"]
    assert ax.get_title() == ("QwQ-32B-Preview vs Qwen2.5-32B-Instruct\n"
                              "average accuracy vs mix weight, error bars = 95% CI")


def test_figure6_sets_several_students_side_by_side_at_each_weight(tmp_path, captured):
    series = {s: [(0.0, Interval(30, 22, 38)), (1.0, Interval(36, 28, 44))] for s in ("a", "b")}
    figures.accuracy_vs_weight(series, tmp_path / "w.png", "S", "W")
    (ax,) = captured[0].axes
    markers = [list(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "o"]
    half = figures.DODGE / 2
    assert markers == [[pytest.approx(-half), pytest.approx(1 - half)], [pytest.approx(half), pytest.approx(1 + half)]]


def test_titles_break_between_phrases_never_inside_one():
    pair = "Long CoT (kit traces) vs Short CoT (Qwen2.5-14B-Instruct)"
    assert figures.wrap_phrases([pair, "average accuracy vs mix weight", "error bars = 95% CI"]) == (
        "Long CoT (kit traces) vs Short CoT (Qwen2.5-14B-Instruct),\naverage accuracy vs mix weight, error bars = 95% CI")
    assert figures.wrap_phrases([pair], 40) == "Long CoT (kit traces) vs\nShort CoT (Qwen2.5-14B-Instruct)"
    assert figures.wrap_phrases(["a" * 50, "b"], 40) == "a" * 50 + ",\nb"  # too long, but whole
    assert figures.text_width(r"gap $\Delta_{\rm Long}$") == len("gap ΔLong")
    rows = figures.pair_title("QwQ-32B-Preview", "Qwen2.5-32B-Instruct", "average accuracy vs mix weight",
                              "error bars = 95% CI").split("\n")
    assert rows == ["QwQ-32B-Preview vs Qwen2.5-32B-Instruct", "average accuracy vs mix weight, error bars = 95% CI"]


def test_display_names_come_from_each_jobs_config_snapshot(tmp_path):
    def job(folder, *overrides):
        cfg = compose_cfg(*overrides)
        (tmp_path / folder / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, tmp_path / folder / ".hydra" / "config.yaml")
        return sweep.Job(tmp_path / folder, "done", {"student": cfg.student.name, "strong": cfg.mix.strong.name,
                                                     "weak": cfg.mix.weak.name}, display=sweep.read_display(tmp_path / folder))

    shipped = job("0", "student=qwen0.5b")
    renamed = job("1", "student=llama8b", "mix.strong.display_name='QwQ (preview)'", "student.display_name=")
    assert shipped.display == {"student": "Qwen2.5-0.5B-Instruct", "strong": "QwQ-32B-Preview", "weak": "Qwen2.5-32B-Instruct"}
    assert renamed.display["student"] == "llama8b"  # an empty display name: the config name
    names = sweep.display_names([shipped, renamed])
    assert (names.student("qwen0.5b"), names.student("llama8b"), names.student("unknown")) == (
        "Qwen2.5-0.5B-Instruct", "llama8b", "unknown")
    assert names.teacher("qwq32b") == "QwQ-32B-Preview"  # the first job naming it decides
    assert sweep.read_display(tmp_path / "absent") == {}
    # a snapshot from before display_name existed: the config names
    old = OmegaConf.load(tmp_path / "0" / ".hydra" / "config.yaml")
    for node in (old.student, old.mix.strong, old.mix.weak):
        del node["display_name"]
    OmegaConf.save(old, tmp_path / "0" / ".hydra" / "config.yaml")
    assert sweep.read_display(tmp_path / "0") == {"student": "qwen0.5b", "strong": "qwq32b", "weak": "qwen32b"}
    # display names are no condition: jobs differing only in them stay seeds of one condition (no variant)
    _, fields = sweep.read_config(tmp_path / "1")
    assert "student.name" in fields and not [k for k in fields if k.endswith("display_name")]
