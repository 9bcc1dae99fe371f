"""`nox -s init` on fresh clones of this repository: the result imports under its new name,
no trace of the old name is left, its own tests pass, and bad answers are refused clearly.

Each case clones the committed HEAD (so uncommitted work is not in it) into a temp dir and runs
this checkout's `python -m devtools.init --root CLONE`. The example's full unit tests run
once (about 35 s); other cases run the tests their changes touch.

Cost: a clone, an init and a `uv lock --offline` per case, about 20 s each; the three
skeleton cases run their own small suites.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from devtools.init import InitError
from devtools.init.answers import Answers, DagStyle, package_from_name
from devtools.init.cli import main
from devtools.init.plan import new_files
from devtools.init.project_state import ProjectState, current_package
from devtools.init.pyproject_keys import authors, set_keys
from devtools.init.rename import is_own, rename
from devtools.init.repository import read_files
from services.bootstrap import uv_command
from services.settings import REPO_ROOT

pytestmark = pytest.mark.stack  # init runs git, uv and the example's own tests as processes

ROOT = REPO_ROOT
NAME = "Lake Watch"
RENAMED_EXAMPLE_TESTS = ("test_dag_integrity.py", "test_workflow_steps.py", "test_promotion.py")
PACKAGE = "lake_watch"


def clone(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    _run(["git", "clone", "--quiet", str(ROOT), str(copy)], cwd=tmp_path)
    for key, value in (("user.name", "Ada Lovelace"), ("user.email", "ada@example.org")):
        _run(["git", "config", key, value], cwd=copy)
    return copy


def init(copy: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "devtools.init", "--root", str(copy), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def old_name_pattern(copy: Path) -> re.Pattern[str]:
    """The current package's words joined by `_`, `-`, a space or nothing, in any case."""
    words = current_package(read_files(copy)).split("_")
    return re.compile(r"[ _-]?".join(map(re.escape, words)), re.IGNORECASE)


def assert_no_old_name(copy: Path, old: re.Pattern[str]) -> None:
    found = [
        path
        for path, content in read_files(copy).items()
        if old.search(path) or old.search(content.decode(errors="ignore"))
    ]
    assert found == [], f"{old.pattern} is still in {found}"


def assert_imports(copy: Path, *modules: str) -> None:
    statement = "; ".join(f"import {module}" for module in modules)
    _run([sys.executable, "-c", statement], cwd=copy, env=_project_env(copy))


def assert_project_tests_pass(copy: Path, *tests: str) -> None:
    paths = [str(copy / "project" / "tests" / test) for test in tests] or [
        str(copy / "project" / "tests")
    ]
    _run(
        [sys.executable, "-m", "pytest", *paths, "-m", "not e2e", "-q", "-p", "no:cacheprovider"],
        cwd=copy,
        env=_project_env(copy),
    )


def assert_lint_clean_and_locked(copy: Path) -> None:
    _run([sys.executable, "-m", "ruff", "check", "--no-cache", "project"], cwd=copy)
    _run([sys.executable, "-m", "ruff", "format", "--no-cache", "--check", "project"], cwd=copy)
    _run([*uv_command(), "lock", "--check", "--offline", "--python", sys.executable], cwd=copy)


def assert_deploy_current(copy: Path) -> None:
    """What tests/devtools/test_deploy.py checks of the committed deploy/, in the copy."""
    from devtools.deploy import check, render

    assert check(copy / "deploy", render(copy)) == []


def s3_backend(copy: Path) -> str | None:
    settings = tomllib.loads((copy / "pyproject.toml").read_text())
    return settings.get("tool", {}).get("h2ops", {}).get("s3_backend")


