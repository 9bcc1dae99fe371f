"""Airflow's components forked from one process that imported Airflow once.

Started as four interpreters, the api-server, scheduler, dag-processor and triggerer each import
the same ~2,000 modules: about 8 CPU-s and 100 MB apiece. Here one server imports them, freezes
its heap and forks a component per request, so the forks share those pages copy-on-write.
Each component is still its own supervisord program: a small client (stdlib only) asks the
server for the fork, hands over its stdin/stdout/stderr, forwards stop signals to the
component's process group and exits with the component's exit code, so supervisord logs,
restarts and stops it as before.

    python -m services.airflow_preload serve SOCKET
    python -m services.airflow_preload run SOCKET [--connect-timeout S] -- scheduler ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Entry points of the four components and the modules they load once running; importing these
# pulls in about 95 % of what each component ends up holding (measured with sys.modules).
PRELOAD = (
    "airflow.__main__",
    "airflow.cli.commands.api_server_command",
    "airflow.cli.commands.scheduler_command",
    "airflow.cli.commands.dag_processor_command",
    "airflow.cli.commands.triggerer_command",
    "airflow.api_fastapi.main",
    "airflow.jobs.scheduler_job_runner",
    "airflow.jobs.triggerer_job_runner",
    "airflow.jobs.dag_processor_job_runner",
    "airflow.dag_processing.manager",
    "airflow.dag_processing.processor",
    "airflow.executors.local_executor",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
    "airflow.utils.db",
    "alembic.runtime.migration",
    "uvicorn.main",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn.loops.uvloop",
)
STDIO = (0, 1, 2)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
KILL_AFTER = 10.0  # seconds a component gets after SIGTERM before SIGKILL, when nobody waits
STOP_GRACE = 5.0  # seconds the server waits for components its clients are already stopping
REQUEST_TIMEOUT = 10.0


class PreloadError(RuntimeError):
    """The server cannot be reached or broke the protocol; the message says what to check."""


# -- server ------------------------------------------------------------------------------------


@dataclass
class Component:
    """A forked component and the client connection that asked for it."""

    pid: int
    connection: socket.socket | None
    kill_at: float | None = None  # when to SIGKILL, once it was asked to stop
    killed: bool = False


@dataclass
class ForkServer:
    """Accepts fork requests on a unix socket; returns the request's argv in the forked child."""

    path: Path
    selector: selectors.DefaultSelector = field(default_factory=selectors.DefaultSelector)
    components: dict[int, Component] = field(default_factory=dict)
    leftovers: dict[int, float] = field(default_factory=dict)  # group of a dead component: kill at
    stopping_since: float | None = None

    def serve(self) -> list[str] | None:
        """Run until SIGTERM (returns None) or until this process is a forked child (its argv)."""
        wakeup_read, wakeup_write = socket.socketpair()
        wakeup_write.setblocking(False)
        signal.set_wakeup_fd(wakeup_write.fileno())
        for signum in (signal.SIGCHLD, *STOP_SIGNALS):
            signal.signal(signum, self._on_signal)
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        self.path.chmod(0o600)
        listener.listen()
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(wakeup_read, selectors.EVENT_READ, "wakeup")
        print(f"airflow-preload: serving on {self.path}", flush=True)
        try:
            while not (self.stopping_since is not None and not self.components):
                for key, _ in self.selector.select(self._next_timeout()):
                    if key.data == "accept":
                        argv = self._accept(listener)
                        if argv is not None:  # this is the forked child
                            self._become_child(listener, wakeup_read, wakeup_write)
                            return argv
                    elif key.data == "wakeup":
                        with contextlib.suppress(BlockingIOError):
                            wakeup_read.recv(4096)
                    else:
                        self._client_closed(key.data)
                self._reap()
                self._enforce_deadlines()
        finally:
            if os.getpid() == self._server_pid:
                self.path.unlink(missing_ok=True)
                for group in self.leftovers:
                    _signal_group(group, signal.SIGKILL)
        return None

    def __post_init__(self) -> None:
        self._server_pid = os.getpid()

    def _grace_over(self) -> bool:
        """Stopping, and the clients had their chance to stop their components themselves."""
        stopping = self.stopping_since
        return stopping is not None and time.monotonic() >= stopping + STOP_GRACE

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum != signal.SIGCHLD and self.stopping_since is None:
            self.stopping_since = time.monotonic()

    def _next_timeout(self) -> float | None:
        """Sleep until something happens, or until the next deadline: no idle wake-ups."""
        deadlines = [
            c.kill_at for c in self.components.values() if c.kill_at is not None and not c.killed
        ]
        deadlines += self.leftovers.values()
        if self.stopping_since is not None and not self._grace_over():
            deadlines.append(self.stopping_since + STOP_GRACE)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _accept(self, listener: socket.socket) -> list[str] | None:
        connection, _ = listener.accept()
        try:
            connection.settimeout(REQUEST_TIMEOUT)
            _, fds, _, _ = socket.recv_fds(connection, 1, len(STDIO))
            with connection.makefile("rb") as reader:
                request = json.loads(reader.readline())
            if len(fds) != len(STDIO) or self.stopping_since is not None:
                raise PreloadError("bad request or stopping")
        except (OSError, ValueError, PreloadError) as error:
            print(f"airflow-preload: refused a request: {error}", flush=True)
            connection.close()
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._client_fds, self._request = fds, request
            self._own_connection = connection
            return ["airflow", *request["argv"]]
        for fd in fds:
            os.close(fd)
        print(f"airflow-preload: airflow {' '.join(request['argv'])} is pid {pid}", flush=True)
        connection.settimeout(None)
        self.components[pid] = Component(pid, connection)
        self.selector.register(connection, selectors.EVENT_READ, pid)
        try:
            connection.sendall(f"{pid}\n".encode())
        except OSError:  # the client is gone already
            self._client_closed(pid)
        return None

    def _become_child(self, *sockets: socket.socket) -> None:
        """Drop everything of the server; take the client's stdio, cwd and environment."""
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, *STOP_SIGNALS):
            signal.signal(signum, signal.SIG_DFL)
        for component in self.components.values():
            if component.connection is not None:
                component.connection.close()
        self.selector.close()
        for sock in (*sockets, self._own_connection):
            sock.close()
        os.setpgrp()  # its own group: stopping it stops its workers too
        for target, fd in zip(STDIO, self._client_fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        with contextlib.suppress(ImportError):
            from setproctitle import setproctitle

            # What `ps` shows, and how the benchmark tells components apart. Before the
            # environment changes: setproctitle finds the title's memory through it.
            setproctitle(" ".join(["airflow", *self._request["argv"]]))
        os.chdir(self._request["cwd"])
        os.environ.clear()
        os.environ.update(self._request["env"])

    def _client_closed(self, pid: int) -> None:
        """A client went away without its component exiting: stop the component."""
        component = self.components.get(pid)
        if component is None or component.connection is None:
            return
        self.selector.unregister(component.connection)
        component.connection.close()
        component.connection = None
        self._terminate(component)

    def _terminate(self, component: Component) -> None:
        if component.kill_at is None:
            _signal_group(component.pid, signal.SIGTERM)
            component.kill_at = time.monotonic() + KILL_AFTER

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            component = self.components.pop(pid, None)
            if component is None:
                continue
            # Whatever it left in its group (LocalExecutor workers, if it was killed) goes too.
            if _signal_group(pid, signal.SIGTERM):
                self.leftovers[pid] = time.monotonic() + KILL_AFTER
            if component.connection is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            self.selector.unregister(component.connection)
            with contextlib.suppress(OSError):
                component.connection.sendall(f"exit {code}\n".encode())
            component.connection.close()

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        if self._grace_over():
            for component in self.components.values():
                self._terminate(component)
        for component in self.components.values():
            if component.kill_at is not None and now >= component.kill_at and not component.killed:
                _signal_group(component.pid, signal.SIGKILL)
                component.killed = True
        for group, kill_at in list(self.leftovers.items()):
            if now >= kill_at:
                _signal_group(group, signal.SIGKILL)
                del self.leftovers[group]


def preload() -> None:
    """Import what every component needs, then freeze it so the forks' GC never touches it."""
    import gc
    import importlib

    started = time.monotonic()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as error:  # an optional extra missing must not stop Airflow
            print(f"airflow-preload: not preloaded {name}: {error}", flush=True)
    gc.collect()
    gc.freeze()
    print(
        f"airflow-preload: {len(sys.modules)} modules imported in "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )


def _signal_group(pid: int, signum: int) -> bool:
    """Signal the process group led (or once led) by pid; False when it has no process left."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def serve(path: Path) -> None:
    preload()
    argv = ForkServer(path).serve()
    if argv is None:
        return
    from services.airflow_main import run_airflow

    run_airflow(argv[1:])


# -- client ------------------------------------------------------------------------------------


def connect(path: Path, timeout: float) -> socket.socket:
    """Connect to the server, waiting while it imports Airflow (bounded by timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(str(path))
            return client
        except (FileNotFoundError, ConnectionRefusedError):
            client.close()
            if time.monotonic() >= deadline:
                raise PreloadError(
                    f"no airflow-preload server at {path} after {timeout:.0f} s: "
                    "its log is airflow-preload.log (`nox -s logs -- airflow`)"
                ) from None
            time.sleep(0.2)


def run(path: Path, argv: list[str], connect_timeout: float) -> int:
    """Have the server fork `airflow ARGV` with this process's stdio; return its exit code."""
    client = connect(path, connect_timeout)
    socket.send_fds(client, [b"\0"], list(STDIO))
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
    client.sendall(json.dumps(request).encode() + b"\n")
    reader = client.makefile("rb")
    reply = reader.readline()
    if not reply.strip().isdigit():
        raise PreloadError(f"airflow-preload refused to start airflow {' '.join(argv)}")
    pid = int(reply)

    def forward(signum: int, _frame: object) -> None:
        _signal_group(pid, signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    reply = reader.readline()  # blocks until the component exits (signals are handled meanwhile)
    if reply.startswith(b"exit "):
        code = int(reply.split()[1])
        return code if code >= 0 else 128 - code
    # The server died: this component is nobody's to supervise now, so stop it.
    print(f"airflow-preload went away; stopping pid {pid}", file=sys.stderr, flush=True)
    _stop_orphan(pid)
    return 1


def _stop_orphan(pid: int) -> None:
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_AFTER
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    _signal_group(pid, signal.SIGKILL)


def main(arguments: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if arguments is None else arguments
    # Everything after `--` belongs to airflow, options and all.
    split = arguments.index("--") if "--" in arguments else len(arguments)
    own, airflow_args = arguments[:split], arguments[split + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="import Airflow and fork components")
    serve_parser.add_argument("socket", type=Path)
    run_parser = commands.add_parser("run", help="run `airflow ARGS` forked by the server")
    run_parser.add_argument("socket", type=Path)
    run_parser.add_argument("--connect-timeout", type=float, default=180.0)
    args = parser.parse_args(own)
    if args.command == "serve":
        serve(args.socket)
        return
    if not airflow_args:
        parser.error("run needs the airflow command after --, e.g. `-- scheduler`")
    try:
        sys.exit(run(args.socket, airflow_args, args.connect_timeout))
    except PreloadError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
