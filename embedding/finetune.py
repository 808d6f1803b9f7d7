"""Fine-tuning an embedding model on a collection's own (query, positive, negatives) triplets.

The triplets file is JSON Lines in sentence-transformers' dataset format, one object a line:
{"anchor": query, "positive": text, "negative_1": text, ..., "negative_N": text}, the same N
on every line (retrieval.training exports them from feedback and label-free queries). The
model learns with sentence-transformers' trainer and MultipleNegativesRankingLoss: each
query against its positive, its hard negatives and every other text of its batch.

Small models are trained whole; large ones (above LORA_ABOVE_PARAMETERS, or when asked)
through LoRA adapters (`peft`), merged into the weights when training ends. Texts are read
as pgkb reads them at search time: the model's pooling, its query prefix on queries, its end
token. The trained model is written to a folder with a `pgkb-profile.json` holding the base
model's rules, so that PGKB_MODEL=<folder> embeds with it offline like any local model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pgkb.errors import ConfigurationError, EmbeddingError
from pgkb.settings import LoraUse, default

from .local import load_tokenizer, pick_device
from .models import resolve_model_dir
from .profiles import PROFILE_FILE, ModelProfile, resolve_profile

log = logging.getLogger(__name__)

# "auto" trains models above this many parameters through LoRA: all-MiniLM-L6-v2 (22M) and
# BERT-base kin whole, Qwen3-Embedding-0.6B and up with adapters (its AdamW state alone would
# take 10 GB trained whole).
LORA_ABOVE_PARAMETERS = 300_000_000
LORA_RANK = 16
# Sentence-transformers' names for pgkb's poolings.
_POOLING_MODES = {"mean": "mean", "cls": "cls", "last_token": "lasttoken"}
_NEGATIVE_KEY = re.compile(r"negative_(\d+)$")


@dataclass(frozen=True)
class TrainingOptions:
    """How to train; Settings' finetune_* fields (`Settings.training_options()`)."""

    epochs: float = default("finetune_epochs")
    learning_rate: float = default("finetune_learning_rate")
    batch_size: int = default("finetune_batch_size")
    max_tokens: int = default("finetune_max_tokens")  # longer texts are cut while training
    lora: LoraUse = default("finetune_lora")
    seed: int = default("finetune_seed")
    device: str = default("device")
    max_steps: int = -1  # stop after this many steps (a quick measurement); -1: the epochs decide


@dataclass(frozen=True)
class FinetuneReport:
    """What a training run did and cost."""

    model_dir: str
    base_model: str
    triplets: int
    negatives: int                 # hard negatives per triplet
    steps: int
    lora: bool
    parameters: int
    trained_parameters: int
    device: str
    seconds: float
    samples_per_second: float      # triplets trained on per second
    peak_memory_bytes: int         # GPU memory allocated on CUDA; the process's peak resident memory on CPU
    first_loss: float | None
    last_loss: float | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_triplets(path: Path) -> list[dict[str, str]]:
    """The triplets of a JSON Lines file; ConfigurationError naming the file and line of the first bad one."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"training file {path}: cannot read it: {exc}") from None
    triplets: list[dict[str, str]] = []
    keys: list[str] | None = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ConfigurationError(f"training file {path}, line {number}: not a JSON object") from None
        if not isinstance(row, dict) or not all(isinstance(v, str) and v.strip() for v in row.values()):
            raise ConfigurationError(f"training file {path}, line {number}: every field must be non-empty text")
        row_keys = _triplet_keys(row)
        if row_keys is None:
            raise ConfigurationError(f"training file {path}, line {number}: needs anchor, positive and "
                                     f"negative_1..negative_N, got {sorted(row)}")
        if keys is not None and row_keys != keys:
            raise ConfigurationError(f"training file {path}, line {number}: {len(row_keys) - 2} negatives, "
                                     f"where line 1 has {len(keys) - 2} (every line needs the same number)")
        keys = row_keys
        triplets.append({key: row[key] for key in row_keys})
    if not triplets:
        raise ConfigurationError(f"training file {path}: holds no triplets")
    return triplets


def _triplet_keys(row: dict) -> list[str] | None:
    """anchor, positive, negative_1..N in order, if those are exactly the row's keys."""
    negatives = sorted(int(m.group(1)) for key in row if (m := _NEGATIVE_KEY.match(key)))
    keys = ["anchor", "positive", *(f"negative_{n}" for n in negatives)]
    return keys if set(keys) == set(row) and negatives == list(range(1, len(negatives) + 1)) else None


