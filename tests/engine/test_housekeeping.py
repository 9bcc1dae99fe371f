"""Housekeeping: what a service declares prunable is deleted once old, on real files; the
listener speaks supervisord's event protocol; every log supervisord writes is bounded."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from supervisor.events import getEventNameByType
from supervisor.options import ServerOptions

from devtools.harness import free_ports
from services.catalog import declare_services
from services.engine import housekeeping, rearm
from services.engine.housekeeping import Pruned, prune
from services.engine.layout import StateLayout
from services.engine.processes import poll_until
from services.engine.records import Program, Prunable, Service, http_ok
from services.engine.stack import Stack
from services.engine.status import ProgramState
from services.engine.supervisor import (
    LOG_BACKUPS,
    STACK_MARKER,
    marked_processes,
    render_config,
)
from services.plan import StackPlan
from services.settings import SettingsError, StackSettings, load_settings

DAY = 86400.0


def aged(path: Path, days: float, text: str = "x" * 5000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    then = time.time() - days * DAY
    os.utime(path, (then, then))
    return path


def task_logs(root: Path) -> dict[str, Path]:
    """A task log folder as Airflow lays it out, some of it older than a week."""
    run = root / "dag_id=example_training" / "run_id=manual__old"
    return {
        "old": aged(run / "task_id=train" / "attempt=1.log", 9),
        "old_sibling": aged(run / "task_id=generate" / "attempt=1.log", 8),
        "new": aged(root / "dag_id=example_training" / "run_id=manual__new" / "attempt=1.log", 1),
        "old_other_kind": aged(run / "task_id=train" / "notes.txt", 9),
        "outside": aged(root.parent / "outside.log", 30),
    }


def test_prune_deletes_old_matching_files_and_the_folders_they_empty(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    files = task_logs(root)
    (root / "latest").symlink_to(files["outside"])  # the DAG processor's kind of link
    fresh_empty = root / "dag_id=example_training" / "run_id=just_made"
    fresh_empty.mkdir()

    done = prune([Prunable(root, 7, "*.log")])

    assert done.files == 2 and done.bytes >= 2 * 4096
    assert not files["old"].exists() and not files["old_sibling"].exists()
    assert files["new"].exists() and files["old_other_kind"].exists()
    assert files["outside"].exists(), "a symlink is not followed out of the folder"
    assert (root / "latest").is_symlink()
    assert not (
        root / "dag_id=example_training" / "run_id=manual__old" / "task_id=generate"
    ).exists()
    assert (root / "dag_id=example_training" / "run_id=manual__old" / "task_id=train").is_dir()
    assert fresh_empty.is_dir(), "a folder Airflow just made for a new log is left alone"
    assert root.is_dir()
    assert prune([Prunable(root, 7, "*.log")]) == Pruned(), "a second pass finds nothing"
    assert prune([Prunable(tmp_path / "never-made", 7)]) == Pruned()


def test_prune_refuses_a_rule_without_an_age(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"prune age 0 days must be > 0"):
        prune([Prunable(tmp_path, 0)])


@pytest.mark.stack  # starts the listener as supervisord would
def test_the_listener_prunes_on_supervisords_hourly_tick(tmp_path: Path) -> None:
    files = task_logs(tmp_path / "logs")
    rules = housekeeping.encode([Prunable(tmp_path / "logs", 7, "*.log")])
    listener = subprocess.Popen(
        [sys.executable, "-m", housekeeping.__name__, rules],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert listener.stdin and listener.stdout and listener.stderr
    try:
        assert listener.stdout.readline() == "READY\n"
        idle = psutil.Process(listener.pid).memory_full_info().pss
        assert idle < 16 * 2**20, f"it idles all day: {idle / 2**20:.0f} MB is too much"
        for event in ("PROCESS_STATE_RUNNING", housekeeping.EVENT):
            payload = "when:3600"
            listener.stdin.write(
                f"ver:3.0 server:h2ops serial:1 pool:{housekeeping.LISTENER} poolserial:1 "
                f"eventname:{event} len:{len(payload)}\n{payload}"
            )
            listener.stdin.flush()
            assert listener.stdout.readline() == "RESULT 2\n"
            assert listener.stdout.read(2) == "OK"
            assert listener.stdout.readline() == "READY\n"
            if event != housekeeping.EVENT:
                assert files["old"].exists(), "only the hourly tick prunes"
        assert not files["old"].exists() and files["new"].exists()
    finally:
        listener.stdin.close()
        listener.wait(timeout=10)
    assert "pruned 2 file(s)" in listener.stderr.read()


def test_supervisord_bounds_every_log_and_runs_the_listener_hourly(tmp_path: Path) -> None:
    """The config as supervisord's own parser reads it: each log rotates and keeps a few old
    files, the listener is woken by the hourly tick, with the rules each service declared."""
    plan = StackPlan.of(StackSettings(s3_backend="rclone", state_dir=tmp_path / "state"))
    services = [s for s in declare_services(plan) if isinstance(s, Service)]
    programs: list[Program] = [p for s in services for p in s.programs]
    prunable = [rule for s in services for rule in s.prunable]
    assert prunable == [Prunable(plan.layout.service_dir("airflow") / "logs", 14, "*.log")], (
        "Airflow's task logs, kept for the default two weeks"
    )
    config = plan.layout.supervisor_config
    plan.layout.logs.mkdir(parents=True)
    config.write_text(render_config(plan.layout, programs, {STACK_MARKER: "x"}, prunable))
    options = ServerOptions()
    options.configfile = str(config)
    options.process_config(do_usage=False)

    assert 0 < options.logfile_maxbytes <= 10 * 2**20 and options.logfile_backups == LOG_BACKUPS
    groups = {group.name: group for group in options.process_group_configs}
    # The engine's two listeners: pruning (housekeeping) and re-arming (rearm).
    assert set(groups) == {p.name for p in programs} | {housekeeping.LISTENER, rearm.LISTENER}
    for group in groups.values():
        for process in group.process_configs:
            logs = [(process.stdout_logfile, process.stdout_logfile_maxbytes)]
            if not process.redirect_stderr:  # else stderr goes to stdout's file
                logs.append((process.stderr_logfile, process.stderr_logfile_maxbytes))
            for path, maxbytes in logs:
                if path:  # a file: it rotates
                    assert 0 < maxbytes <= 10 * 2**20, (process.name, path)
    listener = groups[housekeeping.LISTENER]
    assert listener.process_configs[0].autostart
    assert [getEventNameByType(event) for event in listener.pool_events] == [housekeeping.EVENT]
    assert housekeeping.decode(shlex.split(listener.process_configs[0].command)[-1]) == (prunable)


def test_retention_setting_rejects_a_bad_value_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2OPS_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("H2OPS_TASK_LOG_RETENTION_DAYS", "0")
    with pytest.raises(SettingsError, match=r"H2OPS_TASK_LOG_RETENTION_DAYS.*'0'.*from 1 to 3650"):
        load_settings(tmp_path)


@pytest.mark.stack  # real supervisord and a stand-in service
def test_the_engine_prunes_for_any_service_that_declares_it(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    files = task_logs(tmp_path / "toy-logs")
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    toy = Service(
        name="toy",
        title="Toy",
        programs=[Program("toy", server)],
        url=url,
        probe=http_ok(url),
        prunable=(Prunable(tmp_path / "toy-logs", 7, "*.log"),),
    )
    engine = Stack(StateLayout(tmp_path / "state"), [toy], {}, "127.0.0.1", 10, tmp_path)
    try:
        assert engine.up() == {"toy": "started"}
        assert not files["old"].exists() and files["new"].exists()

        def listener() -> ProgramState:
            return engine.supervisor.states()[housekeeping.LISTENER].state

        assert poll_until(lambda: listener() is ProgramState.RUNNING, 10), listener()
    finally:
        engine.down()
    assert marked_processes(engine.layout.root) == [], "down stops the listener too"
