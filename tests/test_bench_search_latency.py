"""The search latency benchmark counts the exact retries `KnowledgeBase.search` makes: a
vector search whose filter lets fewer chunks through than the index is asked for runs again
as an exact scan, and the count says so; one without a filter, or exact from the start, does not."""

import numpy as np

from bench.search_measures import vector_searches
from retrieval import KnowledgeBase
from store import Chunk, DocumentRecord, Store


def test_exact_retries_are_counted_as_search_runs_them(settings, embedder):
    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    for department, texts in (("hr", ["Holidays are booked in the HR portal.", "The office closes at six."]),
                              ("legal", ["A late payment incurs interest.", "The contract runs for three years."])):
        key = f"{department}.txt"
        chunks = [Chunk(key, i, t, (), None, None, ("NarrativeText",), len(t.split()), f"{key}-{i}")
                  for i, t in enumerate(texts)]
        record = DocumentRecord(key, key, "0" * 64, 1, None, "text/plain", key, {"department": department})
        store.write_document(collection, record, chunks, np.asarray(embedder.embed_documents(texts)))
    store.close()

    filtered = [("holiday booking", {"metadata.department": "hr"}), ("late payment", {"metadata.department": "legal"})]
    with KnowledgeBase(settings) as kb:
        # Two chunks pass each filter, fewer than the 100 candidates the index is asked for.
        found, retries = vector_searches(kb, filtered, exact=False)
        assert retries == 2 and [len(ids) for ids in found] == [2, 2]
        assert vector_searches(kb, filtered, exact=True)[1] == 0
        assert vector_searches(kb, [("holiday booking", None)], exact=False)[1] == 0
