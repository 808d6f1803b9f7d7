"""What every embedding backend offers: documents and queries to vectors, token counts in the
model's own tokenizer, and the EmbeddingSpace its vectors live in."""

from __future__ import annotations

import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from .profiles import ModelProfile
from .query_cache import QueryCache
from .space import EmbeddingSpace

# Words whose token counts are remembered, at most (see Embedder._count_by_words).
MAX_REMEMBERED_WORDS = 200_000
# Whitespace to str.split(), but control characters to BERT's normaliser, which deletes them
# and so joins the words around them: texts holding one are counted whole.
_SPLIT_DISAGREES = re.compile("[\x0b\x0c\x1c-\x1f\x85]")


class Embedder(ABC):
    """Texts -> float32 vectors `[n, space.dims]`, L2-normalised, in input order."""

    def __init__(self, tokenizer, profile: ModelProfile, space: EmbeddingSpace):
        self.tokenizer = tokenizer
        self.profile = profile
        self.space = space
        end_id = tokenizer.convert_tokens_to_ids(profile.end_token) if profile.end_token else None
        # Some tokenizers end every input with the end token themselves, older ones do not.
        adds_end = end_id is None or tokenizer("x", verbose=False)["input_ids"][-1] == end_id
        self._end_id = None if adds_end else end_id
        # A fast tokenizer's settings (truncation) live in the Rust object that every call
        # changes: calls from several threads (chunking, batching) take turns.
        self._tokenizer_lock = threading.Lock()
        self._counter = _counting_copy(tokenizer)
        self.counts_add_up = self._counter is not None and _cuts_at_every_space_and_punctuation(self._counter)
        self._word_tokens: dict[str, int] = {}
        self.query_cache = QueryCache()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Queries carry the space's instruction; documents never do. A query embedded
        recently in this space comes from the query cache, without a model call."""
        space = self.space
        cached = {text: self.query_cache.get(space, text) for text in texts}
        vectors = {text: vector for text, vector in cached.items() if vector is not None}
        missing = [text for text, vector in cached.items() if vector is None]
        if missing:
            prefix = space.query_instruction or ""
            for text, vector in zip(missing, self._embed([prefix + t for t in missing])):
                self.query_cache.put(space, text, vector)
                vectors[text] = vector
        if not texts:
            return np.zeros((0, space.dims), dtype=np.float32)
        return np.stack([vectors[text] for text in texts])  # a new array: the cache's stay as they are

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of text in each, special tokens excluded, never truncated."""
        if not texts:
            return []
        if self._counter is not None:
            if self.counts_add_up:
                return self._count_by_words(self._counter, texts)
            return _count_whole(self._counter, texts)
        with self._tokenizer_lock:
            encoded = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def _count_by_words(self, counter: Tokenizer, texts: Sequence[str]) -> list[int]:
        """Where counts add up, a text's count is the sum of its words' (split at whitespace),
        and a corpus has far fewer distinct words than words: each is tokenized once, then
        remembered (on the test corpus, 3.7 million characters in 55,700 distinct words; the
        counts, equal to the tokenizer's, in 40% of its time)."""
        known = self._word_tokens
        if len(known) > MAX_REMEMBERED_WORDS:
            known = self._word_tokens = {}  # a new dict: another thread may be reading the old one
        words = [None if _SPLIT_DISAGREES.search(text) else text.split() for text in texts]
        new = list({w for text_words in words if text_words for w in text_words if w not in known})
        if new:
            known.update(zip(new, _count_whole(counter, new)))
        whole = iter(_count_whole(counter, [t for t, w in zip(texts, words) if w is None]))
        return [next(whole) if w is None else sum(map(known.__getitem__, w)) for w in words]

    @property
    def max_text_tokens(self) -> int:
        """The most tokens of text the model reads, after its special tokens."""
        return self.space.max_tokens - len(self.input_ids([""])[0])

    def input_ids(self, texts: list[str]) -> list[list[int]]:
        """What the model reads: special tokens added, cut to max_tokens, the end token last."""
        limit = self.space.max_tokens - (self._end_id is not None)
        with self._tokenizer_lock:
            ids = self.tokenizer(texts, truncation=True, max_length=limit, verbose=False)["input_ids"]
        return [x + [self._end_id] for x in ids] if self._end_id is not None else ids

    def known_share(self, text: str) -> float:
        """The share of `text`'s tokens the model has in its vocabulary (not [UNK]): how much
        of a query's language it covers. Byte-level tokenizers know everything: 1.0."""
        with self._tokenizer_lock:
            ids = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        unknown = self.tokenizer.unk_token_id
        if not ids or unknown is None:
            return 1.0
        return 1.0 - ids.count(unknown) / len(ids)

    @abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts`, exactly as given."""


def _count_whole(counter: Tokenizer, texts: Sequence[str]) -> list[int]:
    return [len(e) for e in counter.encode_batch_fast(list(texts), add_special_tokens=False)]


def _counting_copy(tokenizer) -> Tokenizer | None:
    """A fast tokenizer's Rust core, copied with truncation and padding off, for counting.

    Chunking counts every text of a document; through the Rust core, without offsets, it
    takes about half the time transformers' wrapper does (chunking the corpus's 1,600 PDF
    pages: 3.05 s -> 1.69 s), and a copy nobody reconfigures needs no lock. None for a slow
    (pure Python) tokenizer, which is counted the ordinary way."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    counter = Tokenizer.from_str(backend.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter


def _cuts_at_every_space_and_punctuation(tokenizer: Tokenizer) -> bool:
    """Whether the count of texts joined at a space or a punctuation mark is the sum of their
    counts. True of BERT's WordPiece (all-MiniLM-L6-v2...): its normaliser works character by
    character, and no token spans a space or a punctuation mark, each its own word. False of
    byte-level BPE (Qwen3), whose tokens carry the space before a word."""
    config = json.loads(tokenizer.to_str())
    return ((config.get("normalizer") or {}).get("type") in (None, "BertNormalizer")
            and (config.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
            and config["model"]["type"] == "WordPiece")
