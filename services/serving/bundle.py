"""A bundle that serves one model version elsewhere (`nox -s package-model [-- MODEL@ALIAS]`,
a command of `h2ops`: services/cli.py).

The bundle is a folder another host needs nothing else for (no tracking server, no repository):
- `model/`: the MLflow model, downloaded from the registry;
- `wheels/`: the project's own package, which the model's code imports (installed without
  its dependencies: `requirements.lock` has what the model needs);
- `requirements.lock`: exactly what the model's `requirements.txt` needs, resolved by uv with
  `uv.lock`'s versions as constraints, with hashes (`--require-hashes`);
- `Containerfile` (also `Dockerfile`): Python 3.12, that lock, and the same scoring server
  the stack runs (`mlflow models serve --env-manager local`);
- `serve.sh`: the same without a container; `README.md`: the commands; `bundle.json`: what
  it is (model, version, run, versions).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from services.engine.errors import StackError
from services.engine.layout import venv_bin
from services.plan import StackPlan
from services.serving.requirements import requirement_lines, unmet

PORT = 8080  # inside the container and in serve.sh; a remote host maps it as it likes
PYTHON_IMAGE = "python:3.12-slim-bookworm"


class BundleError(StackError):
    """The bundle could not be written; the message says what to do."""


def package(plan: StackPlan, spec: str | None, output: Path | None) -> Path:
    """Write the bundle for `spec` (the served model by default); returns its folder."""
    os.environ.update(plan.client_environment())  # the registry of this repository's stack
    settings = plan.settings
    name, version, run_id = resolve(spec or f"{settings.serving_model}@{settings.serving_alias}")
    out = output or plan.root / "dist" / "model-bundles" / f"{name}-v{version}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model_dir = download(name, version, out)
    missing = unmet(requirement_lines(model_dir))
    if missing:
        raise BundleError(
            f"{name} version {version} needs what uv.lock does not have: {'; '.join(missing)}"
        )
    wheels = build_project_wheel(plan.root, out / "wheels")
    lock(model_dir, plan.root, out)
    write_files(out, name, version, run_id, wheels)
    return out


def resolve(spec: str) -> tuple[str, str, str]:
    """(model, version, run id) for `MODEL@ALIAS` or `MODEL/VERSION`."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        if "@" in spec:
            name, alias = spec.split("@", 1)
            found = client.get_model_version_by_alias(name, alias)
        elif "/" in spec:
            name, number = spec.rsplit("/", 1)
            found = client.get_model_version(name, number)
        else:
            raise BundleError(f"{spec!r} is not MODEL@ALIAS or MODEL/VERSION")
    except MlflowException as error:
        raise BundleError(
            f"{spec} is not in the registry at {os.environ.get('MLFLOW_TRACKING_URI')} "
            f"({error.message.splitlines()[0]}): is the stack up (nox -s up), and the model "
            "registered?"
        ) from None
    return name, str(found.version), found.run_id or ""


def download(name: str, version: str, out: Path) -> Path:
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(dir=out) as folder:
        local = Path(
            mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=folder)
        )
        shutil.move(local, out / "model")
    return out / "model"


def build_project_wheel(root: Path, wheels: Path) -> list[str]:
    """The project's package as a wheel (the model's code imports it)."""
    _run([venv_bin("uv"), "build", "--wheel", "--out-dir", str(wheels), str(root / "project")])
    return sorted(path.name for path in wheels.glob("*.whl"))


