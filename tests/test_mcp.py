"""The MCP server driven by the SDK's own client: over stdio (`pgkb mcp` as a subprocess) and
over streamable HTTP (/mcp of a real `pgkb serve`), with its keys and access control."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import ROOT
from tests.serving import COLLECTION

TOOLS = {"search", "list_collections", "get_context"}


def _http(server, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return Client(streamable_http_client(f"{server.url}/mcp", http_client=httpx2.AsyncClient(headers=headers)))


def _structured(result) -> object:
    assert not result.is_error, result
    return json.loads(result.content[0].text) if result.structured_content is None else result.structured_content


async def _search(client: Client, query: str, **arguments) -> list[dict]:
    found = _structured(await client.call_tool("search", {"query": query, "collection": COLLECTION, **arguments}))
    return found["result"] if isinstance(found, dict) and "result" in found else found


def test_over_stdio_an_agent_lists_tools_searches_and_reads_around_a_hit(served, data_dir):
    async def run():
        parameters = StdioServerParameters(
            command=str(Path(sys.executable).parent / "pgkb"), args=["mcp", "--data-dir", str(data_dir)],
            env={**os.environ}, cwd=str(ROOT))
        async with Client(parameters) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == TOOLS
            assert "citation" in tools["search"].description
            hits = await _search(client, "per diem rate in Paris", k=3)
            assert hits[0]["citation"].startswith("legal/travel-policy.pdf, p. ") and "Paris" in hits[0]["text"]
            # The local user reads everything, HR's documents too.
            assert any("hr/salaries.docx" in h["citation"] for h in await _search(client, "salary bands", k=10))
            around = _structured(await client.call_tool("get_context", {
                "chunk_id": hits[0]["chunk_id"], "collection": COLLECTION, "before": 1, "after": 1}))
            ids = [p["chunk_id"] for p in around["passages"]]
            assert hits[0]["chunk_id"] in ids and around["document"] == "legal/travel-policy.pdf"
            bad = await client.call_tool("search", {"query": "x", "collection": "no-such-collection"})
            assert bad.is_error and "no collection 'no-such-collection'" in bad.content[0].text

    asyncio.run(run())


def test_over_http_a_key_is_needed_and_its_groups_bound_what_tools_return(served):
    server, keys, _ = served

    async def run():
        for key in (None, "pgkb_000000000000_" + "x" * 43, keys["revoked"]):
            with pytest.raises(ExceptionGroup) as refused:  # the transport's 401, in the SDK's task groups
                async with _http(server, key) as client:
                    await client.list_tools()
            assert "Server returned an error response" in repr(refused.value)
        async with _http(server, keys["legal"]) as legal:
            assert {tool.name for tool in (await legal.list_tools()).tools} == TOOLS
            hits = await _search(legal, "salary bonus travel holiday annual leave", k=50)
            assert hits and not any("hr/salaries.docx" in h["citation"] for h in hits)
            listed = _structured(await legal.call_tool("list_collections", {}))
            listed = listed["result"] if isinstance(listed, dict) else listed
            assert [c["name"] for c in listed] == [COLLECTION] and listed[0]["documents"] == 2
        async with _http(server, keys["hr"]) as hr:
            (secret,) = [h for h in await _search(hr, "salary bands engineers", k=1)]
            assert secret["citation"].startswith("hr/salaries.docx")
        async with _http(server, keys["legal"]) as legal:
            # Reading around HR's chunk by its id is refused as if it did not exist.
            refused = await legal.call_tool("get_context", {"chunk_id": secret["chunk_id"], "collection": COLLECTION})
            assert refused.is_error and "no passage" in refused.content[0].text
        async with _http(server, keys["other"]) as other:
            refused = await other.call_tool("search", {"query": "travel", "collection": COLLECTION})
            assert refused.is_error and "for this key" in refused.content[0].text

    asyncio.run(run())


def test_the_mcp_route_refuses_plain_requests_without_a_key(served):
    server, _, _ = served
    response = httpx2.post(f"{server.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401 and "API key" in response.text


def test_the_core_install_serves_without_the_mcp_sdk(data_dir):
    """mcp is an extra: without it `pgkb serve` runs (no /mcp) and `pgkb mcp` says what to install."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith(("mcp", "langchain", "llama"))]
    assert project["optional-dependencies"]["mcp"] == ["mcp>=2.3"]
    without_mcp = "import sys; sys.modules['mcp'] = None; "  # as if it were not installed
    script = (without_mcp + "from pathlib import Path; from pgkb.settings import Settings; "
              "from serve.app import create_app; "
              f"app = create_app(Settings(data_dir=Path({str(data_dir)!r}))); "
              "print(sorted(str(getattr(r, 'path', '')) for r in app.routes)); app.state.service.close()")
    served = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert served.returncode == 0, served.stderr
    assert "/v1/collections/{collection}/search" in served.stdout and "'/mcp'" not in served.stdout
    command = subprocess.run(
        [sys.executable, "-c", without_mcp + "from serve.cli import main; sys.exit(main(['mcp']))"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert command.returncode == 2 and "pip install 'pgkb[mcp]'" in command.stderr
