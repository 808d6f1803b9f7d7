"""The LangChain and LlamaIndex retrievers (retrieval/langchain.py, retrieval/llamaindex.py), each
run inside a minimal pipeline of its library, in this process and over HTTP against a real
`pgkb serve` process: the hits retrieval.search finds, in its order, with their citations, and
over HTTP only what the key's groups may read. No model of theirs runs: nothing is generated."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from llama_index.core import Settings as LlamaIndexSettings
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers import ResponseMode

from ingest import ingest
from pgkb.errors import ConfigurationError, QueryError, StoreError
from pgkb.settings import Settings
from retrieval import KnowledgeBase, search
from retrieval.langchain import PgkbRetriever as LangChainRetriever
from retrieval.llamaindex import PgkbRetriever as LlamaIndexRetriever
from store import Store
from tests.conftest import HANDBOOK_SECTIONS, POLICY_SECTIONS, ROOT, run_cli
from tests.documents import write_docx, write_pdf
from tests.serving import Server

COLLECTION = "retrievers"
QUERIES = ["per diem rate in Paris", "salary bonus", "how many days of holiday"]
MODES = ["hybrid", "vector", "keyword"]


@pytest.fixture(scope="module")
def served(data_dir, tmp_path_factory, embedder):
    """A collection of a legal-only PDF, an HR-only DOCX and a public DOCX; a key reading as
    the legal group and one reading everything; the server."""
    folder = tmp_path_factory.mktemp("retrievers")
    write_pdf(folder / "travel-policy.pdf", "Travel Policy", POLICY_SECTIONS)
    (folder / "travel-policy.pdf.meta.json").write_text(json.dumps({"access": "legal", "department": "legal"}))
    write_docx(folder / "salaries.docx", "Salary bands", [
        (1, "Salary bands", ["The salary band for engineers is reviewed every spring; the merger bonus is "
                             "ten percent of the annual salary."])])
    (folder / "salaries.docx.meta.json").write_text(json.dumps({"access": "hr"}))
    write_docx(folder / "handbook.docx", "Staff Handbook", HANDBOOK_SECTIONS)
    settings = Settings(data_dir=data_dir, collection=COLLECTION)
    report = ingest(folder, settings, embedder=embedder)
    assert report.count("ingested") == 3, report.to_dict()
    store = Store.open(settings)
    keys = {"legal": store.create_key("legal reader", "read", [COLLECTION], ["legal"]).secret,
            "admin": store.create_key("admin", "admin", [COLLECTION], []).secret}
    store.close()
    server = Server(data_dir, tmp_path_factory.mktemp("retrievers-log") / "server.log")
    yield server, keys, settings
    assert server.stop(), server.log.read_text()


def _citations(documents: list[Document]) -> str:
    return "\n\n".join(f"[{d.metadata['citation']}] {d.page_content}" for d in documents)


def _assert_same_but_scores(remote: list[tuple[str, dict]], local: list[tuple[str, dict]]) -> None:
    """The same texts and metadata; scores as close as two processes' runs of a bf16 model make them."""
    assert [(text, {**metadata, "score": None}) for text, metadata in remote] == [
        (text, {**metadata, "score": None}) for text, metadata in local]
    assert [m["score"] for _, m in remote] == pytest.approx([m["score"] for _, m in local], rel=0.05, abs=0.1)


def test_langchain_chain_in_process_and_over_http_returns_what_search_finds(served):
    server, keys, settings = served
    for mode in MODES:
        local = LangChainRetriever(settings=settings, k=4, mode=mode)
        remote = LangChainRetriever(url=server.url, api_key=keys["admin"], collection=COLLECTION, k=4, mode=mode)
        for query in QUERIES:
            hits = search(query, k=4, settings=settings, mode=mode)
            assert hits, (mode, query)
            found = {}
            for name, retriever in (("local", local), ("remote", remote)):
                documents = retriever.invoke(query)
                assert [d.id for d in documents] == [str(h.chunk_id) for h in hits], (name, mode, query)
                assert asyncio.run(retriever.ainvoke(query)) == documents, (name, mode, query)
                # The retriever in a chain, as an application would use it.
                chain = retriever | RunnableLambda(_citations)
                assert chain.invoke(query) == asyncio.run(chain.ainvoke(query)) == _citations(documents)
                found[name] = [(d.page_content, d.metadata) for d in documents]
            # In this process the very scores of retrieval.search; over HTTP the same hits, cited
            # alike, with scores from the server's own run of the model.
            assert [metadata["score"] for _, metadata in found["local"]] == [h.score for h in hits]
            _assert_same_but_scores(found["remote"], found["local"])
    hit = search("per diem rate in Paris", k=1, settings=settings)[0]
    (document,) = LangChainRetriever(settings=settings, k=1).invoke("per diem rate in Paris")
    assert document.page_content == hit.text and "Paris" in hit.text
    assert hit.metadata["department"] == "legal" and document.metadata == {
        **hit.metadata, "citation": hit.citation, "document_key": "travel-policy.pdf", "pages": hit.pages,
        "page_start": hit.page_start, "page_end": hit.page_end, "section_path": list(hit.section_path),
        "chunk_id": hit.chunk_id, "score": hit.score}
    assert document.metadata["citation"].startswith("travel-policy.pdf, p. ")
    assert document.metadata["section_path"][-1] == "Per diem rates"


