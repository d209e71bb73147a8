"""Shared fixtures: the offline kit, Hydra composition, and the real SmolLM2-135M-Instruct student."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
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
