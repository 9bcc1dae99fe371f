"""Deletes what services declare prunable (`Prunable`: e.g. a log per task try) once it is old
enough, so a stack kept up for weeks does not fill its disk.

`up` prunes once; while the stack runs, supervisord runs this module as an event listener
woken by its hourly TICK_3600 event (supervisord's own timer: no extra scheduler, no loop of
ours that could drift or die silently; a crash is restarted like any program).

The listener idles all day, so it imports the standard library only: supervisor's
`childutils` (its client side of the same three-line protocol) and the engine's records
(httpx) would triple its memory, to about 24 MB.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

LISTENER = "h2ops-housekeeping"  # its name in supervisord's config
EVENT = "TICK_3600"


@dataclass(frozen=True)
class Prunable:
    """Files a service writes and never deletes (e.g. a log per task try): those matching
    `pattern` under `folder` and older than `days` are deleted by the stack, on `up` and hourly
    while it runs, then the folders they leave empty. A service declares them in its record
    (`Service.prunable`)."""

    folder: Path
    days: float
    pattern: str = "*"


@dataclass
class Pruned:
    files: int = 0
    bytes: int = 0
    folders: int = 0


def prune(rules: Iterable[Prunable], now: float | None = None) -> Pruned:
    """Delete each rule's matching regular files older than its age (by modification time),
    then the folders under its folder that this left empty. Symlinks are never followed.

    A folder is removed only if it is empty and either this pass emptied it or it is itself
    older than the age: a folder a service has just made for a new file is left alone.
    """
    now = time.time() if now is None else now
    done = Pruned()
    for rule in rules:
        if rule.days <= 0:
            raise ValueError(f"{rule.folder}: prune age {rule.days!r} days must be > 0")
        cutoff = now - rule.days * 86400
        emptied: set[str] = set()
        for folder, _dirs, files in os.walk(rule.folder, topdown=False):
            for name in files:
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                    if not stat.S_ISREG(info.st_mode) or info.st_mtime >= cutoff:
                        continue
                    if not fnmatch(name, rule.pattern):
                        continue
                    os.unlink(path)
                except OSError:  # gone meanwhile, or not ours to delete: next time
                    continue
                done.files += 1
                done.bytes += info.st_blocks * 512
                emptied.add(folder)
            if os.path.samefile(folder, rule.folder):
                continue
            try:
                if folder in emptied or os.lstat(folder).st_mtime < cutoff:
                    os.rmdir(folder)  # fails, as it should, unless empty
                    done.folders += 1
                    emptied.add(os.path.dirname(folder))
            except OSError:
                continue
    return done


def encode(rules: Iterable[Prunable]) -> str:
    """The rules as the listener's one argument."""
    return json.dumps([[str(r.folder), r.days, r.pattern] for r in rules])


def decode(argument: str) -> list[Prunable]:
    try:
        rules = json.loads(argument)
        return [Prunable(Path(folder), float(days), pattern) for folder, days, pattern in rules]
    except (ValueError, TypeError) as error:
        raise SystemExit(f"{LISTENER}: bad rules {argument!r}: {error}") from None


def listen(rules: list[Prunable]) -> None:
    """supervisord's event-listener protocol on stdin/stdout: say READY, read a header line
    (`key:value` pairs, `len` the payload's length) and the payload, answer `RESULT 2\\nOK`.
    What it did goes to stderr."""
    while True:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:  # supervisord closed our stdin: it is stopping
            return
        headers = dict(pair.split(":", 1) for pair in line.split())
        sys.stdin.read(int(headers["len"]))
        if headers.get("eventname") == EVENT:
            done = prune(rules)
            if done.files or done.folders:
                print(
                    f"pruned {done.files} file(s), {done.bytes / 2**20:.1f} MB, "
                    f"{done.folders} folder(s)",
                    file=sys.stderr,
                    flush=True,
                )
        sys.stdout.write("RESULT 2\nOK")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit(f"usage: python -m {__name__} RULES_JSON")
    listen(decode(args[0]))


if __name__ == "__main__":
    main()
