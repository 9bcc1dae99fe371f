"""The repository init rewrites: its files as bytes in memory, git's view of it, and uv.lock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from devtools.init import InitError
from services.bootstrap import uv_command

Files = dict[str, bytes]
"""Repository files by POSIX path relative to the root."""

# Walked past when the repository is not under git (e.g. straight after `nix flake init`).
UNLISTED_DIRS = {
    ".git",
    ".venv",
    ".h2ops",
    ".nox",
    ".direnv",
    ".ruff_cache",
    ".pytest_cache",
    ".ipynb_checkpoints",
    "__pycache__",
    "node_modules",
    "result",
}
# What a folder may still hold once its files are gone, and be removed with it.
LEFTOVERS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache"}
DIRTY_PATHS_SHOWN = 5


def find_root(start: Path) -> Path:
    """The nearest folder at or above `start` with both pyproject.toml and project/."""
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / "pyproject.toml").is_file() and (
            folder / "project" / "pyproject.toml"
        ).is_file():
            return folder
    raise InitError(
        f"{start} is not inside an H2Ops repository (no pyproject.toml with project/ beside "
        "it): run init from the repository, or pass --root"
    )


def is_git_repository(root: Path) -> bool:
    return _git(root, "rev-parse", "--is-inside-work-tree", check=False).strip() == "true"


def read_files(root: Path) -> Files:
    """Every file git tracks or would track (not ignored); every file but caches without git."""
    if is_git_repository(root):
        listing = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        paths = sorted({path for path in listing.split("\0") if path})
    else:
        paths = sorted(_walk(root))
    return {path: (root / path).read_bytes() for path in paths if (root / path).is_file()}


def _walk(root: Path) -> list[str]:
    paths: list[str] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [name for name in dirs if name not in UNLISTED_DIRS]
        paths.extend((Path(folder) / name).relative_to(root).as_posix() for name in names)
    return paths


def refuse_unsaved_work(root: Path) -> None:
    """Init rewrites files in place: refuse to mix its changes with uncommitted ones."""
    if not is_git_repository(root):
        raise InitError(
            f"{root} is not a git repository, so init's changes could not be undone: "
            "`git init && git add -A && git commit -m 'From the H2Ops template'` first, "
            "or pass --force"
        )
    dirty = _git(root, "status", "--porcelain").splitlines()
    if dirty:
        shown = ", ".join(line[3:] for line in dirty[:DIRTY_PATHS_SHOWN])
        more = (
            f" and {len(dirty) - DIRTY_PATHS_SHOWN} more" if len(dirty) > DIRTY_PATHS_SHOWN else ""
        )
        raise InitError(
            f"the git tree has uncommitted changes ({shown}{more}): commit or stash them "
            "first, so init's changes stay separate and can be undone, or pass --force"
        )


def write_changes(root: Path, changes: dict[str, bytes | None]) -> None:
    """Write new contents, delete files mapped to None, then drop folders left empty."""
    for path, content in sorted(changes.items()):
        target = root / path
        if content is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    emptied = {(root / path).parent for path, content in changes.items() if content is None}
    for folder in sorted(emptied, key=lambda path: len(path.parts), reverse=True):
        _remove_if_only_leftovers(folder, root)


def _remove_if_only_leftovers(folder: Path, root: Path) -> None:
    # A package folder left with only __pycache__ would still import as a namespace package.
    while folder != root and folder.is_dir():
        if any(entry.name not in LEFTOVERS for entry in folder.iterdir()):
            return
        shutil.rmtree(folder)
        folder = folder.parent


def update_lock(root: Path) -> None:
    """Refresh uv.lock after a pyproject changed, from uv's cache if it can, else PyPI.

    With this interpreter (the locked `.venv`'s): nox strips UV_PYTHON from what it runs, and
    where Python 3.12 is found only through it, uv would find no interpreter at all.
    """
    command = [*uv_command(), "lock", "--python", sys.executable]
    for extra in (["--offline"], []):
        done = subprocess.run(
            [*command, *extra], cwd=root, capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            return
    raise InitError(
        f"`uv lock` failed, so uv.lock does not match the renamed project yet:\n"
        f"{done.stderr.strip()}\nRun `uv lock` once PyPI is reachable, then `nox -s test`."
    )


def _git(root: Path, *args: str, check: bool = True) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except OSError:
        if check:
            raise InitError("git was not found: install git, or pass --force") from None
        return ""
    if check and done.returncode != 0:
        raise InitError(f"`git {' '.join(args)}` failed in {root}: {done.stderr.strip()}")
    return done.stdout


def packages_in(files: Files, folder: str) -> list[str]:
    """The Python packages directly inside `folder`: its subfolders with an __init__.py."""
    depth = folder.count("/") + 2
    return sorted(
        {
            path.split("/")[depth - 1]
            for path in files
            if path.startswith(f"{folder}/")
            and path.count("/") == depth
            and path.endswith("/__init__.py")
        }
    )
