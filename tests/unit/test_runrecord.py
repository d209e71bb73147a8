"""The run record never lies: running before any work, interrupted on SIGTERM/SIGINT,
failed on an error, one store per sweep folder, and the report counts every unfinished status apart."""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest

from conftest import compose_cfg
from mixgap import pipeline
from mixgap.core import runrecord
from mixgap.core.errors import ConfigError
from mixgap.core.runrecord import Interrupted


def _cfg(tmp_path, kit, *extra):
    return compose_cfg("+experiment=demo", "stage=mix", f"paths.cache={tmp_path / 'cache'}", "tracking.backend=none",
                       *extra, data=kit)


def _read(job):
    return json.loads((job / "result.json").read_text())


def test_result_says_running_with_host_pid_and_slurm_id_before_any_work(tmp_path, kit, monkeypatch):
    job = tmp_path / "sweep" / "0"
    job.mkdir(parents=True)
    (job / "result.json").write_text(json.dumps({"status": "done", "store": str((tmp_path / "cache").resolve())}))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    seen = {}

    def build(cfg, store, tracker, plan, decisions, timings):
        seen.update(_read(job))  # what a reader sees while the job works
        return {"artifacts": {}}

    monkeypatch.setattr(pipeline, "build", build)
    result = pipeline.run_job(_cfg(tmp_path, kit), job, group=str(tmp_path / "sweep"))
    assert seen["status"] == "running" and seen["pid"] == os.getpid() and seen["host"] == socket.gethostname()
    assert seen["slurm_job_id"] == "4242" and seen["started"] > 0
    assert result["status"] == "done" == _read(job)["status"]


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_a_signal_during_the_work_is_recorded_as_interrupted(tmp_path, kit, monkeypatch, caplog, request, signum,
                                                             name):
    job = tmp_path / "job"

    def build(cfg, store, tracker, plan, decisions, timings):
        os.kill(os.getpid(), signum)  # as SLURM's preemption or Ctrl-C
        raise AssertionError("the signal must stop the job")

    monkeypatch.setattr(pipeline, "build", build)
    # Ctrl-C raises KeyboardInterrupt through Python's default SIGINT handler, which a process started in the
    # background of a non-interactive shell never gets (SIGINT ignored from birth): set it for this test
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, interrupt))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as err:
        pipeline.run_job(_cfg(tmp_path, kit), job)
    if signum == signal.SIGTERM:
        assert isinstance(err.value, Interrupted) and err.value.signum == signal.SIGTERM
    record = _read(job)
    assert record["status"] == "interrupted" and record["interrupted"]["signal"] == name
    assert f"job interrupted by {name}; rerun to resume" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    assert runrecord.describe(record).startswith(f"status 'interrupted' ({name} at ")


def test_an_error_is_recorded_as_failed_with_its_reason(tmp_path, kit, monkeypatch):
    def build(cfg, store, tracker, plan, decisions, timings):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "build", build)
    with pytest.raises(RuntimeError):
        pipeline.run_job(_cfg(tmp_path, kit), tmp_path / "job")
    record = _read(tmp_path / "job")
    assert (record["status"], record["error"]) == ("failed", "RuntimeError: disk full")


def test_a_submitit_exit_is_interrupted_and_sigterm_stays_submitits(monkeypatch):
    class SignalHandler:  # stands in for submitit.core.job_environment.SignalHandler
        def bypass(self, signum, frame=None):
            pass

    SignalHandler.__module__ = "submitit.core.job_environment"
    handler = SignalHandler().bypass
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        result = {"status": "running"}
        with pytest.raises(SystemExit), runrecord.interruptible(result):
            assert signal.getsignal(signal.SIGTERM) == handler  # not replaced: submitit's requeue needs it
            raise SystemExit(-1)  # what checkpoint_and_try_requeue ends with after requeueing
        assert result["status"] == "interrupted" and "submitit" in result["interrupted"]["signal"]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_job_refused_by_its_preflight_is_recorded_failed_not_left_running(tmp_path, kit):
    """An earlier run's "done" is replaced, and the refusal (raised before any work) is the recorded error."""
    from mixgap.core.errors import ConfigError

    job = tmp_path / "sweep" / "0"
    job.mkdir(parents=True)
    (job / "result.json").write_text(json.dumps({"status": "done", "store": str((tmp_path / "cache").resolve())}))
    cfg = _cfg(tmp_path, kit, "stage=train")  # refused before training starts
    cfg.cluster.gpu_memory_gb = 0.5  # SmolLM2's full SFT needs 5.3 GB per GPU (preflight)
    with pytest.raises(ConfigError, match="cluster.gpu_memory_gb=0.5"):
        pipeline.run_job(cfg, job, group=str(tmp_path / "sweep"), gpus=1)
    record = _read(job)
    assert record["status"] == "failed" and "cluster.gpu_memory_gb=0.5" in record["error"]


def test_a_sweep_folder_refuses_a_second_store(tmp_path, kit, monkeypatch):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "result.json").write_text(json.dumps({"status": "done", "store": "/elsewhere/cache"}))
    monkeypatch.setattr(pipeline, "build", lambda *a: pytest.fail("must refuse before any work"))
    with pytest.raises(ConfigError) as err:
        pipeline.run_job(_cfg(tmp_path, kit), sweep / "1", group=str(sweep))
    assert "differs from the store '/elsewhere/cache'" in str(err.value) and "\n" not in str(err.value)
    assert not (sweep / "1" / "result.json").exists()


def test_a_running_record_of_a_dead_pid_says_so():
    dead = {"status": "running", "pid": 2 ** 22 + 12345, "host": socket.gethostname(), "started": 0}
    assert runrecord.describe(dead).endswith("not alive: killed without a record, rerun to resume)")


def test_the_report_counts_unfinished_statuses_apart_and_never_reads_them(tmp_path):
    from mixgap.results.sweep import read_sweeps
    from mixgap.results.tables.markdown import status_line

    records = {"0": {"status": "done"}, "1": {"status": "running", "pid": 1, "host": "elsewhere", "started": 0},
               "2": {"status": "interrupted", "interrupted": {"signal": "SIGTERM", "at": 0}},
               "3": {"status": "failed", "error": "RuntimeError: disk full"}}
    for name, record in records.items():
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / "result.json").write_text(json.dumps({**record, "job": {"stage": "all"}, "artifacts": {}}))
    jobs = read_sweeps([str(tmp_path)], None)
    assert [j.status for j in jobs] == ["done", "running", "interrupted", "failed"]
    assert status_line(jobs) == "4 jobs: 1 done (counted), not counted: 1 failed, 1 interrupted, 1 running"
    assert [j.evals for j in jobs[1:]] == [{}, {}, {}]  # nothing of an unfinished job is read, so none is averaged
    assert jobs[2].missing[0].startswith("status 'interrupted' (SIGTERM at ") and "rerun to resume" in jobs[2].missing[0]
    assert jobs[3].missing == ["status 'failed' (RuntimeError: disk full)"]
    assert jobs[1].missing[0].startswith("status 'running' (pid 1 on host elsewhere, started ")
