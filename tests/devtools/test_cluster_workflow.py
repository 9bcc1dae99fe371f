""".github/workflows/cluster.yml, the real install on kind: its tools pinned by version and
checksum, and every step the issue asks of it present (it never ran here: no Docker engine)."""

from __future__ import annotations

import re

import yaml

from services.settings import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "cluster.yml"


def _runs() -> str:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return "\n".join(step.get("run", "") for step in workflow["jobs"]["kind"]["steps"])


def test_helm_and_kind_are_pinned_by_version_and_checksum() -> None:
    env = yaml.safe_load(WORKFLOW.read_text())["env"]
    for tool in ("HELM", "KIND"):
        assert re.fullmatch(r"v\d+\.\d+\.\d+", env[f"{tool}_VERSION"]), tool
        assert re.fullmatch(r"[0-9a-f]{64}", env[f"{tool}_SHA256"]), tool
    runs = _runs()
    assert runs.count("sha256sum --check --strict") == 2


def test_it_builds_installs_both_charts_trains_and_checks_the_champion() -> None:
    runs = _runs()
    assert "docker build -f deploy/Dockerfile" in runs
    assert "kind create cluster" in runs and "kind load docker-image" in runs
    assert "nox -s deploy -- --secrets" in runs
    assert "nox -s deploy -- --check" in runs
    assert "-f deploy/values/mlflow.yaml" in runs and "-f deploy/values/airflow.yaml" in runs
    assert "kubectl apply -f deploy/k8s/serving.yaml" in runs
    assert "airflow dags trigger example_training" in runs
    assert "get_model_version_by_alias" in runs
