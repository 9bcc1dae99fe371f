"""`--dags python|yaml` with the example: keep one of its two training DAGs.

The example trains twice over: `example_training` in Python and `example_training_from_config`
in YAML (dag-factory), whose tests have a module of their own. With `python`, the YAML DAG's
files and that module go. With `yaml`, the Python DAG goes and the YAML one takes the id
`example_training` in its files and its test module, so the inference DAG's Asset, the
notebooks and the other tests still find it; it also takes the Python DAG's schedule (the
drift and new labelled data Assets), so the retraining loop stays closed. Besides that, only
the project README changes, where init drops the other DAG's table row (and, with `python`,
the dag-factory note it marks).
"""

from __future__ import annotations

from devtools.init import InitError
from devtools.init.answers import DagStyle
from devtools.init.regions import drop_region, drop_table_row, rename_id
from devtools.init.repository import Files

DAGS = "project/dags"
PYTHON_ID = "example_training"
YAML_ID = "example_training_from_config"
PYTHON_DAG = f"{DAGS}/{PYTHON_ID}.py"
YAML_FILES = (f"{DAGS}/{YAML_ID}.py", f"{DAGS}/{YAML_ID}.yaml", "project/tests/test_yaml_dag.py")
README = "project/README.md"
YAML_NOTE = "yaml-note"  # the README's region about dag-factory's telemetry
YAML_CONFIG = f"{DAGS}/{YAML_ID}.yaml"
MANUAL_SCHEDULE = """  # Manual: drift retrains example_training (Python), not both DAGs;
  # `nox -s init -- --dags yaml` gives this one that schedule.
  schedule: null
"""
# The Python DAG's `DRIFT_ASSET | NEW_LABELLED_DATA_ASSET` in dag-factory's typed YAML.
LOOP_SCHEDULE = """  # Drift or new labelled data retrains it (and it can be triggered by hand).
  schedule:
    __type__: airflow.sdk.AssetAny
    __args__:
      - {__type__: airflow.sdk.Asset, uri: "h2ops://example-water-mask/input-drift"}
      - {__type__: airflow.sdk.Asset, uri: "h2ops://example-water-mask/new-labelled-data"}
"""


def keep_one_training_dag(files: Files, style: DagStyle) -> Files:
    """`files` with only the Python or only the YAML training DAG, and tests and README to match."""
    if style == "both":
        return files
    files = dict(files)
    for path in (PYTHON_DAG, *YAML_FILES, README):
        if path not in files:
            raise InitError(f"{path} is missing: init can only drop one of the example's DAGs")
    readme = files[README].decode()
    if style == "python":
        for path in YAML_FILES:
            del files[path]
        readme = drop_table_row(readme, f"`{YAML_ID}`", README)
        readme = drop_region(readme, YAML_NOTE, README)
    else:
        del files[PYTHON_DAG]
        config = files[YAML_CONFIG].decode()
        if config.count(MANUAL_SCHEDULE) != 1:
            raise InitError(
                f"{YAML_CONFIG} has no single manual schedule ({MANUAL_SCHEDULE.strip()!r}) to "
                "replace with the drift and new labelled data Assets"
            )
        files[YAML_CONFIG] = config.replace(MANUAL_SCHEDULE, LOOP_SCHEDULE).encode()
        for old in YAML_FILES:
            text = rename_id(files.pop(old).decode(), YAML_ID, PYTHON_ID, old)
            files[old.replace(YAML_ID, PYTHON_ID)] = text.encode()
        readme = drop_table_row(readme, f"`{PYTHON_ID}`", README)
        readme = rename_id(readme, YAML_ID, PYTHON_ID, README)
    files[README] = readme.encode()
    return files
