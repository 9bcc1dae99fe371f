"""Developer tools kept out of the runtime package: `nox -s init`, `nox -s bench`, and the
pytest plugin and harness that run real stacks in temporary directories."""
