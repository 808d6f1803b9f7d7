"""Feedback on search hits (KnowledgeBase.feedback, `pgkb feedback`, the served API): what is
checked before a verdict is stored, and the masking of its query.

A query is text a user typed, and may hold a name, an e-mail address or a phone number: it is
masked as ingest masks documents' text (the same policy, PGKB_PII_*) before it reaches the
database, so the feedback table only ever holds what the chunks could hold.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from pgkb.errors import MaskingError, QueryError
from pgkb.settings import Settings
from store import VERDICTS

if TYPE_CHECKING:
    from ingest.pii import Masker

# The most characters of a `given_by` label: a key's id or a person's handle, not a text.
GIVEN_BY_CHARACTERS = 200
# A rank is a place in a search's hits, at most retrieval.search.MAX_K.
MAX_RANK = 10_000


def check_feedback(chunk_id: int, verdict: str, rank: int | None, given_by: str | None) -> None:
    """QueryError naming the argument that cannot be stored."""
    if isinstance(chunk_id, bool) or not isinstance(chunk_id, int):
        raise QueryError(f"chunk_id must be a hit's chunk id (a whole number), not {chunk_id!r}")
    if verdict not in VERDICTS:
        raise QueryError(f"verdict must be one of {', '.join(map(repr, VERDICTS))}, not {verdict!r}")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_RANK):
        raise QueryError(f"rank must be the hit's place in the search, 1 to {MAX_RANK:,}, or none, not {rank!r}")
    if given_by is not None and (not isinstance(given_by, str) or not given_by.strip()
                                 or len(given_by) > GIVEN_BY_CHARACTERS or not given_by.isprintable()):
        raise QueryError(f"given_by must be a label of 1 to {GIVEN_BY_CHARACTERS} printable characters, or none")


class QueryMasker:
    """Masks queries with ingest's masker, as the collection `scope`'s documents were masked
    (the keyed hash operator gives a value the token it has in the collection's chunks). The
    masker loads at the first query (Presidio: seconds) and is shared by the threads of a
    served API, one at a time (its engines are not documented as safe to share). With
    masking off (PGKB_PII=false) queries are stored as typed, as documents then are."""

    def __init__(self, settings: Settings, scope: str):
        self.settings = replace(settings, collection=scope)
        self._masker: Masker | None = None
        self._lock = threading.Lock()

    def mask(self, query: str) -> str:
        if not self.settings.pii:
            return query
        with self._lock:
            masker = self._loaded()
            try:
                (masked,), _ = masker.mask_texts([query])
            except Exception as exc:  # its message could quote the query
                raise MaskingError(f"masking the query failed ({type(exc).__name__}): nothing was stored") from None
        return masked

    def _loaded(self) -> Masker:
        if self._masker is None:
            # retrieval -> ingest.pii, imported here: ingest depends on embedding and store,
            # never on retrieval, so the import is acyclic, and a process that only searches
            # never loads Presidio.
            from ingest.options import masker_options
            from ingest.pii import load_masker

            self._masker = load_masker(masker_options(self.settings))
        return self._masker
