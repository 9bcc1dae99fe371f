"""PostgreSQL refuses to run as root, and CI (and some containers) run the stack as root.

There the cluster belongs to an unprivileged account (`H2OPS_POSTGRES_ACCOUNT`, Debian's
`postgres` by default): `initdb` and the server run as it, and it is granted only traverse
(`x`, an ACL entry for that one account) on the folders above its cluster, so everything
else in the state dir stays owner-only. An ordinary user runs PostgreSQL as themselves and
none of this happens.

Standard library only: `server.py` runs it before it becomes the server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path


class AccountError(RuntimeError):
    """The account PostgreSQL should run as is missing or cannot reach its cluster."""


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
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AccountError(
            f"PostgreSQL refuses to run as root and the stack runs as root, but there is no "
            f"account {name!r} (H2OPS_POSTGRES_ACCOUNT) to run it as: create one "
            f"(`useradd --system --user-group {name}`; installing Debian's postgresql package "
            "does), or run the stack as an ordinary user"
        ) from None
    if entry.pw_uid == 0:
        raise AccountError(f"H2OPS_POSTGRES_ACCOUNT={name} is root: name an unprivileged account")
    return Account(name, entry.pw_uid, entry.pw_gid)


def grant_traverse(path: Path, account: Account) -> list[Path]:
    """Let `account` reach `path`: an ACL entry `u:<account>:x` on each folder above it that
    does not already let others through. Returns the folders it granted (nothing to read,
    nothing to list: only passing through)."""
    granted = []
    for folder in reversed(path.parents):
        info = folder.stat()
        if info.st_uid == account.uid or info.st_mode & stat.S_IXOTH:
            continue
        setfacl = shutil.which("setfacl")
        if setfacl is None:
            raise AccountError(
                f"{account.name} (who runs PostgreSQL for root) cannot reach {path} through "
                f"{folder}, and setfacl is missing to grant it: install the acl package "
                "(`apt-get install acl`), or set H2OPS_STATE_DIR below a folder others may "
                "pass through"
            )
        result = subprocess.run(
            [setfacl, "-m", f"u:{account.name}:x", str(folder)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise AccountError(
                f"setfacl could not let {account.name} pass through {folder} "
                f"({result.stderr.strip()}): does its file system support ACLs? Or set "
                "H2OPS_STATE_DIR below a folder others may pass through"
            )
        granted.append(folder)
    return granted


def give_to(path: Path, account: Account | None) -> None:
    """Make `path` (the cluster folder) the account's, 0700, as PostgreSQL requires."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if account is not None:
        os.chown(path, account.uid, account.gid)
        grant_traverse(path, account)
    path.chmod(0o700)
