"""Setting a few keys of a pyproject.toml table with tomlkit, so its comments and layout stay."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Item, Table

from devtools.init import InitError

Value = str | list[dict[str, str]]


def authors(author: str, email: str) -> list[dict[str, str]] | None:
    """`[{name, email}]` without the empty fields, or None (no authors key) when both are."""
    fields = {key: value for key, value in (("name", author), ("email", email)) if value}
    return [fields] if fields else None


def set_keys(text: str, table: str, values: dict[str, Value | None], where: str) -> str:
    """`text` with each key of `table` (dotted: `tool.h2ops`) set to its value; None removes it.

    A key that has its value already is left alone, so a second run changes nothing; a missing
    table is added only when there is something to put in it. `where` names the file in errors.
    """
    try:
        document = tomlkit.parse(text)
        target = _find_table(document, table, where)
        added = target is None
        if added:
            if all(value is None for value in values.values()):
                return text
            target = _add_table(document, table)
        for key, value in values.items():
            if value is None:
                target.pop(key, None)
            elif target.unwrap().get(key) != value:
                target[key] = _item(value)
        if added and not tomlkit.dumps(document).endswith(target.as_string()):
            # tomlkit puts it after its sibling tables: a blank line before the next, as they have.
            target.add(tomlkit.nl())
        edited = tomlkit.dumps(document)
    except TOMLKitError as error:
        raise _cannot_set(table, values, where, str(error)) from None
    _check(edited, table, values, where)
    return edited


def _find_table(document: tomlkit.TOMLDocument, table: str, where: str) -> Any:
    found: Any = document
    for part in table.split("."):
        found = found.get(part)
        if found is None:
            return None
        if not isinstance(found, Mapping):
            raise InitError(
                f"{where}: {part!r} in [{table}] is a value, not a table: make it a table or "
                "remove it, then run init again"
            )
    return found


def _add_table(document: tomlkit.TOMLDocument, table: str) -> Table:
    *parents, name = table.split(".")
    container: Any = document
    for part in parents:
        container = container.setdefault(part, tomlkit.table(is_super_table=True))
    container[name] = tomlkit.table()
    return container[name]


def _item(value: Value) -> Item:
    if isinstance(value, list):
        # A list of dicts would become [[array.of.tables]]; authors are written inline.
        array = tomlkit.array()
        for entry in value:
            inline = tomlkit.inline_table()
            inline.update(entry)
            array.append(inline)
        return array
    return tomlkit.item(value)


def _check(text: str, table: str, values: dict[str, Value | None], where: str) -> None:
    """Read back with tomllib, as the stack and init itself read pyproject files."""
    try:
        parsed: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _cannot_set(table, values, where, str(error)) from None
    for part in table.split("."):
        parsed = parsed.get(part, {})
    for key, value in values.items():
        if parsed.get(key) != value:
            raise _cannot_set(table, values, where, f"{key} reads back as {parsed.get(key)!r}")


def _cannot_set(table: str, values: dict[str, Value | None], where: str, why: str) -> InitError:
    return InitError(
        f"could not set {', '.join(values)} under [{table}] in {where} ({why}): set them by "
        "hand and run init again"
    )