def finetune(model: str, training: Path, out: Path, options: TrainingOptions = TrainingOptions(), *,
             query_prefix: str = "", profile_file: Path | None = None,
             allow_download: bool = default("allow_download")) -> FinetuneReport:
    """Train `model` on the triplets in `training` and write the result to the folder `out`.

    `query_prefix` is put before every query (anchor), as pgkb's searches put the collection's
    query instruction (EmbeddingSpace.query_instruction).
    """
    import torch
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if out.exists() and any(out.iterdir()):
        raise ConfigurationError(f"--out {out}: the folder is not empty; name a new one for the trained model")
    triplets = read_triplets(training)
    model_dir = resolve_model_dir(model, allow_download)
    profile = resolve_profile(model, model_dir, profile_file)
    device = pick_device(options.device)
    st_model = _sentence_transformer(model_dir, profile, min(options.max_tokens, profile.max_tokens), device)
    end = _end_text(model_dir, profile)
    dataset = Dataset.from_list([{key: (query_prefix + text if key == "anchor" else text) + end
                                  for key, text in row.items()} for row in triplets])
    parameters = sum(p.numel() for p in st_model.parameters())
    lora = options.lora == "on" or (options.lora == "auto" and parameters > LORA_ABOVE_PARAMETERS)
    if lora:
        _add_lora(st_model)
    trained = sum(p.numel() for p in st_model.parameters() if p.requires_grad)
    log.info("training %s (%d parameters, %d trained%s) on %d triplets on %s", model, parameters, trained,
             " through LoRA" if lora else "", len(triplets), device)

    with tempfile.TemporaryDirectory(prefix="pgkb-finetune-") as scratch:
        arguments = SentenceTransformerTrainingArguments(
            output_dir=scratch, num_train_epochs=options.epochs, max_steps=options.max_steps,
            per_device_train_batch_size=options.batch_size, learning_rate=options.learning_rate,
            warmup_steps=0.1,  # a share of the steps
            seed=options.seed, data_seed=options.seed,
            # Mixed precision on CUDA only: on a CPU, bf16 autocast trained all-MiniLM-L6-v2 at half
            # float32's speed, even with native bf16 (AMD EPYC, 2 cores).
            bf16=device.startswith("cuda"), use_cpu=device == "cpu",
            # MNRL takes the batch's other texts as negatives: one query twice in a batch
            # would make its own positive a negative.
            batch_sampler="no_duplicates", save_strategy="no", report_to="none", logging_steps=1,
            disable_tqdm=True, dataloader_num_workers=0)
        trainer = SentenceTransformerTrainer(model=st_model, args=arguments, train_dataset=dataset,
                                             loss=MultipleNegativesRankingLoss(st_model))
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            metrics = trainer.train().metrics
        except torch.OutOfMemoryError:
            raise EmbeddingError(f"out of memory training {model} with batches of {options.batch_size} triplets: "
                                 f"lower --train-batch-size or --train-max-tokens") from None
        seconds = time.perf_counter() - started
    peak = (torch.cuda.max_memory_allocated() if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if lora:
        _merge_lora(st_model)
    save_model(st_model, profile, out)
    steps = trainer.state.global_step
    return FinetuneReport(
        model_dir=str(out), base_model=model, triplets=len(triplets), negatives=len(triplets[0]) - 2, steps=steps,
        lora=lora, parameters=parameters, trained_parameters=trained, device=device, seconds=round(seconds, 2),
        samples_per_second=round(metrics["train_samples_per_second"], 2),
        peak_memory_bytes=int(peak), first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None)


def _sentence_transformer(model_dir: Path, profile: ModelProfile, max_tokens: int, device: str):
    """The model as sentence-transformers' modules, pooled as pgkb pools it (whatever the
    folder's own sentence-transformers files say), its outputs normalised."""
    from sentence_transformers.sentence_transformer import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    # Right padding while training: every text's positions start at 0 as when it runs alone,
    # and the pooling finds the last token from the attention mask.
    transformer = Transformer(str(model_dir), max_seq_length=max_tokens,
                              model_kwargs={"local_files_only": True, "dtype": "float32"},
                              processor_kwargs={"local_files_only": True, "padding_side": "right"},
                              config_kwargs={"local_files_only": True})
    pooling = Pooling(transformer.get_embedding_dimension(), _POOLING_MODES[profile.pooling])
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], device=device)


def _end_text(model_dir: Path, profile: ModelProfile) -> str:
    """The end token to append to every text, where the tokenizer does not end inputs with it
    itself (as pgkb's embedder appends it; embedding/base.py)."""
    if not profile.end_token:
        return ""
    tokenizer = load_tokenizer(model_dir, profile.padding_side)
    end_id = tokenizer.convert_tokens_to_ids(profile.end_token)
    return "" if tokenizer("x")["input_ids"][-1] == end_id else profile.end_token


def _add_lora(st_model) -> None:
    from peft import LoraConfig, get_peft_model

    transformer = st_model[0]
    config = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.05, target_modules="all-linear")
    transformer.model = get_peft_model(transformer.model, config)


def _merge_lora(st_model) -> None:
    """The adapters folded into the weights: the folder holds a plain model pgkb loads."""
    transformer = st_model[0]
    transformer.model = transformer.model.merge_and_unload()


def save_model(st_model, profile: ModelProfile, out: Path) -> None:
    """The trained model in `out`: its weights and tokenizer where transformers loads them
    (the folder itself), and the base model's rules in pgkb-profile.json."""
    out.mkdir(parents=True, exist_ok=True)
    st_model.save(str(out), create_model_card=False)  # a card would look the base model up online
    (out / PROFILE_FILE).write_text(json.dumps(dataclasses.asdict(profile), indent=2, ensure_ascii=False) + "\n")
