"""pytest fixtures that run the real stack in a temporary state dir on free ports.

Registered in the root `conftest.py`, so both `tests/` and `project/tests/` can ask for
`stack` (the whole stack, started once per test session) or build their own with `StackRun`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        names = ["AIRFLOW", "MLFLOW", "JUPYTER", "S3", "S3_CONSOLE"]
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("H2OPS_")}
        env.update({f"H2OPS_{name}_PORT": str(port) for name, port in self.ports.items()})
        env["H2OPS_STATE_DIR"] = str(self.base / "state")
        env["H2OPS_ENV_FILE"] = str(self.base / "stack.env")
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services", *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def up(self, *services: str) -> subprocess.CompletedProcess[str]:
        result = self.cli("up", *services)
        if result.returncode != 0:
            raise AssertionError(f"up failed ({result.returncode}):\n{result.stderr}")
        return result

    def status(self) -> dict:
        return json.loads(self.cli("status", "--json", timeout=60).stdout)

    def down(self, *services: str) -> subprocess.CompletedProcess[str]:
        return self.cli("down", *services, timeout=120)


@dataclass
class RunningStack:
    """What a test needs to talk to the running stack, as a user's code would."""

    run: StackRun
    airflow_url: str
    mlflow_url: str
    s3_endpoint: str
    jupyter_url: str
    airflow_username: str
    airflow_password: str
    s3_access_key: str
    s3_secret_key: str
    jupyter_token: str
    env: dict[str, str]

    @classmethod
    def from_status(cls, run: StackRun, report: dict) -> RunningStack:
        urls = {service["name"]: service["url"] for service in report["services"]}
        return cls(
            run=run,
            airflow_url=urls["airflow"],
            mlflow_url=urls["mlflow"],
            s3_endpoint=urls.get("s3", ""),
            jupyter_url=urls["jupyter"],
            env=report["environment"],
            **report["credentials"],
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The whole stack, up once for the test session, stopped (and checked stopped) after."""
    run = StackRun(tmp_path_factory.mktemp("stack"))
    try:
        run.up()
        yield RunningStack.from_status(run, run.status())
    finally:
        run.down()
