"""The tests run the cluster's stack: ``.venv`` has every package of ``requirements/cluster.lock.txt`` at its
pinned version (less the lines ``requirements/lock.py`` exempts on a CPU machine: torch's CPU wheel, vLLM and
the CUDA packages), and ``pyproject.toml`` asks for versions the lock satisfies."""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import re
from pathlib import Path

import pytest
import tomllib  # Python 3.11+; the suite runs on the .venv's Python
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("lock", ROOT / "requirements" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)

#: What the GPU path imports: each must be in the lock and installed here at the locked version.
GPU_PATH = ("transformers", "tokenizers", "peft", "accelerate", "deepspeed", "datasets", "safetensors",
            "hydra-core", "omegaconf", "submitit", "hydra-submitit-launcher", "math-verify")


def pins() -> dict[str, str]:
    out = {}
    for line in lock.LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            out[lock.canonical(name)] = version
    return out


def installed() -> dict[str, str]:
    return {lock.canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def drift(here: dict[str, str], locked: dict[str, str]) -> list[str]:
    """Every package installed ``here`` at another version than ``locked`` pins (exempt lines left out)."""
    return sorted(f"{n}: .venv {here[n]} != lock {v}" for n, v in locked.items()
                  if n in here and here[n] != v and not lock.CPU_EXEMPT.match(f"{n}=={v}"))


def test_the_lock_pins_the_gpu_path_vllm_and_torch():
    locked = pins()
    missing = [name for name in (*GPU_PATH, "vllm", "torch") if name not in locked]
    assert not missing, f"not in {lock.LOCK.name}: {missing}"


def test_venv_has_the_locked_version_of_every_package_it_shares_with_the_cluster():
    found = drift(installed(), pins())
    assert not found, "`.venv` drifted from the cluster lock (run `make setup`): " + "; ".join(found)
    missing = [n for n in GPU_PATH if n not in installed()]
    assert not missing, f"not installed here: {missing}"


def test_drift_names_a_package_at_another_version_and_ignores_torch():
    locked = {"transformers": "5.20.2", "torch": "2.14.0", "peft": "0.22.0"}
    here = {"transformers": "5.25.0", "torch": "2.13.0+cpu", "peft": "0.22.0"}
    assert drift(here, locked) == ["transformers: .venv 5.25.0 != lock 5.20.2"]


def test_the_cpu_exemptions_are_torch_vllm_and_cuda_only():
    exempt = [n for n, v in pins().items() if lock.CPU_EXEMPT.match(f"{n}=={v}")]
    assert "torch" in exempt and "vllm" in exempt
    assert all(re.match(r"(torch|triton|vllm|nvidia-|cuda-)", n) for n in exempt), exempt
    assert not any(n in exempt for n in GPU_PATH)


def test_pyproject_asks_for_what_the_lock_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = pins()
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in ("gpu", "dev"):
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    for req in requirements:
        name = lock.canonical(req.name)
        assert name in locked, f"{req} is not in the lock: run `make lock`"
        assert req.specifier.contains(locked[name]), f"pyproject {req} refuses the locked {locked[name]}: run `make lock`"
        floor = [s.version for s in req.specifier if s.operator == ">="]
        if name != "torch":  # the tests run torch's CPU wheel (2.13.0); the cluster the CUDA build vLLM pins
            assert floor == [locked[name]], f"pyproject {req}: its lower bound is not the tested {locked[name]}"


def test_cpu_constraints_drop_the_exempt_lines_only(tmp_path):
    out = tmp_path / "constraints.txt"
    lock.cpu_constraints(out)
    kept = [line for line in out.read_text().splitlines() if "==" in line and not line.startswith("#")]
    assert len(kept) == sum(not lock.CPU_EXEMPT.match(f"{n}=={v}") for n, v in pins().items())
    assert "transformers==5.20.2" in kept and not any(line.startswith("torch==") for line in kept)


@pytest.mark.parametrize("name", ["Jinja2", "typing_extensions", "hydra.core"])
def test_canonical_names(name):
    assert lock.canonical(name) == {"Jinja2": "jinja2", "typing_extensions": "typing-extensions",
                                    "hydra.core": "hydra-core"}[name]
