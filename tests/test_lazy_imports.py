"""A command loads only what it uses: each second of imports is paid on every call from the
shell. A search never needs the parsers or the masker (unstructured, PyMuPDF, presidio,
spaCy), the plots nor the HTTP server; a keyword search and `pgkb collections` need no model
(torch, transformers), which alone takes seconds to load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ingest import ingest
from pgkb.settings import Settings

# What ingest, the benchmarks and `pgkb serve` use, and a search does not.
INGEST_ONLY = ["ingest", "unstructured", "fitz", "docx", "openpyxl", "presidio_analyzer", "spacy", "matplotlib",
               "fastapi", "uvicorn"]
MODEL = ["torch", "transformers"]

# Runs a command's main in this process and prints, last, the modules above it imported.
RUN_AND_LIST = """
import importlib, json, sys
module, argv, watched = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
code = importlib.import_module(module).main(argv)
print(json.dumps({"code": code, "imported": [name for name in watched if name in sys.modules]}))
"""


@pytest.fixture(scope="module")
def collection(data_dir, embedder, tmp_path_factory) -> Settings:
    folder = tmp_path_factory.mktemp("lazy")
    (folder / "travel.md").write_text("# Travel\n\nClaim travel expenses within 30 days of the trip.\n")
    settings = Settings(data_dir=data_dir, collection="lazy-imports")
    assert ingest(folder, settings, embedder=embedder).count("ingested") == 1
    return settings


def imported_by(settings: Settings, module: str, *argv: str) -> list[str]:
    """The watched modules a real process running the command imported (the command must succeed)."""
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, module, json.dumps(argv), json.dumps(INGEST_ONLY + MODEL)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PGKB_DATA_DIR": str(settings.data_dir), "PGKB_COLLECTION": settings.collection})
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["code"] == 0, result.stdout
    return outcome["imported"]


def test_a_search_loads_neither_parsers_nor_masker(collection):
    assert imported_by(collection, "retrieval.cli", "travel expenses") == MODEL


def test_a_keyword_search_and_the_listings_load_no_model(collection):
    assert imported_by(collection, "retrieval.cli", "travel expenses", "--mode", "keyword") == []
    assert imported_by(collection, "serve.cli", "collections") == []  # the pgkb command
    assert imported_by(collection, "serve.cli", "documents", collection.collection) == []
