"""The program supervisord runs for PostgreSQL: as root, hand the cluster folder over and become
the server's account (see `account.py`); then exec `postgres -D <cluster>`, so the supervised
pid is the server's.

Standard library only (it runs before every server start, after a crash too).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from services.postgres.account import give_to, handed_over, server_account


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--account", required=True, help="who runs it when started as root")
    parser.add_argument("--cluster", required=True, type=Path)
    parser.add_argument("postgres", nargs=argparse.REMAINDER, help="-- postgres and its options")
    args = parser.parse_args(argv)
    command = args.postgres[1:] if args.postgres[:1] == ["--"] else args.postgres
    account = server_account(args.account)
    if account is not None:
        give_to(args.cluster, account)
    data, _ = handed_over(args.cluster, account)
    if account is not None:
        account.become()
    os.execv(command[0], [*command, "-D", data])


if __name__ == "__main__":
    main()
