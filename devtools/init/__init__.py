"""`nox -s init`: make the template your project (names, metadata, examples, object store).

H2Ops is used as a template repository, so this is the old cookiecutter step, run in place: it
renames the example package everywhere, sets the project's metadata, and can swap the worked
example for skeletons. It works out every file's new content before writing any, so a refused
run changes nothing and a second run with the same answers finds nothing to do.
"""

from __future__ import annotations


class InitError(Exception):
    """An answer or the repository's state stops init; the message says what to do."""
