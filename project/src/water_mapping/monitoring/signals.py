"""The Assets of the retraining loop and the drift threshold, importable without numpy.

DAG files import these names and must parse fast. An event on either Asset schedules
`example_training`: `DRIFT_ASSET_URI` when an inference batch drifted from the training data,
`LABELLED_DATA_ASSET_URI` when new labelled data arrived (posted by whatever delivers it, e.g.
Airflow's REST API `POST /api/v2/assets/events`).
"""

from __future__ import annotations

DRIFT_ASSET_URI = "h2ops://example-water-mask/input-drift"
LABELLED_DATA_ASSET_URI = "h2ops://example-water-mask/new-labelled-data"
# Population Stability Index above which a band has drifted. The usual reading of PSI on large
# samples is < 0.1 stable, > 0.25 a significant shift; a batch here is only three tiles of a
# varied landscape (more or less water), so normal batches reach 0.55 (the highest of 1500),
# while a light haze (strength 0.2) gives 4 in the blue band. 1.0 keeps normal batches from
# retraining the model in a loop (tests/test_monitoring.py checks a sample of them).
DEFAULT_DRIFT_THRESHOLD = 1.0
MONITORING_EXPERIMENT = "example-water-mapping-monitoring"
REFERENCE_PROFILE_ARTIFACT = "monitoring/reference_profile.json"
