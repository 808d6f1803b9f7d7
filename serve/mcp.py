"""The knowledge base as a Model Context Protocol server: tools an agent calls to search,
to list what it may search, and to read around a hit.

Two transports: stdio (`pgkb mcp`, for an agent on this machine: it runs as the local user,
with the user's full view of the store, like `search`), and streamable HTTP mounted at /mcp in
`pgkb serve`, under the same API keys and access control as the rest of the API (the key's
collections, its groups; serve.app checks the key before a message reaches a tool).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from pgkb import __version__
from pgkb.errors import PgkbError
from retrieval.search import DEFAULT_MODE, Mode
from store import ApiKey

from .app import KEY_STATE
from .limits import MAX_NEIGHBOURS

# Hits an agent asks for: a few well-cited ones read better than a page of them.
MAX_HITS = 50
T = TypeVar("T")

INSTRUCTIONS = (
    "pgkb searches an organisation's documents (English and Chinese). Call `search` with the "
    "user's question in their own words; answer from the hits' text and cite each fact with its "
    "`citation` (file, pages, section). Call `get_context` with a hit's `chunk_id` when the text "
    "around it is needed. `list_collections` says which knowledge bases there are.")
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def build_mcp_server(service: Any) -> MCPServer:
    """The MCP server over `service` (serve.app.Service: settings, store, knowledge bases)."""
    server = MCPServer("pgkb", version=__version__, instructions=INSTRUCTIONS)

    @server.tool(annotations=READ_ONLY)
    async def search(query: str, ctx: Context, collection: str | None = None, k: int = 5,
                     mode: Mode = DEFAULT_MODE, filters: dict[str, Any] | None = None,
                     rerank: int | None = None) -> list[dict[str, Any]]:
        """Search the knowledge base for passages that answer `query` (a question or keywords, any
        language). Returns the best passages first, each with `citation` (file, pages, section)
        to quote, `text`, `chunk_id` (for get_context) and `score`. `k`: how many (1-50, default 5).
        `mode`: "hybrid" (default: meaning and words), "vector" (meaning) or "keyword" (exact words;
        "quoted phrases" must appear, -word must not). `filters` narrows by metadata, e.g.
        {"source": "policy.pdf"}, {"page": {"gte": 3}}, {"metadata.department": "finance"}.
        `collection`: which knowledge base (see list_collections); by default the only or usual one.
        `rerank`: rescore the best `rerank` passages (at least k, e.g. 50) with the reranking model,
        where the server has one: slower, often better ordered."""
        if not 1 <= k <= MAX_HITS:
            raise ToolError(f"k must be 1 to {MAX_HITS}, not {k}")
        key = _caller(ctx)
        name = _collection(service, key, collection)
        hits = await _in_thread(lambda: service.search(
            name, query, k=k, filters=filters, mode=mode, principals=key.principals if key else None, rerank=rerank))
        return [{"citation": h.citation, "text": h.text, "chunk_id": h.chunk_id,
                 "score": round(h.score if h.rerank_score is None else h.rerank_score, 4)} for h in hits]

    @server.tool(annotations=READ_ONLY)
    async def list_collections(ctx: Context) -> list[dict[str, Any]]:
        """The knowledge bases you may search: name, embedding model, and how many documents and
        passages (chunks) you may read in each."""
        key = _caller(ctx)
        listed = await _in_thread(lambda: service.collections_for(key))
        return [{k: c[k] for k in ("name", "model", "documents", "chunks")} for c in listed]

    @server.tool(annotations=READ_ONLY)
    async def get_context(chunk_id: int, ctx: Context, collection: str | None = None, before: int = 1,
                          after: int = 1) -> dict[str, Any]:
        """The passage `chunk_id` (from a search hit) with up to `before` passages before it and
        `after` after it in the same document (each 0-5, default 1), in reading order, for the
        context a hit needs. Returns the document and each passage's citation and text."""
        if not (0 <= before <= MAX_NEIGHBOURS and 0 <= after <= MAX_NEIGHBOURS):
            raise ToolError(f"before and after must be 0 to {MAX_NEIGHBOURS}")
        key = _caller(ctx)
        name = _collection(service, key, collection)
        views = await _in_thread(lambda: service.store.chunk_neighbourhood(
            name, chunk_id, before, after, key.principals if key else None))
        if not views:
            raise ToolError(f"no passage {chunk_id} in collection {name!r}")
        return {"document": views[0].document_key,
                "passages": [{"chunk_id": v.chunk_id, "citation": v.citation, "text": v.text} for v in views]}

    return server


async def _in_thread(work: Callable[[], T]) -> T:
    """Blocking work (a search, a query) off the event loop; bad input told to the model."""
    try:
        return await anyio.to_thread.run_sync(work)
    except PgkbError as exc:
        raise ToolError(str(exc)) from None


def _caller(ctx: Context) -> ApiKey | None:
    """The request's API key over HTTP; None on stdio (the local user)."""
    request = ctx.request_context.request
    if request is None:
        return None
    key = getattr(request.state, KEY_STATE, None)
    if key is None:  # serve.app checks every /mcp request first; never answer without a key
        raise PermissionError("a valid API key is needed")
    return key


def _collection(service: Any, key: ApiKey | None, name: str | None) -> str:
    """The collection a tool call means: the one named, else the key's only one, else the default."""
    if name is None:
        name = key.collections[0] if key is not None and len(key.collections) == 1 else service.settings.collection
    if (key is not None and name not in key.collections) or service.store.find_collection(name) is None:
        raise ToolError(f"no collection {name!r}" + (" for this key" if key is not None else "")
                         + ": list_collections shows them")
    return name
