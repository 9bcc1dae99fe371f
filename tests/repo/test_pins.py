"""One Python everywhere: every file that names the version agrees with `.python-version`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from services.bootstrap import LAUNCHER_PACKAGES, locked_version
from services.settings import REPO_ROOT

PYTHON = (REPO_ROOT / ".python-version").read_text().strip()
MAJOR, MINOR = (int(part) for part in PYTHON.split("."))
REQUIRES = f">={MAJOR}.{MINOR},<{MAJOR}.{MINOR + 1}"


def test_python_version_names_one_minor_release() -> None:
    assert re.fullmatch(r"3\.\d+", PYTHON), f".python-version says {PYTHON!r}: want e.g. 3.12"


def test_pyprojects_and_the_lock_require_exactly_that_python() -> None:
    for pyproject in (REPO_ROOT / "pyproject.toml", REPO_ROOT / "project" / "pyproject.toml"):
        project = tomllib.loads(pyproject.read_text())["project"]
        assert project["requires-python"] == REQUIRES, pyproject
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    # uv writes the same range as ==3.12.*
    assert lock["requires-python"] == f"=={MAJOR}.{MINOR}.*", "run `uv lock`"
    ruff = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    assert ruff["target-version"] == f"py{MAJOR}{MINOR}"


def test_the_flake_ci_and_the_tests_use_that_python() -> None:
    flake = (REPO_ROOT / "flake.nix").read_text()
    assert re.findall(r"python = pkgs\.(python\d+);", flake) == [f"python{MAJOR}{MINOR}"]
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert workflow["env"]["PYTHON_VERSION"] == PYTHON
    assert "cat .python-version" in (REPO_ROOT / ".ci" / "run").read_text()
    assert sys.version_info[:2] == (MAJOR, MINOR), "the tests run on another Python than pinned"


def test_the_launcher_installs_the_locked_nox_and_uv() -> None:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    versions = {package["name"]: package["version"] for package in lock["package"]}
    for name in LAUNCHER_PACKAGES:
        assert locked_version(name) == versions[name]


def python_without_nox(tmp_path: Path) -> str:
    """A Python without nox: the system one if it refuses installs (PEP 668), else a bare venv."""
    system = Path("/usr/bin/python3")
    if system.exists():
        stdlib = subprocess.run(
            [str(system), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        has_nox = subprocess.run([str(system), "-c", "import nox"], capture_output=True)
        if (Path(stdlib) / "EXTERNALLY-MANAGED").exists() and has_nox.returncode != 0:
            return str(system)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp_path / "plain")], check=True)
    return str(tmp_path / "plain" / "bin" / "python")


@pytest.mark.stack
def test_noxfile_runs_from_a_python_without_nox(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    for name in ("noxfile.py", "uv.lock", "services/__init__.py", "services/bootstrap.py"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, copy / name)
    python = python_without_nox(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"  # no uv or nox on PATH
    for _ in range(2):  # the second run reuses the launcher
        listed = subprocess.run(
            [python, str(copy / "noxfile.py"), "-l"],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert listed.returncode == 0, listed.stderr
        assert "- up ->" in listed.stdout and "* test ->" in listed.stdout
    launcher = copy / ".nox" / "launcher"
    pins = " ".join(f"{name}=={locked_version(name)}" for name in LAUNCHER_PACKAGES)
    assert (launcher / "h2ops-pins.txt").read_text() == pins
    assert "installing" not in listed.stderr, "the second run must reuse the launcher"
