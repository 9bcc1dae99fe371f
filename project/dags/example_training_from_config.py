"""Airflow DAG `example_training_from_config`: built by dag-factory from the YAML file beside it."""

from __future__ import annotations

from pathlib import Path

from dagfactory import load_yaml_dags

CONFIG_FILE = Path(__file__).with_name("example_training_from_config.yaml")

dags: dict = {}
load_yaml_dags(globals_dict=dags, config_filepath=str(CONFIG_FILE))
for dag_id, built_dag in dags.items():
    # dag-factory's listener reports runs of DAGs tagged "dagfactory" to an outside
    # telemetry service; this stack stays on loopback, so the tag goes.
    built_dag.tags = {tag for tag in built_dag.tags if tag != "dagfactory"}
    globals()[dag_id] = built_dag
