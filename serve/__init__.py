"""The HTTP API (`pgkb serve`): transport, API keys and limits over retrieval, store and ingest.

    app.py     the routes, keys checked per request, errors as 4xx
    jobs.py    uploads ingested in the background, one job at a time
    limits.py  request body size limits
    cli.py     `pgkb` with its `serve` subcommand

Nothing imports this package; it imports the others. It imports none of its modules itself,
so that `pgkb collections` and the other commands load no web framework (nor ingest).
"""
