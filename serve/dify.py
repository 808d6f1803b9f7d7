"""Dify's External Knowledge API: `POST /retrieval`, so that Dify (and RAGFlow, which speaks it
too) uses a pgkb collection as an external knowledge base.

Dify sends the API key it was given as `Authorization: Bearer`, a `knowledge_id` (here a
collection's name), the query, `retrieval_setting` {top_k, score_threshold} and optionally
`metadata_condition`. The answer is `{"records": [{content, score, title, metadata}]}`, or an
error `{"error_code", "error_msg"}`: 1001 (a malformed Authorization header) and 1002 (a key
that is not live) with 403, 2001 (no such knowledge base for this key) with 404. A search
runs as the key's groups, as every search of the API does.

A record's score is the chunk's cosine similarity to the query, from 0 to 1 (what Dify's
score_threshold compares); records keep pgkb's hybrid order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Boolean, ColumnElement, and_, case, cast, func, literal, not_, or_
from sqlalchemy.types import DateTime, Numeric

from pgkb.errors import PgkbError, QueryError
from retrieval import Hit
from retrieval.filters import document_metadata

router = APIRouter(tags=["dify"])
MAX_TOP_K = 100

# Dify's comparison operators (its documentation's spelling; "null"/"not null" from its older one).
Operator = Literal["contains", "not contains", "start with", "end with", "is", "is not", "in", "not in",
                   "empty", "not empty", "null", "not null", "=", "≠", ">", "<", "≥", "≤", "before", "after"]


class RetrievalSetting(BaseModel):
    top_k: int = Field(ge=1, le=MAX_TOP_K)
    score_threshold: float = Field(0.0, ge=0.0, le=1.0)


class Condition(BaseModel):
    name: str | list[str]  # one name, or (Dify's older form) a list that must all hold
    comparison_operator: Operator
    value: str | float | list[str] | None = None


class MetadataCondition(BaseModel):
    logical_operator: Literal["and", "or"] = "and"
    conditions: list[Condition] = Field(min_length=1, max_length=50)


class RetrievalRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # Dify may add fields; none changes the answer

    knowledge_id: str
    query: str
    retrieval_setting: RetrievalSetting
    metadata_condition: MetadataCondition | None = None


class DifyError(PgkbError):
    """A request Dify's contract answers with an error code (its documentation's codes)."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        return JSONResponse({"error_code": self.code, "error_msg": self.message}, status_code=self.status)


@router.post("/retrieval")
async def retrieval(request: Request) -> JSONResponse:
    """Dify's External Knowledge API (see the module's docstring)."""
    service = request.app.state.service
    try:
        key = await run_in_threadpool(_key, service, request.headers.get("authorization", ""))
        try:
            body = RetrievalRequest.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            raise DifyError(400, 400, f"invalid request body: {_first_problem(exc)}") from None
        if body.knowledge_id not in key.collections or service.store.find_collection(body.knowledge_id) is None:
            raise DifyError(404, 2001, "The knowledge does not exist")
        filters = _metadata_filter(body.metadata_condition) if body.metadata_condition else None
        hits = await run_in_threadpool(lambda: service.search(
            body.knowledge_id, body.query, k=body.retrieval_setting.top_k, filters=filters,
            principals=key.principals))
    except DifyError as exc:
        return exc.response()
    except QueryError as exc:
        return DifyError(400, 400, str(exc)).response()
    records = [_record(hit) for hit in hits]
    return JSONResponse({"records": [r for r in records if r["score"] >= body.retrieval_setting.score_threshold]})


def _key(service: Any, authorization: str):
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise DifyError(403, 1001, "Invalid Authorization header format. Expected 'Bearer <api-key>' format.")
    key = service.key_from(authorization)
    if key is None:
        raise DifyError(403, 1002, "Authorization failed")
    return key


def _record(hit: Hit) -> dict[str, Any]:
    similarity = hit.vector_score if hit.vector_score is not None else 0.0
    return {
        "content": hit.text,
        "score": round(min(max(similarity, 0.0), 1.0), 6),
        "title": hit.document_key,
        # An object, never null: Dify's pipeline fails on a null metadata.
        "metadata": {**hit.metadata, "document_key": hit.document_key, "citation": hit.citation,
                     "pages": hit.pages, "section_path": list(hit.section_path), "chunk_id": hit.chunk_id},
    }


def _first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return "not JSON"


def _metadata_filter(condition: MetadataCondition) -> ColumnElement:
    """Dify's metadata_condition as one SQL condition on the documents' metadata (bound values)."""
    parts = [and_(*(_compare(name, c) for name in ([c.name] if isinstance(c.name, str) else c.name)))
             for c in condition.conditions]
    return and_(*parts) if condition.logical_operator == "and" else or_(*parts)


def _compare(name: str, c: Condition) -> ColumnElement:
    value = document_metadata()[name]
    text = value.astext
    operator, wanted = c.comparison_operator, c.value
    if operator in ("empty", "null"):
        return or_(text.is_(None), text == "")
    if operator in ("not empty", "not null"):
        return and_(text.is_not(None), text != "")
    if wanted is None:
        raise QueryError(f"metadata_condition: {operator!r} on {name!r} needs a value")
    if operator in ("in", "not in"):
        values = [str(v) for v in (wanted if isinstance(wanted, list) else [wanted])]
        held = _holds(text.in_(values))
        return held if operator == "in" else not_(held)
    if isinstance(wanted, list):
        raise QueryError(f"metadata_condition: {operator!r} on {name!r} takes one value, not a list")
    if operator in ("=", "≠", ">", "<", "≥", "≤"):
        number = _as(text, "numeric", Numeric())
        try:
            bound = float(wanted)
        except ValueError:
            raise QueryError(f"metadata_condition: {operator!r} on {name!r} compares numbers, not {wanted!r}") from None
        return _holds({"=": number == bound, "≠": number != bound, ">": number > bound, "<": number < bound,
                       "≥": number >= bound, "≤": number <= bound}[operator])
    if operator in ("before", "after"):
        moment = _as(text, "timestamptz", DateTime(timezone=True))
        try:
            bound_moment = literal(datetime.fromisoformat(str(wanted)), DateTime(timezone=True))
        except ValueError:
            raise QueryError(f"metadata_condition: {operator!r} on {name!r} compares dates (ISO 8601), "
                             f"not {wanted!r}") from None
        return _holds(moment < bound_moment if operator == "before" else moment > bound_moment)
    text_value = str(wanted)
    held = {
        "contains": lambda: text.contains(text_value, autoescape=True),
        "not contains": lambda: text.contains(text_value, autoescape=True),
        "start with": lambda: text.startswith(text_value, autoescape=True),
        "end with": lambda: text.endswith(text_value, autoescape=True),
        "is": lambda: text == text_value,
        "is not": lambda: text == text_value,
    }[operator]()
    # A document without the key neither contains nor is the value.
    return not_(_holds(held)) if operator in ("not contains", "is not") else _holds(held)


def _holds(condition: ColumnElement) -> ColumnElement:
    """True or false, never NULL (a missing key), so that NOT reads as a person means it."""
    return func.coalesce(condition, False, type_=Boolean)


def _as(text: ColumnElement, sql_type: str, type_: Any) -> ColumnElement:
    """The metadata text as `sql_type` where it reads as one, else NULL (never an error)."""
    return case((func.pg_input_is_valid(text, sql_type), cast(text, type_)))

