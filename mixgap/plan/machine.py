"""Which machine a job is planned for: this machine's CUDA devices, or the GPUs a cluster launcher gives it.

The basic launcher runs a job here, so it is planned for the visible CUDA devices (:func:`device_facts`: their
count and memory, from torch); training then runs with torchrun over all of them
(:func:`mixgap.stages.train.launch.world_plan`). On a machine without a CUDA device the job runs on the CPU: no
GPU memory or tensor parallel size applies here, and the plan also says what the job would need on
``hydra/launcher=slurm`` (:func:`plan_job` plans it for that launcher's GPUs too). A submitit launcher's job
is planned for its ``gpus_per_node x nodes`` GPUs of ``cluster.gpu_memory_gb``; one without GPUs
(``gpus_per_node: null``, the CPU test cluster) runs on the CPU.

A job is refused (:class:`PreflightRefused`, every reason on its own line) for what is wrong where it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from mixgap.core.errors import ConfigError
from mixgap.plan.estimates import GB
from mixgap.plan.jobs import JobPlan
from mixgap.plan.preflight import CLUSTER_LAUNCHER, cluster_gpus, launcher_gpus, preflight


@dataclass(frozen=True)
class DeviceFacts:
    """This machine's CUDA devices: how many, and the memory of the smallest in GB (1e9 bytes; 0.0 with none)."""

    count: int
    memory_gb: float


@dataclass(frozen=True)
class Allocation:
    """What a job runs on: the launcher (the ``hydra/launcher`` choice; None: not named), its GPUs (0: the CPU)
    and their memory (None: ``cluster.gpu_memory_gb``, a cluster launcher's GPUs)."""

    launcher: str | None
    gpus: int
    memory_gb: float | None = None

    @property
    def cpu(self) -> bool:
        """True when the job runs on the CPU (no GPU)."""
        return self.gpus == 0


class PreflightRefused(ConfigError):
    """A job its preflight refuses: :attr:`reasons` holds every one-line reason (the message is the first)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(reasons[0])
        self._reasons = list(reasons)

    @property
    def reasons(self) -> list[str]:
        """Every reason the preflight refused the job for, one line each."""
        return self._reasons


def device_facts() -> DeviceFacts:
    """The visible CUDA devices (``CUDA_VISIBLE_DEVICES`` applies): ``torch.cuda.device_count()`` and the
    smallest ``torch.cuda.get_device_properties(i).total_memory`` / 1e9; ``DeviceFacts(0, 0.0)`` without CUDA."""
    import torch  # heavy: torch, only to count this machine's GPUs

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not count:
        return DeviceFacts(0, 0.0)
    return DeviceFacts(count, min(torch.cuda.get_device_properties(i).total_memory for i in range(count)) / GB)


def job_allocation(launcher: str | None, launcher_cfg: DictConfig | None) -> Allocation:
    """The allocation of a job under the ``hydra/launcher`` choice ``launcher`` (None: basic) and its config.

    A submitit launcher (its config has ``gpus_per_node``): :func:`mixgap.plan.preflight.launcher_gpus` GPUs of
    ``cluster.gpu_memory_gb``, the CPU when ``gpus_per_node`` is null. The basic launcher: this machine's CUDA
    devices (:func:`device_facts`), the CPU when there are none.
    """
    if launcher_cfg is not None and "gpus_per_node" in launcher_cfg:
        gpus = launcher_gpus(launcher_cfg) if launcher_cfg.get("gpus_per_node") else 0
        return Allocation(launcher or CLUSTER_LAUNCHER, gpus)
    facts = device_facts()
    return Allocation("basic", facts.count, facts.memory_gb if facts.count else None)


def plan_job(cfg: DictConfig, plan: JobPlan, allocation: Allocation, store: Any = None) -> dict[str, Any]:
    """The preflight of one job on ``allocation`` (:func:`mixgap.plan.preflight.preflight`), with ``launcher``.

    A job on this machine (the basic launcher) that runs on the CPU or is refused is also planned for
    ``hydra/launcher=slurm`` (:func:`mixgap.plan.preflight.cluster_gpus` GPUs of ``cluster.gpu_memory_gb``):
    that plan is its ``elsewhere``, shown beside it; its refusals are not the job's own.
    """
    report = preflight(cfg, plan, max(allocation.gpus, 1), store, memory_gb=allocation.memory_gb,
                       cpu=allocation.cpu, launcher=allocation.launcher)
    if allocation.launcher == "basic" and (allocation.cpu or report["refusals"]):
        there = preflight(cfg, plan, cluster_gpus(), store, launcher=CLUSTER_LAUNCHER)
        report["elsewhere"] = there
        if not there["refusals"]:
            report["refusals"] = [_name_cluster(reason, there) if reason in report["gpu_refusals"] else reason
                                  for reason in report["refusals"]]
    if allocation.cpu:
        report["decisions"] = {}  # the evaluation's tensor parallel size is a vLLM-on-GPU decision
    return report


def _name_cluster(reason: str, there: dict[str, Any]) -> str:
    """``reason`` + the cluster launcher that runs the job, with its figures (unless the reason names it already)."""
    launcher = f"hydra/launcher={there['launcher']}"
    if f"{launcher} (" in reason:
        return reason
    figures = ", ".join(f"{what} {there[key]:.1f} GB" for what, key in
                        (("train", "train_memory_gb_per_gpu"), ("generation", "generation_memory_gb_per_gpu")) if there[key])
    return f"{reason}; {launcher} runs it ({there['gpus']} GPUs of {there['gpu_memory_gb']:g} GB: {figures} per GPU)"


def enforce(report: dict[str, Any]) -> None:
    """Raise :class:`PreflightRefused` with every refusal of ``report`` (a preflight); nothing when it fits."""
    if report["refusals"]:
        raise PreflightRefused(report["refusals"])

