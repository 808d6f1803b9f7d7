"""Text -> vectors. `load_embedder(model)` gives an object with `embed_documents`,
`embed_queries`, `count_tokens` and the `space` its vectors live in.

`embedding` never imports `ingest`, `retrieval` or `store`.
"""

from .local import DEFAULT_MODEL, ModelNotFound, TransformersEmbedder, resolve_model_dir
from .profiles import ModelProfile
from .space import EmbeddingSpace


def load_embedder(model: str = DEFAULT_MODEL, *, device: str = "auto", batch_tokens: int = 16384,
                  allow_download: bool = False) -> TransformersEmbedder:
    return TransformersEmbedder(model, device=device, batch_tokens=batch_tokens,
                                allow_download=allow_download)


__all__ = [
    "DEFAULT_MODEL", "EmbeddingSpace", "ModelNotFound", "ModelProfile", "TransformersEmbedder",
    "load_embedder", "resolve_model_dir",
]
