"""Text -> vectors. `load_embedder(model)` gives an Embedder: `embed_documents`,
`embed_queries`, `count_tokens`, `max_text_tokens` and the `space` its vectors live in.
`load_embedder_for_space(space)` gives one whose vectors match a collection's space.
`load_reranker(model)` gives a Reranker, whose `score(query, passages)` rescores a search's
candidates with a cross-encoder (rerank.py).

The model runs here (transformers) or behind an OpenAI-compatible server (`embed_url`);
either way its rules come from a ModelProfile and its tokenizer is read from this machine.
`embedding` never imports `ingest`, `retrieval` or `store`.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from pgkb.errors import ConfigurationError
from pgkb.settings import Precision, default

from .base import Embedder
from .local import TransformersEmbedder, load_model, load_tokenizer, pick_device
from .models import EmbeddingError, ModelNotFound, resolve_model_dir
from .profiles import ModelProfile, resolve_profile, unsupported_modules
from .rerank import Reranker, RerankProfile, TransformersReranker, resolve_rerank_profile
from .rerank_server import ServerReranker
from .server import ServerEmbedder, ServerError
from .space import EmbeddingSpace, Pooling

# Models load one at a time: transformers' lazily imported names are not safe to import from
# two threads at once (eight threads loading together failed on `import AutoTokenizer`).
_LOADING = threading.Lock()


def load_embedder(model: str = default("model"), *, dims: int | None = None, query_instruction: str | None = None,
                  device: str = default("device"), precision: Precision = default("precision"),
                  batch_tokens: int = default("batch_tokens"), embed_url: str | None = None,
                  api_key_env: str | None = None, profile_file: Path | None = None,
                  allow_download: bool = default("allow_download")) -> Embedder:
    """An embedder for `model` (an id in the HF cache, a packaged model, or a directory).

    `dims` asks for shorter Matryoshka vectors; `query_instruction` is the task of an
    instruction-following model's query template (Qwen3-Embedding), or else the literal
    prefix of queries (see ModelProfile.query_prefix). With `embed_url` the vectors come
    from that server, with the key in env `api_key_env`. The other options are Settings'
    (`Settings.embedder_options()`), and default to them.
    """
    with _LOADING:
        model_dir = resolve_model_dir(model, allow_download)
        profile = resolve_profile(model, model_dir, profile_file)
        return _build(model, model_dir, profile, dims, profile.query_prefix(query_instruction),
                      device, precision, batch_tokens, embed_url, api_key_env)


def load_embedder_for_space(space: EmbeddingSpace, *, device: str = default("device"),
                            precision: Precision = default("precision"), batch_tokens: int = default("batch_tokens"),
                            embed_url: str | None = None, api_key_env: str | None = None,
                            profile_file: Path | None = None,
                            allow_download: bool = default("allow_download")) -> Embedder:
    """An embedder whose vectors are in `space`: same model, dims and query instruction."""
    with _LOADING:
        model_dir = resolve_model_dir(space.model, allow_download)
        profile = resolve_profile(space.model, model_dir, profile_file)
        embedder = _build(space.model, model_dir, profile, space.dims, space.query_instruction or "",
                          device, precision, batch_tokens, embed_url, api_key_env)
    if embedder.space.pooling != space.pooling:
        raise EmbeddingError(
            f"{space.model} now pools by {embedder.space.pooling!r}, but the collection's vectors "
            f"were pooled by {space.pooling!r}: restore the model profile it was ingested with"
        )
    return embedder


def _build(model: str, model_dir: Path, profile: ModelProfile, dims: int | None, query_prefix: str,
           device: str, precision: Precision, batch_tokens: int, embed_url: str | None,
           api_key_env: str | None) -> Embedder:
    tokenizer = load_tokenizer(model_dir, profile.padding_side)
    extra_modules = unsupported_modules(model_dir)
    if embed_url:
        api_key = os.environ.get(api_key_env) if api_key_env else None
        return ServerEmbedder(model, embed_url, tokenizer, profile, dims=dims, query_prefix=query_prefix,
                              api_key=api_key, model_dims=None if extra_modules else _hidden_size(model_dir))
    if extra_modules:
        raise EmbeddingError(f"{model} ends in {', '.join(extra_modules)}, which pgkb's local backend does "
                             "not run: serve it (--embed-url) or choose another model")
    return TransformersEmbedder(model, load_model(model_dir, pick_device(device), precision), tokenizer, profile,
                                dims=dims, query_prefix=query_prefix, batch_tokens=batch_tokens)


def load_reranker(model: str | None = None, *, url: str | None = None, api_key_env: str | None = None,
                  profile_file: Path | None = None, device: str = default("device"),
                  precision: Precision = default("precision"), batch_tokens: int = default("batch_tokens"),
                  allow_download: bool = default("allow_download")) -> Reranker:
    """A reranker: `model` (an id in the HF cache or a directory) run here, or the model served
    at `url` (`/v1/rerank`), with the key in env `api_key_env`. The other options are the
    embedder's, and default to them (`Settings.reranker_options()`)."""
    if url:
        return ServerReranker(model, url, api_key=os.environ.get(api_key_env) if api_key_env else None)
    if not model:
        raise ConfigurationError("reranking needs a model: set PGKB_RERANK_MODEL (--rerank-model), "
                                 "or a reranking server with PGKB_RERANK_URL (--rerank-url)")
    with _LOADING:
        model_dir = resolve_model_dir(model, allow_download, role="reranking model", flag="--rerank-model")
        profile = resolve_rerank_profile(model, model_dir, profile_file)
        tokenizer = load_tokenizer(model_dir, profile.padding_side)
        head = "AutoModelForSequenceClassification" if profile.kind == "classifier" else "AutoModelForCausalLM"
        return TransformersReranker(model, load_model(model_dir, pick_device(device), precision, head), tokenizer,
                                    profile, batch_tokens=batch_tokens)


def _hidden_size(model_dir: Path) -> int | None:
    """The model's vector size from its config, when its config is here."""
    config = model_dir / "config.json"
    return json.loads(config.read_text()).get("hidden_size") if config.is_file() else None


__all__ = [
    "Embedder", "EmbeddingError", "EmbeddingSpace", "ModelNotFound", "ModelProfile", "Pooling", "RerankProfile",
    "Reranker", "ServerEmbedder", "ServerError", "ServerReranker", "TransformersEmbedder", "TransformersReranker",
    "load_embedder", "load_embedder_for_space", "load_reranker", "resolve_model_dir", "resolve_profile",
    "resolve_rerank_profile",
]
