"""Run the MLflow tracking server as one process.

`mlflow server` imports mlflow, then starts uvicorn in a child that imports it again (about 8 s
each on 2 cores) and leaves the supervisor watching a parent whose child holds the port. This
does what that command does for a single uvicorn worker, in-process, with MLflow's own helpers.
"""

from __future__ import annotations

import argparse
import os
import uuid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-store-uri", required=True)
    parser.add_argument("--artifacts-destination", required=True)
    args = parser.parse_args(argv)

    import uvicorn
    from mlflow.environment_variables import (
        _MLFLOW_IN_JOB_EXECUTOR,
        _MLFLOW_SERVER_BOOT_ID,
        _MLFLOW_SGI_NAME,
    )
    from mlflow.server import _UVICORN_LOG_CONFIG
    from mlflow.server.constants import (
        ARTIFACT_ROOT_ENV_VAR,
        ARTIFACTS_DESTINATION_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        REGISTRY_STORE_URI_ENV_VAR,
        SERVE_ARTIFACTS_ENV_VAR,
    )
    from mlflow.server.handlers import initialize_backend_stores
    from mlflow.utils.server_cli_utils import resolve_default_artifact_root

    artifact_root = resolve_default_artifact_root(True, None, args.backend_store_uri)
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
    uvicorn.run(
        "mlflow.server.fastapi_app:app",
        host=args.host,
        port=args.port,
        workers=1,
        log_config=str(_UVICORN_LOG_CONFIG),
    )


if __name__ == "__main__":
    main()