def test_rename_keeps_the_example_working_and_a_second_run_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = clone(tmp_path)
    old = old_name_pattern(copy)

    init(copy, "--yes", "--name", NAME, "--object-store", "none", "--database", "postgres")

    assert_imports(copy, PACKAGE, f"{PACKAGE}.workflow_steps")
    assert_no_old_name(copy, old)
    assert_lint_clean_and_locked(copy)
    project = tomllib.loads((copy / "project" / "pyproject.toml").read_text())["project"]
    assert project["name"] == "lake-watch"
    assert project["authors"] == [{"name": "Ada Lovelace", "email": "ada@example.org"}]
    assert (copy / "README.md").read_text().startswith(f"# {NAME}\n")
    assert (copy / "project" / "README.md").read_text().startswith(f"# {NAME}\n")
    assert s3_backend(copy) == "none"
    from services.settings import load_settings

    monkeypatch.delenv("H2OPS_S3_BACKEND", raising=False)
    monkeypatch.delenv("H2OPS_DATABASE", raising=False)
    settings = load_settings(copy)  # the stack reads the committed choices
    assert (settings.s3_backend, settings.database) == ("none", "postgres")
    # Under the new name: every DAG imports, and the steps chain end to end on a local folder
    # (each subpackage in use); the rest of the example's suite tests code init does not touch.
    assert_project_tests_pass(copy, *RENAMED_EXAMPLE_TESTS)
    assert_deploy_current(copy)

    before = read_files(copy)
    again = init(copy, "--yes", "--name", NAME, "--object-store", "none", "--database", "postgres")
    assert "Nothing to do" in again.stderr
    assert read_files(copy) == before


@pytest.mark.parametrize(
    ("store", "dags", "tests"),
    [
        ("minio", "python", ["test_dag_integrity.py"]),
        (
            "rclone",
            "yaml",
            # The YAML DAG's own tests: the steps run end to end in the rename test.
            ["test_dag_integrity.py", "test_yaml_dag.py"],
        ),
    ],
)
def test_example_keeps_one_training_dag_and_the_chosen_store(
    tmp_path: Path, store: str, dags: str, tests: list[str]
) -> None:
    copy = clone(tmp_path)
    old = old_name_pattern(copy)

    init(copy, "--yes", "--name", NAME, "--object-store", store, "--dags", dags)

    dag_files = sorted(path.name for path in (copy / "project" / "dags").iterdir())
    training = {
        "python": ["example_training.py"],
        "yaml": ["example_training.py", "example_training.yaml"],
    }
    assert dag_files == sorted(["example_inference.py", *training[dags]])
    assert (copy / "project" / "tests" / "test_yaml_dag.py").exists() == (dags == "yaml")
    assert s3_backend(copy) == store
    assert_no_old_name(copy, old)
    assert_lint_clean_and_locked(copy)
    assert_project_tests_pass(copy, *tests)


@pytest.mark.parametrize(
    ("dags", "store"), [("both", "none"), ("python", None), ("yaml", "rclone")]
)
def test_no_examples_leaves_skeletons_whose_tests_pass(
    tmp_path: Path, dags: str, store: str | None
) -> None:
    copy = clone(tmp_path)
    old = old_name_pattern(copy)
    store_args = ["--object-store", store] if store else []

    init(copy, "--yes", "--name", NAME, "--no-examples", "--dags", dags, *store_args)

    subpackages = [
        "dataloader",
        "preprocess",
        "train",
        "model",
        "model_pipeline",
        "postprocess",
        "monitoring",
        "utils",
    ]
    assert_imports(
        copy,
        *(f"{PACKAGE}.{sub}.change_me_{sub}" for sub in subpackages),
        f"{PACKAGE}.utils.data_store",
    )
    assert_no_old_name(copy, old)
    assert not list((copy / "project" / "dags").glob("example_*"))
    assert (copy / "project" / "dags" / f"{PACKAGE}_monitoring.py").exists()
    assert not (copy / "project" / "tests" / "test_e2e.py").exists()
    assert s3_backend(copy) == store
    assert_lint_clean_and_locked(copy)
    assert_project_tests_pass(copy)
    assert_deploy_current(copy)
    again = init(copy, "--yes", "--name", NAME, "--no-examples", "--dags", dags, *store_args)
    assert "Nothing to do" in again.stderr


