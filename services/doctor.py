"""`h2ops doctor` (`nox -s doctor`): is this machine ready for `up`, and if not, what to do.

Every check reads what `up` itself would use: the plan (settings, S3 backend, state dir) and the
services the catalog declares from it (their ports and the executables their programs run), so
a new service is checked without a line here. A FAIL is something `up` would fail on; a WARN
is worth knowing (little memory, a pin that differs, processes a killed supervisor left).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psutil

from services.bootstrap import locked_version, uv_command
from services.catalog import declare_services
from services.engine.causes import existing, space_line
from services.engine.errors import StackError
from services.engine.layout import UnsafeStateError
from services.engine.ports import port_holder, port_is_free
from services.engine.records import Declared, Service
from services.engine.supervisor import Supervisor, marked_processes
from services.plan import StackPlan
from services.settings import SettingsError, StackSettings

GIB = 1024**3
# The stack idles at about 0.8 GB (README, Performance); tasks and notebooks need room beside it.
MEMORY_FAIL, MEMORY_WARN = 1 * GIB, 2 * GIB
DISK_FAIL, DISK_WARN = 1 * GIB, 5 * GIB


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    """One check's answer: what was checked, the verdict, what was seen and what to do."""

    check: str
    verdict: Verdict
    detail: str
    fix: str = ""


def examine(
    load: Callable[[], StackSettings], root: Path, nox_version: str | None = None
) -> list[Finding]:
    """Every check, in the order `up` meets them; settings that do not load end it early."""
    try:
        plan = StackPlan.of(load(), root)
    except SettingsError as error:
        return [Finding("settings", Verdict.FAIL, str(error), "fix the value it names")]
    findings = [Finding("settings", Verdict.OK, f"state dir {plan.layout.root}")]
    findings += _versions(root, nox_version)
    running = Supervisor(plan.layout).is_running()
    findings += [_memory(running), _disk(plan.layout.root), _state_dir(plan)]
    findings.append(_leftovers(plan, running))
    declared, failure = _declared(plan)
    if failure is not None:
        return [*findings, failure]
    findings.append(
        Finding("S3 backend", Verdict.OK, f"{plan.s3_backend} ({plan.s3_backend_reason})")
    )
    findings += [_executables(service) for service in declared]
    findings += _ports(plan, [s for s in declared if isinstance(s, Service)])
    return findings


def _versions(root: Path, nox_version: str | None) -> list[Finding]:
    pinned = (root / ".python-version").read_text().strip()
    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = [
        Finding(
            "Python",
            Verdict.OK if have == pinned else Verdict.FAIL,
            f"{have} ({sys.executable}); .python-version says {pinned}",
            "" if have == pinned else "delete .venv and run `python3 noxfile.py -s up` again",
        )
    ]
    lock = root / "uv.lock"
    tools = {"nox": nox_version or importlib.metadata.version("nox"), "uv": _uv_version()}
    for tool, version in tools.items():
        wanted = locked_version(tool, lock)
        same = version == wanted
        found.append(
            Finding(
                tool,
                Verdict.OK if same else Verdict.WARN,
                f"{version}; uv.lock pins {wanted}",
                "" if same else "use `python3 noxfile.py -s SESSION`: it runs the pinned one",
            )
        )
    return found


def _uv_version() -> str:
    try:
        command = uv_command()
    except SystemExit:  # uv_command explains a missing uv this way; here it is a finding
        return "not found"
    uv = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=30)
    return uv.stdout.split()[1] if uv.returncode == 0 else "not found"


def _memory(running: bool) -> Finding:
    available = psutil.virtual_memory().available
    detail = f"{available / GIB:.1f} GiB available"
    if running:
        return Finding("memory", Verdict.OK, f"{detail} (the stack runs already)")
    return _against_limits(
        "memory",
        available,
        detail,
        (MEMORY_FAIL, "close programs: the stack needs ~1 GiB"),
        (MEMORY_WARN, "tasks and notebooks may run short"),
    )


def _disk(state_dir: Path) -> Finding:
    """The free space of the state dir's filesystem: when it fills, programs die on it."""
    where = existing(state_dir)
    free = shutil.disk_usage(where).free
    return _against_limits(
        "disk",
        free,
        f"{space_line(where)} on the filesystem of {where}",
        (DISK_FAIL, "free space, or set H2OPS_STATE_DIR to a larger filesystem"),
        (DISK_WARN, "runs, models and logs grow here; programs die when it is full"),
    )


def _against_limits(
    check: str, amount: int, detail: str, fail: tuple[int, str], warn: tuple[int, str]
) -> Finding:
    """FAIL below the first limit, WARN below the second, each with what to do."""
    for verdict, (limit, fix) in ((Verdict.FAIL, fail), (Verdict.WARN, warn)):
        if amount < limit:
            return Finding(check, verdict, detail, fix)
    return Finding(check, Verdict.OK, detail)


def _state_dir(plan: StackPlan) -> Finding:
    if not plan.layout.root.exists():
        return Finding("state dir", Verdict.OK, "not created yet (`up` creates it owner-only)")
    try:
        plan.layout.check()
    except UnsafeStateError as error:
        return Finding("state dir", Verdict.FAIL, str(error), "do what the message says")
    return Finding("state dir", Verdict.OK, "yours alone")


def _leftovers(plan: StackPlan, running: bool) -> Finding:
    """Processes marked with this state dir (H2OPS_STACK) while no supervisord runs them."""
    if running:
        return Finding("leftover processes", Verdict.OK, "none (the stack's supervisor runs)")
    left = marked_processes(plan.layout.root)
    if not left:
        return Finding("leftover processes", Verdict.OK, "none")
    pids = ", ".join(str(process.pid) for process in sorted(left, key=lambda p: p.pid))
    return Finding(
        "leftover processes",
        Verdict.WARN,
        f"{len(left)} processes of this stack run without their supervisor: {pids}",
        "`nox -s down` stops them (`up` does too, first)",
    )


def _declared(plan: StackPlan) -> tuple[list[Declared], Finding | None]:
    try:
        return declare_services(plan), None
    except StackError as error:
        return [], Finding("services", Verdict.FAIL, str(error), "do what the message says")


def _executables(service: Declared) -> Finding:
    name = f"service {service.name}"
    if not isinstance(service, Service):
        return Finding(name, Verdict.OK, f"switched off: {service.reason}")
    needed = [path for program in service.programs for path in program.executables]
    missing = [path for path in needed if shutil.which(path) is None]
    if missing:
        return Finding(
            name,
            Verdict.FAIL,
            f"missing: {', '.join(missing)}",
            service.install_hint
            or "run `uv sync --locked` (a session does), or install what is named",
        )
    return Finding(name, Verdict.OK, ", ".join(sorted({Path(p).name for p in needed})))


def _ports(plan: StackPlan, services: list[Service]) -> list[Finding]:
    host = plan.settings.host
    ours = {process.pid for process in marked_processes(plan.layout.root)}
    found = []
    for service in services:
        for variable, port in service.ports.items():
            check = f"port {port} ({variable})"
            if port_is_free(host, port):
                found.append(Finding(check, Verdict.OK, f"free on {host}"))
                continue
            pid, process = port_holder(port)
            if pid in ours:
                found.append(Finding(check, Verdict.OK, f"held by this stack ({service.name})"))
                continue
            holder = f"pid {pid} ({process})" if pid else "another process"
            found.append(
                Finding(
                    check,
                    Verdict.FAIL,
                    f"taken by {holder}",
                    f"stop it, or set {variable} to a free port in .env",
                )
            )
    return found
