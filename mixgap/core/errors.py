"""The errors mixgap reports to a user: one base class, :class:`MixgapError`, and :func:`error_lines`, the one place
that formats them.

Every error a user can fix (a config value, the data, the store, a model or pool that is missing, a backend that is
not installed, a job its preflight refuses) subclasses :class:`MixgapError`; its message is one line that names the
field or file, the value and what is allowed or what to do. ``launch.py`` catches this one type and prints
:func:`error_lines` (exit 2, no traceback). The subclasses live beside the code that raises them (``DataError`` in
:mod:`mixgap.stages.data`, ``PreflightRefused`` in :mod:`mixgap.plan.machine`, ...); :class:`ConfigError` lives here,
the lowest layer, because every layer raises it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path


class MixgapError(Exception):
    """An error a user can fix, reported as one line per reason (:attr:`reasons`; one unless a subclass has several)."""

    @property
    def reasons(self) -> list[str]:
        """The one-line reasons of the error: its message."""
        return [str(self)]


class ConfigError(MixgapError, ValueError):
    """A config value that is out of range, unknown, or contradicts another; the message is one line."""


class FileSystemError(MixgapError):
    """The store or the job folder cannot be written: the disk is full, the file system read-only, or the folder
    not ours (:func:`filesystem_error`); one line naming the path and what to do."""


#: The errnos of a file system that refuses a write: what each is, in words (``os.strerror`` of Linux, lower case).
FILESYSTEM_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                     errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                     errno.EPERM: "operation not permitted"}


def filesystem_error(err: OSError, places: Mapping[str, str | Path]) -> FileSystemError | None:
    """The one line for an ``OSError`` of a full, read-only or forbidden file system (:data:`FILESYSTEM_ERRNOS`):
    the path (``err.filename``, else every folder of ``places``), what happened and what to do, naming the setting
    that moves the place written: ``places`` maps each setting to the folder it places (``{"paths.cache": store,
    "hydra.run.dir": job folder}``). None for any other ``OSError``: it stays a traceback.
    """
    if err.errno not in FILESYSTEM_ERRNOS:
        return None
    path = Path(os.fsdecode(err.filename)).absolute() if err.filename is not None else None
    roots = {setting: Path(folder).expanduser().absolute() for setting, folder in places.items()}
    inside = [s for s, root in roots.items() if path is not None and (path == root or root in path.parents)]
    where = str(path) if path is not None else " or ".join(f"{root} ({s})" for s, root in roots.items())
    fix = {errno.ENOSPC: "free space there", errno.EDQUOT: "free space within your quota",
           errno.EROFS: "remount it writable"}.get(err.errno, "fix its permissions")
    return FileSystemError(f"{where}: {FILESYSTEM_ERRNOS[err.errno]} ({errno.errorcode[err.errno]}); {fix}, or set "
                           f"{' or '.join(inside or roots)} to a folder you can write on a disk with space")


def error_lines(err: MixgapError) -> list[str]:
    """The lines ``launch.py`` prints for ``err``: one per reason, ``mixgap: error: <reason>``."""
    return [f"mixgap: error: {reason}" for reason in err.reasons]
