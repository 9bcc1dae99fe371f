"""Settings: defaults, overrides, clear errors, and credentials generated once into `.env`."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import get_args

import pytest

from services.settings import (
    S3Backend,
    SettingsError,
    StackSettings,
    ensure_credentials,
    hint_for,
    load_settings,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith("H2OPS_"):
            monkeypatch.delenv(key)
    env_file = tmp_path / "stack.env"
    monkeypatch.setenv("H2OPS_ENV_FILE", str(env_file))
    return env_file


def test_defaults_are_loopback_and_documented_ports(clean_env: Path, tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings.host == "127.0.0.1"
    ports = (settings.airflow_port, settings.mlflow_port, settings.jupyter_port)
    assert ports == (8080, 5000, 8888)
    assert (settings.s3_port, settings.s3_console_port) == (9000, 9001)
    assert settings.s3_backend == "auto"
    assert settings.state_dir == tmp_path / ".h2ops"


def test_environment_beats_env_file(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env.write_text("H2OPS_MLFLOW_PORT=5100\nH2OPS_AIRFLOW_PORT=8100\n")
    monkeypatch.setenv("H2OPS_AIRFLOW_PORT", "8200")
    settings = load_settings(tmp_path)
    assert settings.mlflow_port == 5100
    assert settings.airflow_port == 8200


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("H2OPS_AIRFLOW_PORT", "abc", "H2OPS_AIRFLOW_PORT='abc'"),
        ("H2OPS_S3_PORT", "70000", "H2OPS_S3_PORT='70000'"),
        ("H2OPS_S3_BACKEND", "ceph", "H2OPS_S3_BACKEND='ceph'"),
        ("H2OPS_JUPYTER_PORT", "5000", "H2OPS_JUPYTER_PORT and H2OPS_MLFLOW_PORT are both 5000"),
    ],
)
def test_bad_values_name_the_variable_and_value(
    clean_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings(tmp_path)
    assert expected in str(error.value)


def test_credentials_are_generated_once_private_and_kept(clean_env: Path, tmp_path: Path) -> None:
    clean_env.write_text("# mine\nH2OPS_MLFLOW_PORT=5100\n")
    first = ensure_credentials(load_settings(tmp_path))
    assert all(first.credentials.values())
    assert first.missing_credentials() == []
    assert stat.S_IMODE(clean_env.stat().st_mode) == 0o600
    text = clean_env.read_text()
    assert text.startswith("# mine\nH2OPS_MLFLOW_PORT=5100\n")
    second = ensure_credentials(load_settings(tmp_path))
    assert second.credentials == first.credentials
    assert clean_env.read_text() == text


def test_no_credential_has_a_default() -> None:
    defaults = StackSettings.model_fields
    for name in ("airflow_password", "jupyter_token", "s3_access_key", "s3_secret_key"):
        assert defaults[name].default == ""


def test_two_projects_get_different_credentials(clean_env: Path, tmp_path: Path) -> None:
    first = ensure_credentials(load_settings(tmp_path)).credentials
    clean_env.unlink()
    second = ensure_credentials(load_settings(tmp_path)).credentials
    assert first["airflow_password"] != second["airflow_password"]
    assert first["s3_secret_key"] != second["s3_secret_key"]


def test_project_choices_in_pyproject_sit_below_env_and_dotenv(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.h2ops]\ns3_backend = "none"\nmlflow_port = 5200\n'
    )
    settings = load_settings(tmp_path)
    assert (settings.s3_backend, settings.mlflow_port) == ("none", 5200)
    clean_env.write_text("H2OPS_MLFLOW_PORT=5300\n")
    assert load_settings(tmp_path).mlflow_port == 5300
    monkeypatch.setenv("H2OPS_S3_BACKEND", "rclone")
    assert load_settings(tmp_path).s3_backend == "rclone"
    (tmp_path / "pyproject.toml").write_text('[tool.h2ops]\ns3_backend = "ceph"\n')
    monkeypatch.delenv("H2OPS_S3_BACKEND")
    with pytest.raises(SettingsError, match="H2OPS_S3_BACKEND='ceph'"):
        load_settings(tmp_path)


def test_each_repository_reads_its_own_pyproject(clean_env: Path, tmp_path: Path) -> None:
    roots = {"none": tmp_path / "one", "minio": tmp_path / "two"}
    for backend, root in roots.items():
        root.mkdir()
        (root / "pyproject.toml").write_text(f'[tool.h2ops]\ns3_backend = "{backend}"\n')
    for backend, root in roots.items():
        assert load_settings(root).s3_backend == backend
    assert StackSettings().s3_backend == "auto", "settings built directly read no pyproject"


def test_hints_come_from_the_fields_types_and_bounds() -> None:
    assert hint_for("airflow_port") == "use a whole number from 1 to 65535"
    assert hint_for("airflow_parallelism") == "use a whole number from 1 to 64"
    assert hint_for("ready_timeout") == "use a number greater than 0"
    assert hint_for("s3_backend") == "use one of " + ", ".join(get_args(S3Backend))
    assert hint_for("airflow_preload") == "use true or false"


BAD_ENV_FILES = [
    pytest.param(
        b"H2OPS_MLFLOW_PORT=5100\nH2OPS_HOST=no-such-host.invalid\n",
        "line 2: H2OPS_HOST='no-such-host.invalid' is not valid (cannot be resolved",
        "use an address of this machine",
        id="unresolvable-host",
    ),
    pytest.param(
        b"# caf\xc3\xa9 is fine\nH2OPS_MLFLOW_PORT=5100\n\nH2OPS_S3_BACKEND=rcl\xe9ne\n",
        "line 4: byte b'\\xe9' is not UTF-8",
        "save the file as UTF-8",
        id="not-utf8",
    ),
    pytest.param(
        b"H2OPS_MLFLOW_PORT=5100\n\n# a comment\nH2OPS_AIRFLOW_PORT 8100\n",
        "line 4: cannot read `H2OPS_AIRFLOW_PORT 8100`: it has no `=`",
        "write NAME=VALUE",
        id="no-equals",
    ),
    pytest.param(
        b"H2OPS_S3_BACKEND\n",
        "line 1: `H2OPS_S3_BACKEND` has no `=`",
        "write H2OPS_S3_BACKEND=VALUE, or delete the line",
        id="bare-name",
    ),
    pytest.param(
        b"H2OPS_MLFLOW_PORT=5100\nH2OPS_JUPYTER_TOKEN='abc\nH2OPS_AIRFLOW_PORT=8100\n",
        "line 2: cannot read `H2OPS_JUPYTER_TOKEN='abc`: the ' that opens the value is never",
        "close it, or remove it",
        id="unbalanced-quote",
    ),
    pytest.param(
        b"H2OPS_MLFOW_PORT=5100\n",
        "line 1: H2OPS_MLFOW_PORT is not a setting",
        "did you mean H2OPS_MLFLOW_PORT?",
        id="misspelt-name",
    ),
    pytest.param(
        b"H2OPS_S3_PORT=9100\nH2OPS_S3_PORT=9200\n",
        "line 2: H2OPS_S3_PORT is set again (first on line 1)",
        "keep one",
        id="set-twice",
    ),
]


@pytest.mark.parametrize(("content", "problem", "fix"), BAD_ENV_FILES)
def test_a_bad_env_file_is_refused_naming_file_line_and_fix(
    clean_env: Path, tmp_path: Path, content: bytes, problem: str, fix: str
) -> None:
    clean_env.write_bytes(content)
    with pytest.raises(SettingsError) as error:
        load_settings(tmp_path)
    message = str(error.value)
    assert f"{clean_env}, {problem}" in message
    assert fix in message


def test_a_good_env_file_with_comments_quotes_and_other_tools_variables_is_read(
    clean_env: Path, tmp_path: Path
) -> None:
    clean_env.write_bytes(
        "\ufeff# café\n\nexport H2OPS_MLFLOW_PORT=5100  # a comment\n"
        "H2OPS_JUPYTER_TOKEN='a b#c'\nH2OPS_AIRFLOW_PASSWORD=\"two\nlines\"\n"
        "OTHER_TOOL=anything\n".encode()
    )
    settings = load_settings(tmp_path)
    assert settings.mlflow_port == 5100
    assert settings.jupyter_token == "a b#c"
    assert settings.airflow_password == "two\nlines"


def test_a_bad_value_from_the_environment_names_no_line(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env.write_text("H2OPS_HOST=127.0.0.1\n")
    monkeypatch.setenv("H2OPS_HOST", "192.0.2.1")  # TEST-NET: never this machine's
    with pytest.raises(SettingsError) as error:
        load_settings(tmp_path)
    assert str(error.value).startswith("H2OPS_HOST='192.0.2.1' is not valid (not an address")


def test_an_env_file_open_to_others_is_made_private(clean_env: Path, tmp_path: Path) -> None:
    clean_env.write_text("# mine\n")
    ensure_credentials(load_settings(tmp_path))
    clean_env.chmod(0o644)
    ensure_credentials(load_settings(tmp_path))  # nothing missing: only the mode changes
    assert stat.S_IMODE(clean_env.stat().st_mode) == 0o600
