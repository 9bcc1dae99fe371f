"""Airflow's components forked from one process that imported Airflow once.

Started as four interpreters, the api-server, scheduler, dag-processor and triggerer each import
the same ~2,000 modules: about 8 CPU-s and 100 MB apiece. Here one server imports them, freezes
its heap and forks a component per request, so the forks share those pages copy-on-write.
Each component is still its own supervisord program: a small client (stdlib and the engine's
process helpers only) asks the server for the fork, hands over its stdin/stdout/stderr,
forwards stop signals to the component's process group and exits with the component's exit
code, so supervisord logs, restarts and stops it as before.

    python -m services.airflow.preload serve SOCKET
    python -m services.airflow.preload run SOCKET [--connect-timeout S] -- scheduler ...
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

from services.engine.processes import poll_until, signal_group, stop_groups

# Entry points of the four components and the modules they load once running; importing these
# pulls in all but about 15 of the 2,100-2,600 modules each component ends up holding (measured
# with sys.modules dumps of each component).
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
FORK_BLOCKED = (signal.SIGCHLD, *STOP_SIGNALS)
KILL_AFTER = 10.0  # seconds a component gets after SIGTERM before SIGKILL, when nobody waits
# Seconds the server, when stopped, leaves components to their clients (supervisord gives each
# 15 s): a second SIGTERM would cut short the scheduler's wait for running tasks.
STOP_GRACE = 15.0
REQUEST_TIMEOUT = 10.0  # seconds a connection may take to send its request, each on its own
MAX_REQUEST = 1 << 20  # bytes: a request is argv, cwd and the environment


class PreloadError(RuntimeError):
    """The server cannot be reached or broke the protocol; the message says what to check."""


# -- server ------------------------------------------------------------------------------------


@dataclass
class Component:
    """A forked component; `connection` is its client's, None once that client is gone."""

    pid: int
    connection: socket.socket | None
    kill_at: float | None = None  # when to SIGKILL, once it was asked to stop
    killed: bool = False


@dataclass
class Pending:
    """A connection whose request is still arriving; read as it comes, so a slow or silent
    client holds up nobody else, and dropped at `deadline`."""

    connection: socket.socket
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        self.connection.close()


