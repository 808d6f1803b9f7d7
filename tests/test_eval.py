"""Judging search: the metrics by hand, judgments files, `evaluate` and the health check on a
generated collection with known answers, and `pgkb eval` as a user runs it."""

import json
import math
from collections import Counter

import numpy as np
import pytest
from sqlalchemy import select

from embedding.query_cache import QueryCache
from ingest import ingest
from pgkb.settings import Settings
from retrieval import KnowledgeBase
from retrieval.evaluation import (
    DISTINCTIVE_HEADING_CHUNKS,
    Judged,
    JudgmentsError,
    collection_queries,
    evaluate,
    health_check,
    load_beir,
    load_judgments,
    ndcg_at,
    recall_at,
    reciprocal_rank,
    split_sentences,
)
from store.tables import chunks
from tests.conftest import run_cli

# Each document has words no other has, and a "Notes" section like every other: a heading
# too common to have one answer.
DOCUMENTS = {
    "bicycles.md": """# Bicycle maintenance

Clean and oil the chain every two hundred kilometres, and more often after riding through rain or mud.
A dry chain wears the sprockets quickly and makes every gear change noisy.

## Tyre pressure

Road tyres need between six and eight bar of pressure; check them with a floor pump gauge before every long ride.
Wider gravel tyres run at lower pressure, which gives more grip on loose stones.

## Notes

Keep a spare inner tube, two tyre levers and a small multitool in the saddle bag.
A puncture repaired at the roadside takes ten minutes once you have practised it at home.
""",
    "sourdough.md": """# Sourdough baking

Feed the starter with equal weights of rye flour and water on the evening before you bake.
A lively starter doubles in size within six hours and smells pleasantly sour.

## Proofing

Let the shaped dough proof overnight in the fridge, covered with a damp cloth, so that the crust blisters.
Cold proofing also makes the loaf easier to score with a razor blade.

## Notes

A dark crust tastes better than a pale one, so bake the loaf until it turns a deep brown colour.
Let it cool for an hour before cutting it, or the crumb will be gummy.
""",
    "astronomy.md": """# Watching meteor showers

The Perseids peak in the middle of August, when up to a hundred meteors an hour cross a dark sky.
The Geminids in December are just as rich but the nights are much colder.

## Notes

Lie on a reclining chair facing north-east and give your eyes twenty minutes to adapt to the darkness.
Binoculars do not help: meteors move too fast and cover too much of the sky.
""",
    "beekeeping.md": """# Beekeeping through the winter

Leave at least twenty kilograms of honey in each hive so that the colony survives until spring.
Narrow the entrance with a mouse guard before the first frost arrives in autumn.

## Notes

Heft the hive from behind in February to judge how much of the stores are left.
A light hive gets a block of fondant laid directly over the cluster of bees.
""",
    "tea.md": """# 绿茶的冲泡

冲泡绿茶的水温应在八十度左右，水太热会把茶叶烫熟。第一泡的时间不要超过一分钟，之后每泡延长二十秒。

## Notes

绿茶应当密封后放在冰箱里冷藏，避免受潮和串味。开封以后最好在两个月之内喝完。
""",
}

# Keyword queries whose words only their answer holds, and one whose answer is no document.
KEYWORD_JUDGMENTS = [
    ("sprockets chain kilometres", "bicycles.md"),
    ("rye flour starter", "sourdough.md"),
    ("Perseids meteors August", "astronomy.md"),
    ("colony honey hive", "beekeeping.md"),
    ("fondant frost entrance", "no-such-document.md"),
]


@pytest.fixture(scope="module")
def collection(data_dir, embedder, tmp_path_factory) -> Settings:
    folder = tmp_path_factory.mktemp("eval-docs")
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    settings = Settings(data_dir=data_dir, collection="evaluation")
    report = ingest(folder, settings, embedder=embedder)
    assert report.count("ingested") == len(DOCUMENTS)
    return settings


@pytest.fixture(scope="module")
def kb(collection):
    with KnowledgeBase(collection) as kb:
        yield kb


def chunk_ids(kb) -> dict[str, str]:
    """Each chunk's text by its id (as judgments name it)."""
    with kb.store.engine.connect() as conn:
        rows = conn.execute(select(chunks.c.id, chunks.c.text).where(chunks.c.collection_id == kb.collection.id))
        return {str(chunk_id): text for chunk_id, text in rows}


def chunk_holding(kb, words: str) -> str:
    (found,) = [chunk_id for chunk_id, text in chunk_ids(kb).items() if words in text]
    return found


