"""Per-document access control in the store and in search: readers from the `access` tag, and
the restriction inside both legs of the one statement (never a post-filter)."""

import numpy as np
import pytest
from sqlalchemy import select

from pgkb.settings import Settings
from retrieval import KnowledgeBase, QueryError
from store import Chunk, DocumentRecord, Store
from store.tables import documents


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def write(store, collection, key, texts, vectors, tags=None, metadata=None):
    chunks = [Chunk(key, i, t, ("Section",), 1, 1, ("NarrativeText",), len(t.split()), f"{key}-{i}")
              for i, t in enumerate(texts)]
    record = DocumentRecord(key, f"/docs/{key}", "0" * 64, 1, None, "text/plain", key, metadata or {}, tags or {})
    store.write_document(collection, record, chunks, np.asarray(vectors, dtype=np.float32))


def readers(store, collection) -> dict[str, list[str] | None]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(documents.c.key, documents.c.readers)
                            .where(documents.c.collection_id == collection.id))
        return {key: value for key, value in rows}


def test_readers_are_the_groups_the_access_tag_names(store, settings, embedder):
    collection = store.collection(settings.collection, embedder.space.to_dict())
    vector = embedder.embed_documents(["x"])
    tags = {"list.txt": {"access": ["legal", " finance "]}, "text.txt": {"access": "hr, finance,"},
            "none.txt": {"department": "hr"}, "number.txt": {"access": 5}, "null.txt": {"access": None},
            "empty.txt": {"access": []}}
    for key, tag in tags.items():
        # What a file says of itself (its parser metadata) never grants access: only the user's tags.
        write(store, collection, key, ["x"], vector, tags=tag, metadata={"access": ["everyone"]})
    assert readers(store, collection) == {
        "list.txt": ["legal", "finance"], "text.txt": ["hr", "finance"], "none.txt": None,
        # A malformed label is read by no one rather than by everyone.
        "number.txt": [], "null.txt": [], "empty.txt": [],
    }
    store.update_tags(collection, "none.txt", {"access": "hr"})
    assert readers(store, collection)["none.txt"] == ["hr"]


@pytest.fixture
def kb(settings, embedder):
    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    texts = {
        "legal.txt": (["The merger agreement with Contoso closes in March."], {"access": ["legal"]}),
        "hr.txt": (["Salary review: the merger bonus for staff is ten percent."], {"access": "hr", "secret": "x"}),
        "handbook.txt": (["The handbook explains the merger to every employee."], {}),
    }
    for key, (chunk_texts, tags) in texts.items():
        write(store, collection, key, chunk_texts, embedder.embed_documents(chunk_texts), tags=tags,
              metadata={"department": key.split(".")[0]})
    with KnowledgeBase(settings) as kb:
        yield kb, store
    store.close()


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
@pytest.mark.parametrize("group_by", [None, "document"])
def test_a_search_returns_only_documents_its_groups_may_read(kb, mode, group_by):
    kb, _ = kb
    def keys(principals, **kwargs):
        return {h.document_key for h in kb.search("merger", k=100, mode=mode, group_by=group_by,
                                                  principals=principals, **kwargs)}
    assert keys(None) == {"legal.txt", "hr.txt", "handbook.txt"}
    assert keys(["legal"]) == {"legal.txt", "handbook.txt"}
    assert keys(["hr", "sales"]) == {"hr.txt", "handbook.txt"}
    assert keys([]) == {"handbook.txt"}
    # A filter naming what only another group reads finds nothing, rather than telling it exists.
    assert keys(["legal"], filters={"metadata.department": "hr"}) == set()
    assert keys(["legal"], filters={"source": "hr.txt"}) == set()


def test_a_collection_can_hide_unlabelled_documents_and_searches_see_it_at_once(kb, settings):
    kb, store = kb
    store.set_unlabelled(settings.collection, "nobody")
    assert {h.document_key for h in kb.search("merger", principals=["legal"])} == {"legal.txt"}
    assert kb.search("merger", principals=[]) == []
    assert len(kb.search("merger")) == 3  # no principals: a trusted caller reads everything
    store.set_unlabelled(settings.collection, "public")
    assert {h.document_key for h in kb.search("merger", principals=[])} == {"handbook.txt"}


def test_listings_and_removals_keep_to_what_principals_may_read(kb, settings):
    _, store = kb
    assert [d.key for d in store.list_documents(settings.collection, principals=["legal"])] == [
        "handbook.txt", "legal.txt"]
    assert store.readable_counts(settings.collection, ["legal"]) == (2, 2)
    with pytest.raises(Exception, match="hr.txt"):
        store.remove_documents(settings.collection, ["hr.txt"], principals=["legal"])
    assert store.readable_counts(settings.collection, ["hr"]) == (2, 2)


@pytest.mark.parametrize("principals", ["legal", [3], ["a\x00b"], ["x"] * 1001])
def test_principals_that_are_not_group_names_are_refused(kb, principals):
    kb, _ = kb
    with pytest.raises(QueryError, match="principal"):
        kb.search("merger", principals=principals)


@pytest.fixture(scope="module")
def mostly_secret(data_dir, embedder):
    """20,000 chunks in 200 documents, all holding the query's words; 198 documents (99%) only
    group B reads, 2 group A."""
    settings = Settings(data_dir=data_dir, collection="mostly-secret")
    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    rng = np.random.default_rng(11)
    with store.bulk_load(collection):
        for d in range(200):
            group = "A" if d in (17, 123) else "B"
            write(store, collection, f"doc{d:03}.txt", [f"record {i} of ledger {d}" for i in range(100)],
                  _unit(rng.normal(size=(100, collection.dims))), tags={"access": [group]})
    store.analyze()
    store.close()
    return settings


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
@pytest.mark.parametrize("k", [10, 100])
def test_a_restricted_search_still_returns_k_hits_when_99_percent_of_matches_are_hidden(mostly_secret, mode, k):
    with KnowledgeBase(mostly_secret) as kb:
        for exact in (None, False):  # the planner's choice, and the index forced
            for group_by in (None, "document"):
                hits = kb.search("ledger record", k=k, mode=mode, exact=exact, group_by=group_by, principals=["A"])
                expected = k if group_by is None else 2
                assert len(hits) == expected
                assert {h.document_key for h in hits} <= {"doc017.txt", "doc123.txt"}