@dataclass(frozen=True)
class Request:
    """What a client asks for: `airflow ARGV` in its cwd and environment, on its stdio."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    fds: list[int]

    @classmethod
    def parse(cls, line: bytes, fds: list[int]) -> Request:
        data = json.loads(line)
        argv, cwd, env = data.get("argv"), data.get("cwd"), data.get("env")
        if not (
            isinstance(argv, list)
            and argv
            and all(isinstance(arg, str) for arg in argv)
            and isinstance(cwd, str)
            and isinstance(env, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise PreloadError(f"malformed request: {line[:200]!r}")
        if len(fds) != len(STDIO):
            raise PreloadError(f"expected {len(STDIO)} file descriptors, got {len(fds)}")
        return cls(argv, cwd, env, fds)


@dataclass
class ForkServer:
    """Accepts fork requests on a unix socket; returns the request in the forked child.

    `imported_env` holds what importing Airflow put into the environment (the api-server's
    `_AIRFLOW_PROCESS_CONTEXT=server`); the forks keep it on top of their client's environment.
    """

    path: Path
    imported_env: dict[str, str] = field(default_factory=dict)
    selector: selectors.DefaultSelector = field(default_factory=selectors.DefaultSelector)
    request_timeout: float = REQUEST_TIMEOUT
    components: dict[int, Component] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)
    leftovers: dict[int, float] = field(default_factory=dict)  # group of a dead component: kill at
    stopping_since: float | None = None
    server_pid: int = field(default_factory=os.getpid)

    def serve(self) -> Request | None:
        """Run until a stop signal (returns None), or return the request in a forked child."""
        wakeup_read, wakeup_write = socket.socketpair()
        wakeup_write.setblocking(False)
        signal.set_wakeup_fd(wakeup_write.fileno())
        for signum in FORK_BLOCKED:
            signal.signal(signum, self._on_signal)
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o177)  # the socket is this user's from the moment it exists
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(umask)
        listener.listen()
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(wakeup_read, selectors.EVENT_READ, "wakeup")
        _log(f"serving on {self.path}")
        try:
            while not (self.stopping_since is not None and not self.components):
                for key, _ in self.selector.select(self._next_timeout()):
                    if isinstance(key.data, Pending):
                        request = self._receive(key.data)
                        if request is not None:  # this is the forked child
                            self._become_child(request, listener, wakeup_read, wakeup_write)
                            return request
                    elif key.data == "accept":
                        self._accept(listener)
                    elif key.data == "wakeup":
                        wakeup_read.recv(4096)
                    else:
                        self._client_closed(key.data)
                self._reap()
                self._enforce_deadlines()
        finally:
            if os.getpid() == self.server_pid:
                self.path.unlink(missing_ok=True)
                for pending in self.pending:
                    pending.close()
                for group in self.leftovers:
                    signal_group(group, signal.SIGKILL)
        return None

    def _on_signal(self, signum: int, _frame: object) -> None:
        """SIGCHLD only wakes the loop (through the wakeup fd); the others start the stop."""
        if signum != signal.SIGCHLD and self.stopping_since is None:
            self.stopping_since = time.monotonic()

    def _grace_over(self) -> bool:
        """Stopping, and the clients had their chance to stop their components themselves."""
        stopping = self.stopping_since
        return stopping is not None and time.monotonic() >= stopping + STOP_GRACE

    def _next_timeout(self) -> float | None:
        """Sleep until something happens, or until the next deadline: no idle wake-ups."""
        deadlines = [
            c.kill_at for c in self.components.values() if c.kill_at is not None and not c.killed
        ]
        deadlines += self.leftovers.values()
        deadlines += [pending.deadline for pending in self.pending]
        if self.stopping_since is not None and not self._grace_over():
            deadlines.append(self.stopping_since + STOP_GRACE)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _accept(self, listener: socket.socket) -> None:
        """Take a connection; its request is read as it arrives (see _receive), never here."""
        try:
            connection, _ = listener.accept()
        except OSError as error:
            _log(f"could not accept a request: {error}")
            return
        connection.setblocking(False)
        pending = Pending(connection, time.monotonic() + self.request_timeout)
        self.pending.append(pending)
        self.selector.register(connection, selectors.EVENT_READ, pending)

    def _receive(self, pending: Pending) -> Request | None:
        """Read what arrived; once the request is whole, fork for it.

        Returns the request in the forked child, None here.
        """
        try:
            data, fds, _, _ = socket.recv_fds(pending.connection, 65536, len(STDIO))
        except BlockingIOError:
            return None
        except OSError as error:
            self._drop(pending, str(error))
            return None
        pending.fds += fds
        pending.data += data
        if not data:
            self._drop(pending, "the client hung up before its request was complete")
            return None
        if len(pending.data) > MAX_REQUEST:
            self._drop(pending, f"longer than {MAX_REQUEST} bytes")
            return None
        if b"\n" not in pending.data:
            return None
        self._forget(pending)
        # The client sends one byte carrying its stdio, then the request as one JSON line.
        try:
            if pending.data[:1] != b"\0":
                raise PreloadError("the request does not start with its file descriptors")
            line = bytes(pending.data[1:]).split(b"\n", 1)[0]
            request = Request.parse(line, pending.fds)
            if self.stopping_since is not None:
                raise PreloadError("stopping")
        except (ValueError, PreloadError) as error:
            _log(f"refused a request: {error}")
            pending.close()
            return None
        return self._fork(pending.connection, request)

    def _forget(self, pending: Pending) -> None:
        self.selector.unregister(pending.connection)
        self.pending.remove(pending)

    def _drop(self, pending: Pending, reason: str) -> None:
        _log(f"refused a request: {reason}")
        self._forget(pending)
        pending.close()

    def _fork(self, connection: socket.socket, request: Request) -> Request | None:
        """Fork a component for the request: the request (in the child) or None (here)."""
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals wait until the child leads its own group with default handlers: a SIGTERM
        # sent to that group as soon as the client knows the pid is never lost.
        signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED)
        pid = os.fork()
        if pid == 0:
            connection.close()  # the server's; the child only needs the client's stdio
            return request
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also from here, so the group exists before the client hears
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED)
        for fd in request.fds:
            os.close(fd)
        _log(f"airflow {' '.join(request.argv)} is pid {pid}")
        connection.setblocking(True)
        self.components[pid] = Component(pid, connection)
        self.selector.register(connection, selectors.EVENT_READ, pid)
        try:
            connection.sendall(f"{pid}\n".encode())
        except OSError:  # the client is gone already
            self._client_closed(pid)
        return None

    def _become_child(self, request: Request, *sockets: socket.socket) -> None:
        """Drop everything of the server; take the client's stdio, cwd and environment."""
        signal.set_wakeup_fd(-1)
        for signum in FORK_BLOCKED:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)  # its own group: stopping it stops its workers too
        _die_with(self.server_pid)
        for component in self.components.values():
            if component.connection is not None:
                component.connection.close()
        for pending in self.pending:  # other clients' connections and stdio
            pending.close()
        self.selector.close()
        for sock in sockets:
            sock.close()
        for target, fd in zip(STDIO, request.fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        with contextlib.suppress(ImportError):
            from setproctitle import setproctitle

            # What `ps` shows, and how the benchmark tells components apart.
            setproctitle(" ".join(["airflow", *request.argv]))
        os.chdir(request.cwd)
        os.environ.clear()
        os.environ.update({**request.env, **self.imported_env})
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED)

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
        """SIGTERM once, SIGKILL after KILL_AFTER (see _enforce_deadlines)."""
        if component.kill_at is None:
            signal_group(component.pid, signal.SIGTERM)
            component.kill_at = time.monotonic() + KILL_AFTER

    def _reap(self) -> None:
        """Collect exited components and tell their clients the exit code."""
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
            if signal_group(pid, signal.SIGTERM):
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
        for pending in [p for p in self.pending if now >= p.deadline]:
            self._drop(pending, f"no complete request within {self.request_timeout:.0f} s")
        if self._grace_over():
            for component in self.components.values():
                self._terminate(component)
        for component in self.components.values():
            if component.kill_at is not None and now >= component.kill_at and not component.killed:
                signal_group(component.pid, signal.SIGKILL)
                component.killed = True
        for group, kill_at in list(self.leftovers.items()):
            if now >= kill_at or not signal_group(group, 0):
                signal_group(group, signal.SIGKILL)
                del self.leftovers[group]


