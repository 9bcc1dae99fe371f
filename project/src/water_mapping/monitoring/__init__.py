"""Watching what the model is asked: the training data's reference profile, each inference
batch's input statistics and drift against it, and the Assets that say "retrain".

`signals` holds the light names DAG files import; `drift` the statistics (PSI, KS test);
`report` the figure a person opens beside the predictions.
"""
