"""Retrieval quality on a BEIR-format set: nDCG@10 and recall@100 for vector, keyword and hybrid.

    python -m bench.retrieval_quality                       # ../shared/eval/retrieval/dbpedia
    python -m bench.retrieval_quality --beir PATH --data-dir /tmp/pgkb-quality --json FILE

The corpus is chunked with pgkb's own chunker, embedded with the default model and written
with pgkb's store (once per data directory: later runs reuse it). Queries run through
`KnowledgeBase.search(..., group_by="document")`, so a document is ranked by its best chunk.
Vector search is exact here, as in the published reference figures; `--hnsw` uses the index.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections import defaultdict
from pathlib import Path

from unstructured.documents.elements import ElementMetadata, NarrativeText, Title

from embedding import load_embedder
from ingest.chunking import chunk_elements
from retrieval import KnowledgeBase
from retrieval.hybrid import LegWeights
from store import DocumentRecord, Settings, Store

DEFAULT_SET = Path(__file__).resolve().parents[2] / "shared" / "eval" / "retrieval" / "dbpedia"


def load_beir(folder: Path):
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").open()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").open())}
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in list((folder / "qrels" / "test.tsv").open())[1:]:
        query_id, doc_id, grade = line.rstrip("\n").split("\t")
        qrels[query_id][doc_id] = int(grade)
    return corpus, {q: queries[q] for q in qrels}, qrels


def build_collection(settings: Settings, corpus: list[dict], embedder) -> None:
    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    with store.engine.connect() as conn:
        from sqlalchemy import text
        have = conn.execute(text("SELECT count(*) FROM documents WHERE collection_id = :c"),
                            {"c": collection.id}).scalar()
    if have == len(corpus):
        store.close()
        return
    started = time.perf_counter()
    budget = embedder.max_text_tokens
    batch = 500  # documents chunked, then embedded together: the model sees full batches
    for first in range(0, len(corpus), batch):
        docs = corpus[first:first + batch]
        doc_chunks = [
            chunk_elements([Title(d["title"], metadata=ElementMetadata(category_depth=0)),
                            NarrativeText(d["text"], metadata=ElementMetadata())],
                           d["_id"], embedder.count_tokens, budget)
            for d in docs
        ]
        vectors = embedder.embed_documents([c.embedding_text for chunks in doc_chunks for c in chunks])
        offset = 0
        for doc, chunks in zip(docs, doc_chunks):
            record = DocumentRecord(doc["_id"], doc["_id"], hashlib.sha256(doc["text"].encode()).hexdigest(),
                                    len(doc["text"]), None, "text/plain", doc["title"])
            store.write_document(collection, record, chunks, vectors[offset:offset + len(chunks)])
            offset += len(chunks)
        print(f"  loaded {first + len(docs)}/{len(corpus)} documents ({time.perf_counter() - started:.0f} s)",
              flush=True)
    store.close()


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], relevant: dict[str, int], k: int = 100) -> float:
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def evaluate(kb: KnowledgeBase, queries, qrels, *, exact: bool, variants: dict) -> dict:
    results = {}
    for name, options in variants.items():
        ndcgs, recalls = [], []
        for query_id, query in queries.items():
            hits = kb.search(query, k=100, group_by="document", exact=exact, **options)
            ranked = [h.document_key for h in hits]
            ndcgs.append(ndcg_at(ranked, qrels[query_id]))
            recalls.append(recall_at(ranked, qrels[query_id]))
        results[name] = (sum(ndcgs) / len(ndcgs), sum(recalls) / len(recalls))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", type=Path, default=DEFAULT_SET)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/pgkb-quality"))
    parser.add_argument("--hnsw", action="store_true", help="use the HNSW index instead of exact search")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    corpus, queries, qrels = load_beir(args.beir)
    settings = Settings.from_env(data_dir=args.data_dir)  # PGKB_MODEL, PGKB_PRECISION... apply
    settings = Settings.from_env(data_dir=args.data_dir, collection=f"beir-{args.beir.name}-{settings.precision}")
    embedder = load_embedder(settings.model, **settings.embedder_options())
    print(f"{args.beir.name}: {len(corpus)} documents, {len(queries)} queries")
    build_collection(settings, corpus, embedder)
    variants = {
        "vector": {"mode": "vector"},
        "keyword": {"mode": "keyword"},
        "hybrid (pgkb default)": {"mode": "hybrid"},
        "hybrid, equal-weight RRF": {"mode": "hybrid", "fusion": "rrf", "weights": LegWeights(1.0, 1.0)},
    }
    with KnowledgeBase(settings) as kb:
        results = evaluate(kb, queries, qrels, exact=not args.hnsw, variants=variants)
    print(f"{'mode':28} {'nDCG@10':>8} {'recall@100':>11}")
    for name, (ndcg, recall) in results.items():
        print(f"{name:28} {ndcg:8.3f} {recall:11.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "set": str(args.beir), "documents": len(corpus), "queries": len(queries), "model": embedder.space.model,
            "precision": settings.precision, "vector_search": "HNSW" if args.hnsw else "exact",
            "modes": {name: {"ndcg_at_10": ndcg, "recall_at_100": recall} for name, (ndcg, recall) in results.items()},
            "date": time.strftime("%Y-%m-%d"),
        }, indent=2))


if __name__ == "__main__":
    main()
