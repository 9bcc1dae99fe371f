"""ruff format over the Python files init wrote, so a new package name of any length leaves
them as `nox -s lint` wants them (imports wrapped, lines joined)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devtools.init.repository import Files


def formatted(files: Files, paths: list[str], root: Path) -> Files:
    """`files` with each of `paths` that is Python run through `ruff format` (root's config).

    Without ruff (it comes with the dev dependencies) the files stay as they are. Its binary
    is called directly: one Python start-up per file cost more than the formatting.
    """
    try:
        from ruff import find_ruff_bin  # type: ignore[import-untyped]

        ruff = find_ruff_bin()
    except (ImportError, FileNotFoundError):
        return files
    files = dict(files)
    for path in paths:
        if not path.endswith(".py") or path not in files:
            continue
        done = subprocess.run(
            [ruff, "format", "--stdin-filename", path, "-"],
            input=files[path],
            cwd=root,
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            files[path] = done.stdout
    return files
