"""Reranking: small randomly initialised BERT cross-encoders and Qwen3 rerankers built here
(no downloads), scored against an independent computation with plain transformers; a real
`/v1/rerank` server in its own process; search(rerank=N) on the real database, the search
command and `pgkb eval`.

`python tests/test_rerank.py MODEL_DIR` is that server: `/v1/rerank` (Jina/Cohere's format) and
`/rerank` (TEI's), scoring with plain transformers and the tiny BERT cross-encoder in MODEL_DIR.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

QUERY = "how do I claim travel expenses"
PASSAGES = [
    "Employees submit receipts within thirty days of returning to be reimbursed.",
    "annual leave is twenty five days",
    "travel",
    "the manager approves the claim and finance pays it with the next salary " * 4,
    "pool cars are booked in the facilities calendar",
    "per diem rates for Berlin London and Paris are set each year by finance",
]
WORDS = sorted({w.strip(".,").lower() for text in [QUERY, *PASSAGES] for w in text.split()})
QWEN3_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def save_bert_cross_encoder(folder: Path, labels: int = 1, seed: int = 0) -> Path:
    """A randomly initialised two-layer BERT with a classification head, and its WordPiece vocabulary."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]))
    tokenizer = BertTokenizer(str(folder / "vocab.txt"))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, num_labels=labels, initializer_range=0.5)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# -- the server ----------------------------------------------------------------------------


class RerankServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model_dir: str):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__(("127.0.0.1", 0), Handler)
        torch.set_num_threads(1)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        self.lock = threading.Lock()
        self.requests: list[dict] = []

    def scores(self, query: str, documents: list[str]) -> list[float]:
        import torch

        with self.lock, torch.inference_mode():
            encoded = self.tokenizer([query] * len(documents), documents, padding=True, return_tensors="pt")
            return torch.sigmoid(self.model(**encoded).logits[:, 0]).tolist()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RerankServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._reply(200, {"requests": self.server.requests})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        authorization = self.headers.get("Authorization")
        self.server.requests.append({"path": self.path, "body": body, "authorization": authorization})
        if self.path == "/v1/rerank":  # Jina / Cohere / vLLM: the top_n best, best first
            scores = self.server.scores(body["query"], body["documents"])
            ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[:body.get("top_n", len(scores))]
            return self._reply(200, {"model": body.get("model"), "results": [
                {"index": i, "relevance_score": scores[i]} for i in ranked]})
        if self.path == "/rerank":  # TEI's own route: `texts`, a list of {index, score}
            if "texts" not in body:
                return self._reply(422, {"error": "missing field `texts`"})
            scores = self.server.scores(body["query"], body["texts"])
            return self._reply(200, [{"index": i, "score": s} for i, s in enumerate(scores)][::-1])
        self._reply(404, {"error": f"no route {self.path}"})

    def _reply(self, status: int, payload) -> None:
        content = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


if __name__ == "__main__":
    server = RerankServer(sys.argv[1])
    print(server.server_address[1], flush=True)  # the test reads the port from here
    server.serve_forever()


# -- the tests -----------------------------------------------------------------------------

if __name__ != "__main__":
    import numpy as np
    import pytest
    import torch

    from embedding import (
        EmbeddingError,
        ServerError,
        ServerReranker,
        TransformersReranker,
        load_reranker,
        resolve_rerank_profile,
    )
    from tests.conftest import run_cli
    from tests.test_embedding import _word_tokenizer


def save_qwen3_reranker(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised two-layer Qwen3 causal LM and a word-level tokenizer that knows the
    prompt's words, "yes" and "no"; the folder's name makes pgkb use Qwen3-Reranker's rules."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from embedding.rerank import QWEN3_RERANKER

    prompt = QWEN3_RERANKER["prompt_prefix"] + QWEN3_RERANKER["prompt"] + QWEN3_RERANKER["prompt_suffix"]
    tokenizer = _word_tokenizer([prompt, QWEN3_INSTRUCTION, QUERY, *PASSAGES, "yes no"])
    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
                         initializer_range=0.3, tie_word_embeddings=False)
    Qwen3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rerankers")


@pytest.fixture(scope="module")
def bert_dir(models) -> Path:
    return save_bert_cross_encoder(models / "tiny-cross-encoder")


@pytest.fixture(scope="module")
def qwen3_dir(models) -> Path:
    return save_qwen3_reranker(models / "Qwen3-Reranker-tiny")


def _local(folder: Path, **options) -> TransformersReranker:
    reranker = load_reranker(str(folder), device="cpu", precision="float32", **options)
    assert isinstance(reranker, TransformersReranker)
    return reranker


