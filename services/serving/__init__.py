"""The champion model, served by MLflow's scoring server, following its registry alias."""
