"""`nox -s deploy -- --secrets`: every Secret the values reference, owner-only, fresh random
keys where none is given, kept on a second run, and no value ever printed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from devtools.deploy import DEPLOY, main

GIVEN = {
    "H2OPS_CLUSTER_S3_ACCESS_KEY_ID": "given-access-key",
    "H2OPS_CLUSTER_S3_SECRET_ACCESS_KEY": "given-secret-key",
    "H2OPS_CLUSTER_AIRFLOW_DATABASE_URL": "postgresql://airflow:pw1@db:5432/airflow",
    "H2OPS_CLUSTER_MLFLOW_DATABASE_URL": "postgresql://mlflow:pw2@db:5432/mlflow",
}
GENERATED = [
    ("h2ops-airflow-fernet", "fernet-key"),
    ("h2ops-airflow-api-secret", "api-secret-key"),
    ("h2ops-airflow-jwt", "jwt-secret"),
    ("h2ops-airflow-admin", "password"),
]


def _secrets(path: Path) -> dict[tuple[str, str], str]:
    return {
        (document["metadata"]["name"], key): value
        for document in yaml.safe_load_all(path.read_text())
        for key, value in document["stringData"].items()
    }


def _write(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["--secrets", "--secrets-file", str(path)]) == 0
    captured = capsys.readouterr()
    return captured.out + captured.err


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GIVEN.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("given")
def test_the_secrets_are_owner_only_random_distinct_and_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "one" / "secrets.yaml", tmp_path / "two" / "secrets.yaml"
    printed = _write(first, capsys) + _write(second, capsys)
    for path in (first, second):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    ones, twos = _secrets(first), _secrets(second)
    made = [ones[key] for key in GENERATED] + [twos[key] for key in GENERATED]
    assert len(set(made)) == len(made), "a generated key repeats"
    assert all(len(value) >= 32 for value in made)
    Fernet(ones[("h2ops-airflow-fernet", "fernet-key")].encode())
    assert ones[("h2ops-s3", "access-key-id")] == "given-access-key"
    for key, value in [*ones.items(), *twos.items()]:
        if key != ("h2ops-airflow-admin", "username"):  # `admin`, a word in the names too
            assert value not in printed, key
    assert "kubectl apply -f" in printed


@pytest.mark.usefixtures("given")
def test_a_second_run_keeps_the_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "secrets.yaml"
    _write(path, capsys)
    before = _secrets(path)
    _write(path, capsys)
    assert _secrets(path) == before


@pytest.mark.usefixtures("given")
def test_every_secret_the_values_reference_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "secrets.yaml"
    _write(path, capsys)
    written = _secrets(path)
    airflow = yaml.safe_load((DEPLOY / "values" / "airflow.yaml").read_text())
    mlflow = yaml.safe_load((DEPLOY / "values" / "mlflow.yaml").read_text())
    referenced = {(entry["secretName"], entry["secretKey"]) for entry in airflow["secret"]}
    referenced |= {
        ("h2ops-airflow-metadata", "connection"),
        (airflow["fernetKeySecretName"], "fernet-key"),
        (airflow["apiSecretKeySecretName"], "api-secret-key"),
        (airflow["jwtSecretName"], "jwt-secret"),
    }
    references = [
        entry["valueFrom"]["secretKeyRef"] for entry in mlflow["env"] if "valueFrom" in entry
    ]
    references.append(mlflow["mlflow"]["backendStoreUriFrom"]["secretKeyRef"])
    referenced |= {(ref["name"], ref["key"]) for ref in references}
    assert referenced <= set(written), referenced - set(written)
    # aws_default on the cluster is the local stack's shape, with the cluster's S3.
    connection = yaml.safe_load(written[("h2ops-s3", "aws-default-connection")])
    assert connection["login"] == "given-access-key"
    assert connection["extra"]["endpoint_url"] == "https://s3.example.com"


def test_a_value_only_the_user_knows_must_be_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in GIVEN:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "secrets.yaml"
    assert main(["--secrets", "--secrets-file", str(path)]) == 1
    assert "set H2OPS_CLUSTER_S3_ACCESS_KEY_ID" in capsys.readouterr().err
    assert not path.exists()
