"""Calling the served champion over HTTP: MLflow's scoring server, as the stack runs it.

The stack's `serving` service serves `models:/example-water-mask@champion` at
`H2OPS_SERVING_URL` (every task and kernel has it) with MLflow's own endpoints: `/ping`,
`/version` and `/invocations` (`{"inputs": ...}` in, `{"predictions": ...}` out). It follows
the alias, so right after a new champion it may still serve the previous version for a few
seconds; `wait_until_serving` waits (bounded) for the version a caller expects.
"""

from __future__ import annotations

import os
import time

import httpx
import numpy as np

SERVING_URL_VARIABLE = "H2OPS_SERVING_URL"
SERVED_PATH = "/h2ops/served"  # the stack's own: which version and run are served


def serving_url() -> str | None:
    """The served model's URL from the stack's client environment; None outside the stack."""
    return os.environ.get(SERVING_URL_VARIABLE) or None


def predict_served(url: str, bands: np.ndarray, timeout: float = 60.0) -> np.ndarray:
    """Water masks (tile, row, column) for raw bands (tile, band, row, column), over HTTP."""
    payload = {"inputs": np.asarray(bands, dtype=np.float32).tolist()}
    response = httpx.post(f"{url}/invocations", json=payload, timeout=timeout)
    if response.is_error:
        raise RuntimeError(f"{url}/invocations answered {response.status_code}: {response.text}")
    return np.asarray(response.json()["predictions"], dtype=np.uint8)


def served_version(url: str) -> dict[str, str]:
    """What the stack serves now: model, alias, state, version and run id."""
    response = httpx.get(f"{url}{SERVED_PATH}", timeout=10)
    response.raise_for_status()
    return response.json()


def wait_until_serving(url: str, version: str, timeout: float = 120.0) -> dict[str, str]:
    """Wait until `url` serves model version `version`; RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        served = served_version(url)
        if served["state"] == "serving" and served["version"] == version:
            return served
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"{url} still serves version {served['version'] or 'none'} ({served['state']}: "
                f"{served['reason'] or served['refused']}) {timeout:.0f} s after version {version} "
                "became the champion: see `nox -s logs -- serving`"
            )
        time.sleep(1.0)
