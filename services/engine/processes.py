"""The two pieces of process machinery the stack needs everywhere, each written once: poll until
a deadline, and stop process groups (ask, wait, then kill).

Standard library only: small programs a service starts many times (a fork server's clients)
import it too, and pay nothing for it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable


def poll_until[T](check: Callable[[], T], timeout: float, interval: float = 0.1) -> T | None:
    """Call `check` until it returns something true, for at most `timeout` seconds.

    Returns that value, or None at the deadline. `check` runs once more at the deadline itself,
    so an answer that comes in time is never lost to the last sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(interval, remaining))


def signal_group(group: int, signum: int) -> bool:
    """Send `signum` to a process group; False when none of it is left for us to signal.

    Signal 0 asks whether the group still has a process. Our own group is never signalled: a
    stop must not take the caller with it.
    """
    try:
        if group == os.getpgrp():
            return False
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_groups(
    groups: Iterable[int], grace: float, reap: Callable[[], object] | None = None
) -> set[int]:
    """SIGTERM each process group, give them `grace` seconds to go, then SIGKILL what is left
    (and wait that long again). Returns the groups that needed the SIGKILL.

    `reap` runs before each look: a caller whose own child leads a group collects it there
    (e.g. `Popen.poll`), so its zombie does not count as still running.
    """
    signalled = {group for group in set(groups) if signal_group(group, signal.SIGTERM)}

    def all_gone() -> bool:
        if reap is not None:
            reap()
        return not any(signal_group(group, 0) for group in signalled)

    if poll_until(all_gone, grace):
        return set()
    killed = {group for group in signalled if signal_group(group, signal.SIGKILL)}
    poll_until(all_gone, grace)
    return killed
