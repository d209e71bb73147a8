"""A single-node SLURM cluster on localhost for the integration tests (Debian's ``slurm-wlm`` and ``munge``).

Usable from pytest fixtures (:func:`start`, :func:`stop`) and from a shell::

    python tests/integration/slurm_cluster.py start   # installs the packages if missing; prints SLURM_CONF
    python tests/integration/slurm_cluster.py status
    python tests/integration/slurm_cluster.py stop

Everything lives under one folder (``MIXGAP_SLURM_ROOT``, default ``/tmp/mixgap-slurm``): ``slurm.conf``,
the controller's state, the node's spool, logs, pid files, and a private ``munged`` (own key and socket,
run as user ``munge``). No systemd is needed. The client commands (``sinfo``, ``sbatch``, ``scontrol``,
and submitit, which calls them) find this cluster through ``SLURM_CONF=<root>/slurm.conf``.

Facts this relies on (measured on the 2-core CI machine, slurm-wlm 22.05): ``slurmd -N localhost`` is needed
because the host name is not ``localhost``; requests for GPUs (no GRES) or for more memory than the node's
``RealMemory`` are rejected; ``sacct`` warns (no accounting storage), which submitit tolerates.
``stop`` ends only the daemons whose pids this module recorded: ``scontrol shutdown`` first, then the pids.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path(os.environ.get("MIXGAP_SLURM_ROOT", "/tmp/mixgap-slurm"))
PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
PARTITION = "debug"
STATE = "cluster.json"


class ClusterError(RuntimeError):
    """The local cluster cannot be installed, started or reached; the message says what to do."""


@dataclass(frozen=True)
class Cluster:
    """A running local cluster: its folder, its ``slurm.conf`` and whether this process started it."""

    root: Path
    started_here: bool

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` plus ``SLURM_CONF``: what a client command (sbatch, submitit) needs."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}


def install_if_missing() -> None:
    """``apt-get install -y slurm-wlm munge`` when ``slurmctld`` or ``munged`` is not on PATH (~11 s).

    Raises:
        ClusterError: not root, no apt-get, or the install failed (the apt output is quoted).
    """
    if all(shutil.which(d) for d in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ClusterError(f"SLURM is not installed; as root run: apt-get install -y {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *PACKAGES]
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise ClusterError(f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-500:]}")


def node_resources() -> tuple[int, int]:
    """(CPUs, RealMemory in MB) to declare for the node: all CPUs, 85% of MemTotal (slurmd drains a node
    that declares more memory than it has)."""
    with open("/proc/meminfo") as fh:
        total_kb = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
    return os.cpu_count() or 1, int(total_kb / 1024 * 0.85)


def slurm_conf_text(root: Path, *, cpus: int, memory_mb: int, ports: tuple[int, int]) -> str:
    """The minimal ``slurm.conf`` of a one-node cluster rooted at ``root`` (see the module docstring)."""
    return "\n".join([
        "ClusterName=local",
        "SlurmctldHost=localhost",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=1000",
        "ReturnToService=2",
        "KillWait=5",  # seconds from SIGTERM to SIGKILL on scancel/requeue (default 30)
        "MinJobAge=600",  # keep finished jobs visible to squeue/scontrol for 10 minutes
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _pid(path: Path, name: str) -> int | None:
    """The pid in ``path`` if that process is alive and is ``name`` (a stale pid file may name a recycled pid)."""
    try:
        pid = int(path.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == name else None


def pids(root: Path = DEFAULT_ROOT) -> dict[str, int | None]:
    """The live pid of each daemon of the cluster at ``root`` (None: not running), read from its pid file."""
    files = {"munged": root / "munge" / "munged.pid", "slurmctld": root / "slurmctld.pid", "slurmd": root / "slurmd.pid"}
    return {name: _pid(path, name) for name, path in files.items()}


def node_state(root: Path = DEFAULT_ROOT) -> str | None:
    """``sinfo``'s state of the node (``idle``, ``mix``, ``alloc``, ``down*``, ...), None when unreachable."""
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], env={**os.environ, "SLURM_CONF": str(root / "slurm.conf")},
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _start_munge(root: Path) -> None:
    """A private munged (own key, socket, pid, log, seed) run as user ``munge``."""
    mdir = root / "munge"
    mdir.mkdir(exist_ok=True)
    mdir.chmod(0o755)  # clients need to reach the socket; the key itself is 0400
    key = mdir / "munge.key"
    if not key.is_file():
        key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    shutil.chown(mdir, "munge", "munge")
    shutil.chown(key, "munge", "munge")
    _daemon(
        ["runuser", "-u", "munge", "--", "munged", f"--socket={mdir / 'munge.socket'}", f"--key-file={key}",
         f"--pid-file={mdir / 'munged.pid'}", f"--log-file={mdir / 'munged.log'}", f"--seed-file={mdir / 'munged.seed'}"],
        mdir / "munged.log",
    )