def preload() -> dict[str, str]:
    """Import what every component needs and freeze it, so the forks' GC never touches it.

    Returns the environment variables the imports set.
    """
    import gc
    import importlib

    started = time.monotonic()
    before = dict(os.environ)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as error:  # an optional extra missing must not stop Airflow
            _log(f"not preloaded {name}: {error}")
    gc.collect()
    gc.freeze()
    _log(f"{len(sys.modules)} modules imported in {time.monotonic() - started:.1f} s")
    return {k: v for k, v in os.environ.items() if before.get(k) != v}


def _die_with(parent: int) -> None:
    """On Linux, have the kernel SIGTERM this fork when the server dies, even if its client
    died too (elsewhere the client stops it when the server goes)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def program_of(title: list[str]) -> str:
    """The supervisord program a fork runs for, from its process title (psutil's cmdline):
    `airflow scheduler ...` as set at fork, or Airflow's own `airflow api_server -- ...`."""
    return "airflow-" + " ".join(title).split()[1].replace("_", "-")


def _log(message: str) -> None:
    """A line in the program's log; never fatal (supervisord may be gone already)."""
    with contextlib.suppress(OSError):
        print(f"airflow-preload: {message}", flush=True)


def serve(path: Path) -> None:
    imported_env = preload()
    request = ForkServer(path, imported_env).serve()
    if request is None:
        return
    from services.airflow.main import run_airflow

    run_airflow(request.argv)


# -- client ------------------------------------------------------------------------------------


def connect(path: Path, timeout: float) -> socket.socket:
    """Connect to the server, waiting while it imports Airflow (bounded by timeout)."""

    def attempt() -> socket.socket | None:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            client.close()
            return None
        return client

    client = poll_until(attempt, timeout, interval=0.2)
    if client is None:
        raise PreloadError(
            f"no airflow-preload server at {path} after {timeout:.0f} s: "
            "its log is airflow-preload.log (`nox -s logs -- airflow`)"
        )
    return client


def run(path: Path, argv: list[str], connect_timeout: float) -> int:
    """Have the server fork `airflow ARGV` with this process's stdio; return its exit code."""
    client = connect(path, connect_timeout)
    client.settimeout(connect_timeout)  # a wedged server must not hold us forever
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
    # A stop signal may come as soon as the fork exists, before its pid reaches us: keep it
    # and pass it on with the pid, rather than dying of it and leaving the stop undone.
    pid: int | None = None
    held: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if pid is None:
            held.append(signum)
        else:
            signal_group(pid, signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    try:
        socket.send_fds(client, [b"\0"], list(STDIO))
        client.sendall(json.dumps(request).encode() + b"\n")
        reader = client.makefile("rb")
        reply = reader.readline()
    except OSError as error:
        raise PreloadError(f"airflow-preload did not answer at {path}: {error}") from None
    if not reply.strip().isdigit():
        raise PreloadError(f"airflow-preload refused to start airflow {' '.join(argv)}")
    pid = int(reply)
    client.settimeout(None)
    for held_signal in held:
        signal_group(pid, held_signal)
    reply = reader.readline()  # blocks until the component exits (signals are handled meanwhile)
    if reply.startswith(b"exit "):
        code = int(reply.split()[1])
        return code if code >= 0 else 128 - code
    # The server died: this component is nobody's to supervise now, so stop it.
    stop_groups([pid], KILL_AFTER)
    with contextlib.suppress(OSError):
        print(f"airflow-preload went away; stopped pid {pid}", file=sys.stderr, flush=True)
    return 1


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
