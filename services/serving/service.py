"""The champion, served: MLflow's pyfunc scoring server for `models:/<model>@<alias>`.

`server.py` runs it from the stack's own environment and follows the alias; this declares it.
Healthy only when /ping answers with a model loaded; with no version under the alias yet it is
*waiting* (up succeeds, status says so); a version the environment cannot run is *refused*.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import httpx

from services.engine.records import Health, HealthProbe, Program, Service
from services.serving import server

if TYPE_CHECKING:
    from services.plan import StackPlan


# A registry that does not answer is asked again on the next poll, not retried for minutes
# inside one (MLflow's client defaults: 7 retries, 120 s timeout); the cluster's too (deploy/).
REGISTRY_CLIENT_ENVIRONMENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def declare(plan: StackPlan) -> Service:
    settings = plan.settings
    home = plan.layout.service_dir("serving")
    url = plan.url(settings.serving_port)
    return Service(
        name="serving",
        title="Model serving",
        programs=[
            Program(
                name="serving",
                command=[
                    sys.executable,
                    "-m",
                    server.__name__,
                    "--host",
                    settings.host,
                    "--port",
                    str(settings.serving_port),
                    "--model",
                    settings.serving_model,
                    "--alias",
                    settings.serving_alias,
                    "--poll-seconds",
                    str(settings.serving_poll_seconds),
                    "--models-dir",
                    str(home / "models"),
                ],
                environment=REGISTRY_CLIENT_ENVIRONMENT,
                directory=home,
            )
        ],
        url=url,
        probe=served_probe(url),
        ports={"H2OPS_SERVING_PORT": settings.serving_port},
        requires=("mlflow",),
        prepare=lambda: (home / "models").mkdir(parents=True, exist_ok=True),
        details={"model_uri": f"models:/{settings.serving_model}@{settings.serving_alias}"},
    )


def served_probe(url: str) -> HealthProbe:
    """Healthy when /ping answers 200 (MLflow's: a model is loaded); says which version."""

    def probe(client: httpx.Client) -> Health:
        try:
            served = client.get(f"{url}{server.SERVED_PATH}").json()
            ping = client.get(f"{url}/ping")
        except (httpx.HTTPError, ValueError) as error:
            return Health(False, f"{url}: {type(error).__name__}")
        facts = {"model_version": served["version"], "run_id": served["run_id"]}
        state = served["state"]
        if state == "serving":
            detail = f"version {served['version']} (run {served['run_id']})"
            if served["refused"]:
                detail += f"; refused a newer one: {served['refused']}"
            if ping.status_code == 200:
                return Health(True, detail, facts=facts)
            return Health(False, f"{url}/ping: HTTP {ping.status_code}", facts=facts)
        if state == "waiting":
            return Health(False, served["reason"], waiting=True, facts=facts)
        if state == "refused":
            return Health(False, served["reason"], refused=True, facts=facts)
        return Health(False, served["reason"] or state, facts=facts)

    return probe
