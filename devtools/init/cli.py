"""`nox -s init` / `python -m devtools.init`: the questions, the checks, then the writing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TextIO, TypeVar, cast

from rich.console import Console
from rich.prompt import Confirm, Prompt

from devtools.init import InitError
from devtools.init.answers import (
    DAG_STYLES,
    DATABASES,
    OBJECT_STORES,
    Answers,
    DagStyle,
    check_author,
    check_description,
    check_email,
    check_name,
    check_package,
    default_description,
    git_identity,
    package_from_name,
)
from devtools.init.plan import changes_between, dag_style_after, new_files
from devtools.init.project_state import PACKAGES_DIR, ProjectState
from devtools.init.python_format import formatted
from devtools.init.rename import top_level_names, used_in_code
from devtools.init.repository import (
    Files,
    find_root,
    read_files,
    refuse_unsaved_work,
    update_lock,
    write_changes,
)

console = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")
ATTEMPTS = 5


def main(argv: list[str] | None = None, stream: IO[str] | None = None) -> int:
    """Run init; `stream` stands in for the terminal's input (tests)."""
    args = _parser().parse_args(argv)
    try:
        return _init(args, stream)
    except InitError as error:
        console.print(f"[red]init:[/red] {error}", markup=True)
    except KeyboardInterrupt:
        console.print("interrupted: nothing was written")
        return 130
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nox -s init --",
        description="Make this template your project: rename the example package everywhere, "
        "set the metadata, keep or remove the examples, choose the object store. Without "
        "--yes it asks for what the flags leave open.",
    )
    parser.add_argument("--name", help="the project's title, e.g. 'Lake Watch'")
    parser.add_argument("--package", help="the import name; default: from the name (lake_watch)")
    parser.add_argument("--description", help="one line; default: from the name")
    parser.add_argument("--author", help="default: git config user.name")
    parser.add_argument("--email", help="default: git config user.email")
    parser.add_argument(
        "--examples",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the worked example (default: as it is) or, with --no-examples, replace it "
        "with change_me_* skeletons, a skeleton DAG and starter tests",
    )
    parser.add_argument(
        "--object-store",
        choices=OBJECT_STORES,
        help="the stack's S3 server, written to [tool.h2ops] s3_backend (default: as it is)",
    )
    parser.add_argument(
        "--database",
        choices=DATABASES,
        help="Airflow's and MLflow's metadata, written to [tool.h2ops] database "
        "(default: as it is)",
    )
    parser.add_argument(
        "--dags",
        choices=DAG_STYLES,
        help="training DAGs in Python, YAML (dag-factory) or both (default: as they are)",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="ask nothing; use the flags")
    parser.add_argument(
        "--force",
        action="store_true",
        help="run on a git tree with uncommitted changes, or over an existing package folder",
    )
    parser.add_argument("--root", type=Path, help="the repository (default: the one around .)")
    return parser


def _init(args: argparse.Namespace, stream: IO[str] | None) -> int:
    root = find_root(args.root or Path.cwd())
    before = read_files(root)
    state = ProjectState.of(before)
    interactive = not args.yes
    if interactive and stream is None and not sys.stdin.isatty():
        raise InitError(
            "stdin is not a terminal, so init cannot ask: pass --yes and the answers as flags, "
            "e.g. nox -s init -- --yes --name 'Lake Watch' --no-examples"
        )
    ask = _Questions(stream) if interactive else None
    answers = _answers(args, state, root, before, ask)
    after = new_files(before, state, answers)
    after = formatted(after, list(changes_between(before, after)), root)
    changes = changes_between(before, after)
    if not changes:
        console.print(
            f"Nothing to do: the project already is {answers.name} "
            f"({answers.package}) with these answers."
        )
        return 0
    if not args.force:
        refuse_unsaved_work(root)
        _refuse_existing_package(root, state, answers)
    _summarise(state, answers, before, changes)
    if ask and not ask.confirm("Write these changes?"):
        console.print("Nothing was written.")
        return 1
    write_changes(root, changes)
    if any(path.endswith("pyproject.toml") for path in changes):
        update_lock(root)
    for relative in render_deploy(root):
        console.print(f"re-rendered deploy/{relative}")
    console.print(
        "[green]Done.[/green] Next: `nox -s test` (it syncs .venv to the new names first), "
        "`git status` to review, then commit. If the stack is running, `nox -s restart` so "
        "Airflow and Jupyter import the renamed package."
    )
    return 0


def render_deploy(root: Path) -> list[str]:
    """deploy/ follows the new names and code (package, requirements, image tag), so the
    renamed project's own deploy check passes; the files it rewrote."""
    from devtools import deploy

    return deploy.write(root / "deploy", deploy.render(root))


