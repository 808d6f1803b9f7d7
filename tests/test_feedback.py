"""Feedback on search hits and the training data exported from it: stored with the query
masked, listed, found again after a re-ingest, exported as sentence-transformers rows, from
Python, the `pgkb` command line (real processes) and the served API (a real server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from ingest import ingest
from pgkb.errors import QueryError
from pgkb.settings import Settings
from retrieval import KnowledgeBase
from retrieval.training import Pair, Passage, _sentence_pair, export_training_data, near_copies
from store import UnknownChunk
from store.tables import chunks, feedback
from tests.serving import COLLECTION
from tests.test_manage import pgkb

# Personal data a user may type into a query: a name, an e-mail address, a mobile number.
NAME, EMAIL, PHONE = "欧阳娜娜", "wang.fang@corp-mail.cn", "13912345678"
PERSONAL_QUERY = f"联系人：{NAME}，邮箱 {EMAIL}，电话 {PHONE}：差旅报销怎么办理？"

DOCUMENTS = {
    "travel.md": (
        "# Travel claims\n\nSend your expense claim through the finance portal within thirty days. Attach a "
        "receipt for every cost above twenty-five euros. Your manager approves the claim before finance pays it.\n\n"
        "# Per diem rates\n\nThe daily allowance is sixty euros in Berlin and eighty euros in London. Meals paid "
        "by a client are deducted from the allowance at the published rates.\n\n"
        "# Company cars\n\nPool cars are booked in the facilities calendar a day ahead. Fuel is paid with the "
        "fuel card kept in the glovebox of each car.\n"),
    "garden.md": (
        "# Pruning apple trees\n\nPrune the apple trees in February, before the buds begin to swell. Cut out "
        "dead wood first and then the branches that cross each other.\n\n"
        "# Watering the vegetable beds\n\nWater the vegetable beds early in the morning during dry weeks. A "
        "thick layer of mulch keeps the soil moist for several days.\n"),
    "报销.md": (
        "# 差旅费用报销\n\n员工出差回来后三十天内通过财务系统提交报销申请。每一笔超过一百元的费用都需要附上发票。"
        "部门经理审批之后财务部门随工资一起支付。\n\n"
        "# 年度休假安排\n\n全职员工每年享有十五天带薪年假。请至少提前两周在人事系统中向经理申请休假。"
        "未休完的年假可以顺延到下一年的第一季度。\n"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("feedback-docs")
    for name, body in DOCUMENTS.items():
        (folder / name).write_text(body, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def collection(data_dir, embedder, folder) -> Settings:
    """English and Chinese documents, ingested (masked, chunked, embedded) as a user would."""
    settings = Settings(data_dir=data_dir, collection="feedback")
    report = ingest(folder, settings, embedder=embedder)
    assert report.count("ingested") == len(DOCUMENTS), report.to_dict()
    return settings


@pytest.fixture
def kb(collection, embedder):
    with KnowledgeBase(collection) as kb:
        kb.embedder = embedder
        yield kb
    with kb.store.engine.begin() as conn:  # each test starts without feedback
        conn.execute(feedback.delete().where(feedback.c.collection_id == kb.collection.id))


def _hit(kb: KnowledgeBase, query: str, document_key: str):
    return next(hit for hit in kb.search(query, k=20) if hit.document_key == document_key)


def _stored_rows(kb: KnowledgeBase) -> list[str]:
    """Every feedback row, all its columns, as text."""
    with kb.store.engine.connect() as conn:
        return [json.dumps(list(row), ensure_ascii=False, default=str)
                for row in conn.execute(select(feedback).where(feedback.c.collection_id == kb.collection.id))]


def test_feedback_is_stored_with_its_query_masked_and_listed(kb):
    hit = _hit(kb, "how do I claim travel expenses", "报销.md")
    recorded = kb.feedback(PERSONAL_QUERY, hit.chunk_id, "right", rank=3, given_by="support desk")
    assert recorded.chunk_id == hit.chunk_id and recorded.document_key == "报销.md" and recorded.rank == 3
    assert "<CN_NAME>" in recorded.query and "<EMAIL_ADDRESS>" in recorded.query and "差旅报销" in recorded.query
    # The name, the address and the number never reach the table, in any column.
    rows = _stored_rows(kb)
    assert rows and not any(value in row for row in rows for value in (NAME, EMAIL, PHONE, "13912")), rows
    listed, total = kb.store.list_feedback("feedback")
    assert total == 1 and listed == [recorded] and "text" not in recorded.to_dict()


def test_feedback_is_refused_for_a_chunk_not_there_or_not_readable_and_bad_values(kb):
    hit = _hit(kb, "apple trees", "garden.md")
    for chunk_id in (10**12, -1, 2**70):
        with pytest.raises(UnknownChunk, match=f"no chunk {chunk_id}"):
            kb.feedback("apple trees", chunk_id, "good")
    # A chunk of a document the groups may not read is refused as one that does not exist.
    kb.store.set_unlabelled("feedback", "nobody")
    try:
        with pytest.raises(UnknownChunk):
            kb.feedback("apple trees", hit.chunk_id, "good", principals=["legal"])
    finally:
        kb.store.set_unlabelled("feedback", "public")
    for arguments, named in (((hit.chunk_id, "great"), "verdict"), (("7", "good"), "chunk_id"),
                             ((hit.chunk_id, "good", 0), "rank"), ((hit.chunk_id, "bad", None, "x" * 300), "given_by")):
        with pytest.raises(QueryError, match=named):
            kb.feedback("apple trees", *arguments)
    with pytest.raises(QueryError, match="empty"):
        kb.feedback("  ", hit.chunk_id, "good")
    assert kb.store.list_feedback("feedback") == ([], 0)


def test_feedback_finds_its_chunk_again_after_a_reingest(kb, collection, embedder, folder):
    hit = _hit(kb, "apple trees in February", "garden.md")
    kb.feedback("when to prune apple trees", hit.chunk_id, "good")
    # The documents are ingested again with other options: new chunks (new ids), the same texts.
    report = ingest(folder, Settings(data_dir=collection.data_dir, collection="feedback", chunk_tokens=300),
                    embedder=embedder)
    assert report.count("updated") == len(DOCUMENTS)
    (listed,), _ = kb.store.list_feedback("feedback")
    assert listed.chunk_id is None and listed.document_key == "garden.md"
    (judged,) = kb.store.judged_chunks("feedback")
    assert judged.chunk_id != hit.chunk_id and judged.text == hit.text and judged.verdict == "good"


def _rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_writes_feedback_and_label_free_rows_with_n_hard_negatives(kb, collection, tmp_path):
    claims = _hit(kb, "expense claim receipt", "travel.md")
    per_diem = _hit(kb, "daily allowance Berlin", "travel.md")
    cars = _hit(kb, "pool cars fuel card", "travel.md")
    kb.feedback("how do I get my travel costs back", claims.chunk_id, "good", rank=1)
    kb.feedback("how do I get my travel costs back", cars.chunk_id, "bad", rank=2)
    kb.feedback("daily allowance for a trip to London", per_diem.chunk_id, "right")
    out = tmp_path / "train.jsonl"
    written = export_training_data(collection, "feedback", out, negatives=2, label_free=6, seed=1)
    rows = _rows(out)
    assert written == len(rows) == 2 + 6
    for row in rows:
        assert list(row) == ["anchor", "positive", "negative_1", "negative_2"]
        assert row["positive"] not in (row["negative_1"], row["negative_2"]) and row["negative_1"] != row["negative_2"]
        assert all(isinstance(value, str) and value.strip() for value in row.values())
    first, second = rows[:2]
    assert first["anchor"] == "how do I get my travel costs back" and first["positive"] == claims.text
    assert first["negative_1"] == cars.text  # the bad hit is its query's first negative
    assert second["anchor"] == "daily allowance for a trip to London" and second["positive"] == per_diem.text
    # Mined negatives are never of the positive's own section.
    texts = {hit.text: hit for hit in kb.search("travel claims allowance cars apple tree 报销 休假", k=100)}
    for row in rows[:2]:
        positive = texts[row["positive"]]
        for negative in (row["negative_1"], row["negative_2"]):
            if negative in texts:
                assert (texts[negative].document_key, texts[negative].section_path) != (
                    positive.document_key, positive.section_path)
    # The same seed draws the same rows; another seed others.
    again = tmp_path / "again.jsonl"
    export_training_data(collection, "feedback", again, negatives=2, label_free=6, seed=1)
    assert again.read_text() == out.read_text()
    export_training_data(collection, "feedback", again, negatives=2, label_free=6, seed=2)
    assert again.read_text() != out.read_text()


def test_label_free_rows_are_a_heading_or_a_sentence_taken_out_of_a_chunk(kb, collection, tmp_path):
    with kb.store.engine.connect() as conn:
        chunk_texts = conn.execute(select(chunks.c.text, chunks.c.section_path)
                                   .where(chunks.c.collection_id == kb.collection.id)).all()
    out = tmp_path / "label-free.jsonl"
    written = export_training_data(collection, "feedback", out, negatives=1, label_free=100)
    rows = _rows(out)
    assert written == len(rows) and len(rows) >= 6
    kinds = set()
    for row in rows:
        anchor, positive = row["anchor"], " ".join(row["positive"].split())
        # A heading's positive is its chunk, the heading taken off; a sentence's, the chunk without the sentence.
        headed = [text for text, path in chunk_texts
                  if path and path[-1] == anchor and " ".join(text.removeprefix(anchor).split()) == positive]
        taken_out = [text for text, _ in chunk_texts
                     if anchor in text and " ".join(text.replace(anchor, "", 1).split()) == positive]
        assert headed or taken_out, row
        chinese = any("\u4e00" <= c <= "\u9fff" for c in anchor)
        kinds.add(("heading" if headed else "sentence", "zh" if chinese else "en"))
    assert {("sentence", "en"), ("sentence", "zh"), ("heading", "en"), ("heading", "zh")} <= kinds


def test_a_sentence_taken_out_leaves_the_rest_of_the_chunk_as_the_positive():
    import random

    english = Passage(1, "Prune the apple trees in February, before the buds swell. Cut out all the dead wood "
                         "first and then the crossing branches.", "garden.md", ("Pruning",))
    chinese = Passage(2, "员工出差回来后三十天内通过财务系统提交报销申请。每一笔超过一百元的费用都需要附上发票。",
                      "报销.md", ("差旅费用报销",))
    pairs = {passage.chunk_id: _sentence_pair(passage, random.Random(0), set()) for passage in (english, chinese)}
    assert {(pair.anchor, pair.positive.text) for pair in pairs.values() if pair} <= {
        ("Prune the apple trees in February, before the buds swell.",
         "Cut out all the dead wood first and then the crossing branches."),
        ("Cut out all the dead wood first and then the crossing branches.",
         "Prune the apple trees in February, before the buds swell."),
        ("员工出差回来后三十天内通过财务系统提交报销申请。", "每一笔超过一百元的费用都需要附上发票。"),
        ("每一笔超过一百元的费用都需要附上发票。", "员工出差回来后三十天内通过财务系统提交报销申请。"),
    }
    assert all(pair is not None and pair.answers == {pair.positive.chunk_id} for pair in pairs.values())
    assert near_copies("The fuel card is in the glovebox.", "the fuel card is in the  glovebox") and not near_copies(
        "The fuel card is in the glovebox.", "Prune the apple trees in February.")
    assert Pair("q", english).negatives == ()


def test_the_pgkb_feedback_and_training_data_commands(kb, collection, tmp_path):
    hit = _hit(kb, "annual leave days", "报销.md")
    added = pgkb(collection, "feedback", "add", "-c", "feedback", "--query", PERSONAL_QUERY, "--chunk",
                 str(hit.chunk_id), "--verdict", "good", "--rank", "2", "--given-by", "cli test")
    assert added.returncode == 0, added.stderr
    assert "<EMAIL_ADDRESS>" in added.stdout and EMAIL not in added.stdout + added.stderr
    listed = pgkb(collection, "feedback", "list", "-c", "feedback", "--json")
    (row,) = json.loads(listed.stdout)
    assert row["chunk_id"] == hit.chunk_id and row["verdict"] == "good" and row["rank"] == 2
    assert row["given_by"] == "cli test" and NAME not in row["query"] and PHONE not in row["query"]
    table = pgkb(collection, "feedback", "list", "-c", "feedback")
    assert table.returncode == 0 and "报销.md" in table.stdout and "cli test" in table.stdout
    out = tmp_path / "cli.jsonl"
    exported = pgkb(collection, "training-data", "export", "-c", "feedback", "--out", str(out), "--negatives", "2",
                    "--label-free", "3")
    assert exported.returncode == 0, exported.stderr
    assert f"wrote 4 training row(s) with 2 negative(s) each to {out}" in exported.stdout
    assert [list(r) for r in _rows(out)] == [["anchor", "positive", "negative_1", "negative_2"]] * 4
    # Bad input: one line naming the problem, exit 2, no traceback.
    for args, named in ((["feedback", "add", "-c", "feedback", "--query", "q", "--chunk", "999999999",
                          "--verdict", "bad"], "no chunk 999999999"),
                        (["training-data", "export", "-c", "feedback", "--out", str(tmp_path / "no" / "x.jsonl")],
                         "cannot write training data"),
                        (["training-data", "export", "-c", "feedback", "--out", "x", "--negatives", "-1"],
                         "--negatives")):
        failed = pgkb(collection, *args)
        assert failed.returncode == 2 and named in failed.stderr and "Traceback" not in failed.stderr, failed.stderr


# -- the served API (tests/serving.py: legal, hr and public documents; keys of every kind) ----------------

def _chunk_of(server, keys, query: str, document_key: str) -> int:
    with server.client(keys["admin"]) as admin:
        hits = admin.post(f"/v1/collections/{COLLECTION}/search", json={"query": query, "k": 20}).json()["hits"]
    return next(hit["chunk_id"] for hit in hits if hit["document_key"] == document_key)


def test_the_feedback_endpoint_honours_keys_scopes_and_readers(served):
    server, keys, _ = served
    path = f"/v1/collections/{COLLECTION}/feedback"
    public = _chunk_of(server, keys, "annual leave holiday", "handbook.docx")
    hr_only = _chunk_of(server, keys, "salary band engineers", "hr/salaries.docx")
    body = {"query": f"holiday days for {EMAIL}", "chunk_id": public, "verdict": "good", "rank": 1}
    with server.client(None) as anonymous:
        assert anonymous.post(path, json=body).status_code == 401
        assert anonymous.get(path).status_code == 401
    with server.client(keys["other"]) as other, server.client(keys["legal"]) as legal:
        not_mine = other.post(path, json=body)
        unknown = legal.post("/v1/collections/nonexistent/feedback", json=body)
        assert not_mine.status_code == unknown.status_code == 404
        # A chunk only HR reads is, to a legal key, a chunk that does not exist.
        hidden = legal.post(path, json={**body, "chunk_id": hr_only})
        missing = legal.post(path, json={**body, "chunk_id": 10**12})
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"].replace(str(hr_only), "N") == missing.json()["detail"].replace(str(10**12), "N")
        assert legal.post(path, json={**body, "verdict": "great"}).status_code == 422
        assert legal.post(path, json={**body, "query": " "}).status_code == 400
        given = legal.post(path, json=body)
        assert given.status_code == 201, given.text
        assert given.json()["query"] == "holiday days for <EMAIL_ADDRESS>"
        assert legal.get(path).status_code == 403  # listing is an admin's
    with server.client(keys["hr"]) as hr:
        assert hr.post(path, json={**body, "chunk_id": hr_only, "verdict": "bad", "rank": 4}).status_code == 201
    with server.client(keys["admin"]) as admin:
        listed = admin.get(path, params={"limit": 1}).json()
        assert listed["total"] == 2 and len(listed["feedback"]) == 1
        first = listed["feedback"][0]
        assert first["chunk_id"] == public and first["given_by"].startswith("key:") and EMAIL not in json.dumps(listed)
