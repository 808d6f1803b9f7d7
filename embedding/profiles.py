"""How a model family wants to be run: pooling, padding side, end token, query instruction,
input limit, and the shorter (Matryoshka) vector sizes it was trained for.

A model's profile is built from three sources, each overriding the one before:
1. the model's own sentence-transformers files (modules.json, 1_Pooling/config.json,
   sentence_bert_config.json, config_sentence_transformers.json), when it has them;
2. pgkb's built-in family rules (Qwen3-Embedding), matched on the model's name or folder;
3. a profile file, for a model pgkb has no rules for: `pgkb-profile.json` in the model's
   folder, or the JSON file named by PGKB_MODEL_PROFILE. Its keys are ModelProfile's fields:

       {"pooling": "last_token", "end_token": "</s>", "max_tokens": 4096,
        "query_template": "Instruct: {task}\\nQuery: ", "default_task": "Find the passage",
        "matryoshka_min_dims": 64}
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from .models import EmbeddingError
from .space import Pooling

PROFILE_FILE = "pgkb-profile.json"
POOLINGS: tuple[Pooling, ...] = get_args(Pooling)


@dataclass(frozen=True)
class ModelProfile:
    pooling: Pooling = "mean"
    max_tokens: int = 512                  # longest input pgkb sends, special tokens included
    padding_side: Literal["left", "right"] = "right"  # "left" for last-token pooling
    end_token: str | None = None           # appended to every input when the tokenizer does not add it
    query_template: str = ""               # queries get this prefix; "{task}" is replaced by the task
    default_task: str = ""
    matryoshka_min_dims: int | None = None  # shortest truncation it was trained for; None: no truncation

    def query_prefix(self, instruction: str | None = None) -> str:
        """The text put before every query, from the query instruction (PGKB_QUERY_INSTRUCTION):
        for a template with "{task}" (Qwen3-Embedding's `Instruct: {task}\\nQuery:`) the
        instruction is the task filled in; for other models it is the prefix itself, replacing
        the template. None: the model's own (its default task, or its template as it is).
        """
        if "{task}" in self.query_template:
            return self.query_template.replace("{task}", instruction or self.default_task)
        return self.query_template if instruction is None else instruction

    def output_dims(self, dims: int | None, native: int, model: str) -> int:
        """The vector length to produce: `dims` if the model allows it, else its own size."""
        if dims is None or dims == native:
            return native
        if dims > native:
            raise EmbeddingError(f"{model} makes {native}-dim vectors, so it cannot give {dims}")
        if self.matryoshka_min_dims is None:
            raise EmbeddingError(
                f"{model} was not trained for shorter (Matryoshka) vectors: leave --dims unset for "
                f"its {native} dims, or declare matryoshka_min_dims in a {PROFILE_FILE}"
            )
        if not self.matryoshka_min_dims <= dims <= native:
            raise EmbeddingError(f"--dims for {model} must be from {self.matryoshka_min_dims} to {native}, not {dims}")
        return dims


# Qwen3-Embedding 0.6B / 4B / 8B: last-token pooling over left-padded input ending in
# <|endoftext|>, an instruction on queries only, Matryoshka sizes from 32 to the full
# 1024 / 2560 / 4096. The models read 32k tokens; 8192 keeps one long text's attention cheap.
QWEN3_EMBEDDING = {
    "pooling": "last_token", "padding_side": "left", "end_token": "<|endoftext|>",
    "query_template": "Instruct: {task}\nQuery:",
    "default_task": "Given a web search query, retrieve relevant passages that answer the query",
    "max_tokens": 8192, "matryoshka_min_dims": 32,
}
BUILTIN_PROFILES: list[tuple[re.Pattern, dict[str, Any]]] = [
    (re.compile(r"qwen3-embedding", re.IGNORECASE), QWEN3_EMBEDDING),
]


def resolve_profile(model: str, model_dir: Path | None, profile_file: Path | None = None) -> ModelProfile:
    """The rules for `model` (whose files are in `model_dir`, when on this machine)."""
    rules: dict[str, Any] = {}
    if model_dir is not None:
        rules.update(_sentence_transformers_rules(model_dir))
    for pattern, family in BUILTIN_PROFILES:
        if pattern.search(model) or (model_dir is not None and pattern.search(str(model_dir))):
            rules.update(family)
    if profile_file is None and model_dir is not None and (model_dir / PROFILE_FILE).is_file():
        profile_file = model_dir / PROFILE_FILE
    if profile_file is not None:
        rules.update(read_profile_file(Path(profile_file)))
    if rules.get("pooling") == "last_token":
        rules.setdefault("padding_side", "left")  # so the last position is every row's last token
    return ModelProfile(**rules)


_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "last_token",
}


def _sentence_transformers_rules(model_dir: Path) -> dict[str, Any]:
    """Pooling, input limit and query prompt from a sentence-transformers layout."""
    rules: dict[str, Any] = {}
    modules = read_json(model_dir / "modules.json") or []
    pooling_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), "1_Pooling")
    pooling_config = read_json(model_dir / pooling_dir / "config.json") or {}
    pooling = next((name for key, name in _POOLING_KEYS.items() if pooling_config.get(key)), None)
    if pooling:
        rules["pooling"] = pooling
    max_tokens = (read_json(model_dir / "sentence_bert_config.json") or {}).get("max_seq_length")
    if max_tokens:
        rules["max_tokens"] = int(max_tokens)
    prompts = (read_json(model_dir / "config_sentence_transformers.json") or {}).get("prompts") or {}
    if prompts.get("query"):
        rules["query_template"] = prompts["query"]
    return rules


def unsupported_modules(model_dir: Path) -> list[str]:
    """sentence-transformers modules beyond the encoder, pooling and normalisation (a Dense
    projection, say), which pgkb's local backend does not run."""
    modules = read_json(model_dir / "modules.json") or []
    known = ("Transformer", "Pooling", "Normalize")
    return [m["type"] for m in modules if not m["type"].endswith(known)]


def read_profile_file(path: Path, profile_class: type = ModelProfile) -> dict[str, Any]:
    """A profile file's rules, each a field of `profile_class` (ModelProfile, or the
    reranker's RerankProfile)."""
    try:
        rules = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EmbeddingError(f"{path}: cannot read the model profile: {exc}") from None
    known = {f.name for f in dataclasses.fields(profile_class)}
    unknown = sorted(set(rules) - known) if isinstance(rules, dict) else ["(not a JSON object)"]
    if unknown:
        raise EmbeddingError(f"{path}: unknown model profile keys {unknown}; known: {sorted(known)}")
    if rules.get("pooling", "mean") not in POOLINGS:
        raise EmbeddingError(f"{path}: pooling must be one of {POOLINGS}, not {rules['pooling']!r}")
    if rules.get("padding_side", "left") not in ("left", "right"):
        raise EmbeddingError(f"{path}: padding_side must be 'left' or 'right', not {rules['padding_side']!r}")
    return rules


def read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None
