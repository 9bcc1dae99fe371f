"""The READMEs' tops: the project's title and intro, with a line saying it came from H2Ops."""

from __future__ import annotations

import textwrap

WIDTH = 99
STORES = {
    "minio": "and a MinIO S3 server",
    "rclone": "and an S3 server (`rclone serve s3`)",
    "none": "(no object store: data and MLflow artifacts stay in folders under `.h2ops/`)",
}
ANY_STORE = "and an S3 object store (MinIO, or `rclone serve s3`)"


def root_intro(
    name: str, description: str, package: str, examples: bool, object_store: str | None
) -> str:
    """The root README's title and intro; the sections after it describe the stack."""
    store = STORES.get(object_store or "auto", ANY_STORE)
    code = (
        f"The code is in `project/` (package `{package}`), still with the template's worked "
        "example (mapping surface water in multispectral tiles); `project/README.md` says how "
        "to replace it."
        if examples
        else f"The code is in `project/` (package `{package}`); each subpackage's "
        "`change_me_*.py` says what belongs there."
    )
    made_from = (
        "Made from the H2Ops template: `nox -s up` starts Apache Airflow 3, MLflow 3, JupyterLab "
        f"{store} on your machine as supervised processes, without Docker. Tools are pinned by "
        f"a Nix flake and a dev container, Python packages by `uv.lock`. {code}"
    )
    return f"# {name}\n\n{_fill(description)}\n\n{_fill(made_from)}\n\n"


def replace_intro(readme: str, intro: str) -> str:
    """`readme` with everything before its first `## ` section replaced by `intro`."""
    start = readme.find("\n## ")
    return intro + (readme[start + 1 :] if start >= 0 else "")


def retitle(readme: str, name: str, description: str, old_description: str) -> str:
    """`# name` and the description under it; a description an earlier run put there goes."""
    first, _, rest = readme.partition("\n")
    if not first.startswith("# "):
        rest = readme
    rest = rest.lstrip("\n")
    old = _fill(old_description) + "\n\n"
    if old_description and rest.startswith(old):
        rest = rest[len(old) :]
    return f"# {name}\n\n{_fill(description)}\n\n{rest}"


def _fill(text: str) -> str:
    return textwrap.fill(text, WIDTH, break_long_words=False, break_on_hyphens=False)