def test_without_git_init_needs_force(tmp_path: Path) -> None:
    """`nix flake init -t` leaves plain files: init refuses to rewrite what git cannot restore."""
    copy = tmp_path / "plain"
    copy.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(copy)], input=archive.stdout, check=True)

    refused = init(copy, "--yes", "--name", NAME, check=False)

    assert refused.returncode == 1 and "not a git repository" in refused.stderr
    init(copy, "--yes", "--name", NAME, "--force")
    assert_imports(copy, PACKAGE)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clone the refusals below never change."""
    return clone(tmp_path_factory.mktemp("pristine"))


@pytest.mark.parametrize(
    "package", ["json", "airflow", "mlflow", "1abc", "class", "Lake", "services", "devtools"]
)
def test_bad_package_names_are_refused_by_name(
    pristine: Path, package: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(pristine), "--yes", "--name", NAME, "--package", package]) == 1
    error = capsys.readouterr().err
    assert repr(package) in error, error
    assert _status(pristine) == ""


def test_yes_needs_a_name_and_no_terminal_needs_yes(pristine: Path) -> None:
    without_name = init(pristine, "--yes", check=False)
    assert without_name.returncode == 1 and "--name" in without_name.stderr
    without_yes = init(pristine, "--name", NAME, check=False)
    assert without_yes.returncode == 1 and "pass --yes" in without_yes.stderr


def test_a_dirty_tree_is_refused_unless_forced(tmp_path: Path) -> None:
    copy = clone(tmp_path)
    (copy / "notes.txt").write_text("work in progress\n")

    refused = init(copy, "--yes", "--name", NAME, check=False)

    assert refused.returncode == 1
    assert "uncommitted changes (notes.txt)" in refused.stderr
    assert _status(copy) == "?? notes.txt"
    init(copy, "--yes", "--name", NAME, "--force")
    assert (copy / "project" / "src" / PACKAGE / "__init__.py").exists()


def test_a_second_init_renames_again(tmp_path: Path) -> None:
    copy = clone(tmp_path)
    init(copy, "--yes", "--name", NAME, "--no-examples")
    _run(["git", "add", "-A"], cwd=copy)
    _run(["git", "commit", "--quiet", "-m", "init"], cwd=copy)

    init(copy, "--yes", "--name", "River Watch")

    assert_imports(copy, "river_watch.train.change_me_train")
    left = [
        path
        for path, content in read_files(copy).items()
        if not is_own(path) and re.search(r"lake[_-]watch", path + content.decode(errors="ignore"))
    ]
    assert left == []
    assert (copy / "project" / "dags" / "river_watch_pipeline.py").exists()


def test_an_existing_target_folder_is_refused_unless_forced(tmp_path: Path) -> None:
    copy = clone(tmp_path)
    target = copy / "project" / "src" / PACKAGE
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    _run(["git", "add", "."], cwd=copy)
    _run(["git", "commit", "--quiet", "-m", "notes"], cwd=copy)

    refused = init(copy, "--yes", "--name", NAME, check=False)

    assert refused.returncode == 1 and f"project/src/{PACKAGE} already exists" in refused.stderr
    init(copy, "--yes", "--name", NAME, "--force")
    assert (target / "notes.txt").exists() and (target / "workflow_steps.py").exists()


def test_questions_are_asked_with_defaults_from_the_name(tmp_path: Path) -> None:
    copy = clone(tmp_path)
    # name, package, description, author, email, keep example, DAGs, object store, confirm
    replies = f"{NAME}\n\n\nGrace Hopper\n\ny\n\nnone\ny\n"

    assert main(["--root", str(copy)], stream=io.StringIO(replies)) == 0

    project = tomllib.loads((copy / "project" / "pyproject.toml").read_text())["project"]
    assert project["name"] == "lake-watch"
    assert project["description"].startswith(NAME)
    assert project["authors"] == [{"name": "Grace Hopper", "email": "ada@example.org"}]
    assert (copy / "project" / "dags" / "example_training_from_config.yaml").exists()
    assert s3_backend(copy) == "none"


def test_defaults_derive_like_the_cookiecutter() -> None:
    assert package_from_name("Lake Watch") == "lake_watch"
    assert package_from_name("  Wasserstraße 2.0! ") == "wasserstrae_2_0"
    assert package_from_name("Rivières du Québec") == "rivieres_du_quebec"


def test_rename_keeps_columns_in_documents_and_leaves_longer_words() -> None:
    files = {
        "README.md": b"  src/old_name/       the package\nold_names, example-old-name\n",
        "a.py": b"from old_name.x import y  # first\n",
    }
    renamed = rename(files, {"old_name": "new", "old-name": "new"})
    assert renamed["README.md"] == b"  src/new/            the package\nold_names, example-new\n"
    assert renamed["a.py"] == b"from new.x import y  # first\n"


COMMENTED_PYPROJECT = """\
# Metadata; init sets name, description and authors.
[project]
name = "a"  # the distribution
description = "Old."
authors = [
  { name = "X" },  # who
]
dependencies = [
    "numpy>=1.26",  # arrays
]

