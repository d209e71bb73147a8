"""Where training runs: in this process (CPU), or as a ``torchrun`` subprocess over every GPU of the allocation.

On a GPU machine the job starts ``python -m torch.distributed.run ... -m mixgap.stages.train <job.json>`` (what
``torchrun`` runs) with one process per GPU; DeepSpeed (``conf/deepspeed/<name>.json``) shards the model
across them. On SLURM the world comes from the allocation (SLURM_NNODES, SLURM_NODEID,
SLURM_JOB_NODELIST, SLURM_GPUS_ON_NODE); the master is the first host of ``scontrol show hostnames``:

- one job task per node (``SLURM_NTASKS >= SLURM_NNODES``): each task runs torchrun with
  ``--node_rank=$SLURM_NODEID``;
- a single job task over several nodes: that task wraps torchrun in ``srun --overlap`` on every node, each
  node reading its own ``$SLURM_NODEID``.

On a CPU machine ``MIXGAP_CPU_PROCESSES=N`` (:data:`CPU_PROCESSES_ENV`) asks for N ranks on the gloo backend
instead of one: the same torchrun launch, job file and DeepSpeed config a GPU job uses, so the multi-process
path (ZeRO-3 sharding, rank-0 writes, resume on every rank) can be rehearsed without a GPU. It never applies
where GPUs are visible or SLURM gives GPUs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mixgap.core.fields import check_field
from mixgap.core.schema import FinetuneConfig

#: Environment variable: number of CPU ranks of a torchrun launch on a machine without GPUs (default 1).
CPU_PROCESSES_ENV = "MIXGAP_CPU_PROCESSES"
DEEPSPEED_DIR = Path(__file__).resolve().parents[3] / "conf" / "deepspeed"


@dataclass(frozen=True)
class WorldPlan:
    """The process layout of one training run; ``world_size`` = ``nnodes x nproc_per_node``."""
    nnodes: int = 1
    node_rank: int = 0
    nproc_per_node: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    srun: bool = False  # wrap torchrun in srun over the nodes (single job task on several nodes)

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def scontrol_hostnames(nodelist: str) -> list[str]:
    """Expand a SLURM nodelist (``node[01-03]``) with ``scontrol show hostnames``."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        return int(str(value).split("(")[0].split(",")[0])  # e.g. SLURM_TASKS_PER_NODE="4(x2)"
    except ValueError:
        raise ValueError(f"environment {name}={value!r} is not an integer") from None


def world_plan(
    env: Mapping[str, str], gpu_count: int, hostnames: Callable[[str], list[str]] = scontrol_hostnames
) -> WorldPlan:
    """The world for a training launch from the environment and the visible GPU count.

    Args:
        env: the process environment (``os.environ``).
        gpu_count: CUDA devices visible here (``torch.cuda.device_count()``); 0 on a CPU machine.
        hostnames: expands ``SLURM_JOB_NODELIST`` (``scontrol show hostnames``; replaceable in tests).

    Returns:
        nproc_per_node = SLURM_GPUS_ON_NODE, else the visible GPU count, else :func:`cpu_processes`
        (1 unless ``MIXGAP_CPU_PROCESSES`` asks for more); nnodes and the
        node rank from SLURM_NNODES/SLURM_NODEID; master = first node, port 20000 + job id mod 20000
        (the same on every node without talking to each other).
    """
    nproc = _int(env, "SLURM_GPUS_ON_NODE", gpu_count) or cpu_processes(env)
    nnodes = _int(env, "SLURM_NNODES", 1)
    if nnodes <= 1:
        return WorldPlan(nproc_per_node=nproc)
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise ValueError("SLURM_NNODES > 1 but SLURM_JOB_NODELIST is not set; cannot find the master node")
    hosts = hostnames(nodelist)
    if len(hosts) < nnodes:
        raise ValueError(f"SLURM_JOB_NODELIST={nodelist!r} expands to {len(hosts)} hosts, fewer than SLURM_NNODES={nnodes}")
    return WorldPlan(
        nnodes=nnodes,
        node_rank=_int(env, "SLURM_NODEID", 0),
        nproc_per_node=nproc,
        master_addr=hosts[0],
        master_port=20000 + _int(env, "SLURM_JOB_ID", 9500) % 20000,
        srun=_int(env, "SLURM_NTASKS", 1) < nnodes,
    )


def cpu_processes(env: Mapping[str, str]) -> int:
    """Ranks asked for on a CPU machine: ``MIXGAP_CPU_PROCESSES`` (a positive integer), default 1.

    Raises:
        ValueError: the variable is set to something other than a positive integer.
    """
    n = _int(env, CPU_PROCESSES_ENV, 1)
    if n < 1:
        raise ValueError(f"environment {CPU_PROCESSES_ENV}={env.get(CPU_PROCESSES_ENV)!r} is not allowed; it must be >= 1")
    return n


def torchrun_command(plan: WorldPlan, job_file: str | os.PathLike, python: str = sys.executable) -> list[str]:
    """The argv that runs ``python -m mixgap.stages.train <job_file>`` in every rank of ``plan``.

    A single node uses ``--standalone`` (a free local port, no clash between jobs sharing a node);
    several nodes a static rendezvous at ``master_addr:master_port``. With ``plan.srun`` the command is
    ``srun --overlap --nodes=N --ntasks=N --ntasks-per-node=1 bash -c '<torchrun ... --node_rank=$SLURM_NODEID>'``.
    """
    base = [python, "-m", "torch.distributed.run"]
    tail = [f"--nproc_per_node={plan.nproc_per_node}", "-m", "mixgap.stages.train", str(job_file)]
    if plan.nnodes == 1:
        return [*base, "--standalone", "--nnodes=1", *tail]
    rendezvous = [f"--nnodes={plan.nnodes}", f"--master_addr={plan.master_addr}", f"--master_port={plan.master_port}"]
    if not plan.srun:
        return [*base, *rendezvous, f"--node_rank={plan.node_rank}", *tail]
    inner = " ".join([shlex.join([*base, *rendezvous]), '--node_rank="$SLURM_NODEID"', shlex.join(tail)])
    return ["srun", "--overlap", f"--nodes={plan.nnodes}", f"--ntasks={plan.nnodes}", "--ntasks-per-node=1",
            "--kill-on-bad-exit=1", "bash", "-c", inner]


def use_subprocess(launch: str, gpu_count: int, cpu_ranks: int = 1) -> bool:
    """``auto``: torchrun on GPU machines (or for ``cpu_ranks > 1``), in-process on CPU; ``local``/``torchrun`` force one way.

    Args:
        launch: ``finetune_mode.launch``.
        gpu_count: visible CUDA devices.
        cpu_ranks: :func:`cpu_processes` (``MIXGAP_CPU_PROCESSES``); only read without GPUs.

    Raises:
        ValueError: ``launch`` is not one of ``finetune_mode.launch``'s choices, or ``local`` with
            ``cpu_ranks > 1`` (one process cannot be several ranks).
    """
    check_field(FinetuneConfig, "launch", launch, "finetune_mode.launch")
    several_cpu_ranks = gpu_count == 0 and cpu_ranks > 1
    if launch == "local" and several_cpu_ranks:
        raise ValueError(
            f"finetune_mode.launch=local runs one process but {CPU_PROCESSES_ENV}={cpu_ranks} asks for "
            f"{cpu_ranks} ranks; use launch=auto or launch=torchrun, or unset {CPU_PROCESSES_ENV}"
        )
    return launch == "torchrun" or (launch == "auto" and (gpu_count > 0 or several_cpu_ranks))


def deepspeed_config(name: str | None, directory: Path = DEEPSPEED_DIR) -> str | None:
    """Path of ``conf/deepspeed/<name>.json`` (``zero2``/``zero3``), or None for no DeepSpeed.

    Raises:
        FileNotFoundError: the file is missing (names the expected path).
    """
    if name is None:
        return None
    path = directory / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"finetune_mode.deepspeed={name!r}: {path} not found (zero2 and zero3 ship in conf/deepspeed/)")
    return str(path)


