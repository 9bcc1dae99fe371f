"""Create or refresh the locked environment; stdlib only, because nox imports it before `.venv`
exists (the rest of `services` needs the packages this installs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def venv_dir(root: Path = REPO_ROOT) -> Path:
    """Where uv puts the environment: `.venv`, unless UV_PROJECT_ENVIRONMENT moves it."""
    configured = os.environ.get("UV_PROJECT_ENVIRONMENT")
    return Path(configured) if configured else root / ".venv"


def venv_python(root: Path = REPO_ROOT) -> str:
    return str(venv_dir(root) / "bin" / "python")


def uv_command() -> list[str]:
    """uv on PATH, else the one `pip install "nox[uv]"` put beside nox."""
    found = shutil.which("uv")
    if found:
        return [found]
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]
    except ImportError:
        raise SystemExit(
            "uv was not found: install it with `python3 -m pip install 'nox[uv]'` "
            "(or use `nix develop`, which provides it)"
        ) from None
    return [find_uv_bin()]


def sync_command() -> list[str]:
    """Install exactly what uv.lock pins into the environment (fast when nothing changed)."""
    return [*uv_command(), "sync", "--locked"]
