"""The `search` and `ingest` commands on bad input, as a user runs them: a one-line error naming
the flag, exit 2, never a traceback; and what `--filter` and the printed hits mean."""

from __future__ import annotations

import json
import re
from contextlib import closing

import pytest
from sqlalchemy import select

from pgkb.settings import Settings
from retrieval.filters import compile_filters
from store import Store
from store.tables import documents
from tests.conftest import run_cli

CONTRACT = """# ACME contract

The contract with ACME covers office cleaning for two years at a fixed price.
"""
NOTES = """# Meeting notes

The team agreed to move the weekly meeting to Thursday mornings.
"""
MEMO = """# Parking memo

Visitors park in the west lot and sign in at reception.
"""


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, data_dir) -> dict[str, str]:
    """Three documents whose metadata holds one value typed three ways: the number 120000 and
    an array (contract), the text "120000" and a lone string (notes), neither (memo)."""
    folder = tmp_path_factory.mktemp("typed")
    (folder / "contract.md").write_text(CONTRACT)
    (folder / "contract.md.meta.json").write_text(json.dumps(
        {"value_eur": 120000, "access": ["lawyers", "finance"], "signed": True}))
    (folder / "notes.md").write_text(NOTES)
    (folder / "notes.md.meta.json").write_text(json.dumps({"value_eur": "120000", "access": "finance"}))
    (folder / "memo.md").write_text(MEMO)
    env = {"PGKB_DATA_DIR": str(data_dir), "PGKB_COLLECTION": "cli_errors"}
    result = run_cli("ingest", str(folder), env=env)
    assert result.returncode == 0, result.stderr
    return env


def _refused(result, *names: str) -> str:
    """The one-line error of a command refused as a usage error."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and not result.stdout
    error = result.stderr.strip().splitlines()[-1]
    for name in names:
        assert name in error, error
    return error


REFUSED = [  # the flags, and what the error must say
    (["-k", "-3"], ["-k", "1 to 10,000", "'-3'"]),
    (["-k", "0"], ["-k", "1 to 10,000"]),
    (["-k", "many"], ["-k", "'many'"]),
    (["--filter", "page=abc"], ["--filter page=abc", "whole number"]),
    (["--filter", "colour=red"], ["--filter colour=red", "unknown filter key 'colour'"]),
    (["--filter", "metadata.access"], ["--filter takes KEY=VALUE"]),
    (["--where", '{"page": "abc"}'], ["--where", "whole number"]),
    (["--where", "[1]"], ["--where takes a JSON object"]),
    (["--where", "{page"], ["--where is not valid JSON"]),
    (["--data-dir", "/proc/x"], ["/proc/x", "--data-dir", "cannot be made"]),
    (["--data-dir", "/proc"], ["/proc", "--data-dir", "cannot be made or written in"]),
    (["--data-dir", __file__], [__file__, "--data-dir", "is not a folder"]),
]


@pytest.mark.parametrize("arguments, names", REFUSED, ids=[" ".join(arguments) for arguments, _ in REFUSED])
def test_bad_flags_are_refused_naming_the_flag(arguments, names, data_dir):
    error = _refused(run_cli("search", "cleaning contract", *arguments, env={"PGKB_DATA_DIR": str(data_dir)}),
                     *names)
    assert "SELECT" not in error and "[0." not in error  # neither the statement nor the query vector


@pytest.mark.parametrize("query", ["", "   \t"])
def test_an_empty_query_is_refused_rather_than_ranking_every_chunk(query, data_dir):
    _refused(run_cli("search", query, env={"PGKB_DATA_DIR": str(data_dir)}), "the query is empty")


def test_ingest_into_a_data_folder_that_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "a.md").write_text(NOTES)
    _refused(run_cli("ingest", str(tmp_path), "--data-dir", "/proc/x"), "/proc/x", "--data-dir", "cannot be made")


def test_a_filter_value_from_the_command_line_matches_a_number_or_an_array_element(ingested):
    for item in ["metadata.value_eur=120000", "metadata.access=finance"]:  # was: notes.md alone, both times
        result = run_cli("search", "contract", "--filter", item, "--json", env=ingested)
        assert result.returncode == 0, result.stderr
        assert {hit["document_key"] for hit in json.loads(result.stdout)} == {"contract.md", "notes.md"}, item


@pytest.mark.parametrize("name, text, keys", [
    ("value_eur", "120000", {"contract.md", "notes.md"}),  # the number and the text
    ("value_eur", "1.2e5", {"contract.md"}),               # the number only: the text differs
    ("value_eur", "120001", set()),
    ("access", "finance", {"contract.md", "notes.md"}),    # an array element and a lone value
    ("access", "lawyers", {"contract.md"}),
    ("access", "nobody", set()),
    ("signed", "true", {"contract.md"}),                   # the boolean
    ("signed", "True", set()),                             # JSON's spelling only
    ("value_eur", "NaN", set()),                           # text: not a number JSON holds
])
def test_what_the_match_operator_matches(name, text, keys, ingested, data_dir):
    """`--filter metadata.NAME=TEXT` is {"metadata.NAME": {"match": TEXT}}; here in-process, for
    the cases one would try (a search process takes seconds)."""
    filters = compile_filters({f"metadata.{name}": {"match": text}})
    with closing(Store.open(Settings(data_dir=data_dir, collection=ingested["PGKB_COLLECTION"]))) as store, \
            store.engine.connect() as conn:
        collection = store.collection(ingested["PGKB_COLLECTION"])
        query = select(documents.c.key).where(documents.c.collection_id == collection.id, *filters.conditions)
        assert set(conn.execute(query).scalars()) == keys


def test_hits_show_each_legs_rank_and_score_and_snippets_bold_without_tags(ingested):
    # One chunk passes the filter: its fused score is 0, which was printed as "(score 0.000; vector #1)".
    result = run_cli("search", "weekly meeting", "--filter", "source=notes.md", env={**ingested, "FORCE_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    assert re.fullmatch(r"1\. notes\.md, Meeting notes  \(vector #1, similarity 0\.\d\d; keyword #1, BM25 \d+\.\d\d\)",
                        plain.splitlines()[0]), plain
    assert "Meeting notes The team agreed to move the weekly meeting" in plain and "score" not in plain
    # The matched words are bold (rich's markup on a terminal, plain text in a pipe), never raw tags.
    assert "<b>" not in result.stdout and re.search(r"\x1b\[[0-9;]*1[0-9;]*mweekly\x1b\[0m", result.stdout), \
        result.stdout
