"""QueryCache: the vectors of recent queries, so that a repeated question skips the model.

A search service sees the same questions again and again; embedding one costs a model call
(milliseconds on a CPU), looking it up here a dictionary access.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .space import EmbeddingSpace

# Queries remembered per embedder: 1,024 vectors of 384 float32 are 1.5 MiB.
DEFAULT_MAX_QUERIES = 1024


class QueryCache:
    """A bounded, thread-safe LRU of query vectors, keyed by the embedding space and the query
    text: the same words embedded in another space (another model, size, pooling or query
    instruction) are another entry.

    Vectors are stored read-only and handed out as such; `embed_queries` stacks them into a
    new array, so no caller can change what the next one gets.
    """

    def __init__(self, max_queries: int = DEFAULT_MAX_QUERIES):
        self.max_queries = max_queries
        self._vectors: OrderedDict[tuple[EmbeddingSpace, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, space: EmbeddingSpace, query: str) -> np.ndarray | None:
        """The query's vector, if remembered (it becomes the most recently used)."""
        with self._lock:
            vector = self._vectors.get((space, query))
            if vector is not None:
                self._vectors.move_to_end((space, query))
            return vector

    def put(self, space: EmbeddingSpace, query: str, vector: np.ndarray) -> None:
        """Remember a copy of `vector`; the least recently used query goes past the bound."""
        kept = np.array(vector, dtype=np.float32)
        kept.flags.writeable = False
        with self._lock:
            self._vectors[(space, query)] = kept
            self._vectors.move_to_end((space, query))
            while len(self._vectors) > self.max_queries:
                self._vectors.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()

    def __len__(self) -> int:
        return len(self._vectors)
