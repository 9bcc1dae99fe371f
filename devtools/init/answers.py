"""The answers init works from: defaults derived from the name, as the cookiecutter did, and
checks that refuse a name Python or the stack would trip over."""

from __future__ import annotations

import importlib.metadata
import keyword
import re
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from devtools.init import InitError
from services.settings import Database, S3Backend

DagStyle = Literal["python", "yaml", "both"]
DAG_STYLES: tuple[str, ...] = get_args(DagStyle)
# The stack's own settings say what may be chosen (H2OPS_S3_BACKEND, H2OPS_DATABASE).
OBJECT_STORES: tuple[str, ...] = get_args(S3Backend)
DATABASES: tuple[str, ...] = tuple(choice.value for choice in Database)

PACKAGE_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+")
MAX_NAME_LENGTH = 80


@dataclass(frozen=True)
class Answers:
    """What the project is called and what it keeps; None means "leave it as it is"."""

    name: str
    package: str
    description: str
    author: str
    email: str
    examples: bool
    dags: DagStyle | None = None
    object_store: str | None = None  # one of OBJECT_STORES
    database: str | None = None  # one of DATABASES

    @property
    def distribution(self) -> str:
        """The name pip and uv know it by: the package with dashes (`lake-watch`)."""
        return self.package.replace("_", "-")


def package_from_name(name: str) -> str:
    """`Lake Watch` -> `lake_watch`: ASCII, lower case, one underscore between words."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")


def default_description(name: str) -> str:
    return f"{name}, an ML project on the H2Ops stack (Airflow, MLflow, JupyterLab)."


def git_identity(root: Path) -> tuple[str, str]:
    """`git config user.name` and `user.email`, or empty strings where git has none."""

    def config(key: str) -> str:
        try:
            found = subprocess.run(
                ["git", "config", key], cwd=root, capture_output=True, text=True, check=False
            )
        except OSError:
            return ""
        return found.stdout.strip()

    return config("user.name"), config("user.email")


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InitError("the project name is empty: pass --name, e.g. --name 'Lake Watch'")
    _check_one_line("project name", name)
    if len(name) > MAX_NAME_LENGTH:
        raise InitError(
            f"the project name {name!r} is {len(name)} characters long: keep it to "
            f"{MAX_NAME_LENGTH} (the description is the place for more)"
        )
    return name


def check_description(description: str) -> str:
    description = description.strip()
    if not description:
        raise InitError("the description is empty: pass --description 'One line about it'")
    _check_one_line("description", description)
    return description


def check_author(author: str) -> str:
    author = author.strip()
    _check_one_line("author", author)
    return author


def check_email(email: str) -> str:
    email = email.strip()
    if email and not EMAIL_PATTERN.fullmatch(email):
        raise InitError(f"--email {email!r} is not an email address: use name@example.org")
    return email


def check_package(package: str, current: str, used_at: str | None = None) -> str:
    """A package name that imports, and finds this package rather than another module.

    `current` (the package being renamed) is allowed as it is; `used_at` names the place in
    this repository that already uses the name (a top-level folder, a file with that word).
    """
    if package == current:
        return package
    if not package.isidentifier() or keyword.iskeyword(package):
        why = "a Python keyword" if keyword.iskeyword(package) else "not a Python identifier"
        raise InitError(
            f"package name {package!r} is {why}: use lower-case letters, digits and "
            "underscores, starting with a letter (e.g. --package lake_watch)"
        )
    if not PACKAGE_PATTERN.fullmatch(package):
        raise InitError(
            f"package name {package!r} must be lower-case ASCII letters, digits and "
            f"underscores, starting with a letter: try --package {package_from_name(package)!r}"
        )
    if package in sys.stdlib_module_names:
        raise InitError(
            f"package name {package!r} shadows the standard library module {package!r}: "
            f"pick another, e.g. --package {package}_project"
        )
    owners = importlib.metadata.packages_distributions().get(package)
    if owners:
        raise InitError(
            f"package name {package!r} shadows the module of the installed distribution "
            f"{owners[0]!r}: pick another, e.g. --package {package}_project"
        )
    distribution = package.replace("_", "-")
    if _installed(distribution):
        raise InitError(
            f"distribution name {distribution!r} (from --package {package}) is already "
            "installed as a dependency: pick another package name"
        )
    if used_at:
        raise InitError(
            f"package name {package!r} is already used in this repository ({used_at}), so "
            "renaming the package later would rename that too: pick a more distinctive name"
        )
    return package


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _check_one_line(what: str, value: str) -> None:
    if any(unicodedata.category(char).startswith("C") for char in value):
        raise InitError(f"the {what} {value!r} has a line break or control character: use one line")
