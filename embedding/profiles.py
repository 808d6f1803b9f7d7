"""How a model family wants to be run: pooling, normalisation, input limit, query prefix.

For sentence-transformers models the rules are read from the model's own config files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelProfile:
    pooling: str                     # "mean", "cls" or "last_token"
    normalize: bool
    max_tokens: int
    query_instruction: str | None = None
    padding_side: str = "right"


_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "last_token",
}


def profile_from_model_dir(model_dir: Path, default_max_tokens: int = 512) -> ModelProfile:
    """Read pooling, normalisation and max length from a sentence-transformers layout.

    A plain transformers checkpoint without those files gets mean pooling, normalised.
    """
    modules = _read_json(model_dir / "modules.json") or []
    pooling_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), "1_Pooling")
    pooling_config = _read_json(model_dir / pooling_dir / "config.json") or {}
    pooling = next((name for key, name in _POOLING_KEYS.items() if pooling_config.get(key)), "mean")
    normalize = any(m["type"].endswith("Normalize") for m in modules) or not modules
    st_config = _read_json(model_dir / "sentence_bert_config.json") or {}
    max_tokens = st_config.get("max_seq_length") or default_max_tokens
    prompts = (_read_json(model_dir / "config_sentence_transformers.json") or {}).get("prompts") or {}
    return ModelProfile(
        pooling=pooling, normalize=normalize, max_tokens=int(max_tokens),
        query_instruction=prompts.get("query") or None,
    )


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None
