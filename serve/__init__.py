"""The HTTP API (`pgkb serve`): transport, API keys and limits over retrieval, store and ingest.

    app.py     the routes, keys checked per request, errors as 4xx
    mcp.py     the MCP server (tools), on stdio and at /mcp (the `mcp` extra)
    dify.py    Dify's External Knowledge API (POST /retrieval)
    jobs.py    uploads ingested in the background, one job at a time
    limits.py  request limits
    cli.py     `pgkb` with its `serve` and `mcp` subcommands

Nothing imports this package; it imports the others. It imports none of its modules itself,
so that `pgkb collections` and the other commands load no web framework (nor ingest).
"""
