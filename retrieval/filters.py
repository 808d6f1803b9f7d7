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
    {"metadata.value_eur": {"match": "120000"}}  text as typed on a command line: a value written
                                                 so (120000 or "120000"; true or "true") or an
                                                 array holding one (`search --filter` uses it)

Keys: source (= key, the path relative to the ingested folder), path, title, media_type, page,
section, modified, ingested, metadata.NAME. Several keys, or several operators on one key,
must all hold. An SQLAlchemy expression on store.tables.chunks/documents is accepted as is.

Every value of a dict filter is a named parameter (filter_0, filter_1...): two filters that
differ only in their values compile to the same SQL, so a search statement built for one
serves the other with its own values (Filters.shape, Filters.values).
"""

from __future__ import annotations

import functools
import json
import math
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, and_, any_, bindparam, case, func, literal_column, or_
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.visitors import iterate
from sqlalchemy.types import Float, Text

from pgkb.errors import QueryError
from store import readable_chunks
from store.fulltext import unstorable
from store.tables import chunks, documents


class FilterError(QueryError):
    """A search filter pgkb cannot apply: an unknown field, operator or value."""


def document_metadata() -> ColumnElement:
    """A document's metadata as filters see it: what the parser found, overridden by the
    user's tags (kept apart so that a tag change rewrites one row)."""
    return documents.c.metadata.op("||", return_type=JSONB)(documents.c.tags)


_COLUMNS = {
    "source": documents.c.key,
    "key": documents.c.key,
    "path": documents.c.path,
    "title": documents.c.title,
    "media_type": documents.c.media_type,
    "modified": documents.c.mtime,
    "ingested": documents.c.updated_at,
}
_DATES = {"modified", "ingested"}
PAGE_LIMIT = 2**31  # page numbers are PostgreSQL integers
# Values a filter binds, each a parameter of the search statement (the driver takes 65,535).
MAX_VALUES = 1000
_OPERATORS = {"eq", "in", "gt", "gte", "lt", "lte", "contains", "exists", "match"}
_RANGE = {"gt", "gte", "lt", "lte"}


@dataclass(frozen=True)
class Filters:
    """A filter compiled: its SQL conditions, and what a statement built from them needs."""

    conditions: list[ColumnElement] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # the conditions' parameters, by name
    # The conditions' SQL, values left out: filters of one shape can share a statement. None
    # when the conditions hold values of their own (a ready SQLAlchemy expression).
    shape: str | None = ""

    def readable_by(self, principals: Sequence[str], collection_id: int) -> Filters:
        """These filters, and only documents one of `principals` may read (store.access): one
        more condition inside both legs of the statement, before ranking and before k."""
        condition = readable_chunks(principals, collection_id)
        shape = None if self.shape is None else f"{self.shape} /* readable */ {_readable_sql(collection_id)}"
        return Filters([*self.conditions, condition], {**self.values, "principals": list(principals)}, shape)

    @property
    def key(self) -> tuple[str, str] | None:
        """The filters' SQL and values, for remembering what they let through; None where their
        SQL cannot tell (a ready SQLAlchemy expression holds values of its own)."""
        return None if self.shape is None else (self.shape, repr(sorted(self.values.items())))


def compile_filters(filters: dict[str, Any] | ColumnElement | None) -> Filters:
    """SQL conditions for `filters`, which may also be a ready SQLAlchemy expression."""
    if filters is None:
        return Filters()
    if isinstance(filters, ColumnElement):
        return Filters([filters], shape=None)
    if not isinstance(filters, dict):
        raise FilterError(f"filters must be a dict or an SQLAlchemy expression, not {type(filters).__name__}")
    values = _Values()
    conditions = [_condition(key, spec, values) for key, spec in filters.items()]
    everything_named = all(p.key in values for c in conditions for p in iterate(c) if isinstance(p, BindParameter))
    shape = _sql(and_(*conditions)) if everything_named else None
    return Filters(conditions, dict(values), shape)


