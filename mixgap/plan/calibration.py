"""Measured figures from ``make gpu-check`` for the preflight: ``cluster.calibration=<file>``.

``benchmarks/gpu_check.py`` writes a calibration file (JSON, format :data:`FORMAT`): the GPU it ran on, the date,
the installed versions, and per student shape (``conf/student/<name>.yaml``'s ``arch``, randomly initialised) the
measured training throughput as an MFU, the decode rate of one vLLM engine as a decode MFU, and the ratio of the
preflight's memory prediction to the measured peak. With ``cluster.calibration`` set,
:func:`mixgap.plan.preflight.preflight` plans with the measured ``mfu`` and ``decode_mfu`` of the measured shape
nearest the job's student (:func:`planning_figures`) instead of ``cluster.mfu`` / ``cluster.decode_mfu``, and its
plan line says so (``MFU 0.41 measured at qwen3b's shape (gpu-check 2026-12-07, NVIDIA H100 80GB HBM3)``).

Both MFUs are fractions of the GPU's dense bf16 peak (the datasheet figure the preflight's
``cluster.gpu_bf16_tflops`` also is), so they carry over to the cluster's GPUs the way the assumed ones do:
the training hours scale by exactly ``assumed MFU / measured MFU`` (:func:`mixgap.plan.estimates.train_hours`).

The standard library only: gpu_check writes the file on a GPU box that may have neither Hydra nor OmegaConf.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mixgap.core.errors import ConfigError
from mixgap.core.files import write_json_atomic

FORMAT = "mixgap-calibration/1"
FIELD = "cluster.calibration"
#: What a measured figure may be: a fraction of the GPU's peak in (0, 1].
FIGURES = {"train": "mfu", "decode": "decode_mfu"}


class CalibrationError(ConfigError):
    """A calibration file that cannot be used; the message is one line naming ``cluster.calibration``, the file and
    what is wrong."""


def _refuse(path: str, reason: str) -> CalibrationError:
    return CalibrationError(f"{FIELD}={path!r} is not allowed: {reason}; give a file written by "
                            "`make gpu-check` (benchmarks/gpu_check.py) on a GPU node")


def write_calibration(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` (what :func:`read_calibration` reads; gpu_check builds it) to ``path`` atomically;
    returns the path."""
    write_json_atomic(Path(path), {"format": FORMAT, **record})
    return Path(path)


def read_calibration(path: str | Path) -> dict[str, Any]:
    """The calibration file at ``path``, checked.

    Returns:
        The parsed record: ``format`` (:data:`FORMAT`), ``date`` (ISO day), ``dry_run``, ``gpu`` (``name``,
        ``count``, ``memory_gb``, ``peak_bf16_tflops``), ``versions``, ``shapes`` = ``{student: {"params_b",
        "train": {"mfu", "tokens_per_s", ...} | None, "decode": {"decode_mfu", "tokens_per_s", ...} | None}}``.

    Raises:
        CalibrationError: one line: no such file, not JSON, another format, a ``--dry-run`` file (no GPU figure),
            a shape without a positive ``params_b``, a figure outside (0, 1], or no measured figure at all.
    """
    shown = str(path)
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _refuse(shown, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _refuse(shown, f"it is not a JSON file ({type(err).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise _refuse(shown, f"its format is {found!r}, not {FORMAT!r}")
    if record.get("dry_run"):
        raise _refuse(shown, "it was written by a --dry-run on a CPU and holds no GPU figure")
    shapes = record.get("shapes")
    if not isinstance(shapes, dict):
        raise _refuse(shown, "it has no 'shapes' mapping")
    measured = 0
    for name, shape in shapes.items():
        params = shape.get("params_b") if isinstance(shape, dict) else None
        if not isinstance(params, (int, float)) or params <= 0:
            raise _refuse(shown, f"shapes.{name}.params_b={params!r} must be a number > 0")
        for part, key in FIGURES.items():
            value = (shape.get(part) or {}).get(key)
            if value is None:
                continue
            if not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise _refuse(shown, f"shapes.{name}.{part}.{key}={value!r} must be in (0, 1]")
            measured += 1
    if not measured:
        raise _refuse(shown, "it holds no measured MFU or decode rate (every GPU check was skipped)")
    return record


def nearest_shape(shapes: Mapping[str, Any], part: str, student: str | None, params_b: float) -> str | None:
    """The measured shape whose ``part`` figure (``train``: ``mfu``, ``decode``: ``decode_mfu``) plans a student:
    the student's own name when it was measured, else the shape nearest in parameters on a log scale
    (``|ln(params_b / shape params_b)|``, the smaller ``params_b`` on a tie); None when no shape has the figure."""
    key = FIGURES[part]
    have = {name: s for name, s in shapes.items() if (s.get(part) or {}).get(key) is not None}
    if not have:
        return None
    if student in have:
        return student
    return min(have, key=lambda n: (abs(math.log(params_b / have[n]["params_b"])), have[n]["params_b"]))


def planning_figures(record: Mapping[str, Any], student: str | None, params_b: float) -> tuple[dict[str, float], str]:
    """The cluster fields a calibration replaces for a job of ``student`` (``params_b`` billion parameters), and the
    note the plan line carries.

    Returns:
        ``({"mfu": ..., "decode_mfu": ...}, note)``: each figure from :func:`nearest_shape` (absent when no shape
        has it: the assumed ``cluster`` value stays and the note says so), e.g. ``"MFU 0.41 measured at qwen3b's
        shape; decode_mfu 0.1 assumed (no decode rate measured) (gpu-check 2026-12-07, NVIDIA H100 80GB HBM3)"``.
    """
    shapes, values, parts = record["shapes"], {}, []
    for part, key in FIGURES.items():
        label = "MFU" if key == "mfu" else key
        name = nearest_shape(shapes, part, student, params_b)
        if name is None:
            parts.append(f"{label} assumed (no {'training' if part == 'train' else 'decode'} rate measured)")
            continue
        values[key] = float(shapes[name][part][key])
        parts.append(f"{label} {values[key]:.2g} measured at {name}'s shape")
    gpu = record.get("gpu") or {}
    return values, "; ".join(parts) + f" (gpu-check {record.get('date', '?')}, {gpu.get('name', 'unknown GPU')})"
