"""JupyterLab rooted at `project/`, with token auth, runnable as root (CI, containers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from services.engine.layout import venv_bin
from services.engine.records import Program, Service, http_ok
from services.port_forwarding import allowed_origins, jupyter_local_hostnames

if TYPE_CHECKING:
    from services.plan import StackPlan

# overrides.json: JupyterLab's defaults for its settings, as an administrator sets them.
SETTINGS_OVERRIDES = Path(__file__).with_name("lab_settings")


def declare(plan: StackPlan) -> Service:
    settings, root = plan.settings, plan.root
    home = plan.layout.service_dir("jupyter")
    port = settings.jupyter_port
    url = plan.url(port)
    command = [
        venv_bin("jupyter"),
        "lab",
        "--no-browser",
        f"--ServerApp.ip={settings.host}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root / 'project'}",
        f"--ServerApp.local_hostnames={jupyter_local_hostnames(port, os.environ)!r}",
        # No news and no update checks: the settings default to "Never" (so JupyterLab does not
        # ask about news), and the server has no news feed and does not ask PyPI for updates.
        f"--LabApp.app_settings_dir={SETTINGS_OVERRIDES}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:  # refused by default; CI and dev containers run as root
        command.append("--ServerApp.allow_root=True")
    if origins := allowed_origins(port, os.environ):
        command.append(f"--ServerApp.allow_origin={origins[0]}")
    return Service(
        name="jupyter",
        title="JupyterLab",
        programs=[
            Program(
                name="jupyter",
                command=command,
                # The token travels in the environment so `ps` does not show it.
                environment={
                    "JUPYTER_TOKEN": settings.jupyter_token,
                    "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
                    "JUPYTER_CONFIG_DIR": str(home / "config"),
                },
                directory=root / "project",
            )
        ],
        url=url,
        probe=http_ok(
            f"{url}/api/status", headers={"Authorization": f"token {settings.jupyter_token}"}
        ),
        ports={"H2OPS_JUPYTER_PORT": port},
        # Jupyter's own way in: the token in the URL logs the browser in and sets its cookie.
        ui=f"{url}/lab?token={settings.jupyter_token}",
        login="the token is in the URL (also `jupyter_token` in `nox -s status`)",
        prepare=lambda: (home / "runtime").mkdir(parents=True, exist_ok=True),
    )
