"""Reranking through a served `/v1/rerank` (or `/rerank`) endpoint: vLLM, SGLang, TEI, Infinity,
Jina and Cohere-style APIs.

The request is Jina's and Cohere's, which vLLM, SGLang and Infinity take too:
`{"model", "query", "documents", "top_n"}`, answered by `{"results": [{"index",
"relevance_score"}]}`. TEI's own route is `/rerank` and reads `texts`, answering a list of
`{"index", "score"}`: a URL ending in a bare `/rerank` gets the passages under both names
(vLLM's bare `/rerank` reads `documents`), and either answer is read. Passages go in requests
of at most 32 (TEI's default limit a request), several at a time, retried as the embedding
server's are. Scores are the server's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import numpy as np

from .rerank import Reranker
from .server import ServerError, post_retrying, without_credentials

log = logging.getLogger(__name__)


def rerank_url(base_url: str) -> str:
    """`http://host:8000`, `.../v1`, `.../v1/rerank` or `.../rerank` -> the rerank endpoint."""
    url = base_url.rstrip("/")
    if url.endswith("/rerank"):
        return url
    return url + ("/rerank" if re.search(r"/v\d+$", url) else "/v1/rerank")


class ServerReranker(Reranker):
    def __init__(self, name: str | None, base_url: str, *, api_key: str | None = None,
                 documents_per_request: int = 32, concurrency: int = 4, timeout: float = 120.0, retries: int = 5):
        self.name = name or ""
        self.url = rerank_url(base_url)
        self.shown_url = without_credentials(self.url)  # for messages and logs
        # A bare /rerank (TEI's route) with no version before it.
        self._tei_route = not re.search(r"/v\d+/rerank$", urlsplit(self.url).path)
        self.documents_per_request = documents_per_request
        self.concurrency = concurrency
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout, limits=httpx.Limits(max_connections=concurrency))
        log.info("reranking with %s at %s", name or "the served model", self.shown_url)

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        documents = list(documents)
        if not documents:
            return np.zeros(0, dtype=np.float64)
        step = self.documents_per_request
        groups = [documents[i:i + step] for i in range(0, len(documents), step)]
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="pgkb-rerank") as pool:
            return np.concatenate(list(pool.map(lambda group: self._scores(query, group), groups)))

    def _scores(self, query: str, documents: list[str]) -> np.ndarray:
        body: dict = {"query": query, "documents": documents, "top_n": len(documents)}
        if self.name:
            body["model"] = self.name
        if self._tei_route:
            body["texts"] = documents
        response = post_retrying(self._client, self.url, body, self.retries, "reranking server", self.shown_url)
        return self._parse(response, len(documents))

    def _parse(self, response: httpx.Response, count: int) -> np.ndarray:
        """Scores in the documents' order, from Jina/Cohere's `results` or TEI's list."""
        try:
            answer = response.json()
            results = answer["results"] if isinstance(answer, dict) else answer
            scored = {int(r["index"]): float(r["relevance_score"] if "relevance_score" in r else r["score"])
                      for r in results}
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerError(f"{self.shown_url} answered with no rerank results ({exc!r})") from None
        if sorted(scored) != list(range(count)):
            raise ServerError(f"{self.shown_url} scored documents {sorted(scored)[:10]} of {count} sent")
        return np.array([scored[i] for i in range(count)], dtype=np.float64)