@functools.lru_cache(maxsize=256)
def _readable_sql(collection_id: int) -> str:
    """The access condition's SQL, the same for any principals (they are one parameter):
    compiled once per collection, not on every restricted search."""
    return _sql(readable_chunks(["any"], collection_id))


def _sql(condition: ColumnElement) -> str:
    return str(condition.compile(dialect=postgresql.dialect()))


class _Values(dict):
    """A filter's values, each made a named parameter as it is bound."""

    def bind(self, value: Any, type_=None) -> BindParameter:
        if len(self) >= MAX_VALUES:
            raise FilterError(f"a filter may hold at most {MAX_VALUES:,} values (each value of a page or "
                              "metadata 'in' list counts; other keys' 'in' lists count as one)")
        name = f"filter_{len(self)}"
        self[name] = value
        return bindparam(name, value, type_=type_)


def _condition(key: str, spec: Any, values: _Values) -> ColumnElement:
    if not isinstance(key, str):
        raise FilterError(f"filter keys are text, not {key!r}")
    _check_storable(key, key)
    ops = spec if isinstance(spec, dict) else {"eq": spec}
    unknown = set(ops) - _OPERATORS
    if unknown:
        raise FilterError(
            f"filter {key!r}: unknown operator {min(unknown, key=str)!r} (known: {', '.join(sorted(_OPERATORS))})"
        )
    if "in" in ops and not isinstance(ops["in"], (list, tuple)):
        raise FilterError(f"filter {key!r}: 'in' takes a list, not {_shown(ops['in'])}")
    if not ops:
        raise FilterError(f"filter {key!r}: no operator given")
    return and_(*(_compare(key, op, value, values) for op, value in ops.items()))


def _compare(key: str, op: str, value: Any, values: _Values) -> ColumnElement:
    if key == "page":
        return _page(op, value, values)
    if key == "section":
        return _section(op, value, values)
    if key.startswith("metadata.") and len(key) > len("metadata."):
        return _metadata(key.removeprefix("metadata."), op, value, values)
    if key not in _COLUMNS:
        raise FilterError(
            f"unknown filter key {key!r} (known: {', '.join(sorted(_COLUMNS))}, page, section, metadata.NAME)"
        )
    if op not in ("eq", "in", *_RANGE):
        raise FilterError(f"filter {key!r} takes eq, in, gt, gte, lt or lte, not {op!r}")
    column = _COLUMNS[key]
    checked = _date if key in _DATES else _text
    if op == "in":
        # One array parameter, however many values (documents a caller may see, say).
        return column == any_(values.bind([checked(key, v) for v in value], ARRAY(column.type)))
    bound = values.bind(checked(key, value), column.type)
    return column == bound if op == "eq" else _range(column, op, bound)


def _page(op: str, value: Any, values: _Values) -> ColumnElement:
    """A chunk is on page p when p falls within its page range."""
    start, end = chunks.c.page_start, chunks.c.page_end
    if op == "eq":
        page = values.bind(_page_number(value), start.type)
        return and_(start <= page, end >= page)
    if op == "in":
        pages = [values.bind(_page_number(v), start.type) for v in value]
        return or_(*[and_(start <= page, end >= page) for page in pages])
    if op in ("gt", "gte"):
        return _range(end, op, values.bind(_page_number(value), end.type))
    if op in ("lt", "lte"):
        return _range(start, op, values.bind(_page_number(value), start.type))
    raise FilterError(f"filter 'page' takes eq, in, gt, gte, lt or lte, not {op!r}")