def _answers(
    args: argparse.Namespace,
    state: ProjectState,
    root: Path,
    files: Files,
    ask: _Questions | None,
) -> Answers:
    def answer(flag: str, question: str, default: str | None, check: Callable[[str], T]) -> T:
        given = getattr(args, flag)
        if given is not None or ask is None:
            value: str | None = given if given is not None else default
            if value is None:
                raise InitError(
                    f"pass --{flag}: with --yes nothing is asked, and it has no default"
                )
            return check(value)
        return ask.text(question, default, check)

    def package_check(package: str) -> str:
        if package == state.package:
            return package
        # An existing project/src/<package>/ has its own check, which --force passes.
        others = {
            path: text
            for path, text in files.items()
            if not path.startswith(f"{PACKAGES_DIR}/{package}/")
        }
        used_at = used_in_code(others, package) or used_in_code(others, package.replace("_", "-"))
        if package in top_level_names(files):
            used_at = "a top-level folder or file"
        return check_package(package, state.package, used_at)

    git_author, git_email = git_identity(root)
    name = answer("name", "Project name", None, check_name)
    package = answer("package", "Package (import name)", package_from_name(name), package_check)
    description = answer("description", "Description", default_description(name), check_description)
    author = answer("author", "Author", git_author, check_author)
    email = answer("email", "Email", git_email, check_email)
    examples, dags, object_store = _layout(args, state, ask)
    # Only by flag: SQLite needs nothing installed, so no question for every newcomer.
    return Answers(
        name, package, description, author, email, examples, dags, object_store, args.database
    )


def _layout(
    args: argparse.Namespace, state: ProjectState, ask: _Questions | None
) -> tuple[bool, DagStyle | None, str | None]:
    """Examples, DAG style and object store: asked only where there is still a choice."""
    examples, dags, object_store = args.examples, args.dags, args.object_store
    if examples is None:
        asked = ask is not None and state.examples
        examples = ask.confirm("Keep the worked example?") if ask and asked else state.examples
    if (
        dags is None
        and ask is not None
        and state.examples
        and (state.dags == "both" or not examples)
    ):
        dags = ask.choice("Training DAGs in", DAG_STYLES, "both")
    if object_store is None and ask is not None:
        current = state.object_store or "auto"
        chosen = ask.choice("Object store", OBJECT_STORES, current)
        object_store = None if chosen == current else chosen
    return examples, dags, object_store


class _Questions:
    """rich prompts that re-ask until an answer passes its check."""

    def __init__(self, stream: IO[str] | None) -> None:
        # rich reads answers with `stream.readline()` only, which is all _TerminalLines has.
        self.stream = cast(TextIO, _TerminalLines(stream)) if stream is not None else None

    def text(self, question: str, default: str | None, check: Callable[[str], T]) -> T:
        failures = 0
        while True:
            # No default means rich asks until it gets an answer.
            if default is None:
                reply = Prompt.ask(question, console=console, stream=self.stream)
            else:
                reply = Prompt.ask(question, console=console, stream=self.stream, default=default)
            try:
                return check(reply)
            except InitError as error:
                failures += 1
                if failures == ATTEMPTS:
                    raise
                console.print(f"[red]{error}[/red]")

    def choice(self, question: str, choices: tuple[str, ...], default: str) -> str:
        return Prompt.ask(
            question, choices=list(choices), default=default, console=console, stream=self.stream
        )

    def confirm(self, question: str, default: bool = True) -> bool:
        return Confirm.ask(question, default=default, console=console, stream=self.stream)


class _TerminalLines:
    """Lines from a stream as `input()` gives them, so an empty line takes the default."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def readline(self) -> str:
        return self.stream.readline().rstrip("\n")


def _refuse_existing_package(root: Path, state: ProjectState, answers: Answers) -> None:
    target = root / PACKAGES_DIR / answers.package
    if answers.package != state.package and target.exists():
        raise InitError(
            f"{target.relative_to(root)} already exists: remove it, pick another --package, or "
            "pass --force to write the renamed package into it"
        )


def _summarise(
    state: ProjectState, answers: Answers, before: Files, changes: dict[str, bytes | None]
) -> None:
    removed = sum(content is None for content in changes.values())
    added = sum(content is not None and path not in before for path, content in changes.items())
    console.print(f"[bold]{answers.name}[/bold]")
    console.print(f"  {answers.description}", markup=False)
    console.print(
        f"  package {answers.package} (was {state.package}), "
        f"distribution {answers.distribution} (was {state.distribution})"
    )
    dags = dag_style_after(state, answers.examples, answers.dags)
    kept = "kept" if answers.examples else "replaced by skeletons"
    console.print(f"  examples {kept}; DAGs in {dags or 'none'}")
    if answers.object_store is None:
        console.print(f"  object store {state.object_store or 'auto'} (unchanged)")
    else:
        where = "s3_backend under [tool.h2ops] in pyproject.toml"
        console.print(f"  object store {answers.object_store}: {where}", markup=False)
    if answers.database is None:
        console.print(f"  database {state.database or 'sqlite'} (unchanged)")
    else:
        where = "database under [tool.h2ops] in pyproject.toml"
        console.print(f"  database {answers.database}: {where}", markup=False)
    changed = len(changes) - removed - added
    console.print(f"  {changed} files changed, {added} added, {removed} removed")