def test_llamaindex_query_engine_in_process_and_over_http_returns_what_search_finds(served, monkeypatch):
    server, keys, settings = served
    # LlamaIndex's default model is OpenAI's, which even a synthesizer that generates nothing loads.
    monkeypatch.setattr(LlamaIndexSettings, "_llm", MockLLM())
    for mode in MODES:
        local = LlamaIndexRetriever(settings=settings, k=4, mode=mode)
        remote = LlamaIndexRetriever(url=server.url, api_key=keys["admin"], collection=COLLECTION, k=4, mode=mode)
        for query in QUERIES:
            hits = search(query, k=4, settings=settings, mode=mode)
            found = {}
            for name, retriever in (("local", local), ("remote", remote)):
                # A query engine that generates nothing: the sources of its answer are the retriever's.
                engine = RetrieverQueryEngine.from_args(retriever, response_mode=ResponseMode.NO_TEXT)
                for response in (engine.query(query), asyncio.run(engine.aquery(query))):
                    assert [n.node.node_id for n in response.source_nodes] == [str(h.chunk_id) for h in hits], (
                        name, mode, query)
                    assert [n.node.get_content() for n in response.source_nodes] == [h.text for h in hits]
                found[name] = [(n.node.get_content(), {**n.node.metadata, "score": n.score})
                               for n in response.source_nodes]
            assert [metadata["score"] for _, metadata in found["local"]] == [h.score for h in hits]
            _assert_same_but_scores(found["remote"], found["local"])
    (node,) = LlamaIndexRetriever(settings=settings, k=1).retrieve("per diem rate in Paris")
    assert node.node.metadata["citation"].startswith("travel-policy.pdf, p. ")
    # What a model would read of the node: its citation and its text, not the ranks and tags.
    shown = node.node.get_content(metadata_mode="llm")
    assert shown.startswith(f"citation: {node.node.metadata['citation']}") and "access" not in shown


def test_over_http_a_legal_key_never_gets_an_hr_only_chunk(served):
    server, keys, settings = served
    query = "salary bonus merger travel holiday"
    everything = {hit.document_key for hit in search(query, k=100, settings=settings)}
    assert "salaries.docx" in everything
    for mode in MODES:
        legal_local = [h.chunk_id for h in search(query, k=100, settings=settings, mode=mode, principals=["legal"])]
        langchain = LangChainRetriever(url=server.url, api_key=keys["legal"], collection=COLLECTION, k=100, mode=mode)
        llamaindex = LlamaIndexRetriever(url=server.url, api_key=keys["legal"], collection=COLLECTION, k=100,
                                         mode=mode)
        for documents in (langchain.invoke(query), asyncio.run(langchain.ainvoke(query))):
            assert {d.metadata["document_key"] for d in documents} <= {"travel-policy.pdf", "handbook.docx"}
            assert [d.metadata["chunk_id"] for d in documents] == legal_local
        for nodes in (llamaindex.retrieve(query), asyncio.run(llamaindex.aretrieve(query))):
            assert [n.node.metadata["chunk_id"] for n in nodes] == legal_local
        # In this process the caller's groups are the retriever's principals: the same hits.
        local = LangChainRetriever(settings=settings, principals=["legal"], k=100, mode=mode)
        assert [d.metadata["chunk_id"] for d in local.invoke(query)] == legal_local


