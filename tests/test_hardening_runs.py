"""Inputs and events that used to stop a whole run, and the run's bookkeeping (issue 28).

Each input here once ended the run with a traceback (or never ended it); now each fails or is
skipped alone, with its reason, and the run is recorded and reported. Real files, the real
embedded PostgreSQL and the real model.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from dataclasses import replace

import pytest

from ingest.chunking import chunk_elements
from ingest.parsers import parse
from store import Settings


@contextmanager
def within(seconds: int):
    """Fails the block that runs past `seconds` (a loop that never ends, as these once did)."""
    def overran(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, overran)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, expected", [
    ("chunk_tokens", 0, "at least 32"), ("chunk_tokens", 1, "at least 32"), ("chunk_tokens", -400, "at least 32"),
    ("chunk_tokens", 40.5, "a whole number"), ("batch_tokens", 0, "at least 1"), ("workers", -1, "at least 0"),
    ("parse_seconds", 0, "at least 1"), ("parse_memory_mb", -1, "at least 1"), ("dims", -8, "at least 0"),
    ("pii_threshold", 1.5, "at most 1"), ("pii_threshold", float("nan"), "at least 0"), ("bm25_k1", -0.1, "at least 0"),
    ("bm25_b", 2, "at most 1"), ("bm25_b", "0.5", "a number"),
])
def test_a_numeric_setting_out_of_range_is_refused_with_its_name(name, value, expected):
    with pytest.raises(ValueError, match=f"setting {name} .*must be {expected}"):
        Settings(**{name: value})
    if not isinstance(value, str):  # given as its environment variable, too
        with pytest.raises(ValueError, match=f"setting {name} "):
            Settings.from_env({Settings.__dataclass_fields__[name].metadata["env"]: str(value)})


def test_the_bounds_themselves_are_accepted():
    settings = Settings(chunk_tokens=32, batch_tokens=1, workers=0, parse_seconds=1, parse_memory_mb=1, dims=0,
                        pii_threshold=0, bm25_k1=0, bm25_b=1)
    assert replace(settings, pii_threshold=1.0, bm25_b=0.0).pii_threshold == 1.0


def test_a_section_path_too_deep_to_shorten_to_its_share_still_ends(tmp_path, embedder):
    # Six nested headings shortened to "He…" still take more than half of 32 tokens: the
    # shortening loop never ended (chunk sizes 0, 1 and negative ran into the same loop).
    path = tmp_path / "deep.md"
    path.write_text("".join(f"{'#' * depth} Heading level {depth} with quite a lot of words in its title\n\n"
                            for depth in range(1, 7)) + "Some text under the deepest heading. " * 20 + "\n")
    with within(60):
        chunks = chunk_elements(parse(path, "text/markdown").elements, "deep.md", embedder.count_tokens, 32)
    assert any("Some text" in chunk.text for chunk in chunks)
