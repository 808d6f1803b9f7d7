"""What a search runs, shown: the statement as the database driver receives it, its
parameters, the session settings it runs under and, when asked, PostgreSQL's plan.

    with KnowledgeBase() as kb:
        print(kb.explain("travel expenses", filters={"page": {"gte": 3}}, plan=True))
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from psycopg.types.json import Json, Jsonb
from sqlalchemy import Select
from sqlalchemy.engine import Dialect

# Values longer than this are shortened when shown (the query vector: hundreds of numbers).
SHOWN_CHARACTERS = 80


@dataclass(frozen=True)
class Explanation:
    """A search's statement. Running `sql` with `parameters` on a connection given `settings`
    returns the rows the search turns into hits. (When the HNSW index runs dry inside a filter,
    search runs it once more with an exact scan: enable_indexscan off.)"""

    sql: str                    # with the driver's named placeholders: %(name)s
    parameters: dict[str, Any]  # their values, in full, as the driver receives them
    settings: dict[str, str]    # the connection's settings (set_config) the search runs under
    plan: str | None = None     # PostgreSQL's EXPLAIN of it, when asked

    def __str__(self) -> str:
        lines = [f"SET {name} = '{value}';" for name, value in self.settings.items()]
        lines += ["", self.sql.strip(), "", "parameters:"]
        lines += [f"  {name} = {_shown(value)}" for name, value in self.parameters.items()]
        if self.plan is not None:
            lines += ["", "plan:", self.plan]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """As JSON takes it: a JSON parameter as its text, which its cast in the SQL reads."""
        return {**asdict(self), "parameters": {name: json.dumps(value.obj) if isinstance(value, Json | Jsonb) else value
                                               for name, value in self.parameters.items()}}


def driver_statement(statement: Select, parameters: dict[str, Any], dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """The statement's SQL and parameter values as SQLAlchemy hands them to the driver when it
    executes `statement` with `parameters`: values converted by their types (a vector to
    pgvector's text form, say)."""
    compiled = statement.compile(dialect=dialect)
    values = compiled.construct_params(parameters)
    converted = {}
    for name, value in values.items():
        convert = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        converted[name] = convert(value) if convert is not None and value is not None else value
    return str(compiled), converted


def _shown(value: Any) -> str:
    shown = repr(value)
    if len(shown) <= SHOWN_CHARACTERS:
        return shown
    return f"{shown[:SHOWN_CHARACTERS]}… ({len(shown):,} characters)"
