"""Fitting and choosing models: training data from the feature store, a hyperparameter
search logged to MLflow as nested runs, and the best model logged as a pyfunc.

Registration of the chosen model lives in `water_mapping.model.registry`.
"""
