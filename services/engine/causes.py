"""Why a program died, in one line a person can act on: read from the end of its log and from
the state dir's filesystem, for any program.

A full disk is named as such ("state dir's filesystem is full: 0.9 MB free of 600 MB"): the
traceback that says so is otherwise buried in the program's log, and may not even be there,
since the log lives on the full filesystem too. So a failed program on a filesystem that is
full now is put down to it even when its log is silent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from services.engine.layout import tail

# What a full disk looks like in a log: the OS's words (errno 28), SQLite's, rclone's.
FULL_DISK_SIGNS = (
    "no space left on device",
    "enospc",
    "[errno 28]",
    "database or disk is full",
    "file too big for remaining disk space",
)
# Free space below which a filesystem counts as full: at most 64 MiB, at most 2 % of its size.
FULL_BELOW_BYTES = 64 * 1024**2
FULL_BELOW_SHARE = 0.02
LOG_LINES = 40
MB = 1000**2


def existing(path: Path) -> Path:
    """The path, or its nearest parent that exists (a state dir not yet created)."""
    return next(p for p in (path, *path.parents) if p.exists())


def space_line(path: Path) -> str:
    """e.g. "0.9 MB free of 600 MB": the free space of the filesystem that holds `path`."""
    usage = shutil.disk_usage(existing(path))
    return f"{_mb(usage.free)} free of {_mb(usage.total)}"


def is_full(path: Path) -> bool:
    usage = shutil.disk_usage(existing(path))
    return usage.free < min(FULL_BELOW_BYTES, FULL_BELOW_SHARE * usage.total)


def full_line(path: Path) -> str:
    """e.g. "state dir's filesystem is full: 0.9 MB free of 600 MB"; empty when it is not."""
    return f"state dir's filesystem is full: {space_line(path)}" if is_full(path) else ""


def _mb(amount: int) -> str:
    return f"{amount / MB:.1f} MB" if amount < 10 * MB else f"{amount / MB:.0f} MB"


def death_cause(log: Path, state_dir: Path, fallback: str = "") -> str:
    """One line on why the program whose log this is stopped running.

    A full disk (said by its log, or the state dir's filesystem full now) first; else the
    last line of its log that names an error; else `fallback` (supervisord's words)."""
    lines = tail(log, LOG_LINES)
    logged = any(sign in line.lower() for line in lines for sign in FULL_DISK_SIGNS)
    if full := full_line(state_dir):
        return full
    if logged:
        return f"state dir's filesystem was full (now {space_line(state_dir)})"
    for line in reversed(lines):
        text = line.strip()
        if "error" in text.lower() or "exception" in text.lower():
            return text[:200]
    return fallback