def run_launch(
    cmd: Sequence[str], log_path: Path, on_metrics: Callable[[dict, int], None], *, poll_s: float = 2.0,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run the training subprocess to the end, forwarding the metrics lines it appends to ``log_path``.

    The child's stdout/stderr go to this process's (the job log, tqdm bars included).

    Raises:
        RuntimeError: the subprocess exits non-zero (the message gives the exit code and the command).
    """
    offset = log_path.stat().st_size if log_path.exists() else 0
    proc = subprocess.Popen(list(cmd), env=dict(env) if env is not None else None)

    def drain() -> None:
        nonlocal offset
        if not log_path.exists():
            return
        with open(log_path, encoding="utf-8") as fh:
            fh.seek(offset)
            for line in fh:
                if not line.endswith("\n"):
                    break  # a line still being written: read it next time
                offset += len(line.encode("utf-8"))
                row = json.loads(line)
                on_metrics({k: v for k, v in row.items() if k != "step"}, row["step"])

    try:
        while proc.poll() is None:
            time.sleep(poll_s)
            drain()
    except BaseException:
        proc.terminate()
        proc.wait(timeout=60)
        raise
    drain()
    if proc.returncode != 0:
        raise RuntimeError(f"training subprocess failed with exit code {proc.returncode}: {shlex.join(cmd)}")
