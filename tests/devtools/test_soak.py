"""`nox -s soak`'s judging and reporting, on real files and a report shaped as it writes one
(the soak itself runs for an hour and is never run by the suite)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from devtools import soak
from devtools.docs import soak_markdown


def test_disk_usage_counts_what_is_on_disk_by_top_level_folder(tmp_path: Path) -> None:
    (tmp_path / "airflow" / "logs" / "deep").mkdir(parents=True)
    (tmp_path / "airflow" / "logs" / "deep" / "a.log").write_bytes(os.urandom(300_000))
    (tmp_path / "mlflow").mkdir()
    (tmp_path / "mlflow" / "db").write_bytes(os.urandom(100_000))
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "airflow")  # not counted twice

    usage = soak.disk_usage(tmp_path)

    assert set(usage) == {"airflow", "mlflow", "empty", "link", "total"}
    assert 300_000 <= usage["airflow"] < 400_000
    assert 100_000 <= usage["mlflow"] < 200_000
    assert usage["link"] < 8192 and usage["empty"] < 8192
    assert usage["total"] == sum(v for k, v in usage.items() if k != "total")


def figures(minute: float, scheduler: float) -> dict[str, Any]:
    memory = {"airflow-scheduler": scheduler, "mlflow": 300.0, "serving": 200.0}
    return {
        "minute": minute,
        "pss_by_program_mb": memory,
        "pss_total_mb": sum(memory.values()),
        "state_dir_bytes": {"airflow": 2**20, "total": 2**20},
    }


def report(scheduler_at_end: float, training: dict[str, int]) -> dict[str, Any]:
    snapshots = {
        "start": figures(0, 200.0),
        "warmup": figures(10, 250.0),
        "end": figures(61, scheduler_at_end),
    }
    results: dict[str, Any] = {
        "settings": {"minutes": 60},
        "snapshots": snapshots,
        "runs": {
            soak.TRAINING: {
                "states": training,
                "median_duration_s": 40.0,
                "trigger_errors": 0,
                "minutes_skipped": 12,
                "tasks_retried": ["manual__1 generate: success (try 2)"],
            },
            soak.INFERENCE: {"states": {"success": 58}, "median_duration_s": 20.0},
        },
    }
    results["growth_after_warmup"] = soak.growth(
        snapshots["warmup"]["pss_by_program_mb"], snapshots["end"]["pss_by_program_mb"]
    )
    return results


def test_a_steady_soak_passes_and_growth_is_judged_after_the_warm_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    steady = report(270.0, {"success": 60})  # +8 % after the warm-up, +35 % since the start
    assert steady["growth_after_warmup"]["airflow-scheduler"] == 0.08
    assert soak.verdict(steady) == []
    soak.print_report(steady)
    printed = capsys.readouterr().err
    assert "airflow-scheduler" in printed and "+8.0%" in printed and "total" in printed
    assert "12 minute(s) skipped while the last run went on, 1 task(s) retried" in printed


def test_a_failed_run_or_a_growing_program_fails_the_soak() -> None:
    problems = soak.verdict(report(300.0, {"success": 58, "failed": 2}))
    assert problems == [
        "example_training: runs not successful: {'failed': 2}",
        "airflow-scheduler grew 20% after the warm-up (limit 10%)",
    ]


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5"])
def test_minutes_must_be_a_whole_number(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        soak.main(["--minutes", value])
    assert f"{value!r} is not a whole number of minutes >= 1" in capsys.readouterr().err


def test_the_performance_page_shows_the_newest_soak(tmp_path: Path) -> None:
    older = report(270.0, {"success": 60}) | {"commit": "aaaaaaa", "when": "2026-01-01"}
    newer = report(300.0, {"success": 59, "failed": 1}) | {
        "commit": "bbbbbbb",
        "when": "2026-02-01",
    }
    newer["problems"] = soak.verdict(newer)
    (tmp_path / "soak-2026-01-01-aaaaaaa.json").write_text(json.dumps(older))
    (tmp_path / "soak-2026-02-01-bbbbbbb.json").write_text(json.dumps(newer))

    page = soak_markdown(tmp_path)

    assert "commit `bbbbbbb`" in page and "aaaaaaa" not in page
    assert "| airflow-scheduler | 200.0 | 250.0 | 300.0 | +20.0% |" in page
    assert "`example_training`: 59 success, 1 failed, 1 task(s) retried, 12 minute(s)" in page
    assert "Missed: example_training: runs not successful: {'failed': 1}" in page
    assert "No soak run is committed yet" in soak_markdown(tmp_path / "none")
