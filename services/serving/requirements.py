"""Whether the locked environment already has what a model asks for.

Serving runs every model from the stack's own environment (no per-model virtualenv or conda
build), so a model whose `requirements.txt` names a package that is missing, or a version
other than the installed one, is refused with what is missing rather than loaded to fail later.
Standard library and `packaging` only: the bundle's tests and the server both use it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement


def requirement_lines(model_dir: Path) -> list[str]:
    """The requirement lines of an MLflow model (its `requirements.txt`), options left out."""
    path = model_dir / "requirements.txt"
    if not path.exists():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def unmet(lines: list[str]) -> list[str]:
    """Each requirement the installed packages do not satisfy, as `WHAT (installed: ...)`."""
    problems = []
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            problems.append(f"{line} (not a requirement this check can read)")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            problems.append(f"{line} (not installed)")
            continue
        if requirement.specifier and not requirement.specifier.contains(
            installed, prereleases=True
        ):
            problems.append(f"{line} (installed: {installed})")
    return problems
