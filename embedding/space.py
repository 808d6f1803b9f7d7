"""EmbeddingSpace: what makes two vectors comparable. A collection is bound to one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

# How a model turns its token vectors into one: their mean, the first (CLS) token's, or the
# last token's (instruction-following decoders such as Qwen3-Embedding).
Pooling = Literal["mean", "cls", "last_token"]


@dataclass(frozen=True)
class EmbeddingSpace:
    model: str                     # model id as the user named it
    dims: int                      # length of the stored vectors
    pooling: Pooling
    normalize: bool                # vectors are L2-normalised
    # The exact text put before every query (never before documents): the model's query
    # template with its task filled in, or the literal prefix given (PGKB_QUERY_INSTRUCTION).
    query_instruction: str | None
    max_tokens: int                # the longest input the model reads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EmbeddingSpace:
        """The space a collection was created with (as stored by `to_dict`)."""
        stored: dict[str, Any] = {f.name: values.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**stored)
