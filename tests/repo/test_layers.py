"""The house's floors: a module imports only from its own floor or below, so no import runs
back up (a service's declaration reads the plan; the plan reads no declaration).

From the bottom: the engine (knows no service), the foundations (settings, each room's own
facts and the programs supervisord runs), the plan, the declarations (`<room>/service.py`,
and what builds on them in a room), the catalog, the commands (`h2ops`), the dev tools.
A module's `if __name__ == "__main__":` block is an entry point, not a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from services.settings import REPO_ROOT

ROOT = REPO_ROOT
ROOMS = sorted(path.parent.name for path in (ROOT / "services").glob("*/service.py"))
FLOORS = ("engine", "foundations", "plan", "declarations", "catalog", "commands", "devtools")
# Room modules that build on the plan, like the declarations do.
ON_THE_PLAN = {"services.serving.bundle"}
COMMANDS = {
    "services.cli",
    "services.doctor",
    "services.report",
    "services.workspace",
    "services.__main__",
}


def floor(module: str) -> int:
    """Which floor a module of this repository is on."""
    parts = module.split(".")
    if parts[0] == "devtools":
        return FLOORS.index("devtools")
    assert parts[0] == "services", module
    if module == "services" or module.startswith("services.engine"):
        return FLOORS.index("engine")
    if module in COMMANDS:
        return FLOORS.index("commands")
    if module == "services.catalog":
        return FLOORS.index("catalog")
    if module == "services.plan":
        return FLOORS.index("plan")
    if len(parts) >= 3 and parts[1] in ROOMS and (parts[2] == "service" or module in ON_THE_PLAN):
        return FLOORS.index("declarations")
    if len(parts) >= 2 and (parts[1] in ROOMS or len(parts) == 2):
        return FLOORS.index("foundations")  # settings, bootstrap, a room's facts and programs
    raise AssertionError(f"{module} is on no floor: add it to tests/repo/test_layers.py")


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _is_main_block(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def imports_of(path: Path) -> set[str]:
    """Every module of this repository `path` imports, TYPE_CHECKING imports included."""
    tree = ast.parse(path.read_text())
    body = [node for node in tree.body if not _is_main_block(node)]
    found: set[str] = set()
    for node in (inner for top in body for inner in ast.walk(top)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from services.s3 import store`: the submodule is what is imported
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    ours = {name for name in found if name.split(".")[0] in ("services", "devtools")}
    return {name for name in ours if (ROOT / name.replace(".", "/")).exists() or _file(name)}


def _file(module: str) -> bool:
    return (ROOT / f"{module.replace('.', '/')}.py").is_file()


SOURCES = sorted(
    path
    for folder in ("services", "devtools")
    for path in (ROOT / folder).rglob("*.py")
    if "templates" not in path.parts
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_import_runs_back_up(path: Path) -> None:
    module = module_name(path)
    here = floor(module)
    above = {name: FLOORS[floor(name)] for name in imports_of(path) if floor(name) > here}
    assert not above, f"{module} ({FLOORS[here]}) imports from higher floors: {above}"


def test_the_engine_is_the_ground_floor() -> None:
    """The engine imports nothing of the stack; the floors are ordered as documented."""
    engine = [path for path in SOURCES if module_name(path).startswith("services.engine")]
    assert engine
    for path in engine:
        outside = {m for m in imports_of(path) if not m.startswith("services.engine")}
        assert not outside, f"{path.name} imports {outside}"


# -- facts with one owner ----------------------------------------------------------------------

SERVICES = sorted((ROOT / "services").rglob("*.py"))


def _mentions(pattern: str, paths: list[Path], allowed: set[str]) -> list[str]:
    regex = re.compile(pattern)
    return [
        str(path.relative_to(ROOT))
        for path in paths
        if str(path.relative_to(ROOT)) not in allowed and regex.search(path.read_text())
    ]


def test_the_database_choice_is_read_as_one_value_never_guessed() -> None:
    """Compared as `Database.X`, never as a string, a URL prefix or a listed service."""
    sources = [*SERVICES, ROOT / "devtools" / "deploy.py"]
    assert not _mentions(r"database\s*[!=]=\s*[\"']", sources, set())
    assert not _mentions(r"removeprefix\([\"']sqlite", sources, set())
    assert not _mentions(r"[\"']postgres[\"'] in (urls|starting|names)", sources, set())


def test_one_owner_only_writer() -> None:
    assert _mentions(r"os\.O_CREAT", SERVICES, set()) == ["services/engine/layout.py"]


def test_the_object_store_owns_its_buckets_and_region() -> None:
    store = {"services/s3/store.py"}
    assert not _mentions(r"us-east-1", SERVICES, store)
    assert not _mentions(r"[\"']s3://(data|mlflow)", SERVICES, store)


def test_one_client_environment_builder() -> None:
    """`MLFLOW_TRACKING_URI` and the S3 variables are set in one function: the stack, the
    editors' files and deploy/ all call it."""
    writers = _mentions(
        r"[\"']?(MLFLOW_TRACKING_URI|AWS_ENDPOINT_URL_S3)[\"']?\s*[:=]",
        [*SERVICES, ROOT / "devtools" / "deploy.py"],
        set(),
    )
    assert writers == ["services/plan.py"]
