"""Setting a few keys of a pyproject.toml table line by line, so its comments and layout stay.

tomllib only reads; a format-keeping writer (tomlkit) is not among the locked packages, and
init changes at most three keys, each checked by reading the result back with tomllib.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from services.scaffold import InitError

HEADER = re.compile(r"^\s*\[")


def toml_string(value: str) -> str:
    """A TOML basic string; JSON's escapes are TOML's."""
    return json.dumps(value, ensure_ascii=False)


def toml_authors(author: str, email: str) -> str | None:
    """`[{ name = "...", email = "..." }]`, or None (no authors key) when both are empty."""
    fields = [
        f"{key} = {toml_string(value)}"
        for key, value in (("name", author), ("email", email))
        if value
    ]
    return f"[{{ {', '.join(fields)} }}]" if fields else None


def set_keys(text: str, table: str, values: dict[str, str | None], where: str) -> str:
    """Set each key of `table` to its TOML value (None removes the key); adds the table if needed.

    `where` names the file in errors. The result is read back, so a layout this cannot edit
    (a key spread over lines in an unusual way) stops init instead of writing a broken file.
    """
    lines = text.splitlines(keepends=True)
    header = f"[{table}]"
    starts = [i for i, line in enumerate(lines) if line.strip() == header]
    if not starts:
        added = [f"{key} = {value}\n" for key, value in values.items() if value is not None]
        if not added:
            return text
        separator = (
            "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        )
        return _checked(text + separator + header + "\n" + "".join(added), table, values, where)
    start = starts[0] + 1
    end = next((i for i in range(start, len(lines)) if HEADER.match(lines[i])), len(lines))
    body = lines[start:end]
    for key, value in values.items():
        body = _set_key(body, key, value)
    return _checked("".join([*lines[:start], *body, *lines[end:]]), table, values, where)


def _set_key(body: list[str], key: str, value: str | None) -> list[str]:
    pattern = re.compile(rf"^{re.escape(key)}\s*=")
    found = next((i for i, line in enumerate(body) if pattern.match(line)), None)
    new = [] if value is None else [f"{key} = {value}\n"]
    if found is None:
        last = max((i for i, line in enumerate(body) if line.strip()), default=-1)
        return [*body[: last + 1], *new, *body[last + 1 :]]
    end = found + 1
    depth = _bracket_depth(body[found].split("=", 1)[1])
    while depth > 0 and end < len(body):
        depth += _bracket_depth(body[end])
        end += 1
    return [*body[:found], *new, *body[end:]]


def _bracket_depth(line: str) -> int:
    code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line).split("#", 1)[0]
    return code.count("[") + code.count("{") - code.count("]") - code.count("}")


def _checked(text: str, table: str, values: dict[str, str | None], where: str) -> str:
    try:
        parsed: Any = tomllib.loads(text)
        for part in table.split("."):
            parsed = parsed.get(part, {})
        for key, value in values.items():
            expected = None if value is None else tomllib.loads(f"v = {value}")["v"]
            if parsed.get(key) != expected:
                raise ValueError(f"{key} reads back as {parsed.get(key)!r}")
    except (tomllib.TOMLDecodeError, ValueError) as error:
        raise InitError(
            f"could not set {', '.join(values)} under [{table}] in {where} ({error}): set them "
            "by hand and run init again"
        ) from None
    return text
