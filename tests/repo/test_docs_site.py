"""The docs site tells the truth: it builds strictly (no broken link or anchor), its generated
pages name every setting and every session, it loads nothing from the internet, and the README
keeps its two-command quick start."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.docs import nox_sessions_with_help, performance_markdown, render
from devtools.testing import nox_sessions
from services.settings import ENV_PREFIX, REPO_ROOT, StackSettings

ROOT = REPO_ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as `mkdocs build --strict` writes it (a process: its tests are `stack`)."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return out


@pytest.mark.stack
def test_every_setting_is_on_the_generated_settings_page(site: Path) -> None:
    page = (site / "reference" / "settings.html").read_text()
    for name in StackSettings.model_fields:
        assert f"{ENV_PREFIX}{name.upper()}" in page, name


@pytest.mark.stack
def test_every_session_is_on_the_generated_sessions_page(site: Path) -> None:
    page = (site / "reference" / "sessions.html").read_text()
    sessions = nox_sessions(ROOT / "noxfile.py")
    assert set(nox_sessions_with_help()) == sessions
    for name in sessions:
        assert f"nox -s {name}" in page, name


@pytest.mark.stack
def test_every_service_folder_has_a_page(site: Path) -> None:
    rooms = sorted(path.parent.name for path in (ROOT / "services").glob("*/service.py"))
    for room in rooms:
        assert (site / "services" / f"{room}.html").is_file(), room


@pytest.mark.stack
def test_the_site_reads_offline(site: Path) -> None:
    """No font, script or style from a CDN: links out are fine, loads are not."""
    for page in site.rglob("*.html"):
        loads = re.findall(
            r"<(?:script|link)[^>]+(?:src|href)=\"(https?://[^\"]+)\"", page.read_text()
        )
        assert not loads, f"{page.relative_to(site)} loads {loads}"


@pytest.mark.stack
def test_the_screenshots_are_shown(site: Path) -> None:
    index = (site / "index.html").read_text()
    for picture in sorted((ROOT / "docs" / "screenshots").glob("*.png")):
        assert f"screenshots/{picture.name}" in index, picture.name


def test_the_performance_page_comes_from_a_bench_json(tmp_path: Path) -> None:
    run = {
        "when": "2026-01-01T00:00:00+00:00",
        "commit": "abc1234",
        "python": "3.12.1",
        "machine": {"summary": "2 cores"},
        "settings": {"runs": 1, "idle_seconds": 30},
        "h2ops": {
            "up_median_s": 12.5,
            "pss_mb": 801.2,
            "pss_by_program_mb": {"mlflow": 190.1},
            "services": ["s3", "mlflow"],
            "with_champion": {"up_s": 20.5, "pss_mb": 950.5, "serving": "version 3"},
        },
    }
    (tmp_path / "bench-2026-01-01T000000+0000-abc1234.json").write_text(
        __import__("json").dumps(run)
    )
    page = performance_markdown(tmp_path)
    assert "12.5 s" in page and "801.2 MB" in page and "mlflow 190.1" in page
    assert "abc1234" in page and "ran: s3, mlflow." in page
    assert "model loaded, 20.5 s; idle memory 950.5 MB (serving: version 3)" in page
    assert "<!-- generated" not in render("<!-- generated: performance -->")


def test_the_readme_is_a_short_page_with_the_quick_start_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    block = re.search(r"## Quick start\n\n```sh\n(.*?)```", readme, re.S)
    assert block and block.group(1).split("\n")[:2] == [
        "python3 noxfile.py -s up",
        "python3 noxfile.py -s test",
    ]
    index = (ROOT / "docs" / "index.md").read_text()
    assert "python3 noxfile.py -s up\npython3 noxfile.py -s test" in index
