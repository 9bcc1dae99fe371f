"""Create or refresh the locked environment; stdlib only, because nox imports it before `.venv`
exists (the rest of `services` needs the packages this installs).

It also makes `python3 noxfile.py -s up` work on any Python 3.9+, including a system Python that
refuses `pip install` (PEP 668): when the running interpreter lacks nox or uv, the locked nox and
uv are installed into a private venv under `.nox/` and the noxfile is run again from there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# nox keeps its own environments in .nox/ (gitignored); the launcher venv lives beside them.
LAUNCHER_DIR = REPO_ROOT / ".nox" / "launcher"
LAUNCHER_PACKAGES = ("nox", "uv")


def venv_dir(root: Path = REPO_ROOT) -> Path:
    """Where uv puts the environment: `.venv`, unless UV_PROJECT_ENVIRONMENT moves it."""
    configured = os.environ.get("UV_PROJECT_ENVIRONMENT")
    return Path(configured) if configured else root / ".venv"


def venv_python(root: Path = REPO_ROOT) -> str:
    return str(venv_dir(root) / "bin" / "python")


def _uv_from_module() -> str | None:
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    return find_uv_bin()


def uv_command() -> list[str]:
    """The uv installed beside nox (`nox[uv]`, the launcher, `.venv`), else uv on PATH (Nix).

    Beside nox first: a `uv` on PATH may be a pyenv shim that fails for this directory's Python.
    """
    found = _uv_from_module() or shutil.which("uv")
    if found is None:
        raise SystemExit(
            "uv was not found: run the sessions as `python3 noxfile.py -s SESSION`, which "
            "installs the locked nox and uv itself, or use `nix develop`, which provides them"
        )
    return [found]


def sync_command() -> list[str]:
    """Install exactly what uv.lock pins into the environment (fast when nothing changed)."""
    command = [*uv_command(), "sync", "--locked"]
    # nox strips UV_PYTHON from the commands it runs; hand it to uv as its own option.
    if os.environ.get("UV_PYTHON"):
        command += ["--python", os.environ["UV_PYTHON"]]
    return command


def locked_version(package: str, lock: Path = REPO_ROOT / "uv.lock") -> str:
    """The version uv.lock pins for `package` (a regex: tomllib is 3.11+, the launcher is not)."""
    pattern = rf'\[\[package\]\]\nname = "{re.escape(package)}"\nversion = "([^"]+)"'
    found = re.search(pattern, lock.read_text())
    if found is None:
        raise SystemExit(f"{package} is not pinned in {lock}: run `uv lock`")
    return found.group(1)


def _has_nox_and_uv() -> bool:
    try:
        import nox  # noqa: F401
    except ImportError:
        return False
    return bool(_uv_from_module() or shutil.which("uv"))


def _run_or_explain(command: list[str], what: str) -> bool:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(f"h2ops: {what} failed: {' '.join(command)}\n{done.stderr[-2000:]}\n")
    return done.returncode == 0


def _make_launcher(pins: list[str]) -> None:
    """A venv with the pinned nox and uv: its own pip if venv has one, else the system pip."""
    python = str(LAUNCHER_DIR / "bin" / "python")
    install = ["install", "--quiet", "--disable-pip-version-check", *pins]
    if _run_or_explain(
        [sys.executable, "-m", "venv", "--clear", str(LAUNCHER_DIR)], "venv"
    ) and _run_or_explain([python, "-m", "pip", *install], "pip install"):
        return
    # Debian/Ubuntu without python3-venv have no ensurepip; their pip can still fill a bare venv.
    if _run_or_explain(
        [sys.executable, "-m", "venv", "--clear", "--without-pip", str(LAUNCHER_DIR)], "venv"
    ) and _run_or_explain(
        [sys.executable, "-m", "pip", "--python", python, *install], "pip --python"
    ):
        return
    raise SystemExit(
        f"h2ops: could not make {LAUNCHER_DIR} with {' '.join(pins)} using {sys.executable}.\n"
        "  Debian/Ubuntu: `sudo apt install python3-venv`, then run the command again;\n"
        "  or install nox yourself (`pipx install 'nox[uv]'` or `uv tool install 'nox[uv]'`) "
        "and run `nox -s SESSION`."
    )


def ensure_nox(script: str, argv: list[str]) -> None:
    """Return if this interpreter can run nox with uv; else re-run `script` from the launcher."""
    if _has_nox_and_uv():
        return
    python = LAUNCHER_DIR / "bin" / "python"
    if Path(sys.prefix).resolve() == LAUNCHER_DIR.resolve():
        raise SystemExit(f"h2ops: {LAUNCHER_DIR} lacks nox or uv: delete it and run again")
    pins = [f"{name}=={locked_version(name)}" for name in LAUNCHER_PACKAGES]
    stamp = LAUNCHER_DIR / "h2ops-pins.txt"
    wanted = " ".join(pins)
    if not python.exists() or not stamp.is_file() or stamp.read_text() != wanted:
        sys.stderr.write(f"h2ops: installing {wanted} into {LAUNCHER_DIR} (once)\n")
        _make_launcher(pins)
        stamp.write_text(wanted)
    os.execv(str(python), [str(python), script, *argv])