def test_a_knowledge_base_filters_and_group_by_reach_the_search(served):
    _, _, settings = served
    with KnowledgeBase(settings) as kb:
        expected = [str(h.chunk_id) for h in kb.search("travel", k=3, filters={"source": "travel-policy.pdf"},
                                                       group_by="document")]
        retriever = LlamaIndexRetriever(knowledge_base=kb, k=3, filters={"source": "travel-policy.pdf"},
                                        group_by="document")
        assert [n.node.node_id for n in retriever.retrieve("travel")] == expected and len(expected) == 1
        retriever = LangChainRetriever(knowledge_base=kb, k=3, filters={"source": "handbook.docx"})
        assert {d.metadata["document_key"] for d in retriever.invoke("travel")} == {"handbook.docx"}
        with pytest.raises(ConfigurationError, match="not the knowledge base's"):
            LangChainRetriever(knowledge_base=kb, collection="another")
        with pytest.raises(ConfigurationError, match="knowledge_base or settings"):
            LlamaIndexRetriever(knowledge_base=kb, settings=settings)


def test_bad_keys_collections_queries_and_settings_are_pgkb_errors_that_never_show_the_key(served):
    server, keys, settings = served
    wrong_key = "pgkb_000000000000_" + "x" * 43
    cases = [
        (dict(url=server.url, api_key=wrong_key, collection=COLLECTION), "travel", ConfigurationError, "API key"),
        (dict(url=server.url, api_key=keys["legal"], collection="nonexistent"), "travel", ConfigurationError,
         "'nonexistent'"),
        (dict(url=server.url, api_key=keys["legal"], collection=COLLECTION), " ", QueryError, "query is empty"),
        (dict(url=server.url, api_key=keys["legal"], collection=COLLECTION, filters={"page": {"near": 3}}),
         "travel", QueryError, "near"),
        (dict(settings=settings, filters={"page": {"near": 3}}), "travel", QueryError, "near"),
    ]
    for arguments, query, error, words in cases:
        for retriever in (LangChainRetriever(**arguments), LlamaIndexRetriever(**arguments)):
            search_ways = ((retriever.invoke, retriever.ainvoke) if isinstance(retriever, LangChainRetriever)
                           else (retriever.retrieve, retriever.aretrieve))
            for way in search_ways:
                with pytest.raises(error, match=words) as raised:
                    result = way(query)
                    if asyncio.iscoroutine(result):
                        asyncio.run(result)
                assert keys["legal"] not in str(raised.value) and wrong_key not in str(raised.value)
    for arguments, words in [
        (dict(url=server.url, api_key=keys["legal"], settings=settings), "settings apply to a search in this process"),
        (dict(url=server.url, api_key=keys["legal"], principals=["hr"]), "principals apply"),
        (dict(url=server.url), "api_key is needed"),
        (dict(api_key=keys["legal"]), "give url too"),
    ]:
        for make in (LangChainRetriever, LlamaIndexRetriever):
            with pytest.raises(ConfigurationError, match=words) as raised:
                make(**arguments)
            assert keys["legal"] not in str(raised.value)
    unreachable = LangChainRetriever(url="http://127.0.0.1:9", api_key=keys["legal"], collection=COLLECTION)
    with pytest.raises(StoreError, match="could not be reached") as raised:
        unreachable.invoke("travel")
    assert keys["legal"] not in str(raised.value)
    # The key stays out of what the retrievers show of themselves.
    assert keys["legal"] not in repr(unreachable) and keys["legal"] not in repr(
        LlamaIndexRetriever(url=server.url, api_key=keys["legal"]).searcher)


def test_the_readmes_examples_run_offline_after_its_first_command(data_dir):
    env = {"PGKB_DATA_DIR": str(data_dir), "PGKB_COLLECTION": "readme-examples"}
    ingested = run_cli("ingest", str(ROOT / "examples"), env=env)
    assert ingested.returncode == 0, ingested.stderr
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Integrations", 1)[1].split("\n## ", 1)[0]
    examples = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(examples) == 2
    for example in examples:  # each in a process of its own, under the network guard
        run = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, **env}, timeout=300)
        assert run.returncode == 0, run.stderr
        assert "travel-expense-policy.pdf, p. 2" in run.stdout, run.stdout


def test_importing_retrieval_imports_neither_framework():
    code = ("import sys, retrieval, retrieval.remote; "
            "print(sorted(m for m in sys.modules if m.startswith(('langchain', 'llama_index'))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"