def lock(model_dir: Path, root: Path, out: Path) -> None:
    """requirements.lock: the model's requirements, every version as uv.lock has it."""
    (out / "requirements.in").write_text("\n".join(requirement_lines(model_dir)) + "\n")
    constraints = _run(
        [
            venv_bin("uv"),
            "export",
            "--frozen",
            "--all-packages",
            "--no-emit-workspace",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
            "--format",
            "requirements-txt",
        ],
        cwd=root,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as handle:
        handle.write(constraints)
        handle.flush()
        _run(
            [
                venv_bin("uv"),
                "pip",
                "compile",
                str(out / "requirements.in"),
                "--constraint",
                handle.name,
                "--universal",
                "--python-version",
                "3.12",
                "--generate-hashes",
                "--no-header",
                "--quiet",
                "--output-file",
                str(out / "requirements.lock"),
            ],
            cwd=out,
        )


def write_files(out: Path, name: str, version: str, run_id: str, wheels: list[str]) -> None:
    from importlib.metadata import version as installed

    uv_version = installed("uv")
    manifest = {
        "model": name,
        "version": version,
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "mlflow": installed("mlflow"),
        "uv": uv_version,
        "wheels": wheels,
        "port": PORT,
    }
    (out / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    containerfile = f"""\
# {name} version {version} (run {run_id}), served by MLflow's scoring server.
# Written by `nox -s package-model`; build with: podman build -t {name}:{version} .
FROM {PYTHON_IMAGE}
COPY --from=ghcr.io/astral-sh/uv:{uv_version} /uv /usr/local/bin/uv
WORKDIR /srv
COPY requirements.lock ./
RUN uv venv /opt/venv --python /usr/local/bin/python3.12 \\
 && uv pip install --python /opt/venv/bin/python --require-hashes -r requirements.lock
COPY wheels/ wheels/
RUN uv pip install --python /opt/venv/bin/python --no-deps wheels/*.whl
COPY model/ model/
ENV PATH=/opt/venv/bin:$PATH MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
EXPOSE {PORT}
CMD ["mlflow", "models", "serve", "-m", "/srv/model", "--env-manager", "local", \\
     "--host", "0.0.0.0", "--port", "{PORT}"]
"""
    (out / "Containerfile").write_text(containerfile)
    (out / "Dockerfile").write_text(containerfile)
    serve = f"""\
#!/bin/sh
# Serve {name} version {version} on this host without a container: a venv from
# requirements.lock, then MLflow's scoring server on 127.0.0.1:${{PORT:-{PORT}}}.
set -eu
cd "$(dirname "$0")"
if [ ! -x .venv/bin/mlflow ]; then
  uv venv .venv --python 3.12
  uv pip install --python .venv/bin/python --require-hashes -r requirements.lock
  uv pip install --python .venv/bin/python --no-deps wheels/*.whl
fi
# mlflow models serve starts `uvicorn` from PATH: the venv's.
export PATH="$PWD/.venv/bin:$PATH" MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
exec mlflow models serve -m model --env-manager local \\
  --host "${{HOST:-127.0.0.1}}" --port "${{PORT:-{PORT}}}"
"""
    (out / "serve.sh").write_text(serve)
    (out / "serve.sh").chmod(0o755)
    readme = f"""\
# {name} version {version}

Run `{run_id}`, bundled by `nox -s package-model` on {manifest["created"]}. Everything the
model needs is here: `model/` (the MLflow model), `requirements.lock` (its requirements with
the versions of the repository's `uv.lock`, hashed), `wheels/` (the project's package, which
the model's code imports) and the scoring server's start command. No tracking server is needed.

## With a container (Docker or Podman)

```sh
podman build -t {name}:{version} .          # or: docker build -t {name}:{version} .
podman run --rm -p {PORT}:{PORT} {name}:{version}
```

## Without a container (Linux or macOS, with uv)

```sh
./serve.sh                                  # HOST=0.0.0.0 PORT={PORT} ./serve.sh to expose it
```

## Call it

MLflow's scoring server: `GET /ping`, `GET /version`, `POST /invocations`.

```sh
curl -s localhost:{PORT}/ping
curl -s localhost:{PORT}/invocations -H 'Content-Type: application/json' \\
  -d '{{"inputs": ...}}'                     # the model's input; see model/MLmodel (signature)
```

Copy the folder to the remote host (`rsync -a`, `scp -r`, or `tar czf`), then run one of the
above there. The container build was not run where this bundle was written.
"""
    (out / "README.md").write_text(readme)


def _run(command: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BundleError(f"{' '.join(command[:3])} ... failed:\n{result.stderr.strip()}")
    return result.stdout


if __name__ == "__main__":  # the command's old spelling; `python -m services package-model`
    from services.cli import main

    sys.exit(main(["package-model", *sys.argv[1:]]))
