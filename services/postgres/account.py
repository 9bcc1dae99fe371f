"""PostgreSQL refuses to run as root, and CI (and some containers) run the stack as root.

There the cluster belongs to an unprivileged account (`H2OPS_POSTGRES_ACCOUNT`, Debian's
`postgres` by default), and `initdb` and the server run as it. That account is given nothing
else: not the state dir, not the folders above it (which may be private: /root,
/tmp/pytest-of-root). Root opens the cluster folder and hands the open folder over, and the
account names it `/proc/self/fd/N`, a link the kernel lets a process follow to its own open
files without looking at the folders above. Everything else in the state dir stays owner-only,
and no ACL or mode outside the cluster changes. An ordinary user runs PostgreSQL as themselves
with plain paths and none of this happens.

Standard library only (and the engine's one error type): `server.py` runs it before it becomes
the server.
"""

from __future__ import annotations

import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path

from services.engine.errors import StackError


class AccountError(StackError):
    """The account PostgreSQL should run as is missing or unusable; the message says what to do."""


@dataclass(frozen=True)
class Account:
    """The unprivileged account a root stack runs PostgreSQL as."""

    name: str
    uid: int
    gid: int

    def become(self) -> None:
        """Drop root for good: this process is this account from now on."""
        os.setgroups([])
        os.setgid(self.gid)
        os.setuid(self.uid)
        os.environ["HOME"] = pwd.getpwuid(self.uid).pw_dir
        os.environ["USER"] = os.environ["LOGNAME"] = self.name


def server_account(name: str) -> Account | None:
    """The account to run PostgreSQL as: None (the caller itself) unless the caller is root."""
    if os.geteuid() != 0:
        return None
    if not sys.platform.startswith("linux"):
        raise AccountError("PostgreSQL refuses to run as root: run the stack as an ordinary user")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AccountError(
            f"PostgreSQL refuses to run as root and the stack runs as root, but there is no "
            f"account {name!r} (H2OPS_POSTGRES_ACCOUNT) to run it as: create one "
            f"(`useradd --system --user-group {name}`; Debian's postgresql package does), "
            "or run the stack as an ordinary user"
        ) from None
    if entry.pw_uid == 0:
        raise AccountError(f"H2OPS_POSTGRES_ACCOUNT={name} is root: name an unprivileged account")
    return Account(name, entry.pw_uid, entry.pw_gid)


def give_to(path: Path, account: Account | None) -> None:
    """Make `path` (the cluster folder) 0700 and the account's, as PostgreSQL requires."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if account is not None:
        os.chown(path, account.uid, account.gid)
    path.chmod(0o700)


def handed_over(path: Path, account: Account | None) -> tuple[str, int | None]:
    """How the account names `path`: the path itself for an ordinary user; as root,
    `/proc/self/fd/N` for an open descriptor N that programs started from here inherit."""
    if account is None:
        return str(path), None
    descriptor = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    os.set_inheritable(descriptor, True)
    return f"/proc/self/fd/{descriptor}", descriptor
