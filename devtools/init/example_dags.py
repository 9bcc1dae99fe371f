"""`--dags python|yaml` with the example: keep one of its two training DAGs.

The example trains twice over: `example_training` in Python and `example_training_from_config`
in YAML (dag-factory), whose tests have a module of their own. With `python`, the YAML DAG's
files and that module go. With `yaml`, the Python DAG goes and the YAML one takes the id
`example_training` in its files and its test module, so the inference DAG's Asset, the
notebooks and the other tests still find it. Besides that, only the project README changes.
"""

from __future__ import annotations

from devtools.init import InitError
from devtools.init.answers import DagStyle
from devtools.init.repository import Files

DAGS = "project/dags"
PYTHON_ID = "example_training"
YAML_ID = "example_training_from_config"
PYTHON_DAG = f"{DAGS}/{PYTHON_ID}.py"
YAML_FILES = (f"{DAGS}/{YAML_ID}.py", f"{DAGS}/{YAML_ID}.yaml", "project/tests/test_yaml_dag.py")
README = "project/README.md"


def keep_one_training_dag(files: Files, style: DagStyle) -> Files:
    """`files` with only the Python or only the YAML training DAG, and tests and README to match."""
    if style == "both":
        return files
    files = dict(files)
    for path in (PYTHON_DAG, *YAML_FILES, README):
        if path not in files:
            raise InitError(f"{path} is missing: init can only drop one of the example's DAGs")
    readme = _drop_lines(files[README].decode(), f"| `{YAML_ID}` |")
    readme = readme.replace("the three DAG ids exist", "the two DAG ids exist")
    if style == "python":
        for path in YAML_FILES:
            del files[path]
        readme = _drop_paragraph(readme, "dag-factory reports runs")
    else:
        del files[PYTHON_DAG]
        for old in YAML_FILES:
            text = files.pop(old).decode().replace(YAML_ID, PYTHON_ID)
            files[old.replace(YAML_ID, PYTHON_ID)] = text.replace(" DAG again,", " DAG,").encode()
        readme = readme.replace(
            f"| `{PYTHON_ID}` | manual |",
            f"| `{PYTHON_ID}` (YAML: `{PYTHON_ID}.yaml`, built by "
            "[dag-factory](https://github.com/astronomer/dag-factory)) | manual |",
        ).replace(YAML_ID, PYTHON_ID)
    files[README] = readme.encode()
    return files


def _drop_lines(text: str, start: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(start))


def _drop_paragraph(text: str, start: str) -> str:
    paragraphs = text.split("\n\n")
    kept = "\n\n".join(paragraph for paragraph in paragraphs if not paragraph.startswith(start))
    return kept.rstrip("\n") + "\n"