# Tools come after.
[tool.x]
y = 1
"""


def test_toml_keys_change_only_their_own_lines() -> None:
    values = {"name": "b", "description": 'Say "hi"', "authors": authors("Ada", "a@example.org")}

    edited = set_keys(COMMENTED_PYPROJECT, "project", values, "pyproject.toml")

    assert tomllib.loads(edited)["project"] == {
        "name": "b",
        "description": 'Say "hi"',
        "authors": [{"name": "Ada", "email": "a@example.org"}],
        "dependencies": ["numpy>=1.26"],
    }
    removed, added = changed_lines(COMMENTED_PYPROJECT, edited)
    assert removed == [
        'name = "a"  # the distribution',
        'description = "Old."',
        "authors = [",
        '  { name = "X" },  # who',
        "]",
    ]
    assert added == [
        'name = "b"  # the distribution',
        'description = "Say \\"hi\\""',
        'authors = [{name = "Ada", email = "a@example.org"}]',
    ]
    assert set_keys(edited, "project", values, "pyproject.toml") == edited
    no_authors = set_keys(edited, "project", {"authors": authors("", "")}, "pyproject.toml")
    assert changed_lines(edited, no_authors) == ([added[-1]], [])
    with pytest.raises(InitError, match=r"'tool' in \[tool.h2ops\] is a value"):
        set_keys("tool = 1\n", "tool.h2ops", {"s3_backend": "none"}, "pyproject.toml")


@pytest.mark.parametrize("path", ["pyproject.toml", "project/pyproject.toml"])
def test_the_repositorys_pyproject_files_keep_their_layout(path: str) -> None:
    text = (ROOT / path).read_text()
    project = tomllib.loads(text)["project"]
    current = {"name": project["name"], "description": project["description"]}
    assert set_keys(text, "project", current, path) == text

    described = set_keys(text, "project", {"description": "One line."}, path)
    assert changed_lines(text, described) == (
        [line for line in text.splitlines() if line.startswith("description =")],
        ['description = "One line."'],
    )
    stored = set_keys(text, "tool.h2ops", {"s3_backend": "minio"}, path)
    removed, added = changed_lines(text, stored)
    assert all(line.startswith("s3_backend =") for line in removed), removed
    assert set(added) <= {"[tool.h2ops]", 's3_backend = "minio"', ""}, added
    assert tomllib.loads(stored)["tool"]["h2ops"]["s3_backend"] == "minio"
    switched = set_keys(stored, "tool.h2ops", {"s3_backend": "none"}, path)
    assert changed_lines(stored, switched) == (['s3_backend = "minio"'], ['s3_backend = "none"'])


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines `after` drops from `before`, and the lines it adds."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return (
        [line[2:] for line in diff if line.startswith("- ")],
        [line[2:] for line in diff if line.startswith("+ ")],
    )


def _status(copy: Path) -> str:
    return _run(["git", "status", "--porcelain"], cwd=copy).strip()


def _project_env(copy: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(copy / "project" / "src")}


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, (
        f"{' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.mark.parametrize(
    ("examples", "dags"), [(True, "python"), (True, "yaml"), (False, "both"), (False, "python")]
)
def test_every_edit_finds_what_it_edits_in_this_repository(examples: bool, dags: DagStyle) -> None:
    """In memory, on this checkout's files: a README reworded so that one of init's edits no
    longer finds its place fails here, not silently in a user's repository."""
    files = read_files(ROOT)
    answers = Answers(NAME, PACKAGE, "One line.", "Ada", "ada@example.org", examples, dags)
    after = new_files(files, ProjectState.of(files), answers)
    readme = after["project/README.md"].decode()
    assert "example_training_from_config" not in readme
    assert ("dag-factory reports runs" in readme) == (dags != "python")
    if not examples:
        assert "example" not in after["project/data/README.md"].decode()
    if examples and dags == "yaml":  # the YAML DAG takes the Python one's retraining schedule
        config = after["project/dags/example_training.yaml"].decode()
        assert "__type__: airflow.sdk.AssetAny" in config and "schedule: null" not in config


