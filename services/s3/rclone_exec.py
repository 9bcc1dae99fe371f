"""Exec `rclone serve s3` with its key pair in RCLONE_AUTH_KEY, quoted the way rclone wants.

rclone reads list flags from the environment as CSV, so the `access,secret` pair must be
quoted; supervisord's `environment=` strips quotes, and argv would show the secret in `ps`.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    access = os.environ.pop("H2OPS_RCLONE_ACCESS_KEY")
    secret = os.environ.pop("H2OPS_RCLONE_SECRET_KEY")
    os.environ["RCLONE_AUTH_KEY"] = f'"{access},{secret}"'
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
