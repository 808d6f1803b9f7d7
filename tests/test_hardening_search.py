"""Search never crashes on its input (issue 28, items 5 and 12 and the filters' low item):
long or broken queries, wrong-typed filter values and k, and threads searching cold at once
each end in a result or a clear error, never a traceback from the database driver."""

import datetime
import json
import subprocess
import sys

import pytest

from pgkb.settings import Settings
from retrieval import FilterError, KnowledgeBase, QueryError
from retrieval.filters import MAX_VALUES
from retrieval.search import MAX_K, MAX_QUERY_CHARACTERS, MODES
from store import Chunk, DocumentRecord, Store
from tests.conftest import ROOT, run_cli

TEXTS = ["A late payment incurs interest of one percent per month, charged to the contractor.",
         "甲方未按期付款的，应当承担违约责任，并支付滞纳金。",
         "Employees receive twenty-five days of paid holiday each year."]

ENGLISH_PARAGRAPH = (  # 98 words: about 85 words nested the keyword query past Python's recursion limit
    "The quick brown fox jumps over the lazy dog while the committee reviews the annual budget and considers "
    "whether payment terms for contractors should be extended beyond ninety days, given that several "
    "suppliers have complained about late invoices, missing receipts, unclear approval chains, and the "
    "general difficulty of reaching anyone in finance before the end of each quarter when everybody is busy "
    "closing the books and preparing reports for the board of directors who meet twice a year in the "
    "headquarters building downtown near the river and the railway station, where interest on "
    "overdue accounts is discussed again"
)
CHINESE_PARAGRAPH = (
    "本合同由甲乙双方在平等自愿的基础上订立。甲方未按期付款的，应当承担违约责任，并支付滞纳金；"
    "乙方应当按照约定的时间、地点和方式交付货物，并对其员工的安全负全部责任。"
    "合同履行期间发生争议的，双方应当协商解决；协商不成的，任何一方均可向合同签订地人民法院提起诉讼。"
) * 12


@pytest.fixture(scope="module")
def prepared(data_dir, embedder) -> Settings:
    """A small collection of real-embedded chunks, English and Chinese."""
    settings = Settings(data_dir=data_dir, collection="hardening-search")
    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    chunks = [Chunk("contract.txt", i, t, ("Contract",), 1, 1, ("NarrativeText",), len(t.split()), f"h{i}")
              for i, t in enumerate(TEXTS)]
    record = DocumentRecord("contract.txt", "/docs/contract.txt", "0" * 64, 1, None, "text/plain", "contract",
                            {"department": "legal"})
    store.write_document(collection, record, chunks, embedder.embed_documents(TEXTS))
    store.close()
    return settings


@pytest.fixture(scope="module")
def kb(prepared):
    with KnowledgeBase(prepared) as kb:
        yield kb


def _distinct_words(characters: int) -> str:
    """As many distinct words as fit in `characters`, padded to that length."""
    words, length, i = [], -1, 0
    while length + len(f" w{i}") <= characters:
        words.append(f"w{i}")
        length += len(f" w{i}")
        i += 1
    return " ".join(words).ljust(characters)


# -- item 5: long queries ------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_a_long_paragraph_english_or_chinese_is_searched(kb, mode):
    assert len(ENGLISH_PARAGRAPH.split()) == 98
    assert kb.search(ENGLISH_PARAGRAPH, k=3, mode=mode)
    hits = kb.search(CHINESE_PARAGRAPH, k=3, mode=mode)
    assert hits and (mode == "vector" or hits[0].text == TEXTS[1])


