"""One error base class: every error a user can fix is a MixgapError, formatted in one place (error_lines), and
launch.py catches that one type, importing only mixgap.pipeline and mixgap.core."""

from __future__ import annotations

import ast

import pytest

from conftest import ROOT
from mixgap.core.errors import ConfigError, MixgapError, error_lines
from mixgap.core.store import StoreError
from mixgap.plan.machine import PreflightRefused
from mixgap.stages.backends.base import BackendUnavailable
from mixgap.stages.data import DataError
from mixgap.stages.generate import PoolMissing
from mixgap.stages.models import ModelSourceError


@pytest.mark.parametrize("cls", [ConfigError, DataError, StoreError, PoolMissing, ModelSourceError,
                                 BackendUnavailable])
def test_every_user_facing_error_is_a_mixgap_error_of_one_line(cls):
    err = cls("data.decontamination='x' is not allowed")
    assert isinstance(err, MixgapError) and error_lines(err) == ["mixgap: error: data.decontamination='x' is not allowed"]


def test_a_refused_preflight_gives_one_line_per_reason():
    err = PreflightRefused(["finetune_mode.mode=full needs 90.1 GB per GPU", "eval.max_new_tokens=100000 is too long"])
    assert isinstance(err, ConfigError) and str(err) == "finetune_mode.mode=full needs 90.1 GB per GPU"
    assert error_lines(err) == ["mixgap: error: finetune_mode.mode=full needs 90.1 GB per GPU",
                                "mixgap: error: eval.max_new_tokens=100000 is too long"]


def test_the_entry_point_imports_the_pipeline_and_core_only_and_catches_one_error_type():
    tree = ast.parse((ROOT / "launch.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    ours = {m for m in imported if m.startswith("mixgap")}
    assert ours and all(m == "mixgap.pipeline" or m.startswith("mixgap.core.") for m in ours), ours
    caught = {ast.unparse(h.type) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.type is not None}
    assert caught == {"MixgapError", "KeyboardInterrupt"}