def _section(op: str, value: Any, values: _Values) -> ColumnElement:
    if op == "eq":
        return chunks.c.section_path.any(values.bind(_text("section", value), Text()))
    if op == "in":
        return chunks.c.section_path.overlap(values.bind([_text("section", v) for v in value], ARRAY(Text)))
    if op == "contains":
        headings = [_text("section", v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        return chunks.c.section_path.contains(values.bind(headings, ARRAY(Text)))
    raise FilterError(f"filter 'section' takes eq, in or contains, not {op!r}")


# A metadata name: letters and digits of any script, spaces and . : _ - (what tags, sidecars and
# files' own metadata use); quotes, semicolons and brackets only ever come from a probe.
METADATA_NAME = re.compile(r"[\w .:\-]{1,200}")


def _metadata(name: str, op: str, value: Any, values: _Values) -> ColumnElement:
    key = f"metadata.{name}"
    if not METADATA_NAME.fullmatch(name):
        raise FilterError(f"filter {_shown(key)}: a metadata name holds letters, digits, spaces and . : _ - "
                          "(at most 200)")
    merged = document_metadata()
    if op == "eq":  # containment keeps the JSON type: 3 matches 3, not "3"
        return merged.contains(values.bind({name: _json(key, value)}, JSONB))
    if op == "in":
        return or_(*[merged.contains(values.bind({name: _json(key, v)}, JSONB)) for v in value])
    if op == "contains":
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        return merged.contains(values.bind({name: _json(key, items)}, JSONB))
    if op == "exists":
        if not isinstance(value, bool):
            raise FilterError(f"filter {key!r}: 'exists' takes true or false, not {_shown(value)}")
        present = merged.has_key(values.bind(name, Text()))
        return present if value else ~present
    if op == "match":
        return or_(*[merged.contains(values.bind({name: form}, JSONB))
                     for typed in _typed_forms(_text(key, value)) for form in (typed, [typed])])
    field = merged[values.bind(name, Text())]
    # Ranges compare numbers as numbers (other JSON types never match) and anything else
    # (ISO dates...) as text.
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        number = case((func.jsonb_typeof(field) == literal_column("'number'"), field.as_float()))
        return _range(number, op, values.bind(value, Float()))
    if isinstance(value, str):
        return _range(field.astext, op, values.bind(_text(key, value), Text()))
    raise FilterError(f"filter {key!r}: {op!r} takes a number or text (an ISO date...), not {_shown(value)}")


def _typed_forms(text: str) -> list[Any]:
    """The JSON values a command line's text may stand for: the text itself, and the number or
    boolean it spells in JSON (120000, 1.5e3, true; not NaN, 007 or "yes")."""
    try:
        typed = json.loads(text)
    except ValueError:
        return [text]
    spelled = isinstance(typed, (int, float)) and math.isfinite(typed)  # booleans are ints
    return [text, typed] if spelled else [text]


def _range(column, op: str, value: BindParameter) -> ColumnElement:
    return {"gt": column > value, "gte": column >= value, "lt": column < value, "lte": column <= value}[op]


# Each value is checked for what its column holds before it is bound, so that a wrong one is
# a FilterError naming the filter, never an error from the database driver.

def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FilterError(f"filter {key!r} takes text, not {_shown(value)}")
    _check_storable(key, value)
    return value


def _date(key: str, value: Any) -> date:
    if isinstance(value, date):  # a datetime is a date too
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise FilterError(f"filter {key!r} takes a date: an ISO 8601 string (2026-01-01, 2026-01-01T09:30:00+08:00) "
                      f"or a datetime, not {_shown(value)}")


def _page_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -PAGE_LIMIT <= value < PAGE_LIMIT:
        raise FilterError(f"filter 'page' takes a whole number, not {_shown(value)}")
    return value


def _json(key: str, value: Any) -> Any:
    """A value for JSON containment: what JSON can hold, and text PostgreSQL takes."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise FilterError(f"filter {key!r} takes JSON values (text, numbers, true, false, null, lists, objects), "
                          f"not {_shown(value)}") from None
    pending = [value]  # every string in it, keys too; a loop, since nesting may be deep
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            _check_storable(key, item)
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            pending += item
    return value


def _check_storable(key: str, text: str) -> None:
    problem = unstorable(text)
    if problem:
        raise FilterError(f"filter {key!r} holds {problem}")


def _shown(value: Any) -> str:
    return reprlib.repr(value)  # shortened: a value may be long
