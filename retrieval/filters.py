"""The filter language: a dict compiled to SQLAlchemy expressions (bound parameters only).

    {"source": "policy.pdf"}                  equality
    {"source": {"in": ["a.pdf", "b.docx"]}}   membership
    {"page": {"gte": 3, "lte": 5}}            ranges: gt, gte, lt, lte
    {"section": "Per diem"}                   any heading of the chunk's section path
    {"metadata.author": "Jane"}               a file-level metadata key
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, literal, or_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text

from store.tables import chunks, documents


class FilterError(ValueError):
    pass


_COLUMNS = {
    "source": documents.c.key,
    "key": documents.c.key,
    "path": documents.c.path,
    "title": documents.c.title,
    "media_type": documents.c.media_type,
}
_OPERATORS = {"eq", "in", "gt", "gte", "lt", "lte"}


def compile_filters(filters: dict[str, Any] | ColumnElement | None) -> list[ColumnElement]:
    """SQL conditions for `filters`, which may also be a ready SQLAlchemy expression."""
    if filters is None:
        return []
    if isinstance(filters, ColumnElement):
        return [filters]
    if not isinstance(filters, dict):
        raise FilterError(f"filters must be a dict or an SQLAlchemy expression, not {type(filters).__name__}")
    return [_condition(key, spec) for key, spec in filters.items()]


def _condition(key: str, spec: Any) -> ColumnElement:
    ops = spec if isinstance(spec, dict) else {"eq": spec}
    unknown = set(ops) - _OPERATORS
    if unknown:
        raise FilterError(f"filter {key!r}: unknown operator {sorted(unknown)[0]!r} (known: {', '.join(sorted(_OPERATORS))})")
    if "in" in ops and not isinstance(ops["in"], (list, tuple)):
        raise FilterError(f"filter {key!r}: 'in' takes a list, not {ops['in']!r}")
    return and_(*(_compare(key, op, value) for op, value in ops.items()))


def _compare(key: str, op: str, value: Any) -> ColumnElement:
    if key == "page":
        # A chunk is on page p when p falls within its page range.
        return _apply(op, value, low=chunks.c.page_start, high=chunks.c.page_end)
    if key == "section":
        if op == "eq":
            return chunks.c.section_path.any(value)
        if op == "in":
            return chunks.c.section_path.overlap(literal(list(value), ARRAY(Text)))
        raise FilterError(f"filter 'section' takes eq or in, not {op!r}")
    if key.startswith("metadata."):
        name = key.removeprefix("metadata.")
        if op == "eq":  # containment keeps the JSON type: 3 matches 3, not "3"
            return documents.c.metadata.contains({name: value})
        if op == "in":
            return or_(*[documents.c.metadata.contains({name: v}) for v in value])
        column = documents.c.metadata[name].astext
        return _apply(op, str(value), low=column, high=column)
    if key not in _COLUMNS:
        raise FilterError(
            f"unknown filter key {key!r} (known: {', '.join(sorted(_COLUMNS))}, page, section, metadata.<name>)"
        )
    return _apply(op, value, low=_COLUMNS[key], high=_COLUMNS[key])


def _apply(op: str, value: Any, low, high) -> ColumnElement:
    if op == "eq":
        return and_(low <= value, high >= value) if low is not high else low == value
    if op == "in":
        return low.in_(value) if low is high else or_(*[and_(low <= v, high >= v) for v in value])
    return {"gt": high > value, "gte": high >= value, "lt": low < value, "lte": low <= value}[op]
