"""One W&B run per job: distinct ids, each with its own config, finished even when the job raises."""

from __future__ import annotations

import ast
import json

import pytest

from conftest import compose_cfg
from mixgap import pipeline
from mixgap.core.tracking import NullTracker, make_tracker, wandb_mode


@pytest.mark.parametrize(
    "setting, env, expected",
    [
        ("auto", {}, "offline"),
        ("auto", {"WANDB_API_KEY": "k"}, "online"),
        ("auto", {"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, "disabled"),
        ("offline", {"WANDB_API_KEY": "k"}, "offline"),
    ],
)
def test_wandb_mode_is_offline_without_an_api_key(monkeypatch, setting, env, expected):
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert wandb_mode(setting) == expected


def test_tracking_none_gives_the_null_tracker(tmp_path):
    cfg = compose_cfg("tracking.backend=none")
    assert isinstance(make_tracker(cfg, group="g", job_type="all", name="0", run_dir=tmp_path), NullTracker)


def test_three_jobs_give_three_offline_runs_even_when_one_raises(tmp_path, monkeypatch, hub_cached):
    monkeypatch.setenv("WANDB_MODE", "offline")

    def build(cfg, store, tracker, plan, decisions, timings):
        tracker.log({"weight": cfg.mix.weight})
        if cfg.mix.weight == 0.2:
            raise RuntimeError("training diverged")
        return {}

    monkeypatch.setattr(pipeline, "build", build)
    results = {}
    for n, weight in enumerate((0.0, 0.2, 1.0)):
        cfg = compose_cfg("stage=mix", f"mix.weight={weight}", f"paths.cache={tmp_path / 'cache'}")
        job_dir = tmp_path / "sweep" / str(n)
        if weight == 0.2:
            with pytest.raises(RuntimeError, match="diverged"):
                pipeline.run_job(cfg, job_dir, group="sweep")
        else:
            pipeline.run_job(cfg, job_dir, group="sweep")
        results[weight] = json.loads((job_dir / "result.json").read_text())

    assert [results[w]["status"] for w in (0.0, 0.2, 1.0)] == ["done", "failed", "done"]
    runs = sorted((tmp_path / "sweep").glob("*/wandb/offline-run-*"))
    assert len(runs) == 3
    ids = {run.name.rsplit("-", 1)[-1] for run in runs}
    assert len(ids) == 3
    assert results[0.0]["wandb_run_id"] in ids and results[1.0]["wandb_run_id"] in ids
    assert sorted(_logged_config(run)["mix"]["weight"] for run in runs) == [0.0, 0.2, 1.0]


def _logged_config(run_dir):
    """The config an offline W&B run was started with (wandb 0.31 logs it in the run's debug.log)."""
    for line in (run_dir / "logs" / "debug.log").read_text().splitlines():
        if "config: {'" in line:
            return ast.literal_eval(line.split("config: ", 1)[1])
    raise AssertionError(f"no config logged in {run_dir}")
