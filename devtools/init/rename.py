"""Renaming the package and the distribution in every path and text file of the repository."""

from __future__ import annotations

import re

from devtools.init.repository import Files

# Init's own code and tests name example projects; they are left as they are.
OWN_PATHS = ("devtools/init/", "tests/devtools/test_init.py")
DOCUMENT_SUFFIXES = (".md",)


def word(name: str) -> re.Pattern[str]:
    """`name` where no letter or digit touches it: `old_name` in `old_name.model`,
    `test_old_name` and `example-old-name`, not in `old_names`."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])")


def _aligned(name: str) -> re.Pattern[str]:
    # The word, the rest of its token, and a run of spaces that lines up a column after it.
    return re.compile(word(name).pattern + r"(?P<tail>\S*)(?P<gap> {2,})?")


def is_own(path: str) -> bool:
    return path.startswith(OWN_PATHS)


def rename(files: Files, renames: dict[str, str]) -> Files:
    """Every path and UTF-8 text with each old name replaced by its new one."""
    renames = {old: new for old, new in renames.items() if old != new}
    if not renames:
        return dict(files)
    plain = [(word(old), new) for old, new in renames.items()]
    # Documents line columns up with spaces; code is left to its formatter.
    aligned = [(_aligned(old), new) for old, new in renames.items()]
    renamed: Files = {}
    for path, content in files.items():
        if is_own(path):
            renamed[path] = content
            continue
        new_path = _substitute(path, plain)
        patterns = aligned if path.endswith(DOCUMENT_SUFFIXES) else plain
        try:
            renamed[new_path] = _substitute(content.decode(), patterns).encode()
        except UnicodeDecodeError:
            renamed[new_path] = content
    return renamed


def used_in_code(files: Files, name: str) -> str | None:
    """The first file (not a document) that already has `name` as a word, else None.

    A later rename replaces every such word, so a package named like one would rename it too.
    """
    pattern = word(name)
    for path, content in files.items():
        if is_own(path) or path.endswith(DOCUMENT_SUFFIXES):
            continue
        if pattern.search(path) or pattern.search(content.decode(errors="ignore")):
            return path
    return None


def top_level_names(files: Files) -> set[str]:
    """Names of the repository's top-level folders and files (`services`, `noxfile`, ...)."""
    return {path.split("/")[0].split(".")[0].lower() for path in files}


def _substitute(text: str, patterns: list[tuple[re.Pattern[str], str]]) -> str:
    """Each pattern's word replaced; spaces after a replaced token keep the next column where
    it was (`src/old_name/   the package` in a README's layout block)."""

    def replace(match: re.Match[str], pattern: re.Pattern[str], new: str) -> str:
        if "tail" not in pattern.groupindex:
            return new
        token = new + pattern.sub(lambda inner: replace(inner, pattern, new), match["tail"])
        gap = match["gap"]
        if gap is None:
            return token
        return token + " " * max(2, len(match[0]) - len(token))

    for pattern, new in patterns:
        text = pattern.sub(lambda match: replace(match, pattern, new), text)  # noqa: B023
    return text