@pytest.mark.parametrize("dags", ["python", "yaml", "both"])
def test_the_skeleton_has_the_gate_and_monitoring_hooks_wired_into_its_dags(
    dags: DagStyle,
) -> None:
    """In memory: the stubs to fill in (promotion gate, reference profile, drift score) and the
    DAGs that call them, with the Assets of the retraining loop where the example has them."""
    files = read_files(ROOT)
    answers = Answers(NAME, PACKAGE, "One line.", "Ada", "ada@example.org", False, dags)
    after = {
        path: content.decode()
        for path, content in new_files(files, ProjectState.of(files), answers).items()
        if path.startswith("project/")
    }
    source = f"project/src/{PACKAGE}"
    model = after[f"{source}/model/change_me_model.py"]
    monitoring = after[f"{source}/monitoring/change_me_monitoring.py"]
    for hook in ("def gate_new_model(", "def publish_champion("):
        assert hook in model
    for hook in ("def reference_profile(", "def drift_score(", "def signal_drift("):
        assert hook in monitoring
    assert "drift" in after[f"{source}/monitoring/__init__.py"]
    monitoring_dag = after[f"project/dags/{PACKAGE}_monitoring.py"]
    assert "outlets=[Asset(DRIFT_ASSET_URI)]" in monitoring_dag
    assert "schedule=[Asset(CHAMPION_MODEL_URI)]" in monitoring_dag
    pipeline = f"project/dags/{PACKAGE}_pipeline"
    if dags != "yaml":
        python_dag = after[f"{pipeline}.py"]
        assert "gate_new_model(training)" in python_dag
        assert "outlets=[Asset(CHAMPION_MODEL_URI)]" in python_dag
        assert "schedule=(Asset(DRIFT_ASSET_URI) | Asset(NEW_DATA_ASSET_URI))" in python_dag
    if dags != "python":
        yaml_dag = after[f"{pipeline}_from_config.yaml" if dags == "both" else f"{pipeline}.yaml"]
        assert "change_me_model.gate_new_model" in yaml_dag
        assert "change_me_model.publish_champion" in yaml_dag


@pytest.mark.parametrize(
    ("path", "edit", "args", "missing"),
    [
        ("project/README.md", "<!-- /init:yaml-note -->", ["--dags", "python"], "yaml-note"),
        (
            "project/README.md",
            "| `example_training_from_config` |",
            ["--dags", "python"],
            "table row for `example_training_from_config`",
        ),
        ("project/data/README.md", "<!-- init:example -->", ["--no-examples"], "init:example"),
    ],
)
def test_an_edit_that_finds_nothing_stops_init_before_it_writes(
    tmp_path: Path, path: str, edit: str, args: list[str], missing: str
) -> None:
    copy = clone(tmp_path)
    text = (copy / path).read_text()
    assert edit in text
    (copy / path).write_text(text.replace(edit, "(reworded)"))
    _run(["git", "commit", "--quiet", "-am", "reworded"], cwd=copy)

    refused = init(copy, "--yes", "--name", NAME, *args, check=False)

    assert refused.returncode == 1
    assert path in refused.stderr and missing in refused.stderr, refused.stderr
    assert _status(copy) == "" and not (copy / "project" / "src" / PACKAGE).exists()
