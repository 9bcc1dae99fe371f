"""The README tells the truth: its quick start is what CI runs, its sessions exist."""

from __future__ import annotations

import re

import pytest

from devtools.testing import nox_sessions
from services.settings import REPO_ROOT

ROOT = REPO_ROOT
README = (ROOT / "README.md").read_text()


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the Quick start section has no code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_is_two_commands_that_ci_runs_verbatim() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert commands == ["python3 noxfile.py -s up", "python3 noxfile.py -s test"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, f"{command!r} is not run by .ci/run"


@pytest.mark.stack
def test_every_session_the_readme_names_exists() -> None:
    named = set(re.findall(r"nox(?:file.py)? -s ([a-z_-]+)", README))
    sessions = nox_sessions(ROOT / "noxfile.py")
    assert {"up", "down", "test"} <= sessions
    assert named <= sessions, named - sessions


def test_readme_lists_every_setting() -> None:
    from services.settings import StackSettings

    for name in StackSettings.model_fields:
        if name == "airflow_username":
            continue
        assert f"H2OPS_{name.upper()}" in README, name


def documented_logs_commands() -> list[str]:
    """Every concrete `nox -s logs ...` the README and the sessions' help show (no synopsis)."""
    noxfile = (ROOT / "noxfile.py").read_text()
    found = re.findall(r"`(nox -s logs[^`\[]*)`", README + noxfile)
    return sorted({command.strip() for command in found})


def test_documented_logs_forms_parse_as_services_and_options() -> None:
    """`nox -s logs -- airflow -- -f` once read `-f` as a service: each documented form must
    name only services and give options as options."""
    import shlex

    from services.catalog import declare_services
    from services.cli import _parser
    from services.plan import StackPlan
    from services.settings import StackSettings

    known = {service.name for service in declare_services(StackPlan.of(StackSettings()))}
    commands = documented_logs_commands()
    assert "nox -s logs -- airflow -f" in commands, commands
    for command in commands:
        words = shlex.split(command)
        posargs = words[words.index("--") + 1 :] if "--" in words else []
        assert "--" not in posargs, f"{command}: nox passes a second `--` on as an argument"
        args = _parser().parse_args(["logs", *posargs])
        named = {name for name in args.services if name != "SERVICE"}  # SERVICE: a placeholder
        assert named <= known, f"{command}: {args.services} are not all services"
    synopsis = re.search(r"`nox -s logs (\[[^`]*)`", README)
    assert synopsis and synopsis.group(1).count("--") == 1, "the synopsis has one `--`"
