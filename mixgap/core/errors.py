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


class MixgapError(Exception):
    """An error a user can fix, reported as one line per reason (:attr:`reasons`; one unless a subclass has several)."""

    @property
    def reasons(self) -> list[str]:
        """The one-line reasons of the error: its message."""
        return [str(self)]


class ConfigError(MixgapError, ValueError):
    """A config value that is out of range, unknown, or contradicts another; the message is one line."""


def error_lines(err: MixgapError) -> list[str]:
    """The lines ``launch.py`` prints for ``err``: one per reason, ``mixgap: error: <reason>``."""
    return [f"mixgap: error: {reason}" for reason in err.reasons]
