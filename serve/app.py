"""The HTTP API: a thin shell over retrieval (search), store (listings) and ingest (uploads)
that adds transport, keys and limits, never search logic.

Every route but /v1/health and /v1/ready needs a key (`Authorization: Bearer pgkb_...`). A key
names its collections: any other collection, existing or not, is "not found" alike, so a
failed request says nothing about what exists. A search runs as the key's groups (store.access)
inside the SQL statement itself; listings, counts and deletions keep to the same documents.
Searches run in a thread pool, one loaded model and connection pool per collection shared by
all requests.
"""

from __future__ import annotations

import html
import json
import logging
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from starlette import types as asgi
from starlette.datastructures import UploadFile
from starlette.routing import Route

from embedding import Embedder
from ingest.metadata import is_metadata_file
from pgkb import __version__
from pgkb.errors import PgkbError, QueryError
from pgkb.settings import Settings, cpu_cores
from retrieval import Hit, KnowledgeBases
from retrieval.feedback import MAX_RANK
from retrieval.remote import hit_to_json
from retrieval.search import DEFAULT_MODE, GroupBy, Mode
from store import ApiKey, Scope, Store, UnknownChunk, UnknownDocuments, Verdict

from . import dify
from .jobs import Jobs, upload_folder
from .limits import MAX_NEIGHBOURS, BodyTooLarge, LimitBody

log = logging.getLogger(__name__)

# The most hits one request returns (a page of results; the Python API goes to retrieval.MAX_K).
MAX_HITS = 1000
# Upload form fields other than files: access and tags.
MAX_FIELDS = 10
NOT_FOUND = "not found"
UNAUTHORIZED = "a valid API key is needed: Authorization: Bearer pgkb_..."
KEY_STATE = "pgkb_key"  # where a request's checked key is left for the MCP tools (request.state)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="the question or words; \"phrases\" must appear, -word must not")
    k: int = Field(10, ge=1, le=MAX_HITS, description="how many hits")
    mode: Mode = Field(DEFAULT_MODE, description="hybrid (both legs fused), vector or keyword")
    filters: dict[str, Any] | None = Field(None, description="the filter language, e.g. {\"page\": {\"gte\": 3}}")
    group_by: GroupBy | None = Field(None, description="\"document\": the best chunk of each document")
    rerank: int | None = Field(None, ge=1, le=MAX_HITS,
                               description="rescore the N best hits (N >= k) with the server's reranking model; "
                                           "the k it scores highest come back, each with its rerank_score")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="the query searched (stored with personal data masked)")
    chunk_id: int = Field(description="the hit's chunk_id")
    verdict: Verdict = Field(description="good: the hit answers the query; bad: it does not; right: the chunk "
                                         "that answers it")
    rank: int | None = Field(None, ge=1, le=MAX_RANK, description="the hit's place in the search's hits, from 1")


