"""MLflow tracking server and model registry, as one uvicorn process."""
