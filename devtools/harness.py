"""Drive a stack of this repository from outside, as a user would: through the CLI, in its own
state dir on free ports. Used by the tests (`devtools/testing.py`, the example project's
fixtures) and the benchmark."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.report import StatusReport
from services.settings import REPO_ROOT

UP_TIMEOUT = 600  # the CLI bounds each service by H2OPS_READY_TIMEOUT; this bounds the CLI


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


@dataclass
class StackRun:
    """One stack under test: its own state dir, `.env` and ports; driven through the CLI."""

    base: Path
    root: Path = REPO_ROOT
    python: str = sys.executable
    extra_env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = ()  # what `up` with no names starts (all when empty)
    ports: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        names = ["AIRFLOW", "MLFLOW", "JUPYTER", "S3", "S3_CONSOLE", "POSTGRES", "SERVING"]
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))

    @property
    def env(self) -> dict[str, str]:
        # Only this run's settings: none of the caller's H2OPS_ or Airflow configuration.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("H2OPS_", "AIRFLOW"))}
        # ... except the patience a slow or busy machine needs.
        if "H2OPS_READY_TIMEOUT" in os.environ:
            env["H2OPS_READY_TIMEOUT"] = os.environ["H2OPS_READY_TIMEOUT"]
        env.update({f"H2OPS_{name}_PORT": str(port) for name, port in self.ports.items()})
        env["H2OPS_STATE_DIR"] = str(self.base / "state")
        env["H2OPS_ENV_FILE"] = str(self.base / "stack.env")
        # The project's kernel goes here, not into the shared .venv a user's stack writes to.
        env["H2OPS_KERNELS_DIR"] = str(self.kernels_dir)
        env.update(self.extra_env)
        return env

    @property
    def kernels_dir(self) -> Path:
        """Where `up` writes the project's Jupyter kernel (JUPYTER_PATH=its parent finds it)."""
        return self.base / "jupyter" / "kernels"

    def cli(self, *args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-m", "services", *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def up(self, *services: str) -> subprocess.CompletedProcess[str]:
        result = self.cli("up", *(services or self.services))
        if result.returncode != 0:
            raise AssertionError(f"up failed ({result.returncode}):\n{result.stderr}")
        return result

    def status(self) -> StatusReport:
        """`status --json`, read back into the types the CLI printed it from."""
        return StatusReport.from_json(json.loads(self.cli("status", "--json", timeout=60).stdout))

    def down(self, *services: str) -> subprocess.CompletedProcess[str]:
        return self.cli("down", *services, timeout=120)
