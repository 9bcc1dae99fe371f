"""Airflow DAG `example_training_from_config`: built by dag-factory from the YAML file beside it."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml
from dagfactory import load_yaml_dags

CONFIG_FILE = Path(__file__).with_name("example_training_from_config.yaml")
# The DAG-level keys dag-factory 1.x reads (DagBuilder.build); it drops any other key without a
# word, so a misspelt `schedule` or `default_args` would silently change the DAG.
DAG_KEYS = frozenset(
    {
        "access_control",
        "catchup",
        "concurrency",
        "dag_display_name",
        "dagrun_timeout",
        "default_args",
        "default_view",
        "description",
        "doc_md",
        "doc_md_file_path",
        "doc_md_python_arguments",
        "doc_md_python_callable_file",
        "doc_md_python_callable_name",
        "end_date",
        "is_paused_upon_creation",
        "max_active_runs",
        "max_active_tasks",
        "on_failure_callback",
        "on_failure_callback_file",
        "on_failure_callback_name",
        "on_success_callback",
        "on_success_callback_file",
        "on_success_callback_name",
        "orientation",
        "params",
        "render_template_as_native_obj",
        "schedule",
        "start_date",
        "tags",
        "task_groups",
        "tasks",
        "template_searchpath",
        "timetable",
        "timezone",
        "user_defined_macros",
    }
)


def check_dag_keys(config_file: Path) -> None:
    """Refuse a DAG-level key dag-factory does not know, naming it and the closest known one."""
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    for dag_id, dag_config in config.items():
        for key in set(dag_config or {}) - DAG_KEYS:
            close = difflib.get_close_matches(key, DAG_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {sorted(DAG_KEYS)}"
            raise ValueError(f"{config_file.name}: {dag_id!r} has an unknown key {key!r}; {hint}")


check_dag_keys(CONFIG_FILE)
dags: dict = {}
load_yaml_dags(globals_dict=dags, config_filepath=str(CONFIG_FILE))
for dag_id, built_dag in dags.items():
    # dag-factory's listener reports runs of DAGs tagged "dagfactory" to an outside
    # telemetry service; this stack stays on loopback, so the tag goes.
    built_dag.tags = {tag for tag in built_dag.tags if tag != "dagfactory"}
    globals()[dag_id] = built_dag