def _daemon(cmd: list[str], log: Path) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        tail = log.read_text()[-1500:] if log.is_file() else ""
        raise ClusterError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()} {tail}")


def start(root: Path = DEFAULT_ROOT, *, ports: tuple[int, int] | None = None, timeout_s: float = 30.0) -> Cluster:
    """Install if missing, start munged, slurmctld and slurmd, and wait until the node is ``idle``.

    A cluster already running at ``root`` is reused (``started_here=False``: whoever started it stops it).
    Otherwise any state left by an earlier cluster at ``root`` is wiped first, so job ids start at 1.

    Args:
        root: the cluster's folder.
        ports: (slurmctld, slurmd) TCP ports; default ``MIXGAP_SLURM_PORTS`` ("6817,6818").
        timeout_s: how long to wait for the node to become idle.

    Raises:
        ClusterError: packages cannot be installed, a port is taken, a daemon fails, or the node is not
            idle within ``timeout_s`` (the daemons' log tails are quoted).
    """
    root = Path(root)
    running = pids(root)
    if running["slurmctld"] and running["slurmd"] and running["munged"] and node_state(root):
        return Cluster(root, started_here=False)
    stop(root)  # half-started leftovers of our own, by pid
    install_if_missing()
    ports = ports or tuple(int(p) for p in os.environ.get("MIXGAP_SLURM_PORTS", "6817,6818").split(","))
    taken = [p for p in ports if not _port_free(p)]
    if taken:
        raise ClusterError(f"port(s) {taken} already in use: another slurmctld/slurmd? set MIXGAP_SLURM_PORTS=a,b")
    for sub in ("state", "spool", "log"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
    cpus, memory_mb = node_resources()
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf_text(root, cpus=cpus, memory_mb=memory_mb, ports=ports))
    (root / STATE).write_text(json.dumps({"cpus": cpus, "memory_mb": memory_mb, "ports": list(ports)}))
    _start_munge(root)
    _daemon(["slurmctld", "-f", str(conf)], root / "log" / "slurmctld.log")
    _daemon(["slurmd", "-f", str(conf), "-N", "localhost"], root / "log" / "slurmd.log")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node_state(root) == "idle":
            return Cluster(root, started_here=True)
        time.sleep(0.5)
    logs = " | ".join((root / "log" / f).read_text()[-600:] for f in ("slurmctld.log", "slurmd.log") if (root / "log" / f).is_file())
    stop(root)
    raise ClusterError(f"the local node did not become idle within {timeout_s:.0f} s: {logs}")


def stop(root: Path = DEFAULT_ROOT, *, timeout_s: float = 15.0) -> list[str]:
    """Stop the cluster at ``root``: ``scontrol shutdown``, then SIGTERM/SIGKILL to the recorded pids only.

    Returns:
        The names of the daemons that were running and are now stopped.
    """
    root = Path(root)
    running = {name: pid for name, pid in pids(root).items() if pid}
    if running.get("slurmctld") and (root / "slurm.conf").is_file():
        subprocess.run(["scontrol", "shutdown"], env={**os.environ, "SLURM_CONF": str(root / "slurm.conf")},
                       capture_output=True, timeout=30)
    for name in ("slurmd", "slurmctld", "munged"):
        pid = running.get(name)
        if pid is None:
            continue
        deadline = time.monotonic() + timeout_s
        sig = signal.SIGTERM
        while _alive(pid):
            if time.monotonic() > deadline:
                sig = signal.SIGKILL
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            time.sleep(0.2)
    return sorted(running)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child (the cluster was started by this process) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def for_tests() -> Iterator[Cluster]:
    """The body of the tests' ``cluster`` fixture (no arguments: pytest would read them as fixtures): the cluster at
    ``DEFAULT_ROOT`` started, and installed, unless one already runs there; stopped at the end only when started
    here, by the pids it recorded.

    Raises:
        ClusterError: it cannot start (:func:`start`).
    """
    running = start()
    try:
        yield running
    finally:
        if running.started_here:
            stop(running.root)


def status(root: Path = DEFAULT_ROOT) -> dict[str, object]:
    """``{"root", "conf", "pids", "node"}`` of the cluster at ``root`` (node None: not reachable)."""
    root = Path(root)
    return {"root": str(root), "conf": str(root / "slurm.conf"), "pids": pids(root), "node": node_state(root)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A one-node SLURM cluster on localhost for mixgap's tests.")
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"cluster folder (default {DEFAULT_ROOT})")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            cluster = start(args.root)
            how = "started" if cluster.started_here else "already running"
            print(f"local SLURM cluster {how}; use it with:\nexport SLURM_CONF={cluster.conf}")
        elif args.action == "stop":
            print("stopped: " + (", ".join(stop(args.root)) or "nothing was running"))
        else:
            print(json.dumps(status(args.root), indent=2))
    except ClusterError as err:
        print(f"slurm_cluster: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
