"""The pre-commit hooks run from the locked tools, offline: nothing is cloned, and on a copy of
this repository `pre-commit run --all-files` passes (ruff check, ruff format, mypy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.bootstrap import venv_dir
from services.settings import REPO_ROOT

ROOT = REPO_ROOT
CONFIG = ROOT / ".pre-commit-config.yaml"


def test_every_hook_is_local_and_runs_a_locked_tool() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {repo["repo"] for repo in config["repos"]} == {"local"}, "no hook repo to clone"
    assert {"ruff-check", "ruff-format", "mypy"} <= set(hooks)
    for hook in hooks.values():
        assert hook["language"] == "system" and hook["entry"].startswith(".venv/bin/"), hook


@pytest.mark.stack
@pytest.mark.timeout(1500)  # mypy over the whole tree, on a machine that may be busy
def test_pre_commit_run_all_files_passes_on_a_copy(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in tracked)):
        source = ROOT / name
        if source.is_file():  # the working tree's contents, so uncommitted edits count
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=copy, check=True)
    subprocess.run([*git, "add", "-A"], cwd=copy, check=True)
    (copy / ".venv").symlink_to(venv_dir(ROOT))  # the locked tools, untracked as in a checkout
    if (ROOT / ".mypy_cache").is_dir():  # mypy re-checks what changed; a cold run takes minutes
        shutil.copytree(ROOT / ".mypy_cache", copy / ".mypy_cache")
    home = tmp_path / "pre-commit-home"
    validate = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files", "--show-diff-on-failure"],
        cwd=copy,
        env={
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PRE_COMMIT_HOME": str(home),
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    for hook in ("ruff check", "ruff format", "mypy"):
        assert any(
            line.startswith(hook) and line.endswith("Passed") for line in run.stdout.splitlines()
        ), run.stdout
    cloned = [path for path in home.glob("repo*") if path.is_dir()]
    assert not cloned, f"pre-commit cloned hook repositories: {cloned}"
