"""Content-addressed artifact store (README.md, "Artifacts").

Layout under the root (``paths.cache``)::

    <stage>/<key>/            a finished artifact: its data files and manifest.json
    .work/<key>/              resumable scratch of an unfinished artifact (generation shards, training checkpoints)
    .tmp/<key>.<pid>.<rand>/  an artifact being written; renamed into <stage>/<key>/ when complete
    .locks/<key>.lock         one file lock per key
    .damaged/<key>.<time>/    a finished artifact found damaged, set aside (kept for a look, never read again)

The key is ``<stage>-<16 hex>``: the SHA-256 of the canonical JSON of the config fields that determine the
artifact plus the keys of its inputs. An artifact folder is finished if and only if it holds
``manifest.json``; it is built in a temporary folder and renamed into place under the key's lock, so a
killed writer leaves nothing that reads as finished and two jobs asking for one key build it once.

The manifest records every file of the artifact (``files``: bytes, SHA-256, JSONL rows; :mod:`mixgap.core.digests`)
and every reuse (:meth:`Store.is_done`, :meth:`Store.get_or_build`, :meth:`Store.manifest`) checks them: sizes
always, digests too unless ``Store(root, digests=False)`` (digests are cached per process by path, size and mtime,
so a sweep hashes each file once). A damaged artifact (a file cut, edited or gone; a manifest that is not JSON) is
set aside into ``.damaged/`` with one warning line naming it and the file, and is rebuilt by whoever asks for it.
A manifest without ``files`` (one written by hand) is checked only for being a JSON object.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mixgap.core import digests as filedigests
from mixgap.core.errors import MixgapError
from mixgap.core.files import write_json_atomic

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_VERSIONED = ("mixgap", "torch", "transformers", "peft", "datasets", "math-verify", "hydra-core", "vllm", "deepspeed")


class StoreError(MixgapError, ValueError):
    """A damaged artifact that cannot be set aside or rebuilt here; the message is one line naming the file."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the text that is hashed into a key."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def make_key(stage: str, fields: Mapping[str, Any], inputs: Sequence[str] = ()) -> str:
    """The store key of an artifact.

    Args:
        stage: artifact kind, e.g. ``pool``, ``mixture``, ``checkpoint``; ``[a-z_]+``.
        fields: the plain-value config fields that determine the artifact (nothing cosmetic).
        inputs: keys of the artifacts it is built from (order matters: strong before weak).

    Returns:
        ``"<stage>-<first 16 hex digits of sha256(canonical JSON)>"``.
    """
    if not stage.replace("_", "").isalpha() or not stage.islower():
        raise ValueError(f"stage={stage!r} must be lowercase letters and underscores")
    digest = hashlib.sha256(canonical_json({"stage": stage, "fields": fields, "inputs": list(inputs)}).encode())
    return f"{stage}-{digest.hexdigest()[:16]}"


def environment_facts() -> dict[str, Any]:
    """Package versions, git SHA of the mixgap checkout, host and Python: recorded in every manifest."""
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {"versions": versions, "git_sha": sha, "host": socket.gethostname(), "python": platform.python_version()}


@dataclass(frozen=True)
class ArtifactSpec:
    """What identifies an artifact: its stage, its determining fields and its input keys."""

    stage: str
    fields: Mapping[str, Any]
    inputs: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return make_key(self.stage, self.fields, self.inputs)


