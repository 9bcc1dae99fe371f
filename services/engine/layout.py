"""Where the stack keeps its state: one directory holds data, databases, logs and sockets.

It is private to the user who runs the stack (0700, everything in it owner-only): it holds
credentials, access tokens, databases and the sockets that control the programs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.engine.errors import StackError

# AF_UNIX socket paths are limited to 108 bytes on Linux and 104 on macOS.
_MAX_SOCKET_PATH = 100
# Names the private directory the sockets moved to when the state dir's path is too long.
SOCKET_DIR_RECORD = "socket-dir"
OWNER_ONLY_UMASK = 0o077


class UnsafeStateError(StackError):
    """A directory the stack keeps secrets or sockets in is open to other users; the message
    names it and what to do."""


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_private_dir(
    path: Path, open_fix: str, foreign_fix: str, refused: int = stat.S_IWGRP | stat.S_IWOTH
) -> None:
    """Refuse a directory that is a symlink, not ours, or has any of the `refused` mode bits.

    A directory someone else can write to may already hold their sockets or files; one they
    own they can open up again at any time.
    """
    info = path.lstat()
    me = os.geteuid()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeStateError(f"{path} is not a directory: {foreign_fix}")
    if info.st_uid != me:
        raise UnsafeStateError(
            f"{path} belongs to {_user(info.st_uid)}, but the stack runs as {_user(me)}: "
            f"{foreign_fix}"
        )
    if info.st_mode & refused:
        how = "is open to" if refused & 0o055 else "can be written by"
        mode = stat.S_IMODE(info.st_mode)
        raise UnsafeStateError(f"{path} {how} other users (mode {mode:04o}): {open_fix}")


@contextlib.contextmanager
def owner_only_umask() -> Iterator[None]:
    """Whatever is created meanwhile (by this process and what it starts) is owner-only."""
    previous = os.umask(OWNER_ONLY_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


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

    @property
    def retries(self) -> Path:
        """What the re-arming listener is doing (rearm.py), for `status`."""
        return self.root / "retries.json"

    @property
    def socket_dir_record(self) -> Path:
        return self.root / SOCKET_DIR_RECORD

    def socket(self, name: str) -> Path:
        """A unix socket: in the state dir, or in a private temp dir when that path is too long."""
        socket = self.root / f"{name}.sock"
        if len(str(socket)) <= _MAX_SOCKET_PATH:
            return socket
        return self.socket_dir() / f"{name}.sock"

    def socket_dir(self) -> Path:
        """The private directory (mkdtemp, 0700) for sockets whose path in the state dir is too
        long; made once and recorded in the state dir, so every later command finds it.

        Never a name derived from the state dir: another user could create that first.
        """
        self.make_private(tighten=False)
        record = self.socket_dir_record
        redo = f"delete {record} and run again to get a new private directory"
        for _ in range(2):
            recorded = _read_record(record)
            if recorded is not None and os.path.lexists(recorded):
                check_private_dir(recorded, redo, redo, refused=0o077)
                return recorded
            # None yet, or gone (a reboot cleared /tmp): a new one, with a name nobody knows.
            made = Path(tempfile.mkdtemp(prefix="h2ops-"))
            draft = record.with_name(f".{record.name}.{os.getpid()}")
            write_private(draft, f"{made}\n")
            try:
                if not os.path.lexists(record):
                    os.link(draft, record)  # only if no other command recorded one meanwhile
                else:
                    os.replace(draft, record)
                    return made
            except FileExistsError:
                made.rmdir()
                continue
            finally:
                draft.unlink(missing_ok=True)
            return made
        raise UnsafeStateError(f"{record} keeps changing: {redo}")

    def recorded_socket_dir(self) -> Path | None:
        """The socket dir made for this state dir, if there is one and it is this user's."""
        recorded = _read_record(self.socket_dir_record)
        try:
            info = recorded.lstat() if recorded is not None else None
        except FileNotFoundError:
            return None
        if info is None or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            return None
        return recorded

    def check(self) -> None:
        """Refuse a state dir that other users can write, or that is not this user's."""
        if os.path.lexists(self.root):
            check_private_dir(
                self.root,
                f"run `chmod go-w {self.root}` (`up` then makes it 0700), "
                "or set H2OPS_STATE_DIR to a folder of your own",
                "set H2OPS_STATE_DIR to a folder of your own, "
                f"or `chown -R {_user(os.geteuid())} {self.root}` if its data is yours",
            )

    def make_private(self, tighten: bool = True) -> None:
        """Create the state dir 0700, or check it and make it and all in it owner-only.

        Tightening on every `up` also closes state written before the stack was private.
        """
        self.check()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _owner_only(self.root)
        if not tighten:
            return
        for directory, subdirs, files in os.walk(self.root):
            for name in (*subdirs, *files):
                _owner_only(Path(directory, name))

    def log_file(self, program: str) -> Path:
        return self.logs / f"{program}.log"

    def service_dir(self, name: str) -> Path:
        return self.root / name


def _read_record(record: Path) -> Path | None:
    """The recorded socket dir; None when there is no record or it names no absolute path."""
    try:
        recorded = Path(record.read_text().strip())
    except FileNotFoundError:
        return None
    return recorded if recorded.is_absolute() else None


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from the moment it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT


def _owner_only(path: Path) -> None:
    """Drop group and other permissions (symlinks are left alone: they have none of their own)."""
    try:
        info = path.lstat()
    except FileNotFoundError:  # a running stack removed it meanwhile (a rotated log, a WAL)
        return
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
        return
    try:
        path.chmod(stat.S_IMODE(info.st_mode) & 0o700)
    except FileNotFoundError:
        return
    except PermissionError:
        raise UnsafeStateError(
            f"{path} belongs to {_user(info.st_uid)} and is open to other users; the stack "
            f"runs as {_user(os.geteuid())} and cannot close it: `chown -R` the state dir "
            "to yourself, or remove that file"
        ) from None


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