def write_csv(path, rows: list[tuple[str, str]], column: str = "document") -> None:
    lines = [f"query,{column}"] + [f'"{query}",{answer}' for query, answer in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- The metrics, against values computed by hand.

def test_ndcg_recall_and_reciprocal_rank_by_hand():
    relevant = {"b": 2, "c": 1, "z": 0}
    # DCG: b at rank 2 gains 2^2-1 = 3 over log2(3), c at rank 3 gains 1 over log2(4) = 2;
    # the ideal ranking puts b first (3 / 1) and c second (1 / log2(3)).
    assert ndcg_at(["a", "b", "c"], relevant) == pytest.approx((3 / math.log2(3) + 1 / 2) / (3 + 1 / math.log2(3)))
    assert ndcg_at(["b", "c", "a"], relevant) == pytest.approx(1.0)
    assert ndcg_at(["a", "b", "c"], relevant, k=1) == 0.0
    assert ndcg_at(["a"], {"z": 0}) == 0.0  # nothing relevant: nothing to find
    assert recall_at(["a", "b", "c"], {"a": 1, "c": 1, "d": 1, "z": 0}, k=2) == pytest.approx(1 / 3)
    assert recall_at(["a", "b", "c"], {"a": 1, "c": 1, "d": 1}, k=3) == pytest.approx(2 / 3)
    assert reciprocal_rank(["z", "x", "a"], {"a": 1, "z": 0}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y"], {"a": 1}) == 0.0


# --- Judgments files.

def test_csv_and_jsonl_lines_of_one_query_are_one_query_with_several_answers(tmp_path):
    (tmp_path / "j.csv").write_text(
        "query,document,grade\n"
        "bike care,bicycles.md,2\n"
        '"bread, baked",sourdough.md,\n'
        "bike care,tyres.md,1\n", encoding="utf-8")
    assert load_judgments(tmp_path / "j.csv") == [
        Judged("1", "bike care", {"bicycles.md": 2, "tyres.md": 1}),
        Judged("2", "bread, baked", {"sourdough.md": 1}),
    ]
    (tmp_path / "j.jsonl").write_text(
        '{"query": "winter bees", "chunk_id": 17}\n\n'
        '{"query": "winter bees", "chunk_id": "18", "grade": 3}\n', encoding="utf-8")
    assert load_judgments(tmp_path / "j.jsonl") == [Judged("1", "winter bees", {"17": 1, "18": 3}, "chunk")]


def test_a_beir_folder_with_a_split_of_its_own_queries(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "meteor showers"}\n', encoding="utf-8")
    (tmp_path / "queries-dev.jsonl").write_text('{"_id": "q2", "text": "green tea"}\n', encoding="utf-8")
    (tmp_path / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\tastronomy.md\t1\nq2\ttea.md\t2\nq2\tbeekeeping.md\t0\n", encoding="utf-8")
    assert load_judgments(tmp_path, split="dev") == [
        Judged("q1", "meteor showers", {"astronomy.md": 1}),
        Judged("q2", "green tea", {"tea.md": 2, "beekeeping.md": 0}),
    ]
    with pytest.raises(JudgmentsError, match=r"test\.tsv: no such file"):
        load_judgments(tmp_path)


@pytest.mark.parametrize("name, content, message", [
    ("a.csv", "question,document\nx,a.md\n", r"a\.csv:1: the header needs a 'query' column"),
    ("a.csv", "query,grade\nx,1\n", r"a\.csv:1: .*'document' or 'chunk_id'"),
    ("a.csv", "query,document,grade\nx,a.md,1\ny,b.md,high\n", r"a\.csv:3: field 'grade' must be a whole number"),
    ("a.csv", "query,document,chunk_id\nx,a.md,4\n", r"a\.csv:2: give one of 'document' .* not both"),
    ("a.csv", "query,document\n,a.md\n", r"a\.csv:2: field 'query' is missing or empty"),
    ("a.csv", "query,document\n", r"a\.csv: no queries"),
    ("a.jsonl", '{"query": "x", "document": "a.md"}\n{"query": "y", document: 1}\n', r"a\.jsonl:2: not JSON"),
    ("a.jsonl", '["x", "a.md"]\n', r"a\.jsonl:1: expected a JSON object"),
    ("a.jsonl", '{"query": "x", "document": "a.md"}\n{"query": "x", "chunk_id": 3}\n',
     r"a\.jsonl:2: query 'x' has a document answer on line 1 and a chunk answer here"),
    ("a.jsonl", '{"document": "a.md"}\n', r"a\.jsonl:1: field 'query' is missing or empty"),
    ("a.txt", "x", r"a\.txt: judgments are a BEIR folder, a \.csv or a \.jsonl file"),
])
def test_bad_judgments_say_which_file_line_and_field(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(JudgmentsError, match=message):
        load_judgments(tmp_path / name)


def test_unreadable_judgments_say_why(tmp_path):
    with pytest.raises(JudgmentsError, match=r"nowhere\.csv: no such file or folder"):
        load_judgments(tmp_path / "nowhere.csv")
    (tmp_path / "latin1.csv").write_bytes("query,document\ncaf\xe9,a.md\n".encode("latin-1"))
    with pytest.raises(JudgmentsError, match=r"latin1\.csv: not UTF-8 text"):
        load_judgments(tmp_path / "latin1.csv")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "tea"}\n', encoding="utf-8")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq9\ttea.md\t1\n", encoding="utf-8")
    with pytest.raises(JudgmentsError, match=r"test\.tsv:2: query-id 'q9' is in no queries file"):
        load_judgments(tmp_path)


# --- evaluate on the generated collection.

def test_document_judgments_rank_documents(kb, tmp_path):
    write_csv(tmp_path / "judgments.csv", KEYWORD_JUDGMENTS)
    judged = load_judgments(tmp_path / "judgments.csv")
    result = evaluate(kb, judged, k=100)
    assert list(result.modes) == ["vector", "keyword", "hybrid"] and result.k == 100
    found = (len(KEYWORD_JUDGMENTS) - 1) / len(KEYWORD_JUDGMENTS)  # all but the missing document's query
    keyword = result.modes["keyword"]
    # Only the answer holds the query's words: first in every query that has one, and the
    # query answered by no document in the collection scores 0.
    assert keyword.mrr == pytest.approx(found)
    assert keyword.ndcg_at_10 == pytest.approx(found) and keyword.recall_at_10 == pytest.approx(found)
    for mode, scores in result.modes.items():
        assert scores.queries == len(KEYWORD_JUDGMENTS)
        # Ranked by document: five documents, all within 100, the missing one never.
        assert scores.recall_at_k == pytest.approx(found), mode
        assert scores.ndcg_at_10 <= found + 1e-9, mode  # more would mean a document counted twice
        assert 0 < scores.latency_p50_ms <= scores.latency_p95_ms
    assert result.modes["vector"].mrr >= 0.6  # topical queries: the model finds most answers first
    assert result.to_dict()["modes"]["keyword"]["mrr"] == keyword.mrr


def test_chunk_judgments_rank_chunks(kb, tmp_path):
    perseids = chunk_holding(kb, "The Perseids peak")
    starter = chunk_holding(kb, "Feed the starter")
    lines = [{"query": "Perseids Geminids", "chunk_id": perseids},
             {"query": "rye flour starter", "chunk_id": int(starter)},
             {"query": "rye flour starter", "chunk_id": perseids, "grade": 0},
             {"query": "meteors", "chunk_id": "999999999"}]
    (tmp_path / "judgments.jsonl").write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    judged = load_judgments(tmp_path / "judgments.jsonl")
    assert [j.level for j in judged] == ["chunk"] * 3
    keyword = evaluate(kb, judged, modes=["keyword"], k=1).modes["keyword"]
    assert keyword.mrr == pytest.approx(2 / 3) and keyword.recall_at_k == pytest.approx(2 / 3)


# --- The health check.

def test_the_health_check_draws_distinctive_headings_and_sentences_from_the_collection(kb):
    texts = chunk_ids(kb)
    with kb.store.engine.connect() as conn:
        headings = Counter(path[-1] for path in conn.execute(
            select(chunks.c.section_path).where(chunks.c.collection_id == kb.collection.id)).scalars() if path)
    assert headings["Notes"] > DISTINCTIVE_HEADING_CHUNKS  # the collection has a heading too common to ask

    drawn = collection_queries(kb, 12, seed=7)
    assert drawn == collection_queries(kb, 12, seed=7)  # deterministic for a seed
    assert drawn != collection_queries(kb, 12, seed=8)
    assert len(drawn) == 12 and len({j.query for j in drawn}) == 12
    assert all(j.level == "chunk" and set(j.relevant) <= set(texts) for j in drawn)
    heading_queries = [j for j in drawn if j.query_id.startswith("heading")]
    sentence_queries = [j for j in drawn if j.query_id.startswith("sentence")]
    assert heading_queries and sentence_queries
    for j in heading_queries:
        assert 0 < headings[j.query] <= DISTINCTIVE_HEADING_CHUNKS and len(j.relevant) == headings[j.query]
    for j in sentence_queries:
        (chunk_id,) = j.relevant
        assert j.query in " ".join(texts[chunk_id].split())
        assert "\n" not in j.query and not j.query.startswith("#")


def test_the_health_check_scores_both_legs_well_on_a_sound_collection(kb):
    result = health_check(kb, queries=16, seed=1)
    assert set(result.modes) == {"vector", "keyword", "hybrid"}
    for mode, scores in result.modes.items():
        assert scores.queries == 16
        assert scores.mrr > 0.6 and scores.recall_at_10 > 0.8, (mode, scores)


def test_the_health_check_shows_a_wrong_model(kb, monkeypatch):
    """Queries embedded by another model than the chunks were: the vector leg falls to about
    chance (a random ranking of 12 chunks has an MRR near 0.26), the keyword leg stays."""
    rng = np.random.default_rng(0)

    def another_model(texts):
        vectors = rng.normal(size=(len(texts), kb.embedder.space.dims)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    monkeypatch.setattr(kb.embedder, "_embed", another_model)
    monkeypatch.setattr(kb.embedder, "query_cache", QueryCache())  # the module's other tests keep theirs
    result = health_check(kb, queries=16, seed=1, modes=["vector", "keyword"])
    assert result.modes["vector"].mrr < 0.5 < result.modes["keyword"].mrr


def test_sentences_split_in_english_and_chinese():
    assert split_sentences("Heading\n\nFirst one. Second one! 第一句。第二句！第三句？Third?\nRow | 1") == [
        "Heading", "First one.", "Second one!", "第一句。", "第二句！", "第三句？", "Third?", "Row | 1"]


# --- `pgkb eval` as a user runs it.

def test_pgkb_eval_prints_a_table_and_json(collection, tmp_path):
    env = {"PGKB_DATA_DIR": str(collection.data_dir), "PGKB_COLLECTION": collection.collection}
    write_csv(tmp_path / "judgments.csv", KEYWORD_JUDGMENTS)
    result = run_cli("pgkb", "eval", str(tmp_path / "judgments.csv"), "--modes", "keyword,vector",
                     "--k", "50", "--json", str(tmp_path / "out.json"), env=env)
    assert result.returncode == 0, result.stderr
    table = result.stdout
    for column in ("mode", "nDCG@10", "recall@10", "recall@50", "MRR", "p50 ms", "p95 ms", "queries"):
        assert column in table
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["collection"] == "evaluation" and written["k"] == 50
    assert list(written["modes"]) == ["keyword", "vector"]
    keyword_row = next(line for line in table.splitlines() if line.startswith("keyword"))
    assert f"{written['modes']['keyword']['mrr']:.3f}" in keyword_row
    assert written["modes"]["keyword"]["mrr"] == pytest.approx(0.8)

    health = run_cli("pgkb", "eval", "--health", "--queries", "10", "--json", "-", env=env)
    assert health.returncode == 0, health.stderr
    modes = json.loads(health.stdout)["modes"]
    assert modes["vector"]["queries"] == 10
    assert modes["vector"]["mrr"] > 0.6 and modes["keyword"]["mrr"] > 0.6


def test_pgkb_eval_usage_errors_exit_2_with_one_line(collection, tmp_path):
    env = {"PGKB_DATA_DIR": str(collection.data_dir), "PGKB_COLLECTION": collection.collection}
    (tmp_path / "bad.csv").write_text("query,document,grade\nbike,bicycles.md,x\n", encoding="utf-8")
    for args, message in [
        ([str(tmp_path / "bad.csv")], f"error: {tmp_path / 'bad.csv'}:2: field 'grade' must be a whole number"),
        ([str(tmp_path / "none.csv")], "no such file or folder"),
        ([], "give a judgments file or folder, or --health"),
        (["--health", str(tmp_path / "bad.csv")], "give a judgments file or folder, or --health"),
        (["--health", "--modes", "vector,fuzzy"], "--modes takes a comma list of vector, keyword, hybrid"),
    ]:
        result = run_cli("pgkb", "eval", *args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    missing = run_cli("pgkb", "eval", "--health", "--collection", "never-made", env=env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_a_beir_query_without_text_is_left_out_with_its_judgments(tmp_path, caplog):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "holiday"}\n{"_id": "q2", "text": ""}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta.md\t1\nq2\tb.md\t1\n")
    judged = load_beir(tmp_path)
    assert [(j.query_id, j.query, j.relevant) for j in judged] == [("q1", "holiday", {"a.md": 1})]
    assert "queries.jsonl:2: query 'q2' has no text; left out" in caplog.text
