"""`nox -s deploy -- --check` with helm: both pinned charts rendered with our values and every
object validated strictly; without helm or the charts, one line says so. The real charts
cannot be had offline here, so a fake `helm` stands in for the rendering path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from devtools.deploy import DEPLOY, chart_archives, helm_check

# What `helm template NAME ARCHIVE ...` prints, in miniature: one object per chart.
FAKE_HELM = """#!/bin/sh
cat <<EOF
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: $2-settings
{field}:
  archive: "$3"
EOF
"""


def _fake_helm(bin_dir: Path, field: str = "data") -> None:
    bin_dir.mkdir(exist_ok=True)
    helm = bin_dir / "helm"
    helm.write_text(FAKE_HELM.replace("{field}", field))
    helm.chmod(helm.stat().st_mode | stat.S_IXUSR)


def _charts(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    for archive in chart_archives(directory).values():
        archive.write_bytes(b"")
    return directory


def test_without_helm_one_line_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    problems, line = helm_check(DEPLOY, _charts(tmp_path / "charts"), "h2ops")
    assert problems == []
    assert line == (
        "helm template: not run (no `helm` on PATH); "
        "the values were checked against the charts' schemas"
    )


def test_without_the_pinned_charts_one_line_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_helm(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    problems, line = helm_check(DEPLOY, tmp_path / "empty", "h2ops")
    assert problems == []
    assert "no airflow-1.18.0.tgz, mlflow-0.1.1.tgz in" in line
    assert "helm pull apache-airflow/airflow --version 1.18.0" in line
    assert "\n" not in line


@pytest.mark.stack
def test_with_helm_every_rendered_object_is_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_helm(tmp_path / "bin")
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "bin"), "/usr/bin", "/bin"]))
    charts = _charts(tmp_path / "charts")
    problems, line = helm_check(DEPLOY, charts, "h2ops")
    assert problems == []
    assert line.startswith("helm template: 2 objects rendered from both charts")
    # An object the strict check refuses is named with its chart and field.
    _fake_helm(tmp_path / "bin", field="dataz")
    problems, _ = helm_check(DEPLOY, charts, "h2ops")
    assert any(
        problem.startswith("airflow-1.18.0.tgz: ConfigMap/airflow-settings: (top level):")
        and "dataz" in problem
        for problem in problems
    ), problems
