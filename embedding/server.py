"""Vectors from an OpenAI-compatible `/v1/embeddings` endpoint: vLLM, SGLang, TEI, Infinity, OpenAI.

Texts go in requests of a few dozen, several requests at a time; 429, 5xx, timeouts and
dropped connections are retried with exponential backoff. `dimensions` is sent when the
server accepts it (many reject it); otherwise the full vectors are cut here. Either way the
vectors are normalised here, so a served model's vectors land in the same space as the
local backend's for the same model and dims.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

from .base import Embedder
from .models import EmbeddingError
from .profiles import ModelProfile
from .space import EmbeddingSpace

log = logging.getLogger(__name__)


class ServerError(EmbeddingError):
    """The embedding or reranking server refused a request or kept failing."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def embeddings_url(base_url: str) -> str:
    """`http://host:8000`, `.../v1` or `.../v1/embeddings` -> the embeddings endpoint."""
    url = base_url.rstrip("/")
    if url.endswith("/embeddings"):
        return url
    return url + ("/embeddings" if url.endswith("/v1") else "/v1/embeddings")


def without_credentials(url: str) -> str:
    """`url` without a user name, password or query (where keys are sometimes put)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


class ServerEmbedder(Embedder):
    """Embeds through a server; tokens are still counted here, with the model's own tokenizer."""

    def __init__(self, name: str, base_url: str, tokenizer, profile: ModelProfile, *,
                 dims: int | None = None, query_prefix: str = "", api_key: str | None = None,
                 model_dims: int | None = None, texts_per_request: int = 32, concurrency: int = 4,
                 timeout: float = 120.0, retries: int = 5):
        self.name = name
        self.url = embeddings_url(base_url)
        self.shown_url = without_credentials(self.url)  # for messages and logs
        self.texts_per_request = texts_per_request
        self.concurrency = concurrency
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout,
                                    limits=httpx.Limits(max_connections=concurrency))
        self.served_dims = self._post(["dimension probe"]).shape[1]
        if model_dims is not None and self.served_dims != model_dims:
            raise EmbeddingError(
                f"{self.shown_url} returns {self.served_dims}-dim vectors, but {name} makes {model_dims}: "
                "the server serves another model"
            )
        dims = profile.output_dims(dims, self.served_dims, name)
        self._send_dimensions = dims < self.served_dims and self._accepts_dimensions(dims)
        space = EmbeddingSpace(model=name, dims=dims, pooling=profile.pooling, normalize=True,
                               query_instruction=query_prefix or None, max_tokens=profile.max_tokens)
        super().__init__(tokenizer, profile, space)
        log.info("embedding with %s at %s (%d dims, %s)", name, self.shown_url, dims,
                 "cut by the server" if self._send_dimensions else "cut here" if dims < self.served_dims else "full")

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.space.dims), dtype=np.float32)
        groups = [texts[i:i + self.texts_per_request] for i in range(0, len(texts), self.texts_per_request)]
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="pgkb-embed") as pool:
            return np.concatenate(list(pool.map(self._vectors, groups)))

    def _vectors(self, texts: list[str]) -> np.ndarray:
        dims = self.space.dims
        vectors = self._post(texts, dims if self._send_dimensions else None)
        expected = dims if self._send_dimensions else self.served_dims
        if vectors.shape[1] != expected:
            raise EmbeddingError(
                f"{self.shown_url} returned {vectors.shape[1]}-dim vectors where {self.name} gave {expected}: "
                "the server now serves another model, and its vectors would not match the collection's"
            )
        vectors = vectors[:, :dims]
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _accepts_dimensions(self, dims: int) -> bool:
        try:
            returned = self._post(["dimension probe"], dims).shape[1]
        except ServerError as exc:
            if exc.status is None:
                raise
            return False  # the server rejects `dimensions` for this model: cut here instead
        if returned not in (dims, self.served_dims):
            raise EmbeddingError(f"{self.shown_url} returned {returned} dims when asked for {dims}")
        return returned == dims

    def _post(self, texts: list[str], dimensions: int | None = None) -> np.ndarray:
        """Vectors for `texts` as the server returns them, in order; retried while retrying can help."""
        body: dict = {"model": self.name, "input": texts}
        if dimensions is not None:
            body["dimensions"] = dimensions
        response = post_retrying(self._client, self.url, body, self.retries, "embedding server", self.shown_url)
        return self._parse(response, len(texts))

    def _parse(self, response: httpx.Response, count: int) -> np.ndarray:
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = np.array([item["embedding"] for item in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerError(f"{self.shown_url} answered with no embeddings in OpenAI's format ({exc!r})") from None
        if vectors.ndim != 2 or len(vectors) != count:
            raise ServerError(f"{self.shown_url} returned {len(vectors)} vectors for {count} texts")
        return vectors


def post_retrying(client: httpx.Client, url: str, body: dict, retries: int, what: str,
                  shown_url: str) -> httpx.Response:
    """The 200 response of `what` at `url` (`shown_url` in messages: no credentials) to `body`;
    429, 5xx, timeouts and dropped connections retried `retries` times with backoff."""
    for attempt in range(retries + 1):
        retry_after = None
        try:
            response = client.post(url, json=body)
        except httpx.TransportError as exc:  # timeouts, refused or dropped connections
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 200:
                return response
            problem = f"HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code != 429 and response.status_code < 500:
                raise ServerError(f"{shown_url} refused the request ({problem})", status=response.status_code)
            retry_after = response.headers.get("retry-after")
        if attempt < retries:
            delay = _backoff(attempt, retry_after)
            log.warning("%s %s: %s; retrying in %.1f s", what, shown_url, problem, delay)
            time.sleep(delay)
    raise ServerError(f"{shown_url} failed {retries + 1} times; last: {problem}")


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait: the server's Retry-After when it gives one, else 0.5 s doubling, jittered."""
    if retry_after and retry_after.replace(".", "", 1).isdigit():
        return min(float(retry_after), 30.0)
    return min(0.5 * 2 ** attempt, 8.0) * random.uniform(0.5, 1.0)