def _bert_reference(folder: Path, query: str, passages: list[str]) -> np.ndarray:
    """Each pair alone through plain transformers: the head's logit's sigmoid, or class 1's softmax."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    scores = []
    with torch.inference_mode():
        for passage in passages:
            logits = model(**tokenizer(query, passage, return_tensors="pt")).logits[0].double()
            scores.append(logits.sigmoid()[0] if len(logits) == 1 else logits.softmax(dim=0)[1])
    return np.array([float(s) for s in scores])


def _qwen3_reference(folder: Path, query: str, passages: list[str]) -> np.ndarray:
    """Qwen3-Reranker's model card, each pair alone: its prompt tokenised in three parts, then
    P("yes") against P("no") from the last position's logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from embedding.rerank import QWEN3_RERANKER

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prefix = tokenizer.encode(QWEN3_RERANKER["prompt_prefix"], add_special_tokens=False)
    suffix = tokenizer.encode(QWEN3_RERANKER["prompt_suffix"], add_special_tokens=False)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    scores = []
    with torch.inference_mode():
        for passage in passages:
            body = f"<Instruct>: {QWEN3_INSTRUCTION}\n<Query>: {query}\n<Document>: {passage}"
            ids = prefix + tokenizer.encode(body, add_special_tokens=False) + suffix
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            scores.append(float(torch.stack([logits[no], logits[yes]]).double().softmax(dim=0)[1]))
    return np.array(scores)


# -- local cross-encoders ------------------------------------------------------------------


@pytest.mark.parametrize("labels", [1, 2])
def test_a_bert_cross_encoders_scores_are_its_heads(models, labels):
    folder = save_bert_cross_encoder(models / f"cross-encoder-{labels}", labels=labels, seed=labels)
    reranker = _local(folder)
    assert reranker.profile.kind == "classifier" and reranker.profile.max_tokens == 512
    expected = _bert_reference(folder, QUERY, PASSAGES)
    np.testing.assert_allclose(reranker.score(QUERY, PASSAGES), expected, atol=1e-5)
    assert np.ptp(expected) > 0.05  # the passages' scores differ: a mix-up would show


def test_qwen3_rerankers_scores_are_yes_against_no_after_its_prompt(qwen3_dir):
    reranker = _local(qwen3_dir)
    profile = reranker.profile
    assert (profile.kind, profile.padding_side, profile.instruction) == ("yes_no", "left", QWEN3_INSTRUCTION)
    expected = _qwen3_reference(qwen3_dir, QUERY, PASSAGES)
    np.testing.assert_allclose(reranker.score(QUERY, PASSAGES), expected, atol=1e-5)
    assert np.ptp(expected) > 0.01


@pytest.mark.parametrize("kind", ["bert", "qwen3"])
def test_scores_do_not_depend_on_batching_padding_or_order(kind, bert_dir, qwen3_dir, monkeypatch):
    reranker = _local(bert_dir if kind == "bert" else qwen3_dir)
    alone = np.array([reranker.score(QUERY, [p])[0] for p in PASSAGES])  # no padding at all
    together = reranker.score(QUERY, PASSAGES)  # one batch, padded to the longest
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(reranker.score(QUERY, PASSAGES[::-1])[::-1], alone, atol=1e-5)
    monkeypatch.setattr(reranker, "batch_tokens", 120)  # several batches, each padded differently
    assert len(list(reranker._batches([(QUERY, p) for p in PASSAGES]))) > 2
    np.testing.assert_allclose(reranker.score(QUERY, PASSAGES), alone, atol=1e-5)
    assert reranker.score(QUERY, []).shape == (0,)


def test_a_long_passage_is_cut_to_what_the_model_reads(qwen3_dir, tmp_path):
    (tmp_path / "short.json").write_text(json.dumps({"max_tokens": 120}))
    reranker = _local(qwen3_dir, profile_file=tmp_path / "short.json")
    long = PASSAGES[0] + " " + " ".join(["finance"] * 500)
    ids = reranker._model_input_ids([(QUERY, long)])[0]
    assert len(ids) == 120 and ids[-len(reranker._suffix_ids):] == reranker._suffix_ids  # the prompt's end kept
    assert 0 <= reranker.score(QUERY, [long])[0] <= 1


