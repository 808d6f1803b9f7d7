"""The peer of bench/ingest_e2e.py: LangChain's canonical ingest pipeline, run in its own
virtualenv (`python -m bench.ingest_e2e --setup-peer`), never in pgkb's.

    python langchain_ingest.py --files FILES.json --url URL --collection NAME --model-dir DIR --out OUT.json

For each file in turn: PyMuPDFLoader (a Document per page) or Docx2txtLoader, then
RecursiveCharacterTextSplitter with chunk_size=1000 characters and chunk_overlap=200 (the
values of LangChain's RAG tutorial; the splitter's own defaults, 4000/200, would give chunks
that all-MiniLM-L6-v2, which reads 256 tokens, mostly cuts off), HuggingFaceEmbeddings on the
model directory given (normalised vectors, CPU), and PGVector.add_documents (langchain-postgres,
its default schema, JSONB metadata) in batches of at most BATCH chunks. One addition to the
canonical pipeline: NUL characters are removed from the chunks' text, since PostgreSQL
refuses them and some PDFs' text layers hold them (without it, PGVector fails those files;
pgkb removes them too). A file that fails to load or to be written is skipped with a message
and counted; batches of it already written stay, and count as chunks. Writes what it did to
--out as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

BATCH = 256
PACKAGES = ("langchain-core", "langchain-community", "langchain-text-splitters", "langchain-huggingface",
            "langchain-postgres", "sentence-transformers", "transformers", "torch", "pymupdf", "docx2txt")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=Path, required=True, help="a JSON list of file paths")
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of the PostgreSQL server (psycopg 3)")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--model-dir", required=True, help="the sentence-transformers model's directory")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from langchain_community.document_loaders import Docx2txtLoader, PyMuPDFLoader
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_postgres import PGVector
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    embeddings = HuggingFaceEmbeddings(model_name=args.model_dir, model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True})
    store = PGVector(embeddings=embeddings, connection=args.url, collection_name=args.collection, use_jsonb=True)
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)

    loaded, failed, chunks = 0, {}, 0
    for path in json.loads(args.files.read_text()):
        loader = PyMuPDFLoader(path) if path.lower().endswith(".pdf") else Docx2txtLoader(path)
        stage = "load"
        try:
            splits = splitter.split_documents(loader.load())
            for split in splits:  # PostgreSQL text cannot hold NUL, which some PDFs' text layers have
                split.page_content = split.page_content.replace("\x00", "")
            stage = "add_documents"
            for first in range(0, len(splits), BATCH):
                batch = splits[first:first + BATCH]
                store.add_documents(batch)
                chunks += len(batch)
        except Exception as exc:  # noqa: BLE001 - one file that fails never stops the run
            reason = str(exc).splitlines()[0][:300] if str(exc) else ""
            failed[path] = f"{stage}: {type(exc).__name__}: {reason}"
            print(f"skipped {path}: {failed[path]}", file=sys.stderr)
            continue
        loaded += 1

    versions: dict[str, str | None] = {}  # None: not installed
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    args.out.write_text(json.dumps({"loaded": loaded, "failed": failed, "chunks": chunks, "versions": versions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