class Store:
    """The artifact store rooted at ``root`` (created on first use)."""

    #: seconds between "still waiting" log lines while another process holds a key's lock
    heartbeat_s: float = 60.0

    def __init__(self, root: str | os.PathLike, *, digests: bool = True):
        self.root = Path(root).expanduser().resolve()
        self.digests = digests  # check SHA-256 and rows on reuse (sizes are always checked)
        self.wait_s = 0.0  # seconds this Store object spent waiting for other processes' locks
        self.built: set[str] = set()  # keys this Store object built (get_or_build); any other it returned was reused

    def path(self, key: str) -> Path:
        """Folder of the finished artifact ``key`` (it may not exist yet)."""
        return self.root / key.rsplit("-", 1)[0] / key

    def work_dir(self, key: str) -> Path:
        """Persistent scratch for resumable work on ``key``; survives a killed job, removed once finished."""
        path = self.root / ".work" / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def lock(self, key: str) -> FileLock:
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".locks" / f"{key}.lock"))

    def damage(self, key: str) -> str | None:
        """Why the finished folder of ``key`` is damaged (its manifest missing or not a JSON object, a recorded
        file missing or of another size, rows or SHA-256), or None when it is sound or absent."""
        folder = self.path(key)
        if folder.exists() and not folder.is_dir():
            return "it is a file, not an artifact folder"
        if not folder.is_dir():
            return None
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return f"{MANIFEST} is missing"
        except (OSError, ValueError) as err:
            return f"{MANIFEST} is not valid JSON ({type(err).__name__}: {str(err)[:80]})"
        if not isinstance(manifest, dict):
            return f"{MANIFEST} is not a JSON object"
        files = manifest.get("files") or {}
        if not isinstance(files, dict) or not all(
                isinstance(r, dict) and isinstance(r.get("bytes"), int) and isinstance(r.get("sha256"), str)
                for r in files.values()):
            return f"{MANIFEST}'s files is not a record of the artifact's files (path -> bytes, sha256)"
        return filedigests.damage(folder, files, self.digests)

    def _set_aside(self, key: str, reason: str, *, locked: bool) -> bool:
        """Move a damaged artifact to ``.damaged/<key>.<time>.<pid>`` (one warning line) under the key's lock
        (taken without waiting unless ``locked``: while another process holds it, nothing moves), checking again
        first; True when it turned out sound. StoreError: it cannot be moved (a read-only store), one line."""
        lock = None
        if not locked:
            lock = self.lock(key)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                return False
        try:
            reason = self.damage(key)
            if reason is None:
                return self.path(key).is_dir()
            spot = self.root / ".damaged" / f"{key}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
            try:
                spot.parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.path(key), spot)
            except OSError as err:
                raise StoreError(f"artifact {self.path(key)} is damaged ({reason}) and cannot be set aside "
                                 f"({type(err).__name__}); remove that folder so that it is rebuilt") from None
            log.warning("artifact %s is damaged (%s); set aside to %s, it will be rebuilt", key, reason, spot)
            return False
        finally:
            if lock is not None:
                lock.release()

    def _finished(self, key: str, *, locked: bool = False) -> bool:
        if not self.path(key).exists():
            return False
        reason = self.damage(key)
        return True if reason is None else self._set_aside(key, reason, locked=locked)

    def is_done(self, key: str) -> bool:
        """True when the artifact is finished and sound (:meth:`damage`); a damaged one is set aside (one warning
        line) and reads as not done, so the caller rebuilds it."""
        return self._finished(key)

    def manifest(self, key: str) -> dict[str, Any]:
        """The manifest of a finished, sound artifact.

        Raises:
            FileNotFoundError: the artifact is not finished; names the key.
            StoreError: it was damaged (now set aside, or being rebuilt by another process); names the file.
        """
        path = self.path(key) / MANIFEST
        if not self.path(key).is_dir():
            raise FileNotFoundError(f"artifact {key} is not finished (no {path})")
        reason = self.damage(key)
        if reason is not None and not self._set_aside(key, reason, locked=False):
            raise StoreError(f"artifact {self.path(key)} is damaged ({reason}); rerun the job to rebuild it")
        return json.loads(path.read_text(encoding="utf-8"))

    def get_or_build(
        self,
        spec: ArtifactSpec,
        build: Callable[[Path, Path], Mapping[str, Any] | None],
        *,
        config: Any = None,
        wait: bool = True,
    ) -> Path:
        """Return the finished artifact of ``spec``, building it once if needed.

        Args:
            spec: stage, determining fields and input keys.
            build: ``build(out_dir, work_dir) -> extra manifest fields`` writes the artifact's files into
                ``out_dir`` (a fresh temporary folder); ``work_dir`` keeps resumable state across attempts.
            config: the resolved config subtree to record in the manifest (defaults to ``spec.fields``).
            wait: when another process holds the key's lock, wait for it (True) or raise TimeoutError (False).

        Returns:
            The artifact folder, which holds ``manifest.json``.

        Raises:
            TimeoutError: ``wait=False`` and another process is building the key.
            StoreError: a damaged artifact of ``key`` cannot be set aside (:meth:`is_done`).
            Whatever ``build`` raises; nothing is then left that reads as finished.

        The manifest records ``files`` (:func:`mixgap.core.digests.inventory`, taken after the build and before the
        rename), ``wall_s`` (the build) and ``digest_s`` (the inventory).
        """
        key = spec.key
        if self._finished(key):
            return self.path(key)
        with self.holding(key, wait=wait):
            if self._finished(key, locked=True):  # built by the process we waited for
                return self.path(key)
            tmp_root = self.root / ".tmp"
            tmp_root.mkdir(parents=True, exist_ok=True)
            for stale in tmp_root.glob(f"{key}.*"):  # left by a killed writer; we hold the lock
                shutil.rmtree(stale, ignore_errors=True)
            tmp = tmp_root / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            started = time.time()
            try:
                extra = build(tmp, self.work_dir(key)) or {}
                wall = round(time.time() - started, 3)
                files = filedigests.inventory(tmp, skip=(MANIFEST,))
                manifest = {
                    "key": key,
                    "stage": spec.stage,
                    "inputs": list(spec.inputs),
                    "config": spec.fields if config is None else config,
                    **environment_facts(),
                    "started": started,
                    "finished": time.time(),
                    "wall_s": wall,
                    "digest_s": round(time.time() - started - wall, 3),
                    **dict(extra),
                    "files": files,
                }
                write_json_atomic(tmp / MANIFEST, manifest)
                final = self.path(key)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, final)
                filedigests.remember(final, files)
                self.built.add(key)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(self.root / ".work" / key, ignore_errors=True)
            return final

    def _owner_path(self, key: str) -> Path:
        return self.root / ".locks" / f"{key}.owner.json"

    def owner(self, key: str) -> dict[str, Any]:
        """Who holds ``key``'s lock: ``{"pid", "host", "since"}`` from the lock's sidecar file ({} if unknown)."""
        try:
            return json.loads(self._owner_path(key).read_text())
        except (OSError, ValueError):
            return {}

    @contextmanager
    def holding(self, key: str, *, wait: bool = True) -> Iterator[None]:
        """Hold ``key``'s file lock; while another process holds it, log who and keep a heartbeat.

        Logs ``waiting for <key> being built by pid N on host H`` once, then ``still waiting for <key> ...
        (T s)`` every :attr:`heartbeat_s`; the seconds waited are added to :attr:`wait_s` (the pipeline counts
        them as ``wait.<stage>``, apart from building). While held, ``.locks/<key>.owner.json`` names this
        process (pid, host, since) for the others.

        Raises:
            TimeoutError: ``wait=False`` and another process holds the lock.
        """
        lock = self.lock(key)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not wait:
                raise
            start = time.monotonic()
            who = self.owner(key)
            log.warning("waiting for %s being built by pid %s on host %s", key, who.get("pid", "?"), who.get("host", "?"))
            while True:
                try:
                    lock.acquire(timeout=self.heartbeat_s)
                    break
                except Timeout:
                    who = self.owner(key)
                    log.warning("still waiting for %s being built by pid %s on host %s (%.0f s)", key,
                                who.get("pid", "?"), who.get("host", "?"), time.monotonic() - start)
            self.wait_s += time.monotonic() - start
        try:
            write_json_atomic(self._owner_path(key), {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
            yield
        finally:
            self._owner_path(key).unlink(missing_ok=True)
            lock.release()
