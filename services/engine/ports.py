"""Is a port free, and if not, who holds it: asked before anything starts."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from services.engine.errors import StackError


@dataclass(frozen=True)
class TakenPort:
    variable: str
    port: int
    pid: int | None
    process: str | None

    def __str__(self) -> str:
        holder = f" by pid {self.pid} ({self.process})" if self.pid else ""
        return f"port {self.port} is taken{holder}: set {self.variable} or stop it"


class PortTaken(StackError):
    """Ports `up` needs are taken; nothing was started."""

    def __init__(self, taken: list[TakenPort]) -> None:
        self.taken = taken
        super().__init__("; ".join(str(port) for port in taken))


def port_is_free(host: str, port: int) -> bool:
    """Try to bind the way the servers do (SO_REUSEADDR, so TIME_WAIT does not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_holder(port: int) -> tuple[int | None, str | None]:
    """The pid and name of the process listening on a port, when the OS lets us see it."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, PermissionError):
        return None, None
    for connection in connections:
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            if connection.pid is None:
                return None, None
            try:
                return connection.pid, psutil.Process(connection.pid).name()
            except psutil.Error:
                return connection.pid, None
    return None, None


def find_taken_ports(host: str, port_maps: Iterable[dict[str, int]]) -> list[TakenPort]:
    taken = []
    for ports in port_maps:
        for variable, port in ports.items():
            if not port_is_free(host, port):
                taken.append(TakenPort(variable, port, *port_holder(port)))
    return taken
