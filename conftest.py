"""Root pytest config: the running-stack fixtures serve `tests/` and `project/tests/` alike."""

pytest_plugins = ["devtools.testing"]
