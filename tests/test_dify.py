"""Dify's External Knowledge API on a real `pgkb serve`: the documentation's request and response
examples replayed, its error codes, and metadata_condition mapped onto the documents' metadata."""

from __future__ import annotations

import httpx
import pytest

from tests.serving import COLLECTION


def _retrieve(server, key: str | None, body: dict, authorization: str | None = None) -> httpx.Response:
    headers = {"Authorization": authorization if authorization is not None else f"Bearer {key}"}
    return httpx.post(f"{server.url}/retrieval", json=body, headers=headers, timeout=60)


def _request(query: str, top_k: int = 2, threshold: float = 0.0, **more) -> dict:
    return {"knowledge_id": COLLECTION, "query": query,
            "retrieval_setting": {"top_k": top_k, "score_threshold": threshold}, **more}


def test_the_documented_request_gets_records_of_content_score_title_and_metadata(served):
    server, keys, _ = served
    # Dify's example request, pointed at this knowledge base.
    response = _retrieve(server, keys["legal"], _request("per diem rate in Paris", top_k=2, threshold=0.0))
    assert response.status_code == 200, response.text
    records = response.json()["records"]
    assert len(records) == 2
    for record in records:
        assert set(record) == {"content", "score", "title", "metadata"}
        assert isinstance(record["metadata"], dict) and 0.0 <= record["score"] <= 1.0
    assert records[0]["title"] == "legal/travel-policy.pdf" and "Paris" in records[0]["content"]
    assert records[0]["metadata"]["citation"].startswith("legal/travel-policy.pdf, p. ")
    # score_threshold drops what scores below it; nothing left is an empty list, not an error.
    threshold = records[0]["score"]
    kept = _retrieve(server, keys["legal"], _request("per diem rate in Paris", top_k=10, threshold=threshold))
    assert [r["score"] for r in kept.json()["records"]] == [threshold]
    nothing = _retrieve(server, keys["legal"], _request("per diem rate in Paris", threshold=1.0))
    assert nothing.status_code == 200 and nothing.json() == {"records": []}


@pytest.mark.parametrize("authorization, status, code", [
    ("", 403, 1001), ("Token abc", 403, 1001), ("Bearer", 403, 1001),
    ("Bearer pgkb_000000000000_" + "x" * 43, 403, 1002), ("Bearer not-a-key", 403, 1002),
])
def test_authorization_errors_use_difys_codes(served, authorization, status, code):
    server, _, _ = served
    response = _retrieve(server, None, _request("travel"), authorization=authorization)
    assert response.status_code == status and response.json()["error_code"] == code
    assert response.json()["error_msg"]


def test_a_knowledge_base_that_does_not_exist_or_is_not_the_keys_is_2001(served):
    server, keys, _ = served
    for key, knowledge_id in ((keys["legal"], "no-such-knowledge"), (keys["other"], COLLECTION),
                              (keys["revoked"], COLLECTION)):
        response = _retrieve(server, key, {**_request("travel"), "knowledge_id": knowledge_id})
        expected = (403, 1002) if key == keys["revoked"] else (404, 2001)
        assert (response.status_code, response.json()["error_code"]) == expected
    assert _retrieve(server, keys["other"], _request("travel")).json()["error_msg"] == "The knowledge does not exist"


def test_the_keys_groups_bound_the_records(served):
    server, keys, _ = served
    for key, hidden in ((keys["legal"], "hr/salaries.docx"), (keys["hr"], "legal/travel-policy.pdf")):
        records = _retrieve(server, key, _request("salary bonus travel per diem", top_k=50)).json()["records"]
        assert records and hidden not in {r["title"] for r in records}


def _titles(server, key, condition: dict) -> set[str]:
    response = _retrieve(server, key, _request("salary travel holiday leave", top_k=50, metadata_condition=condition))
    assert response.status_code == 200, response.text
    return {r["title"] for r in response.json()["records"]}


def test_metadata_conditions_map_onto_the_documents_metadata(served):
    server, keys, _ = served
    admin = keys["admin"]
    every = {"legal/travel-policy.pdf", "hr/salaries.docx", "handbook.docx"}
    condition = {"conditions": [{"name": "department", "comparison_operator": "is", "value": "legal"}]}
    assert _titles(server, admin, condition) == {"legal/travel-policy.pdf"}
    # Not being "legal" includes having no department at all.
    condition["conditions"][0]["comparison_operator"] = "is not"
    assert _titles(server, admin, condition) == every - {"legal/travel-policy.pdf"}
    assert _titles(server, admin, {"conditions": [
        {"name": "department", "comparison_operator": "start with", "value": "le"}]}) == {"legal/travel-policy.pdf"}
    assert _titles(server, admin, {"conditions": [
        {"name": "secret_project", "comparison_operator": "not empty"}]}) == {"hr/salaries.docx"}
    assert _titles(server, admin, {"logical_operator": "or", "conditions": [
        {"name": "secret_project", "comparison_operator": "contains", "value": "alc"},
        {"name": ["department"], "comparison_operator": "in", "value": ["legal", "finance"]}]}) == every - {
        "handbook.docx"}
    # A filter on what only HR reads finds nothing for legal, rather than telling it exists.
    assert _titles(server, keys["legal"], {"conditions": [
        {"name": "secret_project", "comparison_operator": "is", "value": "falcon"}]}) == set()
    # Numbers and dates compare where the value reads as one; nowhere else is an error raised.
    assert _titles(server, admin, {"conditions": [
        {"name": "department", "comparison_operator": ">", "value": 3}]}) == set()
    assert _titles(server, admin, {"conditions": [
        {"name": "department", "comparison_operator": "after", "value": "2020-01-01"}]}) == set()


@pytest.mark.parametrize("body", [
    {"knowledge_id": COLLECTION, "query": "travel"},                                             # no retrieval_setting
    _request("travel", top_k=0),
    _request("travel", metadata_condition={"conditions": [{"name": "a", "comparison_operator": "like", "value": "x"}]}),
    _request("travel", metadata_condition={"conditions": [{"name": "a", "comparison_operator": ">", "value": "x"}]}),
    _request("travel", metadata_condition={"conditions": [{"name": "a", "comparison_operator": "before",
                                                           "value": "soon"}]}),
    _request("travel", metadata_condition={"conditions": [{"name": "a", "comparison_operator": "is"}]}),
    _request(""),
])
def test_malformed_requests_are_400_naming_the_problem(served, body):
    server, keys, _ = served
    response = _retrieve(server, keys["admin"], body)
    assert response.status_code == 400, response.text
    assert response.json()["error_msg"] and "Traceback" not in response.text
