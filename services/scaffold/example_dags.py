"""`--dags python|yaml` with the example: keep one of its two training DAGs.

The example trains twice over: `example_training` in Python and `example_training_from_config`
in YAML (dag-factory). With `yaml`, the YAML one takes the id `example_training`, so the
inference DAG's Asset, the notebooks and the end-to-end test still find it. Edits to code are
exact: if the template changed under them, init stops and says where, rather than guess.
"""

from __future__ import annotations

import ast
import re

from services.scaffold import InitError
from services.scaffold.answers import DagStyle
from services.scaffold.repository import Files

DAGS = "project/dags"
PYTHON_DAG = f"{DAGS}/example_training.py"
YAML_LOADER = f"{DAGS}/example_training_from_config.py"
YAML_CONFIG = f"{DAGS}/example_training_from_config.yaml"
YAML_ID = "example_training_from_config"
INTEGRITY_TEST = "project/tests/test_dag_integrity.py"
PIPELINE_TEST = "project/tests/test_training_pipeline.py"
README = "project/README.md"
BOTH_IDS = '["example_training", "example_training_from_config"]'
YAML_TRAINING_TEST = "test_training_defined_in_yaml_trains_and_promotes_a_new_champion"
TELEMETRY_TEST = "test_yaml_dag_leaves_out_the_tag_that_sends_telemetry"


def keep_one_training_dag(files: Files, style: DagStyle) -> Files:
    """`files` with only the Python or only the YAML training DAG, and tests and README to match."""
    if style == "both":
        return files
    files = dict(files)
    for path in (PYTHON_DAG, YAML_LOADER, YAML_CONFIG, INTEGRITY_TEST, PIPELINE_TEST, README):
        if path not in files:
            raise InitError(f"{path} is missing: init can only drop one of the example's DAGs")
    texts = {path: files[path].decode() for path in (INTEGRITY_TEST, PIPELINE_TEST, README)}
    _one_training_dag_left(texts)
    if style == "python":
        _python_only(files, texts)
    else:
        _yaml_only(files, texts)
    files.update({path: text.encode() for path, text in texts.items()})
    return files


def _one_training_dag_left(texts: dict[str, str]) -> None:
    """What holds in both cases: one training DAG id, no second training run in the tests."""
    integrity = _replace(texts[INTEGRITY_TEST], f', "{YAML_ID}"}}', "}", INTEGRITY_TEST)
    texts[INTEGRITY_TEST] = _replace(integrity, BOTH_IDS, '["example_training"]', INTEGRITY_TEST)
    pipeline = _drop_function(texts[PIPELINE_TEST], YAML_TRAINING_TEST, PIPELINE_TEST)
    texts[PIPELINE_TEST] = _drop_function(pipeline, "_champion_version", PIPELINE_TEST)
    readme = _drop_lines(texts[README], f"| `{YAML_ID}` |")
    texts[README] = readme.replace("the three DAG ids exist", "the two DAG ids exist")


def _python_only(files: Files, texts: dict[str, str]) -> None:
    del files[YAML_LOADER], files[YAML_CONFIG]
    texts[INTEGRITY_TEST] = _drop_function(texts[INTEGRITY_TEST], TELEMETRY_TEST, INTEGRITY_TEST)
    texts[README] = _drop_paragraph(texts[README], "dag-factory reports runs")


def _yaml_only(files: Files, texts: dict[str, str]) -> None:
    """The YAML DAG becomes `example_training`, in files named after it."""
    del files[PYTHON_DAG]
    for old in (YAML_LOADER, YAML_CONFIG):
        text = files.pop(old).decode().replace(YAML_ID, "example_training")
        files[old.replace(YAML_ID, "example_training")] = text.replace(
            " DAG again,", " DAG,"
        ).encode()
    texts[INTEGRITY_TEST] = _replace(
        texts[INTEGRITY_TEST],
        f'dag_bag.dags["{YAML_ID}"]',
        'dag_bag.dags["example_training"]',
        INTEGRITY_TEST,
    )
    texts[README] = (
        texts[README]
        .replace(
            "| `example_training` | manual |",
            "| `example_training` (YAML: `example_training.yaml`, built by "
            "[dag-factory](https://github.com/astronomer/dag-factory)) | manual |",
        )
        .replace(YAML_ID, "example_training")
    )


def _replace(text: str, old: str, new: str, path: str) -> str:
    if old not in text:
        raise InitError(
            f"{path} no longer contains {old!r}, so init cannot drop one of the example's DAGs: "
            "keep --dags both, or update services/scaffold/example_dags.py"
        )
    return text.replace(old, new)


def _drop_function(source: str, name: str, path: str) -> str:
    """`source` without the top-level function `name` (and its decorators)."""
    found = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
    ]
    if not found:
        raise InitError(
            f"{path} has no function {name}, so init cannot drop one of the example's DAGs: "
            "keep --dags both, or update services/scaffold/example_dags.py"
        )
    node = found[0]
    start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)]) - 1
    lines = source.splitlines(keepends=True)
    kept = "".join(lines[:start] + lines[node.end_lineno :])
    return re.sub(r"\n{4,}", "\n\n\n", kept).rstrip("\n") + "\n"


def _drop_lines(text: str, start: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(start))


def _drop_paragraph(text: str, start: str) -> str:
    paragraphs = text.split("\n\n")
    kept = "\n\n".join(paragraph for paragraph in paragraphs if not paragraph.startswith(start))
    return kept.rstrip("\n") + "\n"
