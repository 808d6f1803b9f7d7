"""`pgkb serve` as a real server process on a loopback port, over the embedded PostgreSQL,
called with a real HTTP client: search, documents, uploads, keys and access control."""

from __future__ import annotations

import json
import os
import time

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from pgkb.settings import Settings
from store import Store
from tests.documents import write_docx, write_pdf
from tests.serving import COLLECTION, Server
from tests.test_access import _unit, write


def _search(client: httpx.Client, query: str, **body) -> httpx.Response:
    return client.post(f"/v1/collections/{COLLECTION}/search", json={"query": query, **body})


def _keys_of(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {hit["document_key"] for hit in response.json()["hits"]}


def test_health_and_readiness_need_no_key_and_everything_else_does(served):
    server, keys, _ = served
    with server.client(None) as anonymous:
        assert anonymous.get("/v1/health").json()["status"] == "ok"
        assert anonymous.get("/v1/ready").json() == {"status": "ready"}
        assert anonymous.get("/openapi.json").status_code == 200
        assert "pgkb API" in anonymous.get("/docs").text
    refusals = []
    for headers in ({}, {"Authorization": "Bearer pgkb_000000000000_" + "x" * 43}, {"Authorization": "Bearer nonsense"},
                    {"Authorization": keys["admin"]}, {"Authorization": f"Bearer {keys['revoked']}"},
                    {"X-Api-Key": keys["admin"]}):
        with httpx.Client(base_url=server.url, headers=headers) as client:
            for response in (client.get("/v1/collections"), _search(client, "travel"),
                             client.get(f"/v1/collections/{COLLECTION}/documents")):
                refusals.append((response.status_code, response.text))
    # Every failed authentication reads the same: nothing tells a revoked key from a made-up one.
    assert {status for status, _ in refusals} == {401} and len({body for _, body in refusals}) == 1


def test_search_returns_cited_hits_of_what_the_keys_groups_may_read(served):
    server, keys, _ = served
    with server.client(keys["legal"]) as legal, server.client(keys["hr"]) as hr, \
            server.client(keys["nobody"]) as nobody, server.client(keys["admin"]) as admin:
        response = _search(legal, "per diem rate in Paris", k=3)
        hit = response.json()["hits"][0]
        assert hit["document_key"] == "legal/travel-policy.pdf" and "Paris" in hit["text"]
        assert hit["citation"].startswith("legal/travel-policy.pdf, p. ") and "Per diem rates" in hit["citation"]
        assert hit["section_path"][-1] == "Per diem rates" and "path" not in hit
        everything = {"legal/travel-policy.pdf", "hr/salaries.docx", "handbook.docx"}
        for mode in ("vector", "keyword", "hybrid"):
            for group_by in (None, "document"):
                body = dict(k=100, mode=mode, group_by=group_by)
                assert _keys_of(_search(legal, "salary bonus travel holiday", **body)) <= {
                    "legal/travel-policy.pdf", "handbook.docx"}
                assert "hr/salaries.docx" in _keys_of(_search(hr, "salary bonus", **body))
                assert _keys_of(_search(nobody, "salary bonus travel holiday", **body)) <= {"handbook.docx"}
                assert _keys_of(_search(admin, "salary bonus travel holiday", **body)) <= everything
        # Filters on what only HR reads find nothing for legal: no hit, no count, no snippet.
        for filters in ({"metadata.secret_project": "falcon"}, {"source": "hr/salaries.docx"},
                        {"metadata.access": "hr"}):
            response = _search(legal, "salary", filters=filters, k=100)
            assert response.json()["hits"] == [], filters
            assert _keys_of(_search(hr, "salary", filters=filters)) == {"hr/salaries.docx"}, filters
        assert _keys_of(_search(legal, "travel", filters={"metadata.department": "legal", "page": {"gte": 1}})) == {
            "legal/travel-policy.pdf"}


def test_listings_and_counts_keep_to_what_the_key_may_read(served):
    server, keys, _ = served
    with server.client(keys["legal"]) as legal, server.client(keys["admin"]) as admin:
        (listed,) = legal.get("/v1/collections").json()
        assert listed["name"] == COLLECTION and listed["space"]["dims"] == 384
        (everything,) = admin.get("/v1/collections").json()
        assert listed["documents"] == 2 and everything["documents"] == 3 and listed["chunks"] < everything["chunks"]
        documents = legal.get(f"/v1/collections/{COLLECTION}/documents").json()
        assert [d["key"] for d in documents["documents"]] == ["handbook.docx", "legal/travel-policy.pdf"]
        assert documents["total"] == 2
        second = legal.get(f"/v1/collections/{COLLECTION}/documents", params={"limit": 1, "offset": 1}).json()
        assert second == {"documents": documents["documents"][1:], "total": 2}  # a page, counted whole
        assert legal.get(f"/v1/collections/{COLLECTION}/documents/legal/travel-policy.pdf").json()["chunks"] > 0
        hidden = legal.get(f"/v1/collections/{COLLECTION}/documents/hr/salaries.docx")
        missing = legal.get(f"/v1/collections/{COLLECTION}/documents/hr/nothing.docx")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"].replace("salaries", "nothing") == missing.json()["detail"]


def test_a_key_sees_only_its_collections_and_its_scope(served):
    server, keys, _ = served
    with server.client(keys["other"]) as other, server.client(keys["legal"]) as legal:
        assert other.get("/v1/collections").json() == []  # "elsewhere" does not exist yet
        not_mine = _search(other, "travel")
        unknown = legal.post("/v1/collections/nonexistent/search", json={"query": "travel"})
        assert not_mine.status_code == unknown.status_code == 404
        assert not_mine.json()["detail"].replace(COLLECTION, "nonexistent") == unknown.json()["detail"]
        # A read key may not upload or delete.
        upload = legal.post(f"/v1/collections/{COLLECTION}/documents", files={"files": ("a.md", b"# A\n\ntext")})
        delete = legal.delete(f"/v1/collections/{COLLECTION}/documents/handbook.docx")
        assert upload.status_code == delete.status_code == 403
        assert legal.get(f"/v1/collections/{COLLECTION}/documents/handbook.docx").status_code == 200


def _wait_for(client: httpx.Client, job: str) -> dict:
    deadline = time.monotonic() + 300
    while (state := client.get(f"/v1/jobs/{job}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    return state


def test_uploaded_files_are_ingested_as_a_job_then_searched_listed_and_deleted(served, tmp_path, data_dir):
    server, keys, _ = served
    write_pdf(tmp_path / "expenses.pdf", "Expenses", [(1, "Mileage", ["Mileage is paid at 30 cents per kilometre "
                                                                      "driven in a private car."])])
    write_docx(tmp_path / "onboarding.docx", "Onboarding", [(1, "First day", ["On the first day the "
                                                                               "onboarding buddy shows the canteen."])])
    files = [("files", ("uploads/expenses.pdf", (tmp_path / "expenses.pdf").read_bytes())),
             ("files", ("uploads/onboarding.docx", (tmp_path / "onboarding.docx").read_bytes())),
             ("files", ("uploads/broken.pdf", b"%PDF-1.7\n" + os.urandom(3000)))]
    with server.client(keys["ingest"]) as uploader, server.client(keys["hr"]) as hr, \
            server.client(keys["legal"]) as legal:
        response = uploader.post(f"/v1/collections/{COLLECTION}/documents", files=files, data={"access": "legal"})
        assert response.status_code == 202, response.text
        assert response.json()["files"] == ["uploads/broken.pdf", "uploads/expenses.pdf",
                                            "uploads/onboarding.docx"] or len(response.json()["files"]) == 3
        job = _wait_for(uploader, response.json()["job"])
        assert job["status"] == "succeeded", job
        outcomes = {f["key"]: f["outcome"] for f in job["report"]["files"]}
        assert outcomes == {"uploads/expenses.pdf": "ingested", "uploads/onboarding.docx": "ingested",
                            "uploads/broken.pdf": "failed"}
        assert str(data_dir) not in json.dumps(job)  # the server's folders stay on the server
        assert hr.get(f"/v1/jobs/{response.json()['job']}").status_code == 404  # a read key: not its job
        assert _keys_of(_search(legal, "mileage per kilometre", k=1)) == {"uploads/expenses.pdf"}
        assert "uploads/expenses.pdf" not in _keys_of(_search(hr, "mileage per kilometre", k=100))

        # A second server process on the same database sees the first one's writes at once.
        second = Server(data_dir, server.log.with_name("second.log"))
        try:
            with second.client(keys["legal"]) as legal_there:
                assert _keys_of(_search(legal_there, "mileage per kilometre", k=1)) == {"uploads/expenses.pdf"}
        finally:
            assert second.stop()

        deleted = uploader.delete(f"/v1/collections/{COLLECTION}/documents/uploads/expenses.pdf")
        assert deleted.status_code == 200 and deleted.json()["removed"] == ["uploads/expenses.pdf"]
        assert "uploads/expenses.pdf" not in _keys_of(_search(legal, "mileage per kilometre", k=100))
        assert uploader.delete(f"/v1/collections/{COLLECTION}/documents/uploads/expenses.pdf").status_code == 404
        # The uploader (legal) may not delete, nor replace by uploading, what only HR reads.
        assert uploader.delete(f"/v1/collections/{COLLECTION}/documents/hr/salaries.docx").status_code == 404
        replace = uploader.post(f"/v1/collections/{COLLECTION}/documents",
                                files={"files": ("hr/salaries.docx", b"overwritten")})
        assert replace.status_code == 409
        assert "hr/salaries.docx" in _keys_of(_search(hr, "salary band engineers"))


@pytest.mark.parametrize("request_kwargs, status", [
    (dict(content=b"{not json", headers={"content-type": "application/json"}), 422),
    (dict(json={"query": "travel", "filters": {"bogus": 1}}), 400),
    (dict(json={"query": "travel", "filters": {"metadata.x'); DROP TABLE chunks; --": "1"}}), 400),
    (dict(json={"query": "travel", "filters": {"page": {"gte": "1 OR 1=1"}}}), 400),
    (dict(json={"query": "travel", "filters": {"source": {"like": "%"}}}), 400),
    (dict(json={"query": "travel", "k": 0}), 422),
    (dict(json={"query": "travel", "k": 100_000}), 422),
    (dict(json={"query": "travel", "mode": "magic"}), 422),
    (dict(json={"query": "travel", "group_by": "author"}), 422),
    (dict(json={"query": "travel", "extra": 1}), 422),
    (dict(json={"query": ""}), 400),
    (dict(json={"query": "a\x00b"}), 400),
    (dict(json={"query": "' OR 1=1; DROP TABLE chunks; --"}), 200),
    (dict(json={"query": "x" * 70_000}), 413),
])
def test_bad_requests_are_4xx_naming_the_problem_and_injections_stay_values(served, request_kwargs, status):
    server, keys, _ = served
    with server.client(keys["admin"]) as admin:
        response = admin.post(f"/v1/collections/{COLLECTION}/search", **request_kwargs)
        assert response.status_code == status, response.text
        assert "Traceback" not in response.text and "SELECT" not in response.text
        if status == 200:  # the injection was a filter value or query text, matching nothing special
            assert all(hit["document_key"] for hit in response.json()["hits"])
        assert admin.get(f"/v1/collections/{COLLECTION}/documents").json()["total"] >= 3  # nothing dropped


@pytest.mark.parametrize("name", ["../escape.md", "/etc/passwd", "a/../../b.md", ".hidden.md", "pgkb.toml",
                                  "notes.md.meta.json", ""])
def test_upload_names_that_could_escape_or_retag_are_refused(served, name):
    server, keys, _ = served
    with server.client(keys["ingest"]) as uploader:
        response = uploader.post(f"/v1/collections/{COLLECTION}/documents", files={"files": (name, b"# x\n\ny")})
        assert response.status_code in (400, 422), response.text


def test_upload_limits_are_4xx(served):
    server, keys, _ = served
    with server.client(keys["ingest"]) as uploader:
        too_many = [("files", (f"f{i}.md", b"# x\n\ny")) for i in range(5)]
        assert uploader.post(f"/v1/collections/{COLLECTION}/documents", files=too_many).status_code == 400
        too_big = {"files": ("big.md", b"x" * 3_100_000)}
        response = uploader.post(f"/v1/collections/{COLLECTION}/documents", files=too_big)
        assert response.status_code == 413 and "3,000,000 bytes" in response.text
        assert uploader.post(f"/v1/collections/{COLLECTION}/documents", data={"access": "x"}).status_code == 400
        bad_tags = uploader.post(f"/v1/collections/{COLLECTION}/documents", files={"files": ("a.md", b"# a")},
                                 data={"tags": "[1, 2]"})
        assert bad_tags.status_code == 400 and "JSON object" in bad_tags.text


def test_no_key_appears_in_the_log_or_the_database_in_clear(served):
    server, keys, settings = served
    with server.client(keys["legal"]) as legal:
        _search(legal, "travel")
    with server.client(keys["revoked"]) as revoked:
        revoked.get("/v1/collections")
    log = server.log.read_text()
    store = Store.open(settings)
    try:
        with store.engine.connect() as conn:
            dump = json.dumps([list(map(str, row)) for row in conn.execute(text("SELECT * FROM api_keys"))])
    finally:
        store.close()
    for secret in keys.values():
        assert secret not in log and secret not in dump
        assert secret[len("pgkb_123456789abc_"):] not in log + dump  # nor its secret part


@pytest.fixture(scope="module")
def mostly_hidden(data_dir, served, embedder):
    """20,000 chunks in 200 documents, all holding the query's words; 99% of them only group B reads."""
    server, _, _ = served
    settings = Settings(data_dir=data_dir, collection="served-mostly-hidden")
    store = Store.open(settings)
    collection = store.collection(settings.collection, embedder.space.to_dict())
    rng = np.random.default_rng(5)
    with store.bulk_load(collection):
        for d in range(200):
            write(store, collection, f"doc{d:03}.txt", [f"record {i} of ledger {d} 账本" for i in range(100)],
                  _unit(rng.normal(size=(100, collection.dims))),
                  tags={"access": ["A" if d in (17, 123) else "B"], "project": "a" if d in (17, 123) else "b"})
    store.analyze()
    key = store.create_key("group A", "read", [settings.collection], ["A"]).secret
    store.close()
    return server, key, settings.collection


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_a_restricted_search_over_http_returns_k_readable_hits_when_99_percent_are_hidden(mostly_hidden, mode):
    server, key, collection = mostly_hidden
    with server.client(key) as client:
        (listed,) = client.get("/v1/collections").json()
        assert (listed["documents"], listed["chunks"]) == (2, 200)
        for query in ("ledger record", "账本"):
            for k in (10, 100):
                for group_by in (None, "document"):
                    response = client.post(f"/v1/collections/{collection}/search",
                                           json={"query": query, "k": k, "mode": mode, "group_by": group_by})
                    hits = response.json()["hits"]
                    assert len(hits) == (k if group_by is None else 2), (query, k, group_by)
                    assert {h["document_key"] for h in hits} <= {"doc017.txt", "doc123.txt"}
            hidden = client.post(f"/v1/collections/{collection}/search",
                                 json={"query": query, "k": 100, "mode": mode, "filters": {"metadata.project": "b"}})
            assert hidden.json()["hits"] == []


def test_keys_made_listed_and_revoked_on_the_command_line_work_at_once(served, data_dir):
    from tests.conftest import run_cli

    server, _, _ = served
    made = run_cli("pgkb", "keys", "create", "--collection", COLLECTION, "--groups", "hr", "--name", "cli key",
                   "--data-dir", str(data_dir))
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    key_id = secret.split("_")[1]
    assert "not shown again" in made.stderr and secret not in made.stderr
    with server.client(secret) as client:
        assert "hr/salaries.docx" in _keys_of(_search(client, "salary band engineers"))
        listed = run_cli("pgkb", "keys", "list", "--json", "--data-dir", str(data_dir))
        (entry,) = [k for k in json.loads(listed.stdout) if k["id"] == key_id]
        assert entry["groups"] == ["hr"] and entry["scope"] == "read" and entry["revoked_at"] is None
        assert secret not in listed.stdout and secret[len("pgkb_123456789abc_"):] not in listed.stdout
        assert run_cli("pgkb", "keys", "revoke", key_id, "--data-dir", str(data_dir)).returncode == 0
        assert _search(client, "salary").status_code == 401
    refused = run_cli("pgkb", "keys", "create", "--collection", COLLECTION, "--scope", "owner",
                      "--data-dir", str(data_dir))
    assert refused.returncode == 2 and "--scope" in refused.stderr
    unknown = run_cli("pgkb", "keys", "revoke", "000000000000", "--data-dir", str(data_dir))
    assert unknown.returncode == 2 and "no API key '000000000000'" in unknown.stderr


def test_a_collection_that_hides_unlabelled_documents_hides_them_from_running_servers(served, data_dir):
    from tests.conftest import run_cli

    server, keys, _ = served
    with server.client(keys["legal"]) as legal:
        assert "handbook.docx" in _keys_of(_search(legal, "annual leave holiday", k=100))
        try:
            assert run_cli("pgkb", "access", COLLECTION, "nobody", "--data-dir", str(data_dir)).returncode == 0
            assert "handbook.docx" not in _keys_of(_search(legal, "annual leave holiday", k=100))
            assert "handbook.docx" not in {d["key"] for d in legal.get(
                f"/v1/collections/{COLLECTION}/documents").json()["documents"]}
        finally:
            assert run_cli("pgkb", "access", COLLECTION, "public", "--data-dir", str(data_dir)).returncode == 0
        assert "handbook.docx" in _keys_of(_search(legal, "annual leave holiday", k=100))


def test_search_url_asks_a_running_server_as_its_key(served):
    from tests.conftest import run_cli

    server, keys, _ = served
    answered = run_cli("search", "per diem rate in Paris", "-k", "2", "-c", COLLECTION, "--url", server.url,
                       "--json", env={"PGKB_API_KEY": keys["legal"]})
    assert answered.returncode == 0, answered.stderr
    hits = json.loads(answered.stdout)
    assert hits[0]["citation"].startswith("legal/travel-policy.pdf, p. ") and len(hits) == 2
    # The key's groups bound the hits, as over HTTP.
    hidden = run_cli("search", "salary bands engineers", "-c", COLLECTION, "--url", server.url, "--json",
                     env={"PGKB_API_KEY": keys["legal"]})
    assert "hr/salaries.docx" not in hidden.stdout
    no_key = run_cli("search", "travel", "-c", COLLECTION, "--url", server.url)
    assert no_key.returncode == 2 and "PGKB_API_KEY" in no_key.stderr
    wrong_key = run_cli("search", "travel", "-c", COLLECTION, "--url", server.url,
                        env={"PGKB_API_KEY": keys["revoked"]})
    assert wrong_key.returncode == 2 and "refused the API key" in wrong_key.stderr
    assert keys["revoked"] not in wrong_key.stderr
    local_only = run_cli("search", "travel", "--url", server.url, "--explain", env={"PGKB_API_KEY": keys["legal"]})
    assert local_only.returncode == 2 and "--explain" in local_only.stderr


@pytest.mark.parametrize("concurrency", [1, 3])
def test_the_api_runs_at_most_its_search_concurrency_at_once(served, data_dir, concurrency):
    """Searches beyond the cores only contend for them: the others wait for a turn."""
    import threading

    from serve.app import Service

    service = Service(Settings(data_dir=data_dir, collection=COLLECTION, search_concurrency=concurrency))
    kb = service.knowledge_bases.get(service.settings, COLLECTION)
    inside, most, lock = [0], [0], threading.Lock()
    embed = kb.embedder.embed_queries

    def slow_embed(texts):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.3)
        with lock:
            inside[0] -= 1
        return embed(texts)

    kb.embedder.embed_queries = slow_embed
    try:
        searches = [threading.Thread(target=service.search, args=(COLLECTION, f"travel {i}")) for i in range(6)]
        for thread in searches:
            thread.start()
        for thread in searches:
            thread.join()
    finally:
        service.close()
    assert most[0] == concurrency
