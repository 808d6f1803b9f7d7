"""The search command and the Python API return the same number of hits unless asked for
another (it was 5 on the command line and 10 in Python)."""

from __future__ import annotations

import inspect
import json

from ingest import ingest
from pgkb.settings import Settings
from retrieval import KnowledgeBase, search
from retrieval.search import DEFAULT_K
from tests.conftest import run_cli


def test_the_command_and_python_return_the_same_number_of_hits_by_default(data_dir, embedder, tmp_path):
    for number in range(DEFAULT_K + 2):
        (tmp_path / f"ferry-{number}.md").write_text(f"# Ferry {number}\n\nThe ferry leaves at {number} o'clock.\n")
    settings = Settings(data_dir=data_dir, collection="search-defaults")
    assert ingest(tmp_path, settings, embedder=embedder).count("ingested") == DEFAULT_K + 2

    found = run_cli("search", "ferry", "--mode", "keyword", "--json", "-c", settings.collection,
                    env={"PGKB_DATA_DIR": str(data_dir)})
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)) == DEFAULT_K == 10
    for function in (search, KnowledgeBase.search, KnowledgeBase.explain):
        assert inspect.signature(function).parameters["k"].default == DEFAULT_K
