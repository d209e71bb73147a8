"""Parent side of the symbolic check: a lazily started pool of worker subprocesses.

Why a subprocess: math-verify's own timeout uses ``signal.alarm`` and works only in the main thread,
and a C-level sympy/bigint computation cannot be interrupted at all. A worker that overruns its
deadline is killed (``SIGKILL``), reaped, and replaced by a fresh one that boots in the background, so
a verdict never takes longer than its timeout. Workers are plain ``subprocess.Popen`` children
(``python -c`` running :func:`mixgap.grading.symbolic.main`), which works from threads, from daemonic
``multiprocessing`` children (which may not create ``multiprocessing.Process`` children themselves),
and under any start method. After ``os.fork()`` the child drops the inherited handles and starts its
own workers on demand. An ``atexit`` hook (and a ``multiprocessing`` finalizer, for children that
leave through ``os._exit``) shuts every worker down, so no zombie processes remain.

Pool size: ``MIXGAP_GRADER_WORKERS`` (default ``min(4, cpu_count)``). Set ``MIXGAP_GRADER_DEBUG=1`` to
let worker stderr through.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from multiprocessing import util
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = "import sys; sys.path.insert(0, {root!r}); from mixgap.grading.symbolic import main; main()"


class WorkerTimeout(Exception):
    """The worker did not answer before the deadline."""


class WorkerDied(Exception):
    """The worker exited or broke the protocol (crash, memory kill)."""


class _Worker:
    """One worker subprocess and its line protocol (see :mod:`mixgap.grading.symbolic`)."""

    def __init__(self) -> None:
        debug = os.environ.get("MIXGAP_GRADER_DEBUG") == "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT.format(root=_ROOT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None if debug else subprocess.DEVNULL, bufsize=0, close_fds=True,
        )
        self._buf = b""
        self._seq = 0

    def ask(self, pred: str, gold: str, deadline: float) -> tuple[bool, str]:
        """Send one comparison and wait for the answer until ``deadline`` (``time.monotonic``).

        Raises:
            WorkerTimeout: no answer in time (the caller must kill this worker).
            WorkerDied: the process is gone or answered out of protocol.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerTimeout()
        self._seq += 1
        # the worker's own SIGALRM fires a little before our deadline, so most overruns need no kill
        budget = max(0.01, remaining * 0.9 - 0.02)
        data = (json.dumps({"id": self._seq, "pred": pred, "gold": gold, "budget": budget}) + "\n").encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.proc.stdin.fileno(), view):]
        except (BrokenPipeError, OSError, ValueError) as err:
            raise WorkerDied() from err
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(max(1, int(remaining * 1000))):
                if deadline - time.monotonic() <= 0:
                    raise WorkerTimeout()
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise WorkerDied()
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            resp = json.loads(line)
        except ValueError as err:
            raise WorkerDied() from err
        if resp.get("id") != self._seq:
            raise WorkerDied()
        return bool(resp["ok"]), str(resp["reason"])

    def kill(self) -> None:
        """SIGKILL and reap (no zombie), then close the pipes."""
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        self._close_pipes()

    def close(self) -> None:
        """Ask the worker to exit (stdin EOF)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def reap(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for a closed worker to exit, else kill it."""
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()

    def abandon(self) -> None:
        """In a forked child: drop the parent's worker without touching the process."""
        self._close_pipes()
        self.proc.returncode = 0  # not our child: keep Popen from waiting on or warning about it

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class _Pool:
    """Thread-safe pool of workers; at most ``size`` exist, idle ones are reused LIFO (warm first)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.idle: list[_Worker] = []
        self.live: set[_Worker] = set()
        default = min(4, os.cpu_count() or 1)
        self.size = max(1, int(os.environ.get("MIXGAP_GRADER_WORKERS", default)))

    def _spawn(self) -> _Worker:
        worker = _Worker()
        self.live.add(worker)
        return worker

    def acquire(self, deadline: float) -> _Worker | None:
        with self.cond:
            while True:
                if self.idle:
                    return self.idle.pop()
                if len(self.live) < self.size:
                    return self._spawn()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.cond.wait(remaining)

    def release(self, worker: _Worker) -> None:
        with self.cond:
            if worker in self.live:
                self.idle.append(worker)
                self.cond.notify()

    def replace(self, worker: _Worker) -> None:
        """Kill ``worker`` and start a replacement now, so its boot overlaps the caller's next work."""
        worker.kill()
        with self.cond:
            self.live.discard(worker)
            self.idle.append(self._spawn())
            self.cond.notify()

    def start(self, n: int, wait_s: float) -> None:
        with self.cond:
            fresh = []
            while len(self.live) < min(n, self.size):
                fresh.append(self._spawn())
        deadline = time.monotonic() + wait_s
        for worker in fresh:  # a first request waits for the boot and warms sympy's caches
            try:
                if wait_s > 0:
                    worker.ask("x^{2} + 1", "(x + 1)^{2} - 2x", deadline)
            except (WorkerTimeout, WorkerDied):
                self.replace(worker)
                continue
            self.release(worker)

    def shutdown(self, grace: float = 2.0) -> None:
        with self.cond:
            workers = list(self.live)
            self.live.clear()
            self.idle.clear()
        for worker in workers:
            worker.close()
        for worker in workers:
            worker.reap(grace)


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = _Pool()
            # multiprocessing children leave through os._exit (no atexit) but run these finalizers first
            util.Finalize(_POOL, _POOL.shutdown, exitpriority=10)
        return _POOL


def run_symbolic(pred: str, gold: str, deadline: float) -> tuple[bool, str]:
    """Compare normalised answers in a worker before ``deadline`` (``time.monotonic`` seconds).

    Returns:
        ``(correct, reason)``; reason ``timeout`` if no worker answered in time (the worker is killed
        and replaced), ``worker_error`` if it died.
    """
    pool = _pool()
    worker = pool.acquire(deadline)
    if worker is None:
        return False, "timeout"
    try:
        result = worker.ask(pred, gold, deadline)
    except WorkerTimeout:
        pool.replace(worker)
        return False, "timeout"
    except WorkerDied:
        pool.replace(worker)
        return False, "worker_error"
    pool.release(worker)
    return result


def start_workers(n: int = 1, wait_s: float = 0.0) -> None:
    """Boot ``n`` workers now (capped at the pool size) so the first symbolic verdicts are fast.

    Args:
        n: how many workers to start.
        wait_s: if positive, block up to this long until each new worker has answered a first request;
            otherwise return at once and let them import sympy in the background.
    """
    _pool().start(n, wait_s)


def shutdown_workers() -> None:
    """Stop all workers of this process (registered with ``atexit``; safe to call repeatedly)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool.pid == os.getpid():
        pool.shutdown()


def _after_fork_in_child() -> None:
    global _POOL, _POOL_LOCK
    _POOL_LOCK = threading.Lock()
    pool, _POOL = _POOL, None
    if pool is not None:
        for worker in pool.live:
            worker.abandon()


atexit.register(shutdown_workers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
