"""Reranking: a cross-encoder reads a query and a candidate passage together and says how well
the passage answers the query. That is far slower than comparing vectors, so it rescores only
the top candidates of a search (retrieval's `search(..., rerank=N)`).

Two kinds of local model, told apart by their RerankProfile:
- "classifier": a BERT-style cross-encoder (a sequence-classification head over the pair
  `[CLS] query [SEP] passage [SEP]`, e.g. bge-reranker, ms-marco-MiniLM): the score is the
  sigmoid of its one logit, or the softmax of its second class against its first, as
  sentence-transformers' CrossEncoder and TEI give them.
- "yes_no": a causal language model asked whether the passage meets the query
  (Qwen3-Reranker): the score is P("yes") against P("no") as the next token after its prompt,
  the softmax over those two logits, as its model card computes it.
Either way a score is a probability from 0 to 1, higher for a better answer. Both run batched
by a token budget like the embedder (local.BatchedModel), in bf16 on CUDA. A reranker served
over HTTP (TEI, vLLM, SGLang, Jina, Cohere) is rerank_server.ServerReranker.

A reranker's profile comes from its config (a sequence-classification or causal-LM head), then
pgkb's built-in rules (Qwen3-Reranker, by name), then a profile file: `pgkb-profile.json` in the
model's folder or the file PGKB_RERANK_PROFILE names, whose keys are RerankProfile's fields:

    {"kind": "yes_no", "max_tokens": 4096, "prompt": "Query: {query}\\nDocument: {document}\\nRelevant:",
     "yes_token": "yes", "no_token": "no"}
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from pgkb.errors import EmbeddingError
from pgkb.settings import default

from .local import BatchedModel, left_padding_positions
from .profiles import PROFILE_FILE, read_json, read_profile_file

log = logging.getLogger(__name__)

RerankKind = Literal["classifier", "yes_no"]
RERANK_KINDS: tuple[RerankKind, ...] = get_args(RerankKind)


@dataclass(frozen=True)
class RerankProfile:
    kind: RerankKind = "classifier"
    max_tokens: int = 512                  # longest input, special tokens and prompt included
    padding_side: Literal["left", "right"] = "right"  # "left" for yes_no: the last position is every row's end
    # yes_no: the model reads prompt_prefix, then the prompt with {instruction}, {query} and
    # {document} filled in, then prompt_suffix; each tokenised on its own (as Qwen3-Reranker's
    # model card does), the prompt cut at its end, the document's, to fit max_tokens.
    prompt_prefix: str = ""
    prompt: str = "{query}\n{document}"
    prompt_suffix: str = ""
    instruction: str = ""
    yes_token: str = "yes"
    no_token: str = "no"

    def filled_prompt(self, query: str, document: str) -> str:
        # One replacement at a time would fill a "{document}" written in the query.
        parts = {"instruction": self.instruction, "query": query, "document": document}
        return re.sub(r"\{(instruction|query|document)\}", lambda m: parts[m.group(1)], self.prompt)


# Qwen3-Reranker 0.6B / 4B / 8B, as its model card runs it. The models read 32k tokens; 8192
# keeps a long passage's attention cheap (a chunk is a few hundred).
QWEN3_RERANKER = {
    "kind": "yes_no", "padding_side": "left", "max_tokens": 8192,
    "prompt_prefix": "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and "
                     "the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n"
                     "<|im_start|>user\n",
    "prompt": "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}",
    "prompt_suffix": "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "instruction": "Given a web search query, retrieve relevant passages that answer the query",
}
BUILTIN_RERANK_PROFILES: list[tuple[re.Pattern, dict[str, Any]]] = [
    (re.compile(r"qwen3-reranker", re.IGNORECASE), QWEN3_RERANKER),
]
# The longest input of a classifier whose config allows more (RoBERTa's 514 positions hold 512).
CLASSIFIER_MAX_TOKENS = 512


def resolve_rerank_profile(model: str, model_dir: Path | None, profile_file: Path | None = None) -> RerankProfile:
    """The rules for reranking with `model` (whose files are in `model_dir`, when on this machine)."""
    rules: dict[str, Any] = _config_rules(model_dir) if model_dir is not None else {}
    for pattern, family in BUILTIN_RERANK_PROFILES:
        if pattern.search(model) or (model_dir is not None and pattern.search(str(model_dir))):
            rules.update(family)
    if profile_file is None and model_dir is not None and (model_dir / PROFILE_FILE).is_file():
        profile_file = model_dir / PROFILE_FILE
    if profile_file is not None:
        rules.update(read_profile_file(Path(profile_file), RerankProfile))
    if rules.get("kind") == "yes_no":
        rules["padding_side"] = "left"
    where = profile_file or model
    if rules.get("kind", "classifier") not in RERANK_KINDS:
        raise EmbeddingError(f"{where}: a reranker's kind is one of {RERANK_KINDS}, not {rules['kind']!r}")
    profile = RerankProfile(**rules)
    if profile.kind == "yes_no" and "{document}" not in profile.prompt:
        raise EmbeddingError(f"{where}: the reranking prompt {profile.prompt!r} has no {{document}} to fill in")
    return profile


def _config_rules(model_dir: Path) -> dict[str, Any]:
    """The kind of reranker the model's config says it is, and the input it reads."""
    config = read_json(model_dir / "config.json") or {}
    architectures = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        positions = config.get("max_position_embeddings") or CLASSIFIER_MAX_TOKENS
        return {"kind": "classifier", "max_tokens": min(positions, CLASSIFIER_MAX_TOKENS)}
    if any(a.endswith("ForCausalLM") for a in architectures):
        return {"kind": "yes_no"}
    return {}


