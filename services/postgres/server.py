"""The program supervisord runs for PostgreSQL: as root, let the server's account reach its
cluster and become that account; then exec `postgres`, so the supervised pid is the server's.

Standard library only (it runs before every server start, after a crash too).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from services.postgres.account import give_to, server_account


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--account", required=True, help="who runs it when started as root")
    parser.add_argument("--cluster", required=True, type=Path)
    parser.add_argument("postgres", nargs=argparse.REMAINDER, help="-- postgres and its options")
    args = parser.parse_args(argv)
    command = [part for part in args.postgres if part != "--"]
    account = server_account(args.account)
    if account is not None:
        # Each start, not only the first: `up` makes the state dir owner-only again.
        give_to(args.cluster, account)
        account.become()
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