def test_profiles_say_what_kind_of_reranker_a_model_is(bert_dir, qwen3_dir, tmp_path):
    assert resolve_rerank_profile(str(bert_dir), bert_dir).kind == "classifier"
    assert resolve_rerank_profile(str(qwen3_dir), qwen3_dir).prompt.startswith("<Instruct>: {instruction}")
    # Another yes/no model declares its prompt and answer tokens in a profile file.
    (tmp_path / "own.json").write_text(json.dumps({"prompt": "Query: {query} Document: {document}",
                                                   "yes_token": "true", "no_token": "no"}))
    other = tmp_path / "my-decoder-reranker"
    save_qwen3_reranker(other)
    with pytest.raises(EmbeddingError, match="no token 'true'"):
        _local(other, profile_file=tmp_path / "own.json")
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "listwise"}))
    with pytest.raises(EmbeddingError, match="kind is one of"):
        resolve_rerank_profile(str(other), other, tmp_path / "bad.json")
    (tmp_path / "typo.json").write_text(json.dumps({"promt": "x"}))
    with pytest.raises(EmbeddingError, match="unknown model profile keys"):
        resolve_rerank_profile(str(other), other, tmp_path / "typo.json")


def test_an_absent_or_unconfigured_reranker_is_reported_without_downloading():
    from embedding import ModelNotFound
    from pgkb.errors import ConfigurationError

    with pytest.raises(ModelNotFound, match="reranking model 'example-org/not-a-reranker' is not on this machine"):
        load_reranker("example-org/not-a-reranker")
    with pytest.raises(ConfigurationError, match="PGKB_RERANK_MODEL"):
        load_reranker(None)


