"""What editors, notebooks and shells outside the stack read to reach it.

Code run by the stack's own programs gets the client environment from supervisord; code run
anywhere else (a VS Code debug run or test, a notebook on VS Code's kernel, `airflow dags list`
in a terminal) would silently log to a local `mlruns/` and send boto3 to AWS. So `up` writes,
from the one resolved plan:

- `client.env` in the state dir: a dotenv file that VS Code's Python extension reads for run,
  debug and test (`python.envFile` in the committed `.vscode/settings.json`), and that direnv
  and the Nix shell load;
- a Jupyter kernel named after the project, in the venv's `share/jupyter/kernels`, whose spec
  carries the same environment, so JupyterLab's and VS Code's kernel pickers both list it.

Both hold keys: they are owner-only and outside git. `h2ops shell` starts a shell (or a
command) with the same environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

from services.catalog import declare_services
from services.engine.errors import StackError
from services.engine.layout import write_private
from services.engine.records import Declared, Service
from services.plan import StackPlan

CLIENT_ENV_FILE = "client.env"


def user_environment(plan: StackPlan, declared: Iterable[Declared]) -> dict[str, str]:
    """The client environment plus what each declared service's own tools need outside the
    stack (Airflow's configuration for its CLI and `dag.test()`, its `aws_default` connection)."""
    env = plan.client_environment()
    for service in declared:
        if isinstance(service, Service):
            env.update(service.client_environment)
    return env


def shell_environment(plan: StackPlan, declared: Iterable[Declared]) -> dict[str, str]:
    """This process's environment with the stack's, and the locked environment's tools
    (`airflow`, `mlflow`, `jupyter`) first on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, **user_environment(plan, declared), "PATH": path}


def client_env_file(plan: StackPlan) -> Path:
    return plan.layout.root / CLIENT_ENV_FILE


def project_name(plan: StackPlan) -> str:
    """H2OPS_PROJECT_NAME, else the example project's distribution name (`nox -s init`
    renames it), else the repository's folder."""
    if plan.settings.project_name:
        return plan.settings.project_name
    try:
        data = tomllib.loads((plan.root / "project" / "pyproject.toml").read_text())
        return str(data["project"]["name"])
    except (FileNotFoundError, KeyError, tomllib.TOMLDecodeError):
        return plan.root.name


def kernel_name(plan: StackPlan) -> str:
    """A name Jupyter accepts for a kernel (letters, digits, `.`, `_`, `-`)."""
    return re.sub(r"[^a-z0-9._-]+", "-", project_name(plan).lower()).strip("-.") or "h2ops"


def kernel_dir(plan: StackPlan) -> Path:
    kernels = plan.settings.kernels_dir or Path(sys.prefix) / "share" / "jupyter" / "kernels"
    return kernels / kernel_name(plan)


def dotenv_text(env: dict[str, str]) -> str:
    """`NAME='value'` lines that python-dotenv, VS Code's env file reader and a POSIX shell
    (`set -a; . FILE`) all read the same way."""
    lines = ["# Written by `h2ops up` for editors and shells: the stack's endpoints and keys."]
    for key, value in env.items():
        if "'" in value or "\n" in value:
            raise StackError(
                f"{key}={value!r} cannot be written to an env file (a quote or a newline): "
                "choose a path or setting without one"
            )
        lines.append(f"{key}='{value}'")
    return "\n".join(lines) + "\n"


def write_editor_files(plan: StackPlan, declared: Iterable[Declared] | None = None) -> list[Path]:
    """Write the env file and the project's kernel (owner-only; rewritten on every `up`, so a
    new port or key reaches them) for the services `up` declared (declared here when not
    given). Returns what was written."""
    env = user_environment(plan, declare_services(plan) if declared is None else declared)
    env_file = client_env_file(plan)
    plan.layout.make_private(tighten=False)
    write_private(env_file, dotenv_text(env))
    kernel = kernel_dir(plan)
    kernel.mkdir(mode=0o700, parents=True, exist_ok=True)
    kernel.chmod(0o700)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"{project_name(plan)} (H2Ops stack)",
        "language": "python",
        "env": env,
        "metadata": {"debugger": True, "h2ops_state_dir": str(plan.layout.root)},
    }
    write_private(kernel / "kernel.json", json.dumps(spec, indent=1) + "\n")
    return [env_file, kernel]


def remove_editor_files(plan: StackPlan) -> None:
    """`clean`: the kernel goes with the state it points at (the env file is in the state dir).
    Only a kernel this stack wrote is removed, never one that merely has the same name."""
    kernel = kernel_dir(plan)
    try:
        spec = json.loads((kernel / "kernel.json").read_text())
    except (FileNotFoundError, ValueError):
        return
    if spec.get("metadata", {}).get("h2ops_state_dir") == str(plan.layout.root):
        shutil.rmtree(kernel, ignore_errors=True)
