"""Where the stack keeps its state: one directory holds data, databases, logs and sockets."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# AF_UNIX socket paths are limited to 108 bytes on Linux and 104 on macOS.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class StateLayout:
    """Paths under the state directory, named by what they hold."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def supervisor_config(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def supervisor_pidfile(self) -> Path:
        return self.root / "supervisord.pid"

    @property
    def supervisor_socket(self) -> Path:
        """supervisord's control socket."""
        return self.socket("supervisor")

    def socket(self, name: str) -> Path:
        """A unix socket; moved to a short temp path when the state dir is too deep."""
        socket = self.root / f"{name}.sock"
        if len(str(socket)) <= _MAX_SOCKET_PATH:
            return socket
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"h2ops-{digest}-{name}.sock"

    def log_file(self, program: str) -> Path:
        return self.logs / f"{program}.log"

    def service_dir(self, name: str) -> Path:
        return self.root / name


def venv_bin(name: str) -> str:
    """A console script of the environment the stack runs from (the locked `.venv`)."""
    return str(Path(sys.executable).parent / name)


def tail(path: Path, lines: int) -> list[str]:
    """The last lines of a log file (reads only its end, logs can be large)."""
    if not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        text = handle.read().decode(errors="replace")
    return text.splitlines()[-lines:]
