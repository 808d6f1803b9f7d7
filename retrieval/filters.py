"""The filter language: a dict compiled to SQLAlchemy conditions (bound parameters only).

    {"source": "policy.pdf"}                     equality (a bare value means eq)
    {"source": {"in": ["a.pdf", "b.docx"]}}      any of several
    {"page": {"gte": 3, "lte": 5}}               ranges: gt, gte, lt, lte
    {"modified": {"gte": "2026-01-01"}}          dates: the file's mtime, or when it was ingested
    {"section": "Per diem"}                      a heading anywhere in the chunk's section path
    {"section": {"contains": ["Travel", "Per diem"]}}   all of these headings
    {"metadata.department": "finance"}           a document metadata key (file metadata, tags)
    {"metadata.tags": {"contains": "finance"}}   an array in metadata holds this value (or all of a list)
    {"metadata.reviewed": {"exists": True}}      the key is present (False: absent)

Keys: source (= key, the path relative to the ingested folder), path, title, media_type, page,
section, modified, ingested, metadata.NAME. Several keys, or several operators on one key,
must all hold. An SQLAlchemy expression on store.tables.chunks/documents is accepted as is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text

from store.tables import chunks, document_metadata, documents


class FilterError(ValueError):
    pass


_COLUMNS = {
    "source": documents.c.key,
    "key": documents.c.key,
    "path": documents.c.path,
    "title": documents.c.title,
    "media_type": documents.c.media_type,
    "modified": documents.c.mtime,
    "ingested": documents.c.updated_at,
}
_OPERATORS = {"eq", "in", "gt", "gte", "lt", "lte", "contains", "exists"}
_RANGE = {"gt", "gte", "lt", "lte"}


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
        raise FilterError(
            f"filter {key!r}: unknown operator {sorted(unknown)[0]!r} (known: {', '.join(sorted(_OPERATORS))})"
        )
    if "in" in ops and not isinstance(ops["in"], (list, tuple)):
        raise FilterError(f"filter {key!r}: 'in' takes a list, not {ops['in']!r}")
    if not ops:
        raise FilterError(f"filter {key!r}: no operator given")
    return and_(*(_compare(key, op, value) for op, value in ops.items()))


def _compare(key: str, op: str, value: Any) -> ColumnElement:
    if key == "page":
        return _page(op, value)
    if key == "section":
        return _section(op, value)
    if key.startswith("metadata.") and len(key) > len("metadata."):
        return _metadata(key.removeprefix("metadata."), op, value)
    if key not in _COLUMNS:
        raise FilterError(
            f"unknown filter key {key!r} (known: {', '.join(sorted(_COLUMNS))}, page, section, metadata.NAME)"
        )
    column = _COLUMNS[key]
    if op == "eq":
        return column == value
    if op == "in":
        return column.in_(value)
    if op in _RANGE:
        return _range(column, op, value)
    raise FilterError(f"filter {key!r} takes eq, in, gt, gte, lt or lte, not {op!r}")


def _page(op: str, value: Any) -> ColumnElement:
    """A chunk is on page p when p falls within its page range."""
    start, end = chunks.c.page_start, chunks.c.page_end
    if op == "eq":
        return and_(start <= value, end >= value)
    if op == "in":
        return or_(*[and_(start <= v, end >= v) for v in value])
    if op in ("gt", "gte"):
        return _range(end, op, value)
    if op in ("lt", "lte"):
        return _range(start, op, value)
    raise FilterError(f"filter 'page' takes eq, in, gt, gte, lt or lte, not {op!r}")


def _section(op: str, value: Any) -> ColumnElement:
    if op == "eq":
        return chunks.c.section_path.any(value)
    if op == "in":
        return chunks.c.section_path.overlap(literal(list(value), ARRAY(Text)))
    if op == "contains":
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        return chunks.c.section_path.contains(literal(values, ARRAY(Text)))
    raise FilterError(f"filter 'section' takes eq, in or contains, not {op!r}")


def _metadata(name: str, op: str, value: Any) -> ColumnElement:
    merged = document_metadata()
    field = merged[name]
    if op == "eq":  # containment keeps the JSON type: 3 matches 3, not "3"
        return merged.contains({name: value})
    if op == "in":
        return or_(*[merged.contains({name: v}) for v in value])
    if op == "contains":
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        return merged.contains({name: values})
    if op == "exists":
        present = merged.has_key(name)
        return present if value else ~present
    # Ranges compare numbers as numbers (other JSON types never match) and anything else
    # (ISO dates...) as text.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _range(case((func.jsonb_typeof(field) == "number", field.as_float())), op, value)
    return _range(field.astext, op, str(value))


def _range(column, op: str, value: Any) -> ColumnElement:
    return {"gt": column > value, "gte": column >= value, "lt": column < value, "lte": column <= value}[op]