# -- a served reranker ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url(bert_dir):
    process = subprocess.Popen([sys.executable, __file__, str(bert_dir)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the rerank server did not start (exit {process.poll()})"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _requests(url: str) -> list[dict]:
    import httpx

    return httpx.get(url + "/requests").json()["requests"]


def test_a_served_reranker_scores_as_the_model_does(server_url, bert_dir, monkeypatch):
    monkeypatch.setenv("RERANK_KEY", "s3cret")
    served = load_reranker("tiny-cross-encoder", url=server_url, api_key_env="RERANK_KEY")
    assert isinstance(served, ServerReranker) and served.url == server_url + "/v1/rerank"
    passages = PASSAGES * 7  # 42: two requests, as servers cap the documents a request holds
    np.testing.assert_allclose(served.score(QUERY, passages), _bert_reference(bert_dir, QUERY, passages), atol=1e-5)
    sent = [r for r in _requests(server_url) if r["path"] == "/v1/rerank"][-2:]
    assert sorted(len(r["body"]["documents"]) for r in sent) == [10, 32]
    assert sent[0]["body"]["model"] == "tiny-cross-encoder" and sent[0]["authorization"] == "Bearer s3cret"
    assert all("texts" not in r["body"] for r in sent)


def test_teis_own_route_gets_texts_and_its_answer_is_read(server_url, bert_dir):
    served = load_reranker(None, url=server_url + "/rerank")
    np.testing.assert_allclose(served.score(QUERY, PASSAGES), _bert_reference(bert_dir, QUERY, PASSAGES), atol=1e-5)
    assert "model" not in _requests(server_url)[-1]["body"]


def test_a_server_that_answers_nothing_usable_is_an_error(server_url):
    with pytest.raises(ServerError, match="refused the request"):
        ServerReranker(None, server_url + "/v2/nowhere/rerank", retries=0).score(QUERY, PASSAGES)
    with pytest.raises(ServerError, match="failed 2 times"):
        ServerReranker(None, "http://127.0.0.1:9", retries=1).score(QUERY, PASSAGES)


# -- search(rerank=N) ----------------------------------------------------------------------


@pytest.fixture
def kb(settings, embedder, bert_dir):
    from retrieval import KnowledgeBase
    from store import Chunk, DocumentRecord, Store

    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    for n, passage in enumerate(PASSAGES):
        key = f"note-{n}.txt"
        chunks = [Chunk(key, 0, passage, ("Travel",), 1, 1, ("NarrativeText",), len(passage.split()), key)]
        record = DocumentRecord(key, f"/docs/{key}", "0" * 64, 1, None, "text/plain", key, {})
        store.write_document(collection, record, chunks, embedder.embed_documents([passage]))
    store.close()
    with KnowledgeBase(dataclasses.replace(settings, rerank_model=str(bert_dir), precision="float32")) as kb:
        yield kb


def test_search_reranks_the_top_n_fused_hits_and_returns_the_k_best(kb, bert_dir):
    fused = kb.search(QUERY, k=5, mode="vector")
    hits = kb.search(QUERY, k=3, mode="vector", rerank=5)
    expected = _bert_reference(bert_dir, QUERY, [f"Travel\n{h.text}" for h in fused])
    best = sorted(range(5), key=lambda i: -expected[i])[:3]
    assert [h.chunk_id for h in hits] == [fused[i].chunk_id for i in best]
    np.testing.assert_allclose([h.rerank_score for h in hits], expected[best], atol=1e-5)
    assert [h.chunk_id for h in hits] != [h.chunk_id for h in fused[:3]]  # the reranker did reorder
    assert all(h.rerank_score is None for h in fused)
    # Only the top N are rescored: the sixth candidate never comes back.
    sixth = kb.search(QUERY, k=6, mode="vector")[5]
    assert sixth.chunk_id not in {h.chunk_id for h in kb.search(QUERY, k=5, mode="vector", rerank=5)}


@pytest.mark.parametrize("k, rerank, problem", [(5, 3, "give rerank >= k"), (5, 0, "rerank must be"),
                                                (5, True, "rerank must be"), (0, 5, "k must be")])
def test_a_bad_rerank_is_a_query_error(kb, k, rerank, problem):
    from retrieval import QueryError

    with pytest.raises(QueryError, match=problem):
        kb.search(QUERY, k=k, rerank=rerank)


def test_search_command_reranks_with_rerank_model(kb, bert_dir, settings):
    fused = kb.search(QUERY, k=4)
    env = {"PGKB_DATA_DIR": str(settings.data_dir), "PGKB_PRECISION": "float32"}
    result = run_cli("search", QUERY, "-c", settings.collection, "-k", "2", "--rerank", "4", "--json",
                     "--rerank-model", str(bert_dir), env=env)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    expected = _bert_reference(bert_dir, QUERY, [f"Travel\n{h.text}" for h in fused])
    assert [h["chunk_id"] for h in hits] == [fused[i].chunk_id for i in np.argsort(-expected)[:2]]
    shown = run_cli("search", QUERY, "-c", settings.collection, "-k", "2", "--rerank", "4", env={
        **env, "PGKB_RERANK_MODEL": str(bert_dir)})
    assert shown.returncode == 0 and "rerank 0." in shown.stdout
    unset = run_cli("search", QUERY, "-c", settings.collection, "--rerank", "10", env=env)
    assert unset.returncode == 2 and "PGKB_RERANK_MODEL" in unset.stderr and "Traceback" not in unset.stderr


def test_eval_reports_reranking_as_its_own_row(kb, bert_dir, settings, tmp_path):
    judgments = tmp_path / "judged.jsonl"
    judgments.write_text("\n".join(json.dumps({"query": q, "document": d}) for q, d in [
        (QUERY, "note-0.txt"), ("annual leave days", "note-1.txt"), ("pool cars", "note-4.txt")]))
    env = {"PGKB_DATA_DIR": str(settings.data_dir), "PGKB_PRECISION": "float32", "PGKB_RERANK_MODEL": str(bert_dir)}
    result = run_cli("pgkb", "eval", str(judgments), "-c", settings.collection, "--modes", "hybrid", "-k", "10",
                     "--rerank", "20", "--json", "-", env=env)
    assert result.returncode == 0, result.stderr
    modes = json.loads(result.stdout)["modes"]
    assert set(modes) == {"hybrid", "hybrid+rerank"} and modes["hybrid+rerank"]["queries"] == 3
    assert 0 <= modes["hybrid+rerank"]["ndcg_at_10"] <= 1 and not math.isnan(modes["hybrid+rerank"]["mrr"])
    too_few = run_cli("pgkb", "eval", str(judgments), "-c", settings.collection, "-k", "10", "--rerank", "5", env=env)
    assert too_few.returncode == 2 and "--rerank 10 or more" in too_few.stderr


def test_the_served_api_reranks_when_asked(kb, bert_dir, settings, tmp_path, monkeypatch):
    from store import Store
    from tests.serving import Server

    fused = kb.search(QUERY, k=5)
    expected = _bert_reference(bert_dir, QUERY, [f"Travel\n{h.text}" for h in fused])
    store = Store.open(settings)
    key = store.create_key("reader", "read", [settings.collection], []).secret
    store.close()
    monkeypatch.setenv("PGKB_RERANK_MODEL", str(bert_dir))
    monkeypatch.setenv("PGKB_PRECISION", "float32")
    server = Server(settings.data_dir, tmp_path / "server.log")
    try:
        with server.client(key) as client:
            url = f"/v1/collections/{settings.collection}/search"
            hits = client.post(url, json={"query": QUERY, "k": 2, "rerank": 5}).json()["hits"]
            assert [h["chunk_id"] for h in hits] == [fused[i].chunk_id for i in np.argsort(-expected)[:2]]
            np.testing.assert_allclose([h["rerank_score"] for h in hits], np.sort(expected)[::-1][:2], atol=1e-5)
            assert client.post(url, json={"query": QUERY, "k": 2}).json()["hits"][0]["rerank_score"] is None
            refused = client.post(url, json={"query": QUERY, "k": 5, "rerank": 2})
            assert refused.status_code == 400 and "rerank >= k" in refused.json()["detail"]
            assert client.post(url, json={"query": QUERY, "rerank": 0}).status_code == 422
    finally:
        assert server.stop(), (tmp_path / "server.log").read_text()