class Reranker(ABC):
    """Scores passages against a query."""

    name: str

    @abstractmethod
    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """Each document's relevance to `query` (float64, higher is more relevant), in input order."""


class TransformersReranker(Reranker, BatchedModel):
    """Reranks with a loaded transformers model: a sequence classifier or a yes/no causal LM."""

    def __init__(self, name: str, model, tokenizer, profile: RerankProfile, *,
                 batch_tokens: int = default("batch_tokens")):
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.profile = profile
        model.config.use_cache = False  # a decoder would keep every layer's keys and values
        self.device = next(model.parameters()).device
        self.batch_tokens = batch_tokens
        self.padding_side = profile.padding_side
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if profile.kind == "classifier":
            self._check_classifier()
        else:
            self._answer_ids = [self._token_id(profile.no_token), self._token_id(profile.yes_token)]
            self._prefix_ids = tokenizer.encode(profile.prompt_prefix, add_special_tokens=False)
            self._suffix_ids = tokenizer.encode(profile.prompt_suffix, add_special_tokens=False)
            if len(self._prefix_ids) + len(self._suffix_ids) >= profile.max_tokens:
                raise EmbeddingError(f"{name}: the reranking prompt's prefix and suffix fill its "
                                     f"{profile.max_tokens} tokens: raise max_tokens in its profile")
        log.info("loaded reranker %s (%s) on %s in %s", name, profile.kind, self.device,
                 next(model.parameters()).dtype)

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        import torch

        pairs = [(query, document) for document in documents]
        out = np.empty(len(pairs), dtype=np.float64)
        with torch.inference_mode():
            for batch in self._batches(pairs):
                out[batch.rows] = self._forward_halving_on_oom(batch.input_ids, batch.attention_mask).cpu().numpy()
        return out

    def _model_input_ids(self, items: Sequence) -> list[list[int]]:
        queries, documents = [q for q, _ in items], [d for _, d in items]
        limit = self.profile.max_tokens
        if self.profile.kind == "classifier":
            # Cut the longer of the two first: a long query still leaves the passage room.
            return self.tokenizer(queries, documents, truncation="longest_first", max_length=limit,
                                  verbose=False)["input_ids"]
        prompts = [self.profile.filled_prompt(q, d) for q, d in items]
        body_limit = limit - len(self._prefix_ids) - len(self._suffix_ids)
        bodies = self.tokenizer(prompts, add_special_tokens=False, truncation=True, max_length=body_limit,
                                verbose=False)["input_ids"]
        return [self._prefix_ids + body + self._suffix_ids for body in bodies]

    def _forward(self, input_ids, attention_mask):
        input_ids = input_ids.to(self.device, non_blocking=True)
        attention_mask = attention_mask.to(self.device, non_blocking=True)
        if self.profile.kind == "classifier":
            return self._classifier_scores(input_ids, attention_mask)
        # Left-padded: the last position is every prompt's end, the only logits needed.
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=left_padding_positions(attention_mask), logits_to_keep=1).logits[:, -1]
        no, yes = logits[:, self._answer_ids].double().unbind(dim=1)
        return (yes - no).sigmoid()  # the softmax over the two, P("yes")

    def _classifier_scores(self, input_ids, attention_mask):
        extra = {}
        if getattr(self.model.config, "type_vocab_size", 1) > 1:
            # BERT's second segment, the passage: every token after the first [SEP].
            separators = (input_ids == self.tokenizer.sep_token_id).int()
            extra["token_type_ids"] = ((separators.cumsum(dim=1) - separators) > 0).long() * attention_mask
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits.double()
        if logits.shape[1] == 1:
            return logits[:, 0].sigmoid()
        return (logits[:, 1] - logits[:, 0]).sigmoid()  # the softmax of the second class against the first

    def _check_classifier(self) -> None:
        labels = self.model.config.num_labels
        if labels not in (1, 2):
            raise EmbeddingError(f"{self.name} classifies into {labels} classes; a cross-encoder reranker "
                                 "gives one relevance logit or two classes (not relevant, relevant)")
        if getattr(self.model.config, "type_vocab_size", 1) > 1 and self.tokenizer.sep_token_id is None:
            raise EmbeddingError(f"{self.name}'s tokenizer has no separator token to tell the query from the passage")

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise EmbeddingError(f"{self.name}'s vocabulary has no token {token!r} to read its answer from: "
                                 f"set yes_token and no_token in its {PROFILE_FILE}")
        return token_id