def create_app(settings: Settings) -> FastAPI:
    """The API over the store `settings` name (opened now); models load with each collection's
    first search. The MCP server's streamable HTTP transport is mounted at /mcp."""
    service = Service(settings)
    mcp_endpoint, mcp_running = _mcp(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with mcp_running():
                yield
        finally:
            await run_in_threadpool(service.close)

    app = FastAPI(title="pgkb", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Search a pgkb knowledge base; list, upload and delete its documents.")
    app.state.service = service
    app.add_middleware(LimitBody, upload_bytes=settings.max_upload_bytes, other_bytes=settings.max_request_bytes,
                       upload_path_suffix="/documents")
    _add_error_handlers(app)
    _add_routes(app)
    app.include_router(dify.router)
    if mcp_endpoint is not None:
        app.router.routes.append(Route("/mcp", KeyRequired(service, mcp_endpoint)))
    return app


def _mcp(service: Service) -> tuple[asgi.ASGIApp | None, Callable[[], AbstractAsyncContextManager[Any]]]:
    """The MCP server's streamable HTTP endpoint and what runs its sessions; none without the
    `mcp` extra (pip install 'pgkb[mcp]')."""
    try:
        from mcp.server.transport_security import TransportSecuritySettings

        from .mcp import build_mcp_server
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("mcp"):
            raise
        log.info("MCP is not served at /mcp: pip install 'pgkb[mcp]' for it")
        return None, nullcontext
    mcp_server = build_mcp_server(service)
    endpoint = mcp_server.streamable_http_app(
        streamable_http_path="/mcp",
        # Every /mcp request carries an API key, which a rebinding page cannot send: the Host
        # check would only refuse the names a TLS proxy in front forwards.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    return endpoint, mcp_server.session_manager.run


class KeyRequired:
    """ASGI wrapper: the request's API key checked as for every route (401 without a live one),
    and left in request.state for the MCP tools, which keep to its collections and groups."""

    def __init__(self, service: Service, app: asgi.ASGIApp):
        self.service, self.app = service, app

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        key = await run_in_threadpool(self.service.key_from, authorization)
        if key is None:
            await JSONResponse({"detail": UNAUTHORIZED}, status_code=401,
                               headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        scope.setdefault("state", {})[KEY_STATE] = key
        await self.app(scope, receive, send)


class Service:
    """What the routes share: the store, the open knowledge bases and the upload jobs."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = Store.open(settings)
        self.knowledge_bases = KnowledgeBases()
        self.jobs = Jobs(settings, self.embedder_for)
        # Searches beyond the cores only contend for them (the GIL, the model, PostgreSQL's
        # backends): at 16 clients on 2 cores, all at once answered 30 searches a second at a
        # p95 of 780 ms, two at a time 45 at 390 ms (bench/serve_load.py).
        self._searching = threading.BoundedSemaphore(settings.search_concurrency or cpu_cores())

    def embedder_for(self, collection: str) -> Embedder | None:
        """The collection's loaded model, shared with its searches; None for a collection yet to be made."""
        if self.store.find_collection(collection) is None:
            return None
        return self.knowledge_bases.get(self.settings, collection).embedder

    def search(self, collection: str, query: str, **options: Any) -> list[Hit]:
        """KnowledgeBase.search on the collection, when a turn is free (PGKB_SEARCH_CONCURRENCY)."""
        kb = self.knowledge_bases.get(self.settings, collection)
        with self._searching:
            return kb.search(query, **options)

    def key_from(self, authorization: str) -> ApiKey | None:
        """The live key an `Authorization: Bearer ...` header carries; None for any other header."""
        scheme, _, presented = authorization.partition(" ")
        return self.store.authenticate(presented.strip()) if scheme.lower() == "bearer" else None

    def collections_for(self, key: ApiKey | None) -> list[dict[str, Any]]:
        """The collections `key` holds that exist (every one for None, the local user), each with
        its embedding space and the documents and chunks the key may read."""
        listed = []
        for summary in self.store.list_collections():
            if key is not None and summary.name not in key.collections:
                continue
            principals = key.principals if key is not None else None
            documents, chunks = ((summary.documents, summary.chunks) if principals is None
                                 else self.store.readable_counts(summary.name, principals))
            listed.append({"name": summary.name, "model": summary.model, "dims": summary.dims,
                           "space": self.store.collection(summary.name).space,
                           "documents": documents, "chunks": chunks})
        return listed

    def close(self) -> None:
        self.jobs.close()
        self.knowledge_bases.close()
        self.store.close()


async def _service(request: Request) -> Service:
    # async: FastAPI runs a plain function dependency in a worker thread, a hop per request for nothing
    return request.app.state.service


def _caller(request: Request, service: Annotated[Service, Depends(_service)]) -> ApiKey:
    """The key the request carries; 401 (saying nothing more) when it has none that is live."""
    key = service.key_from(request.headers.get("authorization", ""))
    if key is None:
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    return key


Caller = Annotated[ApiKey, Depends(_caller)]
Shared = Annotated[Service, Depends(_service)]


def _collection(service: Service, key: ApiKey, name: str, scope: Scope, must_exist: bool = True) -> None:
    """404 for a collection the key does not hold or that does not exist (the same answer);
    403 when the key holds it but its scope does not allow `scope`."""
    if name not in key.collections or (must_exist and service.store.find_collection(name) is None):
        raise HTTPException(404, f"{NOT_FOUND}: no collection {name!r} for this key")
    if not key.allows(scope):
        raise HTTPException(403, f"this key's scope ({key.scope}) does not allow this; it needs {scope}")


def _add_routes(app: FastAPI) -> None:
    @app.get("/v1/health", tags=["service"])
    def health() -> dict[str, str]:
        """The process answers (no key needed)."""
        return {"status": "ok", "version": __version__}

    @app.get("/v1/ready", tags=["service"])
    def ready(service: Shared) -> JSONResponse:
        """The database answers (no key needed): 200, or 503 while it does not."""
        try:
            with service.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/v1/collections", tags=["collections"])
    def collections(service: Shared, key: Caller) -> list[dict[str, Any]]:
        """The key's collections that exist: embedding space, and the documents and chunks the key may read."""
        return service.collections_for(key)

    @app.post("/v1/collections/{collection}/search", tags=["search"])
    def search(collection: str, body: SearchRequest, service: Shared, key: Caller) -> JSONResponse:
        """The k best chunks the key may read, each citing its document, pages and section."""
        _collection(service, key, collection, "read")
        started = time.perf_counter()
        hits = service.search(collection, body.query, k=body.k, filters=body.filters, mode=body.mode,
                              group_by=body.group_by, principals=key.principals, rerank=body.rerank)
        # Plain JSON types already: a response of its own skips FastAPI's encoding walk over them.
        return JSONResponse({"hits": [hit_to_json(hit) for hit in hits],
                             "took_ms": round((time.perf_counter() - started) * 1000, 2)})

    @app.get("/v1/collections/{collection}/documents", tags=["documents"])
    def documents(collection: str, service: Shared, key: Caller, failed: bool = False,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                  offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        """The documents the key may read, by key: ingested with chunks and pages, or failed and why."""
        _collection(service, key, collection, "read")
        listed = service.store.list_documents(collection, failed_only=failed, principals=key.principals,
                                              limit=limit, offset=offset)
        total = service.store.count_documents(collection, failed_only=failed, principals=key.principals)
        return {"documents": [d.to_dict() for d in listed], "total": total}

    @app.get("/v1/collections/{collection}/documents/{document:path}", tags=["documents"])
    def document(collection: str, document: str, service: Shared, key: Caller) -> dict[str, Any]:
        _collection(service, key, collection, "read")
        found = service.store.list_documents(collection, principals=key.principals, keys=[document])
        if not found:
            raise HTTPException(404, f"{NOT_FOUND}: no document {document!r} in collection {collection!r}")
        return found[0].to_dict()

    @app.get("/v1/collections/{collection}/chunks/{chunk_id}", tags=["search"])
    def chunk(collection: str, chunk_id: int, service: Shared, key: Caller,
              before: Annotated[int, Query(ge=0, le=MAX_NEIGHBOURS)] = 1,
              after: Annotated[int, Query(ge=0, le=MAX_NEIGHBOURS)] = 1) -> dict[str, Any]:
        """A chunk (a hit's chunk_id) with its neighbours in its document, in reading order."""
        _collection(service, key, collection, "read")
        views = service.store.chunk_neighbourhood(collection, chunk_id, before, after, key.principals)
        if not views:
            raise HTTPException(404, f"{NOT_FOUND}: no chunk {chunk_id} in collection {collection!r}")
        return {"document_key": views[0].document_key, "chunks": [v.to_dict() for v in views]}

    @app.post("/v1/collections/{collection}/feedback", tags=["feedback"], status_code=201)
    def give_feedback(collection: str, body: FeedbackRequest, service: Shared, key: Caller) -> dict[str, Any]:
        """Record a verdict on a hit (a chunk the key may read) for a query, given by the key (its id)."""
        _collection(service, key, collection, "read")
        kb = service.knowledge_bases.get(service.settings, collection)
        try:
            recorded = kb.feedback(body.query, body.chunk_id, body.verdict, rank=body.rank,
                                   given_by=f"key:{key.id}", principals=key.principals)
        except UnknownChunk:  # one the key may not read reads the same
            raise HTTPException(404, f"{NOT_FOUND}: no chunk {body.chunk_id} in collection {collection!r}") from None
        return recorded.to_dict()

    @app.get("/v1/collections/{collection}/feedback", tags=["feedback"])
    def feedback(collection: str, service: Shared, key: Caller,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                 offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        """The collection's feedback, oldest first (an admin key's)."""
        _collection(service, key, collection, "admin")
        listed, total = service.store.list_feedback(collection, limit, offset)
        return {"feedback": [row.to_dict() for row in listed], "total": total}

    @app.delete("/v1/collections/{collection}/documents/{document:path}", tags=["documents"])
    def delete_document(collection: str, document: str, service: Shared, key: Caller) -> dict[str, Any]:
        """Remove a document the key may read, with its chunks (and its uploaded file)."""
        _collection(service, key, collection, "ingest")
        try:
            removal = service.store.remove_documents(collection, [document], principals=key.principals)
        except UnknownDocuments:
            raise HTTPException(404, f"{NOT_FOUND}: no document {document!r} in collection {collection!r}") from None
        uploaded = upload_folder(service.settings, collection) / document
        if uploaded.is_file():
            uploaded.unlink()
        return {"removed": list(removal.keys), "chunks": removal.chunks}

    @app.post("/v1/collections/{collection}/documents", tags=["documents"], status_code=202)
    async def upload(collection: str, request: Request, service: Shared, key: Caller) -> dict[str, Any]:
        """Upload files (multipart, field `files`, repeatable; optional `access`: comma list of the groups
        that read them; optional `tags`: a JSON object of metadata). They are ingested in the background:
        poll the job returned."""
        _collection(service, key, collection, "ingest", must_exist=False)
        settings = service.settings
        async with request.form(max_files=settings.max_upload_files, max_fields=MAX_FIELDS) as form:
            uploads = [value for name, value in form.multi_items() if name == "files" and isinstance(value, UploadFile)]
            tags = _tags(form.get("tags"), form.get("access"))
            if not uploads:
                raise HTTPException(400, "no files: send them as multipart field 'files'")
            keys = [_upload_key(upload.filename) for upload in uploads]
            if len(set(keys)) < len(keys):
                raise HTTPException(400, "two files of this upload have the same name")
            await run_in_threadpool(_check_replaceable, service, key, collection, keys)
            folder = upload_folder(settings, collection)
            await run_in_threadpool(_save, folder, keys, uploads)
        job = service.jobs.submit(collection, keys, tags)
        return {"job": job.id, "status": job.status, "files": keys, "poll": f"/v1/jobs/{job.id}"}

    @app.get("/v1/jobs/{job_id}", tags=["documents"])
    def job(job_id: str, service: Shared, key: Caller) -> dict[str, Any]:
        """An upload job: queued, running, succeeded (with the ingest report of its files) or failed."""
        found = service.jobs.get(job_id)
        if found is None or found.collection not in key.collections or not key.allows("ingest"):
            raise HTTPException(404, f"{NOT_FOUND}: no job {job_id!r} for this key")
        return found.to_dict()

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """The API described on one page that needs nothing from the internet (unlike Swagger UI)."""
        return HTMLResponse(_docs_page(app.openapi()))


def _tags(raw_tags: Any, raw_access: Any) -> dict[str, Any]:
    tags: dict[str, Any] = {}
    if raw_tags not in (None, ""):
        try:
            tags = json.loads(str(raw_tags))
        except ValueError:
            raise HTTPException(400, "tags must be a JSON object, e.g. {\"department\": \"hr\"}") from None
        if not isinstance(tags, dict):
            raise HTTPException(400, "tags must be a JSON object, e.g. {\"department\": \"hr\"}")
    if raw_access not in (None, ""):
        tags["access"] = [group.strip() for group in str(raw_access).split(",") if group.strip()]
    return tags


def _upload_key(filename: str | None) -> str:
    """The document key a file's name gives: a relative path of plain parts, never outside the
    upload folder, never one of pgkb's metadata files (which would tag other documents)."""
    name = (filename or "").replace("\\", "/")
    parts = [part for part in PurePosixPath(name).parts if part not in ("", ".", "/")]
    if (not parts or name.startswith("/") or any(part == ".." or part.startswith(".") or len(part.encode()) > 255
                         or any(ord(c) < 32 for c in part) for part in parts)):
        raise HTTPException(400, f"file name {filename!r} cannot be a document key: give a relative name "
                                 "of plain parts (no '..', no hidden parts)")
    if is_metadata_file(Path(parts[-1])):
        raise HTTPException(400, f"{parts[-1]!r} is a pgkb metadata file; send tags with the 'tags' and "
                                 "'access' fields instead")
    return "/".join(parts)


def _check_replaceable(service: Service, key: ApiKey, collection: str, keys: list[str]) -> None:
    """An upload never replaces a document its key may not read."""
    if key.principals is None or service.store.find_collection(collection) is None:
        return
    existing = {d.key for d in service.store.list_documents(collection, keys=keys)}
    readable = {d.key for d in service.store.list_documents(collection, keys=keys, principals=key.principals)}
    refused = sorted(existing - readable)
    if refused:
        raise HTTPException(409, f"this key may not replace {', '.join(map(repr, refused))}: choose other names")


def _save(folder: Path, keys: list[str], uploads: list[UploadFile]) -> None:
    for key, upload in zip(keys, uploads, strict=True):
        target = folder / key
        target.parent.mkdir(parents=True, exist_ok=True)
        upload.file.seek(0)
        with open(target, "wb") as out:
            shutil.copyfileobj(upload.file, out)


def _add_error_handlers(app: FastAPI) -> None:
    """Bad input is a 4xx naming the problem; anything else a 500 that shows nothing of the server."""

    @app.exception_handler(QueryError)
    async def bad_query(request: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The fields and reasons, without echoing the input back.
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(PgkbError)
    async def failed(request: Request, exc: PgkbError) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "the server could not do this (see its log)"}, status_code=500)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)


def _docs_page(schema: dict[str, Any]) -> str:
    rows = []
    for path, methods in schema.get("paths", {}).items():
        for method, operation in methods.items():
            summary = html.escape(operation.get("summary", ""))
            description = html.escape(operation.get("description", ""))
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td><b>{summary}</b><br>{description}</td></tr>")
    return (f"<!doctype html><meta charset=utf-8><title>pgkb API</title><h1>pgkb API {html.escape(__version__)}</h1>"
            "<p>Send <code>Authorization: Bearer pgkb_...</code> (<code>pgkb keys create</code>). "
            "The full schema: <a href=/openapi.json>/openapi.json</a>.</p>"
            f"<table border=1 cellpadding=4>{''.join(rows)}</table>")

