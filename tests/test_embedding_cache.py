"""The embedding cache: a chunk text the collection already holds a vector for is not sent
to the model again, in a changed document or in another one."""

import numpy as np

from ingest import ingest
from store import Store
from tests.conftest import CountingEmbedder

SECTIONS = [
    "# Travel\n\nBook trains and flights through the travel desk at least a week ahead.",
    "# Expenses\n\nSubmit receipts in the finance portal within thirty days of coming back.",
    "# Leave\n\nAsk your manager for annual leave in the HR portal two weeks ahead.",
]


def test_unchanged_chunk_texts_are_not_embedded_again(tmp_path, settings, embedder):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "handbook.md").write_text("\n\n".join(SECTIONS))
    counting = CountingEmbedder(embedder)
    assert ingest(folder, settings, embedder=counting).count("ingested") == 1
    first = list(counting.embedded)
    assert len(first) >= len(SECTIONS)
    store = Store.open(settings)
    collection = store.collection(settings.collection)
    hashes = [row[0] for row in store.engine.connect().exec_driver_sql(
        "SELECT content_hash FROM chunks WHERE collection_id = %(id)s", {"id": collection.id})]
    before = store.stored_vectors(collection, hashes)

    # The handbook gains a section, and a copy of its old version appears beside it.
    (folder / "handbook-old.md").write_text("\n\n".join(SECTIONS))
    (folder / "handbook.md").write_text("\n\n".join(SECTIONS + ["# Parking\n\nPark in the visitor bays only."]))
    counting.embedded.clear()
    report = ingest(folder, settings, embedder=counting)
    assert {f.key: f.outcome for f in report.files} == {"handbook.md": "updated", "handbook-old.md": "ingested"}
    assert counting.embedded and all("Parking" in text for text in counting.embedded)
    assert not set(counting.embedded) & set(first)

    # The unchanged chunks kept exactly the vectors they were first given.
    after = store.stored_vectors(collection, hashes)
    assert after.keys() == before.keys() and all(np.array_equal(after[h], before[h]) for h in hashes)
    store.close()
