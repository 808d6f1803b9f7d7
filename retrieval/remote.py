"""pgkb from other programs: a client for a served search API (`pgkb serve`), and what the
LangChain and LlamaIndex retrievers (retrieval/langchain.py, retrieval/llamaindex.py) share.

    RemoteKnowledgeBase  KnowledgeBase.search over HTTP: the same arguments, the same Hits
    Searcher             a retriever's search: its arguments, and where it runs (in this
                         process, or a served API)
    hit_metadata         a hit's citation fields, as a retrieved document's metadata
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from pgkb.errors import ConfigurationError, QueryError, StoreError
from pgkb.settings import Settings, default

from .search import DEFAULT_K, DEFAULT_MODE, GroupBy, Hit, KnowledgeBase, Mode, knowledge_bases

# A collection's first search on a server loads its model: seconds, more on a busy machine.
TIMEOUT_SECONDS = 120.0


class RemoteKnowledgeBase:
    """One collection of a served API, searched as the API key's groups may read."""

    def __init__(self, url: str, api_key: str, collection: str, *, timeout: float = TIMEOUT_SECONDS):
        self.url = url.rstrip("/")
        self.collection = collection
        self._endpoint = f"{self.url}/v1/collections/{collection}/search"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = timeout

    def search(self, query: str, k: int = DEFAULT_K, filters: dict[str, Any] | None = None, *,
               mode: Mode = DEFAULT_MODE, group_by: GroupBy | None = None, rerank: int | None = None) -> list[Hit]:
        """The k best chunks for `query`, as KnowledgeBase.search finds them on the server."""
        body = _search_body(query, k, filters, mode, group_by, rerank)
        try:
            response = httpx.post(self._endpoint, json=body, headers=self._headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._hits(response)

    async def asearch(self, query: str, k: int = DEFAULT_K, filters: dict[str, Any] | None = None, *,
                      mode: Mode = DEFAULT_MODE, group_by: GroupBy | None = None,
                      rerank: int | None = None) -> list[Hit]:
        body = _search_body(query, k, filters, mode, group_by, rerank)
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(self._endpoint, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._hits(response)

    def _unreachable(self, exc: httpx.HTTPError) -> StoreError:
        return StoreError(f"the pgkb API at {self.url} could not be reached: {type(exc).__name__} {exc}")

    def _hits(self, response: httpx.Response) -> list[Hit]:
        """The response's hits, or the error its status means (never quoting the key)."""
        status = response.status_code
        if status == 200:
            return [hit_from_json(hit) for hit in response.json()["hits"]]
        if status == 401:
            raise ConfigurationError(f"the pgkb API at {self.url} refused the API key: give a live key "
                                     "(pgkb keys create)")
        if status in (403, 404):
            raise ConfigurationError(f"the pgkb API at {self.url} has no collection {self.collection!r} "
                                     f"this key may search (HTTP {status})")
        if status in (400, 422):
            raise QueryError(f"the pgkb API refused the search: {_detail(response)}")
        raise StoreError(f"the pgkb API at {self.url} failed (HTTP {status}): {_detail(response)}")


def _search_body(query: str, k: int, filters: dict[str, Any] | None, mode: Mode,
                 group_by: GroupBy | None, rerank: int | None) -> dict[str, Any]:
    body = {"query": query, "k": k, "filters": filters, "mode": mode, "group_by": group_by}
    return body if rerank is None else {**body, "rerank": rerank}  # a server without reranking takes the rest


def _detail(response: httpx.Response) -> str:
    """The API's own words on an error: a message, or the fields it refused and why."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase
    if isinstance(detail, list):
        return "; ".join(f"{problem.get('field')}: {problem.get('problem')}" for problem in detail)
    return str(detail)


def hit_to_json(hit: Hit) -> dict[str, Any]:
    """A hit as the served API returns it: its fields, its pages and citation; the server's own
    path to the file stays on the server."""
    shown = {name: value for name, value in asdict(hit).items() if name != "path"}
    return {**shown, "section_path": list(hit.section_path), "pages": hit.pages, "citation": hit.citation}


def hit_from_json(data: dict[str, Any]) -> Hit:
    """A hit as the served API returns it (hit_to_json): `path` is empty."""
    return Hit(
        chunk_id=data["chunk_id"], text=data["text"], score=data["score"], document_key=data["document_key"],
        path="", page_start=data["page_start"], page_end=data["page_end"],
        section_path=tuple(data["section_path"]), metadata=data["metadata"],
        vector_rank=data["vector_rank"], vector_score=data["vector_score"],
        keyword_rank=data["keyword_rank"], keyword_score=data["keyword_score"], snippet=data["snippet"],
        rerank_score=data.get("rerank_score"),  # absent from a server older than reranking
    )


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """What a retrieved document carries besides its text: the document's own metadata (tags
    included), then the hit's citation and score, which win a clash of names."""
    return {**hit.metadata, "citation": hit.citation, "document_key": hit.document_key, "pages": hit.pages,
            "page_start": hit.page_start, "page_end": hit.page_end, "section_path": list(hit.section_path),
            "chunk_id": hit.chunk_id, "score": hit.score}


@dataclass(frozen=True)
class Searcher:
    """A retriever's search: its arguments, and where it runs. In this process: `knowledge_base`,
    or `settings` (by default from the environment, as `retrieval.search`). Over HTTP: `url` and
    `api_key`, where the key's groups decide what is read."""

    collection: str | None = None   # None: the settings' collection
    k: int = DEFAULT_K
    mode: Mode = DEFAULT_MODE
    filters: dict[str, Any] | None = None
    group_by: GroupBy | None = None
    principals: Sequence[str] | None = None  # in this process: the caller's groups; None reads everything
    settings: Settings | None = None
    knowledge_base: KnowledgeBase | None = None
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """Refuse a mix of the two places, naming what to leave out."""
        if self.url is not None:
            local = [name for name in ("settings", "knowledge_base", "principals") if getattr(self, name) is not None]
            if local:
                raise ConfigurationError(f"{' and '.join(local)} apply to a search in this process, not over "
                                         "HTTP (url), where the API key's groups decide what is read")
            if not self.api_key:
                raise ConfigurationError("api_key is needed with url: a key of `pgkb keys create`")
        elif self.api_key is not None:
            raise ConfigurationError("api_key is for a served API: give url too")
        elif self.knowledge_base is not None and self.settings is not None:
            raise ConfigurationError("give knowledge_base or settings, not both")
        elif (self.knowledge_base is not None and self.collection is not None
              and self.collection != self.knowledge_base.collection.name):
            raise ConfigurationError(f"collection {self.collection!r} is not the knowledge base's "
                                     f"({self.knowledge_base.collection.name!r}): leave collection out")

    def search(self, query: str) -> list[Hit]:
        if self.url is not None:
            return self._remote().search(query, self.k, self.filters, mode=self.mode, group_by=self.group_by)
        return self._local().search(query, self.k, self.filters, mode=self.mode, group_by=self.group_by,
                                    principals=self.principals)

    async def asearch(self, query: str) -> list[Hit]:
        if self.url is not None:
            return await self._remote().asearch(query, self.k, self.filters, mode=self.mode,
                                                group_by=self.group_by)
        # The database driver and the model block: run them off the event loop.
        return await asyncio.to_thread(self.search, query)

    def _local(self) -> KnowledgeBase:
        if self.knowledge_base is not None:
            return self.knowledge_base
        # Opened by the first search and kept for the next, as retrieval.search does.
        return knowledge_bases.get(self.settings or Settings.from_env(), self.collection)

    def _remote(self) -> RemoteKnowledgeBase:
        assert self.url is not None and self.api_key is not None  # __post_init__
        # As a search in this process, by default the collection the settings name.
        return RemoteKnowledgeBase(self.url, self.api_key, self.collection or default("collection"))
