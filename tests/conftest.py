"""Shared fixtures: the offline kit, Hydra composition, and the real SmolLM2-135M-Instruct student."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from mixgap.core.schema import register_configs

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
# Never wait ~49 s for Hub retries: the tests run offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
register_configs()


class RecordingTracker:
    """A Tracker (mixgap.core.tracking) that keeps what it is given: tables, image names, summary values."""

    run_id = None

    def __init__(self):
        self.tables, self.images, self.values, self.finished = {}, [], {}, None

    def log(self, metrics, step=None):
        pass

    def log_table(self, name, columns, rows):
        self.tables[name] = (list(columns), [list(r) for r in rows])

    def log_image(self, name, path):
        self.images.append(Path(path).name)

    def summary(self, values):
        self.values.update(values)

    def finish(self, exit_code=0):
        self.finished = exit_code


def kit_root() -> Path:
    """The offline data kit: MIXGAP_DATA, else ../shared/data beside the checkout."""
    return Path(os.environ.get("MIXGAP_DATA", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def kit() -> Path:
    root = kit_root()
    if not (root / "math" / "math500_test.jsonl").is_file():
        pytest.fail(f"offline data kit not found at {root}: set MIXGAP_DATA")
    return root


def compose_cfg(*overrides: str, data: Path | None = None) -> DictConfig:
    """The composed config for ``overrides``, as ``python launch.py <overrides>`` would see it."""
    extra = [f"paths.data={data}"] if data is not None else []
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, *extra])
    OmegaConf.set_readonly(cfg, False)
    return cfg


@pytest.fixture(scope="session")
def test_cache() -> Path:
    """A store shared by the test session for expensive, content-addressed artifacts (converted weights)."""
    path = Path(os.environ.get("MIXGAP_TEST_CACHE", Path.home() / ".cache" / "mixgap-tests"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def smollm2_path(test_cache: Path) -> str:
    """Folder of the real SmolLM2-135M-Instruct, converted from its GGUF file once (~20 s on 2 cores)."""
    from mixgap.core.store import Store
    from mixgap.stages.models import resolve_model

    student = compose_cfg("student=smollm2_135m").student
    return resolve_model(student, Store(test_cache))


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of small CPU passes: on 2 shared cores, OpenMP threads spin-waiting for a
    busy core slow small generations and scoring passes down many times (``pytest.mark.usefixtures``)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def conf_hub_models() -> list[str]:
    """Every Hub model id the YAMLs of conf/student, conf/teacher and conf/judge name."""
    ids = set()
    for path in (ROOT / "conf").glob("*/*.yaml"):
        if path.parent.name in ("student", "teacher", "judge"):
            hf_id = (yaml.safe_load(path.read_text()) or {}).get("hf_id")
            ids.update([hf_id] if hf_id else [])
    return sorted(ids)


def fake_commit(hf_id: str) -> str:
    """The commit :func:`hub_cached` records for ``hf_id``: 40 hex digits of its SHA-1 (fixed, so keys are too)."""
    return hashlib.sha1(hf_id.encode()).hexdigest()


def write_hub_cache(cache: Path) -> Path:
    """Write into ``cache`` a Hugging Face cache holding a commit (``refs/main``: :func:`fake_commit`) of every Hub
    model of conf/ and no file (for a subprocess: its ``HF_HUB_CACHE``); returns ``cache``."""
    for hf_id in conf_hub_models():
        ref = cache / f"models--{hf_id.replace('/', '--')}" / "refs" / "main"
        ref.parent.mkdir(parents=True)
        ref.write_text(fake_commit(hf_id))
    return cache


@pytest.fixture()
def hub_cached(tmp_path, monkeypatch):
    """A Hugging Face cache that holds a commit (``refs/main``: :func:`fake_commit`) of every Hub model of conf/ and no
    file, as on a machine that downloaded them: offline, their revisions resolve (``mixgap.stages.models``), so the
    keys of jobs on them are fixed and only ``stage=plan`` would see them unresolved. Fresh per-process memos."""
    from huggingface_hub import constants

    from mixgap.plan import jobs, shapes
    from mixgap.stages import models

    cache = write_hub_cache(tmp_path / "hf-hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    for module, memo in ((models, "_REVISIONS"), (jobs, "_CHECKED"), (shapes, "_READ")):
        monkeypatch.setattr(module, memo, {})
    return cache


#: A tiny study of one's own: both teachers' traces and a 2-problem benchmark in local files, the benchmark's YAML
#: in a config folder outside the checkout. The strong teacher solves p0 (a long response), p1, p2 and misses p3;
#: the weak one solves all four. Mixing ranks problems by sha256("0:<id>"): p2 (0e1d...), p0 (c7d9...), p1 (fc79...).
STUDY_RESPONSE = "We add the numbers step by step. " * 40  # ~300 SmolLM2 tokens: over finetune_mode.max_seq_len=128
STUDY_ANSWERS = {"p0": "5", "p1": "42", "p2": "12", "p3": "42"}


def write_study(folder: Path) -> list[str]:
    """Write the tiny study into ``folder`` (``strong.jsonl``, ``weak.jsonl``, ``bench.jsonl``,
    ``conf/benchmark/mybench.yaml``) and return the overrides of a job on it (teachers imported from the files,
    ``benchmark=[mybench]`` through ``hydra.searchpath``, a mix weight of 0.5, nothing tracked)."""
    def rows(path: Path, items: list[dict]) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in items))

    folder.mkdir(parents=True, exist_ok=True)
    strong = {"p0": STUDY_RESPONSE + "Final Answer: \\boxed{5}", "p1": "Final Answer: \\boxed{42}",
              "p2": "Final Answer: \\boxed{12}", "p3": "Final Answer: \\boxed{41}"}
    rows(folder / "strong.jsonl", [{"id": i, "problem": f"Problem {i}: compute it.", "answer": a, "response": strong[i]}
                                   for i, a in STUDY_ANSWERS.items()])
    rows(folder / "weak.jsonl", [{"id": i, "problem": f"Problem {i}: compute it.", "answer": a,
                                  "response": f"The answer is {a}. Final Answer: \\boxed{{{a}}}"}
                                 for i, a in STUDY_ANSWERS.items()])
    rows(folder / "bench.jsonl", [{"question": "Name the smallest taxicab number.", "answer": "1729"},
                                  {"question": "How many ways can 8 queens be placed peacefully?", "answer": "92"}])
    (folder / "conf" / "benchmark").mkdir(parents=True, exist_ok=True)
    (folder / "conf" / "benchmark" / "mybench.yaml").write_text(
        f"mybench:\n  name: mybench\n  size: 2\n  path: {folder / 'bench.jsonl'}\n"
        "  fields: {id: null, problem: question, answer: answer, solution: null}\n")
    teachers = [f"mix.{r}.dataset.{k}" for r in ("strong", "weak") for k in ("kit_path=null",)]
    return ["teacher@mix.strong=kit_long_cot", "teacher@mix.weak=kit_short_cot", *teachers,
            f"mix.strong.dataset.path={folder / 'strong.jsonl'}", f"mix.weak.dataset.path={folder / 'weak.jsonl'}",
            f"hydra.searchpath=[file://{folder / 'conf'}]", "benchmark=[mybench]", "mix.weight=0.5",
            "tracking.backend=none"]
