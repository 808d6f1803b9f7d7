"""The network guard really guards, and pgkb's run needs nothing from outside."""

import socket
import sys

import pytest


def test_the_guard_refuses_connections_and_lookups_beyond_loopback(blocked_log):
    with pytest.raises(OSError, match="network unreachable"):
        socket.create_connection(("198.51.100.7", 443), timeout=2)
    with pytest.raises(OSError, match="network unreachable"):
        socket.getaddrinfo("huggingface.co", 443)
    # Both refusals were recorded; forget them so this test's own attempts do not fail it.
    recorded = blocked_log.read_text()
    assert "198.51.100.7" in recorded and "huggingface.co" in recorded
    blocked_log.write_text("")


def test_loopback_still_works():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()


def test_an_ingest_loads_no_language_model_that_would_be_fetched(docs, settings, embedder, monkeypatch):
    import spacy

    from ingest import ingest

    loaded = []

    def refuse(*args, **kwargs):
        loaded.append(args)
        raise OSError("no spaCy model may be loaded or fetched here")

    # Masking imports spaCy (through Presidio) but loads a model only when one is installed.
    monkeypatch.setattr(spacy, "load", refuse)
    monkeypatch.setattr(spacy.cli, "download", refuse)
    ingest(docs, settings, embedder=embedder)
    assert not loaded
    # unstructured fetches en_core_web_sm when its text heuristics run; pgkb never calls them.
    assert "unstructured.nlp.tokenize" not in sys.modules
