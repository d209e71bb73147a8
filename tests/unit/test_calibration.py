"""The preflight with a gpu-check calibration (``cluster.calibration``, mixgap.plan.calibration): the measured MFU and
decode MFU of the nearest measured shape replace ``cluster.mfu`` / ``cluster.decode_mfu``; a file that cannot be used
is a one-line refusal. The calibration files are written by hand here."""

from __future__ import annotations

import json

import pytest

from conftest import compose_cfg
from mixgap.plan.calibration import FORMAT, CalibrationError, nearest_shape, read_calibration
from mixgap.plan.jobs import make_plan
from mixgap.plan.preflight import preflight
from mixgap.plan.printout import describe

# qwen3b, full SFT, one GPU, 20 epochs of the paper's data (no pools in the store): 5383 examples x (0.2 x 4154/3.5
# + 0.8 x 1316/3.5 + 512) = 5,653,072.8 tokens; 6 x 3.09e9 x 5,653,072.8 x 20 / (1 x 989e12 x MFU) / 3600 h:
# 1.6821 h at the assumed 0.35, 1.4018 h at a measured 0.42 (x 0.35 / 0.42), 2.1027 h at 0.28 (x 0.35 / 0.28)
JOB = ("student=qwen3b", "finetune_mode=full", "data.missing_pool=wait", "finetune_mode.epochs=20")
# evaluation at the compute bound (bandwidth out of reach): qwen3b on 8 GPUs, 989e12 x 0.1 / (2 x 3.09e9) = 16,003
# tok/s per engine; the five paper benchmarks, 7,064 problems x 16,000 tokens / (8 x 16,003) / 3600 = 0.24523 h per
# arm (tests/unit/test_preflight.py), 0.245 as the preflight rounds it; at a measured decode_mfu of 0.05 the rate
# halves (8,001.6 tok/s): 0.49045 h, 0.490
EVAL = ("student=qwen3b", "data.missing_pool=wait", "eval.max_model_len=null", "cluster.gpu_memory_bandwidth_gbs=1000000000")


def calibration(tmp_path, shapes, **extra):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"format": FORMAT, "date": "2026-12-07", "dry_run": False,
                                "gpu": {"name": "NVIDIA H100 80GB HBM3", "count": 1}, "shapes": shapes, **extra}))
    return path


def plan(gpus, *overrides):
    cfg = compose_cfg(*overrides)
    return preflight(cfg, make_plan(cfg), gpus)


def test_a_measured_mfu_changes_the_training_hours_by_the_ratio_of_the_mfus(tmp_path):
    path = calibration(tmp_path, {"qwen3b": {"params_b": 3.09, "train": {"mfu": 0.42}}})
    assumed, measured = plan(1, *JOB), plan(1, *JOB, f"cluster.calibration={path}")
    assert assumed["train_hours_estimate"] == pytest.approx(1.6821, abs=0.0005)
    assert measured["train_hours_estimate"] == pytest.approx(1.4018, abs=0.0005)
    assert measured["train_hours_estimate"] / assumed["train_hours_estimate"] == pytest.approx(0.35 / 0.42, rel=1e-3)
    note = ("MFU 0.42 measured at qwen3b's shape; decode_mfu assumed (no decode rate measured) "
            "(gpu-check 2026-12-07, NVIDIA H100 80GB HBM3)")
    assert measured["calibration"] == note and assumed["calibration"] is None
    assert describe(measured).endswith("GPU-h; " + note)
    assert not [r for r in measured["refusals"] if "calibration" in r]  # (its memory on one GPU is refused)


def test_a_student_not_measured_takes_the_nearest_shape_in_parameters(tmp_path):
    # qwen3b (3.09B): |ln(3.09 / 0.49)| = 1.84 from qwen0.5b, |ln(7.62 / 3.09)| = 0.90 from qwen7b -> qwen7b's 0.28
    shapes = {"qwen0.5b": {"params_b": 0.49, "train": {"mfu": 0.2}}, "qwen7b": {"params_b": 7.62, "train": {"mfu": 0.28}}}
    assert nearest_shape(shapes, "train", "qwen3b", 3.09) == "qwen7b"
    assert nearest_shape(shapes, "train", "qwen0.5b", 0.49) == "qwen0.5b"
    assert nearest_shape(shapes, "decode", "qwen3b", 3.09) is None
    report = plan(1, *JOB, f"cluster.calibration={calibration(tmp_path, shapes)}")
    assert report["train_hours_estimate"] == pytest.approx(2.1027, abs=0.0005)
    assert report["calibration"].startswith("MFU 0.28 measured at qwen7b's shape;")


def test_a_measured_decode_rate_changes_the_evaluation_hours(tmp_path):
    path = calibration(tmp_path, {"qwen3b": {"params_b": 3.09, "decode": {"decode_mfu": 0.05}}})
    assumed, measured = plan(8, *EVAL), plan(8, *EVAL, f"cluster.calibration={path}")
    assert (assumed["eval_untuned_hours_estimate"], measured["eval_untuned_hours_estimate"]) == (0.245, 0.490)
    assert measured["eval_rate_bound"] == "compute" and measured["eval_tokens_per_s"] == pytest.approx(8001.6, abs=0.1)
    assert measured["train_hours_estimate"] == assumed["train_hours_estimate"]  # no MFU measured: cluster.mfu stays
    assert measured["calibration"].startswith("MFU assumed (no training rate measured); decode_mfu 0.05 measured")


@pytest.mark.parametrize(("content", "reason"), [
    (None, "no such file"),
    ("not json", "it is not a JSON file (JSONDecodeError)"),
    ({"format": "other/1", "shapes": {}}, "its format is 'other/1', not 'mixgap-calibration/1'"),
    ({"format": FORMAT, "dry_run": True, "shapes": {}}, "it was written by a --dry-run on a CPU and holds no GPU figure"),
    ({"format": FORMAT, "shapes": {"qwen3b": {"params_b": 3.09, "train": {"mfu": 1.5}}}},
     "shapes.qwen3b.train.mfu=1.5 must be in (0, 1]"),
    ({"format": FORMAT, "shapes": {"qwen3b": {"params_b": 0, "train": {"mfu": 0.4}}}},
     "shapes.qwen3b.params_b=0 must be a number > 0"),
    ({"format": FORMAT, "shapes": {"qwen3b": {"params_b": 3.09, "train": {"mfu": None}}}},
     "it holds no measured MFU or decode rate (every GPU check was skipped)"),
])
def test_a_file_that_cannot_be_used_is_a_one_line_refusal(tmp_path, content, reason):
    path = tmp_path / "calibration.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    message = (f"cluster.calibration={str(path)!r} is not allowed: {reason}; give a file written by `make gpu-check` "
               "(benchmarks/gpu_check.py) on a GPU node")
    with pytest.raises(CalibrationError) as err:
        read_calibration(path)
    assert str(err.value) == message
    report = plan(1, *JOB, f"cluster.calibration={path}")
    assert [r for r in report["refusals"] if "calibration" in r] == [message] and report["calibration"] is None
    assert report["train_hours_estimate"] == pytest.approx(1.6821, abs=0.0005)  # the assumed figures stay
