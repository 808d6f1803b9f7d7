"""The peer of bench/bulk_load.py: langchain-postgres `PGVector.add_embeddings`, run in its own
virtualenv (which has numpy and langchain-postgres, not pgkb), loading the rows that
bench/bulk_load.py wrote to a folder, one call (so one transaction) per document.

    python langchain_postgres_load.py FOLDER --url URL [--hnsw]

FOLDER holds vectors.npy, rows.jsonl (a text and its metadata per row) and layout.json (rows
per document); --hnsw creates the HNSW index before the load. Writes what it measured to
FOLDER/peer-result.json: the fields of bench.bulk_load.LoadResult.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import sqlalchemy
from langchain_core.embeddings import Embeddings
from langchain_postgres import PGVector


class PrecomputedVectors(Embeddings):
    """add_embeddings is handed the vectors: nothing is ever embedded here."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise RuntimeError("the benchmark hands over precomputed vectors")

    def embed_query(self, text: str) -> list[float]:
        raise RuntimeError("the benchmark hands over precomputed vectors")


def load(folder: Path, url: str, hnsw: bool) -> dict:
    """The rows through `PGVector.add_embeddings`, timed."""
    vectors = np.load(folder / "vectors.npy")
    lines = [json.loads(line) for line in (folder / "rows.jsonl").open()]
    per_document = json.loads((folder / "layout.json").read_text())["per_document"]
    texts, metadatas = [line["text"] for line in lines], [line["metadata"] for line in lines]
    embeddings = vectors.tolist()  # add_embeddings takes lists of floats

    store = PGVector(PrecomputedVectors(), connection=url, embedding_length=vectors.shape[1],
                     collection_name="bench-load", use_jsonb=True)
    engine = sqlalchemy.create_engine(url)
    if hnsw:  # the index langchain-postgres' documentation suggests, pgvector's default m and ef_construction
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(
                "CREATE INDEX ON langchain_pg_embedding USING hnsw (embedding vector_cosine_ops)"))
    before = os.getloadavg()[0]
    started = time.perf_counter()
    for first in range(0, len(texts), per_document):
        rows = slice(first, first + per_document)
        store.add_embeddings(texts[rows], embeddings[rows], metadatas[rows])
    seconds = time.perf_counter() - started
    after = os.getloadavg()[0]
    with engine.connect() as conn:
        stored = conn.execute(sqlalchemy.text("SELECT count(*) FROM langchain_pg_embedding")).scalar()
    if stored != len(texts):
        raise SystemExit(f"langchain-postgres stored {stored} rows of {len(texts)}")
    return {"contender": "langchain-postgres", "hnsw": hnsw, "rows": len(texts), "seconds": seconds,
            "load_average": (before, after)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the rows, as bench/bulk_load.py writes them")
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of a fresh database (psycopg 3)")
    parser.add_argument("--hnsw", action="store_true", help="create the HNSW index before the load")
    args = parser.parse_args()
    result = load(args.folder, args.url, args.hnsw)
    (args.folder / "peer-result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
