"""One W&B run per job: distinct ids, each with its own config, finished even when the job raises; a job's id comes
from its identity, so a requeue or rerun continues its run."""

from __future__ import annotations

import ast
import json
import re
import sys
from types import SimpleNamespace

import pytest

from conftest import compose_cfg
from mixgap import pipeline
from mixgap.core.tracking import NullTracker, make_tracker, run_id, wandb_mode


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


class FakeWandb:
    """A stand-in ``wandb`` module: ``init`` records its arguments and returns a run whose id is the one asked
    (as W&B does for ``id=``) and whose ``resumed`` says whether that id was started before."""

    def __init__(self):
        self.inits, self.started = [], set()

    def init(self, **kwargs):
        self.inits.append(kwargs)
        run = SimpleNamespace(id=kwargs["id"], resumed=kwargs["id"] in self.started, finish=lambda exit_code=0: None)
        self.started.add(kwargs["id"])
        return run


def test_a_jobs_run_id_comes_from_its_identity_and_is_resumed_across_requeues(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = compose_cfg("stage=train", "mix.weight=0.2", "tracking.mode=offline")
    first = make_tracker(cfg, group="sweep", job_type="train", name="3", run_dir=tmp_path / "sweep" / "3")
    requeued = make_tracker(cfg, group="sweep", job_type="train", name="3", run_dir=tmp_path / "sweep" / "3")
    assert first.run_id == requeued.run_id == run_id(cfg, tmp_path / "sweep" / "3", "train")
    assert re.fullmatch(r"[0-9a-f]{16}", first.run_id)
    assert [i["resume"] for i in fake.inits] == ["allow", "allow"] and [i["id"] for i in fake.inits] == [first.run_id] * 2
    assert (first.run.resumed, requeued.run.resumed) == (False, True)  # the second attempt continues the first's run
    other_weight = compose_cfg("stage=train", "mix.weight=1", "tracking.mode=offline")
    others = {run_id(other_weight, tmp_path / "sweep" / "3", "train"),  # another job in that folder
              run_id(cfg, tmp_path / "sweep" / "4", "train"),  # the same values in another sweep folder
              run_id(cfg, tmp_path / "sweep" / "3", "evaluate")}  # another stage there
    assert len(others) == 3 and first.run_id not in others


def test_a_rerun_job_writes_its_offline_run_under_the_same_id(tmp_path, monkeypatch, hub_cached):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(pipeline, "build", lambda cfg, store, tracker, plan, decisions, timings: {})
    cfg = compose_cfg("stage=mix", f"paths.cache={tmp_path / 'cache'}")
    ids = [pipeline.run_job(cfg, tmp_path / "job", group="sweep")["wandb_run_id"] for _ in range(2)]
    runs = sorted((tmp_path / "job" / "wandb").glob("offline-run-*"))
    assert ids[0] == ids[1] == run_id(cfg, tmp_path / "job", "mix")
    assert len(runs) == 2  # offline-run-<time>-<id>, "-1" added by W&B when both start within one second
    assert all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{ids[0]}(-\d+)?", run.name) for run in runs), runs
