"""From the repository's files and the answers to its new files, all in memory.

Nothing is written here, so the result can be compared with what is there: no difference
means init has nothing to do, and a refused run has touched nothing.
"""

from __future__ import annotations

import ast
import textwrap

from devtools.init import InitError
from devtools.init.answers import Answers, DagStyle
from devtools.init.example_dags import keep_one_training_dag
from devtools.init.project_state import (
    EXAMPLE_MARKER,
    PACKAGES_DIR,
    PROJECT_PYPROJECT,
    ROOT_PYPROJECT,
    ProjectState,
)
from devtools.init.pyproject_keys import Value, authors, set_keys
from devtools.init.readmes import replace_intro, retitle, root_intro
from devtools.init.regions import drop_region
from devtools.init.rename import rename
from devtools.init.repository import Files
from devtools.init.skeleton import Skeleton

README = "README.md"
PROJECT_README = "project/README.md"
DOCSTRING_WIDTH = 96
# What speaks of the example outside the files the skeleton replaces: regions init owns.
EXAMPLE_REGIONS = {"project/data/README.md": "example"}

Changes = dict[str, bytes | None]
"""New contents by path; None deletes the file."""


def check_answers(state: ProjectState, answers: Answers) -> None:
    """Refuse what init cannot do from here: it removes example parts, never restores them."""
    if answers.examples and not state.examples:
        raise InitError(
            "the worked example was removed by an earlier init and cannot come back from here: "
            f"restore it from git (`git log -- {EXAMPLE_MARKER}`), or answer --no-examples"
        )
    if answers.dags is None or answers.dags == state.dags:
        return
    if state.examples and not answers.examples:
        return  # the skeleton's DAGs come in the style asked for
    if not state.examples:
        raise InitError(
            f"project/dags holds your DAGs now ({state.dags or 'none'}): add or remove DAG files "
            f"by hand instead of --dags {answers.dags}"
        )
    if state.dags != "both":
        raise InitError(
            f"the example keeps only its {state.dags} training DAG since an earlier init, so "
            f"--dags {answers.dags} cannot bring the other back: restore it from git"
        )


def new_files(files: Files, state: ProjectState, answers: Answers) -> Files:
    """The repository's files as init leaves them."""
    check_answers(state, answers)
    files = rename(
        files, {state.package: answers.package, state.distribution: answers.distribution}
    )
    if state.examples and not answers.examples:
        files = Skeleton(
            name=answers.name,
            package=answers.package,
            distribution=answers.distribution,
            description=answers.description,
            dags=dag_style_after(state, answers.examples, answers.dags) or "both",
        ).replace_examples(files)
        for path, region in EXAMPLE_REGIONS.items():
            if path in files:
                files[path] = drop_region(files[path].decode(), region, path).encode()
    elif state.examples and answers.dags and answers.dags != state.dags:
        files = keep_one_training_dag(files, answers.dags)
    files = _with_metadata(files, state, answers)
    choices: dict[str, Value | None] = {}
    if answers.object_store is not None:
        choices["s3_backend"] = answers.object_store
    if answers.database is not None:
        choices["database"] = answers.database
    if choices:
        files[ROOT_PYPROJECT] = set_keys(
            files[ROOT_PYPROJECT].decode(), "tool.h2ops", choices, ROOT_PYPROJECT
        ).encode()
    return files


def changes_between(before: Files, after: Files) -> Changes:
    changes: Changes = {
        path: content for path, content in after.items() if before.get(path) != content
    }
    changes.update({path: None for path in before if path not in after})
    return changes


def dag_style_after(state: ProjectState, examples: bool, dags: DagStyle | None) -> DagStyle | None:
    """The DAG style the project ends with: the skeleton's default is both, like the template's."""
    if state.examples and not examples:
        return dags or state.dags or "both"
    return dags or state.dags


def _with_metadata(files: Files, state: ProjectState, answers: Answers) -> Files:
    files = dict(files)
    files[PROJECT_PYPROJECT] = set_keys(
        files[PROJECT_PYPROJECT].decode(),
        "project",
        {
            "name": answers.distribution,
            "description": answers.description,
            "authors": authors(answers.author, answers.email),
        },
        PROJECT_PYPROJECT,
    ).encode()
    init = f"{PACKAGES_DIR}/{answers.package}/__init__.py"
    files[init] = _with_docstring(files[init].decode(), _package_docstring(answers)).encode()
    if PROJECT_README in files:
        files[PROJECT_README] = retitle(
            files[PROJECT_README].decode(), answers.name, answers.description, state.description
        ).encode()
    if README in files:
        examples = EXAMPLE_MARKER in files
        object_store = answers.object_store or state.object_store
        intro = root_intro(
            answers.name, answers.description, answers.package, examples, object_store
        )
        files[README] = replace_intro(files[README].decode(), intro).encode()
    return files


def _package_docstring(answers: Answers) -> str:
    text = answers.description
    if answers.name not in text:
        text = f"{answers.name}: {text}"
    return text


def _with_docstring(source: str, docstring: str) -> str:
    """`source` with its module docstring set to `docstring` (wrapped, quotes escaped)."""
    escaped = docstring.replace("\\", "\\\\").replace('"', '\\"')
    wrapped = textwrap.fill(escaped, DOCSTRING_WIDTH, break_long_words=False)
    literal = f'"""{wrapped}"""\n' if "\n" not in wrapped else f'"""{wrapped}\n"""\n'
    body = ast.parse(source).body
    lines = source.splitlines(keepends=True)
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return "".join([*lines[: first.lineno - 1], literal, *lines[first.end_lineno :]])
    return literal + ("\n" if source.strip() else "") + source
