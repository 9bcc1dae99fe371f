"""JupyterLab rooted at `project/`."""
