"""EmbeddingSpace: what makes two vectors comparable. A collection is bound to one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EmbeddingSpace:
    model: str                     # model id as the user named it
    dims: int                      # length of the stored vectors
    pooling: str                   # "mean", "cls" or "last_token"
    normalize: bool                # vectors are L2-normalised
    query_instruction: str | None  # exact prefix applied to queries only
    max_tokens: int                # the longest input the model reads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EmbeddingSpace:
        """The space a collection was created with (as stored by `to_dict`)."""
        return cls(**{f.name: values.get(f.name) for f in dataclasses.fields(cls)})
