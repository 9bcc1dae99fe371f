"""H2Ops sessions: `nox -s up` starts the stack, `nox -s test` tests it; `nox -l` lists all.

`python3 noxfile.py -s up` does the same without nox installed (any Python 3.9+, PEP 668 too):
services/bootstrap.py installs the locked nox and uv into `.nox/launcher` and runs this file
from there. Each session syncs `.venv` from uv.lock, then hands its arguments to
`python -m services`, a dev tool (`devtools.init`, `devtools.bench`) or a tool; the logic
lives in `services/` and `devtools/`, where tests can reach it.
"""

from __future__ import annotations

import importlib.metadata
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from services.bootstrap import ensure_nox, sync_command, venv_python

if __name__ == "__main__":
    ensure_nox(__file__, sys.argv[1:])

import nox  # after ensure_nox, which provides it

nox.options.sessions = ["lint", "test"]
nox.options.default_venv_backend = "none"


def _sync(session: nox.Session) -> None:
    """Install exactly what uv.lock pins into `.venv` (every session does, first)."""
    session.run(*sync_command(), external=True, silent=True)


def _python(session: nox.Session, *argv: str, env: dict[str, str] | None = None) -> None:
    session.run(venv_python(), *argv, external=True, env=env)


def _synced(session: nox.Session, *argv: str, env: dict[str, str] | None = None) -> None:
    """Sync `.venv`, then run `python ARGV... POSARGS` from it."""
    _sync(session)
    _python(session, *argv, *session.posargs, env=env)


def _stack(session: nox.Session, command: str, *options: str) -> None:
    """A command of `h2ops` (services/cli.py), the one home of what a user runs."""
    _synced(session, "-m", "services", command, *options)


@nox.session
def up(session: nox.Session) -> None:
    """Start the stack (or `-- SERVICE...`) and wait until healthy; prints URLs and logins."""
    _stack(session, "up")


@nox.session
def down(session: nox.Session) -> None:
    """Stop the stack (or `-- SERVICE...`); data is kept."""
    _stack(session, "down")


@nox.session
def restart(session: nox.Session) -> None:
    """Restart services: `nox -s restart -- mlflow`."""
    _stack(session, "restart")


@nox.session
def status(session: nox.Session) -> None:
    """Show health, URLs and credentials; `-- --json` for scripts. Exits 0 only if healthy."""
    _stack(session, "status")


@nox.session
def logs(session: nox.Session) -> None:
    """Show logs: `nox -s logs -- airflow -f` follows Airflow's."""
    _stack(session, "logs")


@nox.session
def doctor(session: nox.Session) -> None:
    """Check memory, disk, ports, leftovers, versions and backends; exits 1 if `up` would fail."""
    _stack(session, "doctor", "--nox-version", importlib.metadata.version("nox"))


@nox.session(name="open")
def open_ui(session: nox.Session) -> None:
    """Open a UI with its login where it allows (`-- jupyter`, `-- mlflow`; Airflow by default)."""
    _stack(session, "open")


@nox.session
def clean(session: nox.Session) -> None:
    """Delete all state (data, databases, logs): `nox -s clean -- --yes`."""
    _stack(session, "clean")


@nox.session
def test(session: nox.Session) -> None:
    """Run the tests on real services (`-- -m "not e2e"` skips the end-to-end run).

    Two workers (pytest-xdist): the users of each shared stack stay together in one, other
    tests run beside them. `-- -n 0` runs them in this process (for a debugger)."""
    _synced(session, "-m", "pytest", "--numprocesses", "2", "--dist", "loadgroup")


@nox.session
def shell(session: nox.Session) -> None:
    """A shell (or `-- COMMAND`) with the stack's endpoints and keys: `-- airflow dags list`."""
    _stack(session, "shell")


@nox.session
def screenshots(session: nox.Session) -> None:
    """Regenerate docs/screenshots/ in a real browser, on a stack of its own (test_browser)."""
    folder = Path(__file__).parent / "docs" / "screenshots"
    _synced(
        session,
        "-m",
        "pytest",
        "tests/scenarios/test_browser.py",
        env={"H2OPS_SCREENSHOTS_DIR": str(folder)},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check; mypy: types ([tool.mypy] in pyproject.toml); the docs build."""
    _sync(session)
    _python(session, "-m", "ruff", "check", ".")
    _python(session, "-m", "ruff", "format", "--check", ".")
    _python(session, "-m", "mypy")
    with tempfile.TemporaryDirectory(prefix="h2ops-docs-") as site:
        _python(session, "-m", "mkdocs", "build", "--strict", "--site-dir", site, env=DOCS_ENV)


# mkdocs-material's notice about its successor, printed on every build, says nothing of ours.
DOCS_ENV = {"NO_MKDOCS_2_WARNING": "1"}


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs site into site/ (strict: a broken link fails); `-- serve` serves it live."""
    _sync(session)
    if session.posargs[:1] == ["serve"]:  # live reload, on loopback only
        serve = ["serve", "--strict", "--dev-addr", "127.0.0.1:8000", *session.posargs[1:]]
        _python(session, "-m", "mkdocs", *serve, env=DOCS_ENV)
    else:
        _python(session, "-m", "mkdocs", "build", "--strict", *session.posargs, env=DOCS_ENV)


@nox.session
def fmt(session: nox.Session) -> None:
    """ruff: fix what can be fixed and format."""
    _sync(session)
    _python(session, "-m", "ruff", "check", "--fix", ".")
    _python(session, "-m", "ruff", "format", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Time and memory of the stack next to `airflow standalone`; prints a table, writes JSON."""
    _synced(session, "-m", "devtools.bench")


@nox.session
def soak(session: nox.Session) -> None:
    """Example pipeline once a minute for `-- --minutes N`: memory, failed runs, disk; writes JSON.

    On a stack of its own (`-- --running`: the one `up` started); exits 1 if a run failed or a
    program grew more than 10 % after the first ten minutes."""
    _synced(session, "-m", "devtools.soak")


@nox.session(name="package-model")
def package_model(session: nox.Session) -> None:
    """Bundle a model to serve elsewhere: `-- [MODEL@ALIAS] [--output DIR]` (default: served)."""
    _stack(session, "package-model")


@nox.session
def deploy(session: nox.Session) -> None:
    """Render deploy/ from the settings; `-- --check` checks, `-- --secrets` writes Secrets."""
    _synced(session, "-m", "devtools.deploy")


@nox.session
def init(session: nox.Session) -> None:
    """Make the template yours: `-- --name "Lake Watch" [--no-examples] [--object-store none]`."""
    _synced(session, "-m", "devtools.init")


if __name__ == "__main__":
    nox.main()
