"""The demo prints which job runs and how many are left, and each stage's progress."""

from __future__ import annotations

import logging
import re

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from conftest import ROOT
from mixgap import pipeline
from mixgap.plan import summary


def _hydra_cfg(overrides, num=0):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.job.num = num
    return cfg


def test_each_job_says_its_number_and_how_many_are_left(capsys):
    callback = summary.SweepSummary()
    sweep = OmegaConf.create({"hydra": {"overrides": {"task": ["mix.weight=0,0.2,1", "student=qwen0.5b,qwen3b",
                                                               "+experiment=demo"]}}})
    callback.on_multirun_start(sweep)
    assert callback.total == 6
    callback.on_job_start(_hydra_cfg(["mix.weight=0.2", "student=qwen3b"], num=1))
    assert capsys.readouterr().out == "job 2/6 (mix.weight=0.2 student=qwen3b); 4 left after it\n"
    # an experiment's own sweep (hydra.sweeper.params, as demo.yaml sets mix.weight) counts too
    demo = OmegaConf.create({"hydra": {"overrides": {"task": ["+experiment=demo"]},
                                       "sweeper": {"params": {"mix.weight": "0,0.2,1"}}}})
    callback.on_multirun_start(demo)
    assert callback.total == 3


def test_a_single_run_prints_no_job_counter(capsys):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    summary.SweepSummary().on_job_start(cfg)
    assert capsys.readouterr().out == ""


def test_stages_log_their_start_and_time(caplog):
    caplog.set_level(logging.INFO, logger="mixgap.pipeline")
    timings: dict[str, float] = {}
    with pipeline.timed(timings, "train"):
        pass
    assert "stage train ..." in caplog.text and re.search(r"stage train: \d+ s", caplog.text)


def test_readme_demo_time_is_a_dated_measurement():
    readme = (ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("make demo"))
    assert re.search(r"\d+ min \d+ s measured on \d{4}-\d{2}-\d{2}", line), line
    assert "10–20 min" not in readme
