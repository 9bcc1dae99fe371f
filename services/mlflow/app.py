"""Run the MLflow tracking server as one process.

`mlflow server` imports mlflow, then starts uvicorn in a child that imports it again (about 8 s
each on 2 cores) and leaves the supervisor watching a parent whose child holds the port. This
does what that command does for a single uvicorn worker, in-process, with MLflow's own helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

# What MLflow's UI keeps in the browser (localStorage, `<key>_v<version>`: JSON), written on a
# first visit only, so a choice made in the UI stays: the model-training view rather than the
# GenAI one ("Traces: no data"), no telemetry notice and no UI telemetry. The server has
# telemetry off (MLFLOW_DISABLE_TELEMETRY) and drops what the UI would send, but the notice
# says nothing of that.
UI_DEFAULTS = {
    "mlflow.workflowType_v1": "machine_learning",
    "mlflow.telemetry.info.alert.dismissed_v1": True,
    "mlflow.settings.telemetry.enabled_v1": False,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    # From the environment by default: a PostgreSQL URI holds a password `ps` would show.
    parser.add_argument("--backend-store-uri", default=os.environ.get("MLFLOW_BACKEND_STORE_URI"))
    parser.add_argument("--artifacts-destination", required=True)
    args = parser.parse_args(argv)
    if not args.backend_store_uri:
        parser.error("--backend-store-uri or MLFLOW_BACKEND_STORE_URI is required")

    import uvicorn
    from mlflow.environment_variables import (
        _MLFLOW_IN_JOB_EXECUTOR,
        _MLFLOW_SERVER_BOOT_ID,
        _MLFLOW_SGI_NAME,
    )
    from mlflow.server import _UVICORN_LOG_CONFIG
    from mlflow.server import app as flask_app
    from mlflow.server.constants import (
        ARTIFACT_ROOT_ENV_VAR,
        ARTIFACTS_DESTINATION_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        REGISTRY_STORE_URI_ENV_VAR,
        SERVE_ARTIFACTS_ENV_VAR,
    )
    from mlflow.server.handlers import initialize_backend_stores
    from mlflow.utils.server_cli_utils import resolve_default_artifact_root

    artifact_root = resolve_default_artifact_root(True, "", args.backend_store_uri)
    os.environ.update(
        {
            BACKEND_STORE_URI_ENV_VAR: args.backend_store_uri,
            REGISTRY_STORE_URI_ENV_VAR: args.backend_store_uri,
            ARTIFACT_ROOT_ENV_VAR: artifact_root,
            SERVE_ARTIFACTS_ENV_VAR: "true",
            ARTIFACTS_DESTINATION_ENV_VAR: args.artifacts_destination,
            _MLFLOW_SERVER_BOOT_ID.name: uuid.uuid4().hex,
            _MLFLOW_IN_JOB_EXECUTOR.name: "false",
            _MLFLOW_SGI_NAME.name: "uvicorn",
        }
    )
    initialize_backend_stores(args.backend_store_uri, args.backend_store_uri, artifact_root)
    serve_ui_with_defaults(flask_app)
    uvicorn.run(
        "mlflow.server.fastapi_app:app",
        host=args.host,
        port=args.port,
        workers=1,
        log_config=str(_UVICORN_LOG_CONFIG),
    )


def serve_ui_with_defaults(app: Flask) -> None:
    """Serve the UI's page (MLflow's `serve` view) with UI_DEFAULTS set before the UI reads them."""
    if app.static_folder is None:
        return
    index = Path(app.static_folder) / "index.html"
    if not index.exists():  # a source checkout of MLflow without its built UI
        return
    script = (
        f"<script>for (const [key, value] of Object.entries({json.dumps(UI_DEFAULTS)}))"
        " if (localStorage.getItem(key) === null)"
        " localStorage.setItem(key, JSON.stringify(value));</script>"
    )
    page = index.read_text(encoding="utf-8").replace("<head>", "<head>" + script, 1)

    from flask import Response

    app.view_functions["serve"] = lambda: Response(page, mimetype="text/html")


if __name__ == "__main__":
    main()
