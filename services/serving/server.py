"""Serve `models:/<model>@<alias>` with MLflow's own scoring server, and follow the alias.

MLflow's pyfunc scoring server (`mlflow.pyfunc.scoring_server.init`: /ping, /health,
/version, /invocations, the app behind `mlflow models serve`) answers every request. This
program puts one switch in front of it: a thread asks the registry every few seconds where the
alias points, and when it moved, downloads and loads the new version beside the one being
served, builds a new scoring app for it and swaps the switch over. Requests never see a
model half-loaded: before the swap the old version answers, after it the new one (requests
already inside the old app finish there). No second process or port handover is needed, so
there is no window of failed requests at all; the cost is holding both models during a load.

Until the alias exists, /ping answers 503 with the reason (the service is *waiting*, not
failing) and the loop keeps asking. A version whose requirements the environment does not
meet is refused, named with what is missing; an older version keeps being served if one was.
`GET /h2ops/served` says what is served, for `status`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from services.serving.requirements import requirement_lines, unmet

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

SERVED_PATH = "/h2ops/served"
log = logging.getLogger("h2ops.serving")


@dataclass(frozen=True)
class Served:
    """What the switch serves now: `state` is waiting, loading, serving or refused."""

    model: str
    alias: str
    state: str = "loading"
    version: str = ""
    run_id: str = ""
    reason: str = ""
    refused: str = ""  # a newer version that was refused while an older one is served

    def to_json(self) -> dict[str, str]:
        return asdict(self)


class Switch:
    """An ASGI app that hands each request to the scoring app of the model served now."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.scoring: ASGIApp | None = None

    def swap(self, served: Served, scoring: ASGIApp | None = None) -> None:
        # Two reference assignments; a request reads `scoring` once, so it gets one whole app.
        if scoring is not None:
            self.scoring = scoring
        self.served = served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.responses import JSONResponse

        if scope["type"] == "lifespan":  # nothing to start or stop; the loop runs beside
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http" and scope["path"] == SERVED_PATH:
            await JSONResponse(self.served.to_json())(scope, receive, send)
            return
        scoring = self.scoring
        if scoring is None:
            body = {"error_code": "NOT_READY", "message": self.served.reason}
            await JSONResponse(body, status_code=503)(scope, receive, send)
            return
        await scoring(scope, receive, send)


class Follower:
    """Asks the registry where the alias points, and loads and swaps in each new version."""

    def __init__(self, switch: Switch, models_dir: Path, poll_seconds: float) -> None:
        self.switch = switch
        self.models_dir = models_dir
        self.poll_seconds = poll_seconds
        self.refused: dict[str, str] = {}  # version -> why

    def run_forever(self) -> None:
        # Import the scoring server and the loader now, while no champion is waiting on them:
        # the first version then loads in about a second instead of after these imports.
        from mlflow.pyfunc import load_model, scoring_server  # noqa: F401

        while True:
            try:
                self.step()
            except Exception as error:  # the registry unreachable, a broken download: retry
                log.warning("could not follow the alias: %s: %s", type(error).__name__, error)
                if self.switch.scoring is None:
                    self.switch.swap(replace(self.switch.served, reason=f"{error}"))
            time.sleep(self.poll_seconds)

    def step(self) -> None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        served = self.switch.served
        uri = f"models:/{served.model}@{served.alias}"
        try:
            version = MlflowClient().get_model_version_by_alias(served.model, served.alias)
        except MlflowException as error:
            if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            if self.switch.scoring is None:
                reason = (
                    f"waiting for a champion: no version of {served.model!r} has the alias "
                    f"@{served.alias} yet (train and register one, e.g. the example_training DAG)"
                )
                if served.state != "waiting":
                    log.info("%s", reason)
                self.switch.swap(replace(served, state="waiting", reason=reason))
            return
        if version.version == served.version or version.version in self.refused:
            return
        log.info("%s is version %s (run %s): loading it", uri, version.version, version.run_id)
        self.load(str(version.version), version.run_id or "")

    def load(self, version: str, run_id: str) -> None:
        import mlflow.artifacts
        from mlflow.pyfunc import load_model, scoring_server

        served = self.switch.served
        started = time.monotonic()
        target = self.models_dir / version
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        local = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{served.model}/{version}", dst_path=str(target)
            )
        )
        missing = unmet(requirement_lines(local))
        if missing:
            why = (
                f"{served.model} version {version} needs what the locked environment lacks: "
                f"{'; '.join(missing)}. Add it to the project's dependencies (uv add ...), or "
                "register a model that needs nothing beyond uv.lock"
            )
            log.error("refused: %s", why)
            self.refused[version] = why
            shutil.rmtree(target, ignore_errors=True)
            if self.switch.scoring is None:
                self.switch.swap(replace(served, state="refused", reason=why))
            else:
                self.switch.swap(replace(served, refused=why))
            return
        model = load_model(str(local))
        scoring = scoring_server.init(model)
        previous = served.version
        self.switch.swap(
            Served(served.model, served.alias, "serving", version, run_id, reason=""), scoring
        )
        log.info(
            "serving %s version %s (run %s), loaded in %.1f s",
            served.model,
            version,
            run_id,
            time.monotonic() - started,
        )
        if previous and previous != version:
            shutil.rmtree(self.models_dir / previous, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--models-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    import uvicorn

    switch = Switch(Served(args.model, args.alias, reason="asking the registry"))
    follower = Follower(switch, args.models_dir, args.poll_seconds)
    threading.Thread(target=follower.run_forever, name="follow-alias", daemon=True).start()
    uvicorn.run(switch, host=args.host, port=args.port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
