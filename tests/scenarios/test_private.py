"""The stack's state is its user's alone: owner-only modes, sockets only in private directories,
and a second local user who can read, connect to and use nothing of a running stack.

Cost: the second-user check runs on the shared stack; a long state path starts Airflow alone
once; the rest start nothing but a few sockets."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import RunningStack, StackRun, require_tool, s3_client, unavailable
from services.engine.layout import StateLayout, UnsafeStateError
from services.engine.supervisor import marked_processes

NOBODY = 65534


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        unavailable("needs root to hand files to another user: run as root (CI does)")


as_root = pytest.mark.usefixtures("root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def deep_layout(tmp_path: Path) -> Iterator[StateLayout]:
    """A state dir whose socket paths would be too long; its private socket dir removed after."""
    layout = StateLayout(tmp_path / ("d" * 100) / "state")
    yield layout
    recorded = layout.recorded_socket_dir()
    if recorded is not None:
        shutil.rmtree(recorded)


def test_long_state_path_puts_sockets_in_one_recorded_private_dir(
    deep_layout: StateLayout,
) -> None:
    supervisor = deep_layout.supervisor_socket
    assert len(str(supervisor)) <= 100
    private = supervisor.parent
    assert private.parent == Path(tempfile.gettempdir())
    assert mode(private) == 0o700 and private.stat().st_uid == os.geteuid()
    assert mode(deep_layout.root) == 0o700
    assert mode(deep_layout.socket_dir_record) == 0o600
    # A later command (a new layout) finds the same directory.
    again = StateLayout(deep_layout.root)
    assert again.socket("airflow-preload") == private / "airflow-preload.sock"
    assert again.supervisor_socket == supervisor


def test_a_socket_dir_opened_up_or_swapped_is_refused(deep_layout: StateLayout) -> None:
    private = deep_layout.socket_dir()
    private.chmod(0o755)
    with pytest.raises(UnsafeStateError) as error:
        deep_layout.socket_dir()
    message = str(error.value)
    assert f"{private} is open to other users (mode 0755)" in message
    assert f"delete {deep_layout.socket_dir_record}" in message
    private.rmdir()
    elsewhere = Path(tempfile.mkdtemp())
    try:
        private.symlink_to(elsewhere)  # someone put a link where the directory was
        with pytest.raises(UnsafeStateError, match="is not a directory"):
            deep_layout.socket_dir()
    finally:
        private.unlink()
        elsewhere.rmdir()


@as_root
def test_a_socket_dir_of_another_user_is_refused(deep_layout: StateLayout) -> None:
    private = deep_layout.socket_dir()
    os.chown(private, NOBODY, NOBODY)
    try:
        with pytest.raises(UnsafeStateError, match=f"{private} belongs to"):
            deep_layout.socket_dir()
    finally:
        os.chown(private, os.geteuid(), os.getegid())  # so that it is removed after


def test_a_socket_dir_that_is_gone_is_replaced_by_a_new_private_one(
    deep_layout: StateLayout,
) -> None:
    first = deep_layout.socket_dir()
    first.rmdir()  # a reboot cleared /tmp
    second = deep_layout.socket_dir()
    assert second != first and mode(second) == 0o700
    assert deep_layout.recorded_socket_dir() == second


def test_short_state_path_keeps_sockets_in_the_state_dir(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path / "s")
    assert layout.supervisor_socket == tmp_path / "s" / "supervisor.sock"
    assert not layout.root.exists(), "asking for a socket path creates nothing"


def test_state_dir_that_others_can_write_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(UnsafeStateError) as error:
        StateLayout(state).make_private()
    assert f"{state} can be written by other users (mode 0777)" in str(error.value)
    assert f"chmod go-w {state}" in str(error.value)


@as_root
def test_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    with pytest.raises(UnsafeStateError, match=f"{state} belongs to .* H2OPS_STATE_DIR"):
        StateLayout(state).make_private()


def test_make_private_closes_state_written_before(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "logs").mkdir(parents=True)
    old = state / "logs" / "old.log"
    old.write_text("x")
    for path, loose in ((state, 0o755), (state / "logs", 0o755), (old, 0o644)):
        path.chmod(loose)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    (state / "link").symlink_to(outside)
    StateLayout(state).make_private()
    assert (mode(state), mode(state / "logs"), mode(old)) == (0o700, 0o700, 0o600)
    assert mode(outside) == 0o755, "what a symlink points to is not the state's to change"


# -- a second local user against a running stack ------------------------------------------------


@pytest.fixture(scope="module")
def other_user() -> Iterator[pwd.struct_passwd]:
    """A throwaway local user, removed after (also when the test fails)."""
    if os.geteuid() != 0:
        unavailable("creates a second local user: run as root (e.g. in CI: .ci/run)")
    require_tool("useradd", "apt-get install -y passwd")
    name = f"h2ops-probe-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def as_user(user: pwd.struct_passwd, probe: Callable[[], object]) -> Any:
    """Run probe in a fork that became user (no exec: the interpreter may sit in root's home),
    and return what it returned (JSON)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            try:
                result = probe()
            except BaseException as error:
                result = {"probe failed": repr(error)}
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        output = reader.read()
    os.waitpid(pid, 0)
    return json.loads(output)


def try_each(paths: list[Path]) -> Callable[[], dict[str, str]]:
    """For each path, what this user gets: a file is opened, a socket connected to."""

    def probe() -> dict[str, str]:
        outcome = {}
        for path in paths:
            try:
                if path.name.endswith(".sock"):
                    with socket.socket(socket.AF_UNIX) as client:
                        client.connect(str(path))
                    outcome[str(path)] = "connected"
                else:
                    with path.open("rb") as handle:
                        handle.read(1)
                    outcome[str(path)] = "read"
            except PermissionError:
                outcome[str(path)] = "denied"
            except OSError as error:
                outcome[str(path)] = f"{type(error).__name__}: {error}"
        return outcome

    return probe


@pytest.mark.stack
def test_a_second_user_can_read_connect_to_and_use_nothing(
    stack: RunningStack, other_user: pwd.struct_passwd
) -> None:
    """On the shared stack, whose temp dir others may traverse (0711): what stops them is the
    stack's own modes, not pytest's private temp dir."""
    s3 = s3_client(stack.s3_endpoint, stack.s3_access_key, stack.s3_secret_key)
    s3.put_object(Bucket="data", Key="private/object.txt", Body=b"water")
    state, env_file = Path(stack.state_dir), stack.run.base / "stack.env"

    entries = [state, *sorted(state.rglob("*"))]
    files = [p for p in entries if not p.is_symlink() and not p.is_dir()]
    names = {p.name for p in files}
    expected = {"airflow.db", "mlflow.db", "object.txt", "mlflow.log", "supervisord.conf"}
    assert expected <= names, sorted(names)
    assert {"supervisor.sock", "airflow-preload.sock"} <= names
    html = [p for p in files if p.name.startswith("jpserver-") and p.name.endswith("-open.html")]
    assert html and stack.jupyter_token in html[0].read_text(), "the file holds the token"

    # The other user reaches the state dir (its parents let them through) but no further.
    seen = as_user(other_user, lambda: os.stat(state).st_mode)
    assert stat.S_ISDIR(int(seen))
    outcome = as_user(other_user, try_each([*files, env_file]))
    assert outcome and set(outcome.values()) == {"denied"}, {
        path: result for path, result in outcome.items() if result != "denied"
    }

    # The stack's own modes: nothing under the state dir is open to group or others.
    loose = [f"{mode(p):04o} {p}" for p in entries if not p.is_symlink() and mode(p) & 0o077]
    assert not loose, loose
    assert mode(state) == 0o700 and mode(env_file) == 0o600

    # Nor does the token show anywhere they can look: the processes' command lines are
    # public, their environments are not.
    pids = [process.pid for process in marked_processes(state)]
    assert pids

    def look_for_token() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {"cmdline": [], "environ": []}
        for pid in pids:
            for name in found:
                with contextlib.suppress(PermissionError, FileNotFoundError, ProcessLookupError):
                    if stack.jupyter_token in Path(f"/proc/{pid}/{name}").read_bytes().decode(
                        errors="replace"
                    ):
                        found[name].append(str(pid))
        return found

    assert as_user(other_user, look_for_token) == {"cmdline": [], "environ": []}
    assert look_for_token()["environ"], "the probe finds the token where the owner can look"


@pytest.mark.stack
def test_a_long_state_path_runs_with_its_sockets_in_the_private_dir(tmp_path: Path) -> None:
    run = StackRun(tmp_path / ("d" * 90))
    layout = StateLayout(run.base / "state")
    private = None
    try:
        run.up("airflow")  # supervisord's socket and the preload server's
        private = layout.recorded_socket_dir()
        assert private is not None and mode(private) == 0o700
        assert sorted(p.name for p in private.iterdir()) == [
            "airflow-preload.sock",
            "supervisor.sock",
        ]
        assert not list(layout.root.glob("*.sock"))
        airflow = run.status().service("airflow")
        assert airflow.healthy, airflow
    finally:
        cleaned = run.cli("clean", "--yes", timeout=120)  # stops it, deletes its state
    assert cleaned.returncode == 0, cleaned.stderr
    assert not private.exists(), "clean removes the private socket dir too"
