"""Searches spread over DATABASE_URL_REPLICAS, and fall back to the primary when a replica is
down or behind the collection's last ingest run; writes go to the primary.

Two real embedded servers: the primary, and a replica loaded with the same folder (the same
collection and run ids); the replica's chunk texts are marked so that a hit says which answered.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from ingest import ingest
from pgkb.settings import Settings
from retrieval import KnowledgeBase
from store import resolve_url
from tests.conftest import POLICY_SECTIONS
from tests.documents import write_pdf

MARK = "REPLICA "


@pytest.fixture(scope="module")
def servers(reachable_tmp_path_factory, tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("docs")
    write_pdf(folder / "policy.pdf", "Travel Policy", POLICY_SECTIONS)
    primary, replica = reachable_tmp_path_factory("primary"), reachable_tmp_path_factory("replica")
    for data_dir in (primary, replica):
        ingest(folder, Settings(data_dir=data_dir, collection="kb"), embedder=embedder)
    replica_url = resolve_url(Settings(data_dir=replica))
    engine = create_engine(replica_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE chunks SET text = :mark || text"), {"mark": MARK})
    engine.dispose()
    return folder, primary, replica_url


def answered_by_replica(settings: Settings, embedder) -> bool:
    with KnowledgeBase(settings) as kb:
        kb._embedder = embedder
        hits = kb.search("expense claim receipts", k=3)
    assert hits
    return all(hit.text.startswith(MARK) for hit in hits)


def test_a_replica_that_is_down_leaves_searches_to_the_primary(servers, embedder):
    _, primary, replica_url = servers
    down = "postgresql://pgkb@127.0.0.1:9/postgres"  # nothing listens there
    settings = Settings(data_dir=primary, collection="kb", database_url_replicas=f"{down},{replica_url}")
    assert answered_by_replica(settings, embedder)  # the one that is up
    alone = Settings(data_dir=primary, collection="kb", database_url_replicas=down)
    assert not answered_by_replica(alone, embedder)


def test_searches_go_to_an_up_to_date_replica_else_to_the_primary(servers, embedder):
    folder, primary, replica_url = servers
    settings = Settings(data_dir=primary, collection="kb", database_url_replicas=replica_url)
    assert answered_by_replica(settings, embedder)

    # A run on the primary (with replicas configured: it writes there) puts the replica behind
    # (the last test of the module: the replica stays behind).
    report = ingest(folder, settings, embedder=embedder, force=True)
    assert report.status == "succeeded"
    assert not answered_by_replica(settings, embedder)
