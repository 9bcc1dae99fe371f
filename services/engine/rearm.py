"""The re-arming listener: a supervisord event listener the engine adds to every stack.

supervisord gives up on a program that fails to start a few times in a row (FATAL) and never
tries again; a full disk, a database that was briefly away or a port held for a minute would
leave it dead until someone runs `restart`. This listener hears PROCESS_STATE_FATAL and starts
the program again after a growing delay (RETRY_DELAYS, then every MAX_DELAY seconds), for as
long as it stays FATAL: once the cause is gone the program comes back by itself. A program
stopped meanwhile (`down`, a failed `up`: both leave it STOPPED) is left alone, and one that has
stayed up for SETTLED_SECONDS starts its count afresh.

What it is doing is written to a record in the state dir (`retries.json`) that `status` reads.
The record is allocated once, at a fixed size, and rewritten in place, so it can still be
written when the disk it lives on is full. Standard library and supervisor only: it is a small
program that starts with every stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import xmlrpc.client
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from services.engine.layout import write_private

# The program's name in supervisord; `status` and `down` leave it out of what they list.
LISTENER = "h2ops-rearm"
EVENTS = ("PROCESS_STATE_FATAL", "PROCESS_STATE_RUNNING", "PROCESS_STATE_STOPPED", "TICK_5")
RETRY_DELAYS = (5.0, 10.0, 20.0, 40.0)
MAX_DELAY = 60.0
SETTLED_SECONDS = 60.0
RECORD_BYTES = 16 * 1024


def delay_before(attempt: int) -> float:
    """Seconds to wait before re-arm number `attempt` (1-based): growing, then bounded."""
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, not {attempt!r}")
    return RETRY_DELAYS[attempt - 1] if attempt <= len(RETRY_DELAYS) else MAX_DELAY


@dataclass
class Retry:
    """One program being re-armed: which attempt is next or running, and when it is due
    (`next_try`, seconds since the epoch; None while the attempt runs)."""

    attempt: int
    next_try: float | None
    running_since: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Retry:
        return cls(int(data["attempt"]), data.get("next_try"), data.get("running_since"))


def read_record(path: Path) -> dict[str, Retry]:
    """What the listener last recorded; empty when there is no record or it cannot be read."""
    try:
        data = json.loads(path.read_bytes().rstrip(b"\0 \n") or b"{}")
        return {name: Retry.from_json(entry) for name, entry in data.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


class Record:
    """The listener's record file: allocated once, then overwritten in place."""

    def __init__(self, path: Path) -> None:
        self.fd: int | None = None
        try:
            write_private(path, "{}".ljust(RECORD_BYTES))  # its blocks, allocated now
            self.fd = os.open(path, os.O_RDWR)
        except OSError as error:  # a full disk already: keep going without a record
            print(f"{LISTENER}: no record at {path}: {error}", file=sys.stderr)

    def write(self, retries: dict[str, Retry]) -> None:
        if self.fd is None:
            return
        text = json.dumps({name: retry.to_json() for name, retry in retries.items()}).encode()
        if len(text) > RECORD_BYTES:
            return
        with contextlib.suppress(OSError):
            os.pwrite(self.fd, text.ljust(RECORD_BYTES), 0)


class Rearmer:
    """The listener's state: the programs it re-arms. `handle` takes one event; `due` starts
    what is due. `supervisor` is supervisord's XML-RPC namespace."""

    def __init__(self, supervisor: Any, record: Record) -> None:
        self.supervisor, self.record = supervisor, record
        self.retries: dict[str, Retry] = {}

    def handle(self, event: str, payload: str, now: float) -> None:
        fields = dict(word.split(":", 1) for word in payload.split("\n", 1)[0].split())
        name = fields.get("processname", "")
        if name == LISTENER:
            return
        if event == "PROCESS_STATE_FATAL":
            attempt = self.retries[name].attempt + 1 if name in self.retries else 1
            self.retries[name] = Retry(attempt, now + delay_before(attempt))
            print(
                f"{LISTENER}: {name} is FATAL; attempt {attempt} in {delay_before(attempt):.0f} s",
                file=sys.stderr,
            )
        elif event == "PROCESS_STATE_RUNNING" and name in self.retries:
            self.retries[name].running_since = now
        elif event == "PROCESS_STATE_STOPPED":
            self.retries.pop(name, None)
        elif event.startswith("TICK"):
            self.due(now)
        self.record.write(self.retries)

    def due(self, now: float) -> None:
        for name, retry in list(self.retries.items()):
            if retry.running_since is not None and now - retry.running_since >= SETTLED_SECONDS:
                del self.retries[name]  # back for good: a later failure starts at attempt 1
            elif retry.next_try is not None and now >= retry.next_try:
                self.start(name, retry)

    def start(self, name: str, retry: Retry) -> None:
        """Start it if it is still FATAL; anything else means someone else decided."""
        try:
            if self.supervisor.getProcessInfo(name)["statename"] != "FATAL":
                del self.retries[name]
                return
            retry.next_try, retry.running_since = None, None
            self.supervisor.startProcess(name, False)
            print(f"{LISTENER}: started {name} (attempt {retry.attempt})", file=sys.stderr)
        except (OSError, xmlrpc.client.Error) as error:
            print(f"{LISTENER}: could not start {name}: {error}", file=sys.stderr)
            retry.next_try = time.time() + delay_before(retry.attempt)


def serve(record_path: Path, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    """supervisord's event listener protocol, until supervisord closes our stdin."""
    from supervisor import childutils

    rearmer = Rearmer(childutils.getRPCInterface(os.environ).supervisor, Record(record_path))
    rearmer.record.write({})
    while True:
        childutils.listener.ready(stdout)
        line = stdin.readline()
        if not line:
            return
        headers = childutils.get_headers(line)
        payload = stdin.read(int(headers["len"]))
        rearmer.handle(headers["eventname"], payload, time.time())
        childutils.listener.ok(stdout)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m {__spec__.name} RECORD_FILE")
    serve(Path(sys.argv[1]))
