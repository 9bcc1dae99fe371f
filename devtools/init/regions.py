"""The only edits init makes inside the READMEs' prose: it drops what it owns, found by its
markers (`<!-- init:NAME -->` ... `<!-- /init:NAME -->`, invisible once rendered) or by a DAG's
table row, and renames ids. Each edit that finds nothing to change stops init with the file
and what is missing, so a reworded README cannot make init skip an edit silently.
"""

from __future__ import annotations

import re

from devtools.init import InitError


def markers(name: str) -> tuple[str, str]:
    return f"<!-- init:{name} -->", f"<!-- /init:{name} -->"


def drop_region(text: str, name: str, where: str) -> str:
    """`text` without the region marked `name`, markers included; a region that is a paragraph
    of its own takes the blank line before it along."""
    start, end = (re.escape(marker) for marker in markers(name))
    paragraph = re.compile(rf"\n\n{start}\n.*?\n{end}(?=\n)", re.S)
    inline = re.compile(rf"{start}.*?{end}", re.S)
    for pattern in (paragraph, inline):
        dropped, found = pattern.subn("", text)
        if found:
            return dropped
    first, last = markers(name)
    raise InitError(
        f"{where} has no {first} ... {last} region, so init cannot remove what it marks: put "
        "the markers back (see the file in git history) or make that change by hand"
    )


def drop_table_row(text: str, first_cell: str, where: str) -> str:
    """`text` without the table row whose first cell is `first_cell`."""
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(f"| {first_cell} |")]
    if len(kept) == len(lines):
        raise InitError(
            f"{where} has no table row for {first_cell}: init removes that row; restore it "
            "or remove the DAG by hand"
        )
    return "".join(kept)


def rename_id(text: str, old: str, new: str, where: str) -> str:
    """`text` with every `old` id as `new`."""
    if old not in text:
        raise InitError(f"{where} never names {old}, which init renames to {new}: check the file")
    return text.replace(old, new)