@pytest.mark.parametrize("mode", MODES)
def test_the_longest_query_allowed_of_distinct_words_is_searched(kb, mode):
    query = _distinct_words(MAX_QUERY_CHARACTERS - len(" payment")) + " payment"
    assert len(query) == MAX_QUERY_CHARACTERS and len(set(query.split())) > 1800
    hits = kb.search(query, k=3, mode=mode)
    assert hits and (mode == "vector" or hits[0].text == TEXTS[0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query", [
    " ".join(f"word{i}" for i in range(6000)),  # 6,000 distinct words segfaulted the process
    "payment " * 131072,  # 1 MB
    "\ufdfa" * (MAX_QUERY_CHARACTERS // 10),  # 1,000 characters that spell out to 18,000
], ids=["6000-distinct-words", "1MB", "ligatures"])
def test_a_query_too_long_is_refused_with_a_clear_error(kb, mode, query):
    too_long = f"the query is too long: [0-9,]+ characters, at most {MAX_QUERY_CHARACTERS:,}"
    with pytest.raises(QueryError, match=too_long):
        kb.search(query, mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_too_many_quoted_phrases_are_refused_in_every_mode(kb, mode):
    phrases = " ".join(f'"late{i} payment{i}"' for i in range(200))
    with pytest.raises(QueryError, match="at most 32 quoted phrases and -exclusions; this one holds 200"):
        kb.search(phrases, mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query, problem", [
    ("late pay\x00ment", r"a NUL character \(\\x00\) at position 8"),
    ("late pay\ud800ment", r"a lone surrogate \('\\ud800'\) at position 8"),
    (b"late payment", "the query must be a string, not bytes"),
    (None, "the query must be a string, not NoneType"),
])
def test_a_query_that_is_not_text_postgresql_takes_says_so(kb, mode, query, problem):
    with pytest.raises(QueryError, match=problem):
        kb.search(query, mode=mode)


@pytest.mark.parametrize("k", [-1, 0, MAX_K + 1, 10**20, "5", 2.5, True, None])
def test_k_must_be_a_whole_number_within_bounds(kb, k):
    with pytest.raises(QueryError, match=f"k must be a whole number from 1 to {MAX_K:,}"):
        kb.search("late payment", k=k)


def test_k_up_to_its_bound_runs(kb):
    assert len(kb.search("late payment", k=MAX_K)) == len(TEXTS)


def test_retrieval_search_refuses_bad_queries_alike(prepared):
    from retrieval import search

    for mode in MODES:
        assert search(ENGLISH_PARAGRAPH, k=1, mode=mode, settings=prepared)
        with pytest.raises(QueryError, match="too long"):
            search("payment " * 131072, mode=mode, settings=prepared)
        with pytest.raises(QueryError, match="at most 32 quoted phrases"):
            search(" ".join(f'"a{i} b{i}"' for i in range(200)), mode=mode, settings=prepared)


@pytest.mark.parametrize("arguments, error", [
    (["x " * (MAX_QUERY_CHARACTERS // 2 + 1)], "error: the query is too long"),
    ([" ".join(f'"a{i} b{i}"' for i in range(200)), "--mode", "vector"], "error: a query may hold at most 32"),
    (["late pay\udcffment"], "error: the query holds a lone surrogate"),  # a byte not UTF-8 in argv
    (["late payment", "--filter", "page=abc"], "error: --filter page=abc: filter 'page' takes a whole number"),
], ids=["too-long", "phrases", "not-utf8", "page"])
def test_the_search_command_says_what_is_wrong_without_a_traceback(prepared, arguments, error):
    found = run_cli("search", *arguments, "--data-dir", str(prepared.data_dir), "-c", prepared.collection)
    assert found.returncode == 2 and error in found.stderr and "Traceback" not in found.stderr


def test_the_search_command_searches_a_long_paragraph(prepared):
    found = run_cli("search", ENGLISH_PARAGRAPH, "--json", "--data-dir", str(prepared.data_dir),
                    "-c", prepared.collection)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)


# -- filters: wrong-typed values are FilterErrors naming the filter ---------------------------

@pytest.mark.parametrize("filters, error", [
    ({"page": "abc"}, "filter 'page' takes a whole number, not 'abc'"),
    ({"page": {"gte": "3"}}, "filter 'page' takes a whole number, not '3'"),
    ({"page": {"in": [1, "x"]}}, "filter 'page' takes a whole number, not 'x'"),
    ({"page": 1.5}, "filter 'page' takes a whole number, not 1.5"),
    ({"page": 2**31}, "filter 'page' takes a whole number"),
    ({"page": True}, "filter 'page' takes a whole number, not True"),
    ({"modified": {"gte": "last week"}}, "filter 'modified' takes a date: an ISO 8601 string"),
    ({"ingested": {"lt": 5}}, "filter 'ingested' takes a date"),
    ({"source": "a\x00b"}, r"filter 'source' holds a NUL character \(\\x00\) at position 1"),
    ({"source": "a\ud800b"}, r"filter 'source' holds a lone surrogate \('\\ud800'\) at position 1"),
    ({"section": {"in": ["\ud800"]}}, "filter 'section' holds a lone surrogate"),
    ({"metadata.department": "legal\x00"}, "filter 'metadata.department' holds a NUL character"),
    ({"metadata.department": {"in": [{"nested": ["\x00"]}]}}, "filter 'metadata.department' holds a NUL"),
    ({"metadata.x\x00": "a"}, r"filter 'metadata.x\\x00' holds a NUL character"),
    ({"metadata.department": {"gte": "\x00"}}, "filter 'metadata.department' holds a NUL character"),
    ({"metadata.department": {"exists": "no"}}, "'exists' takes true or false, not 'no'"),
    ({"metadata.department": {"exists": 0}}, "'exists' takes true or false, not 0"),
    ({"metadata.department": {1, 2}}, "filter 'metadata.department' takes JSON values"),
    ({"metadata.department": float("nan")}, "filter 'metadata.department' takes JSON values"),
    ({"metadata.department": {"gte": None}}, "'gte' takes a number or text"),
    ({"metadata.department": {"lt": float("inf")}}, "'lt' takes a number or text"),
    ({"source": None}, "filter 'source' takes text, not None"),
    ({"source": ["a.txt"]}, r"filter 'source' takes text, not \['a.txt'\]"),
    ({"source": {"gte": 1}}, "filter 'source' takes text, not 1"),
    ({"section": 5}, "filter 'section' takes text, not 5"),
    ({3: "a"}, "filter keys are text, not 3"),
    ({"source": {1: "a", "near": "b"}}, "unknown operator 1"),
    ({"page": {"in": list(range(MAX_VALUES + 1))}}, f"a filter may hold at most {MAX_VALUES:,} values"),
    ({f"metadata.k{i}": i for i in range(70000)}, f"a filter may hold at most {MAX_VALUES:,} values"),
])
def test_a_wrong_filter_value_is_a_filter_error_naming_the_filter(kb, filters, error):
    with pytest.raises(FilterError, match=error):
        kb.search("late payment", filters=filters)


def test_an_in_list_of_any_length_is_one_value(kb):
    keys = [f"other-{i}.txt" for i in range(100_000)]  # more than the driver's 65,535 parameters
    assert len(kb.search("late payment", k=10, filters={"source": {"in": keys + ["contract.txt"]}})) == len(TEXTS)
    assert kb.search("late payment", filters={"source": {"in": keys}, "section": {"in": keys}}) == []


def test_dates_filter_as_iso_strings_dates_and_datetimes(kb):
    def found(where):
        return len(kb.search("late payment", k=10, filters=where))

    past, future = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC), datetime.date(2999, 1, 1)
    assert found({"ingested": {"gte": "2020-01-01"}}) == found({"ingested": {"gte": past}}) == len(TEXTS)
    assert found({"ingested": {"gte": "2020-01-01T00:00:00Z", "lt": future}}) == len(TEXTS)
    assert found({"ingested": {"gte": future}}) == found({"ingested": {"gte": "2999-01-01T08:00:00+08:00"}}) == 0
    assert found({"metadata.department": {"exists": True}}) == len(TEXTS)
    assert found({"metadata.department": {"exists": False}}) == 0


# -- item 12: threads searching cold at once --------------------------------------------------

THREADS = """
import json, sys, threading
from pathlib import Path
from retrieval import search
from pgkb.settings import Settings

settings = Settings(data_dir=Path(sys.argv[1]), collection=sys.argv[2])
start = threading.Barrier(8)
results = [None] * 8

def run(i):
    start.wait()
    try:
        results[i] = [(h.chunk_id, round(h.score, 6)) for h in search("late payment", k=3, settings=settings)]
    except Exception as exc:
        results[i] = f"{type(exc).__name__}: {exc}"

threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
"""


def test_eight_threads_searching_cold_at_once_all_get_the_same_hits(prepared):
    done = subprocess.run([sys.executable, "-c", THREADS, str(prepared.data_dir), prepared.collection],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    assert all(isinstance(r, list) and r for r in results), results
    assert all(r == results[0] for r in results)
