"""GPU embedding throughput: pgkb's local backend against sentence-transformers on the same GPU,
for Qwen3-Embedding-0.6B- and 4B-shaped models in bf16.

    python bench/embed_gpu.py                          # both shapes, 2000 chunks of 30-512 tokens
    python bench/embed_gpu.py --shapes 4B --peak-tflops 989 --chunks 4000
    python bench/embed_gpu.py --device cpu --shapes tiny   # checks the whole path without a GPU

The models are randomly initialised from the published Qwen3-Embedding configs (throughput
does not depend on weight values, and nothing is downloaded) and saved with the
sentence-transformers layout of the real repositories (last-token pooling, normalisation), so
both contenders load the same files through their own loaders. The tokenizer is built here:
a word-level vocabulary that ends every input with <|endoftext|>, as Qwen3-Embedding's does.
The chunk texts are prose from --corpus when given, otherwise generated words; their lengths
are drawn uniformly from --min-tokens to --max-tokens.

Reported per shape: tokens/s of each (real tokens; padding is waste), the ratio, and model
FLOPs utilisation, MFU = 2 x parameters x tokens / seconds / peak bf16 FLOP/s, with the
parameters of the transformer layers (the embedding table is a lookup, no FLOPs) and the
GPU's dense bf16 peak looked up from its name (override with --peak-tflops).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.embed_cpu import alternate, chunk_texts, corpus_words  # noqa: E402

# From the config.json of Qwen/Qwen3-Embedding-0.6B and Qwen/Qwen3-Embedding-4B.
# Qwen3 configuration values (ints, floats, a flag) by model size.
SHAPES: dict[str, dict[str, Any]] = {
    "0.6B": dict(vocab_size=151669, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                 rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
    "4B": dict(vocab_size=151665, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
               num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
               rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
    # A small stand-in for checking the script where there is no GPU.
    "tiny": dict(vocab_size=32000, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=4096),
}

# Dense bf16 tensor-core peaks, TFLOP/s, by a part of the device name (most specific first).
PEAK_TFLOPS = [
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H800", 989.4), ("H200", 989.4),
    ("GH200", 989.4), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0),
]


def peak_tflops(device_name: str) -> float | None:
    return next((peak for part, peak in PEAK_TFLOPS if part in device_name), None)


def synthetic_words(count: int = 200_000, vocabulary: int = 30_000, seed: int = 0) -> list[str]:
    """Word-like strings of 2 to 12 letters, drawn with a Zipf-like skew, as prose has."""
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 12))) for _ in range(vocabulary)]
    weights = [1 / (rank + 1) for rank in range(vocabulary)]
    return rng.choices(words, weights=weights, k=count)


def build_tokenizer(words: list[str], vocab_size: int):
    """Word-level, ending every input with <|endoftext|> (the pad token too), like Qwen3-Embedding's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|im_end|>": 1, "[UNK]": 2}
    for word in dict.fromkeys(words):
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A <|endoftext|>",
                                                             special_tokens=[("<|endoftext|>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", unk_token="[UNK]", padding_side="left")


def save_model(folder: Path, shape: dict, tokenizer, device: str, dtype) -> int:
    """A random Qwen3 model in sentence-transformers' layout; returns its layer parameters."""
    import json

    import torch
    from transformers import Qwen3Config, Qwen3Model

    config = Qwen3Config(**shape)
    with torch.device(device):
        model = Qwen3Model(config).to(dtype)
    layer_parameters = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": shape["hidden_size"], "pooling_mode_lasttoken": True}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8192, "do_lower_case": False}))
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return layer_parameters


def bench_shape(name: str, args, words: list[str]) -> dict:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from embedding import load_embedder

    shape = SHAPES[name]
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    tokenizer = build_tokenizer(words, shape["vocab_size"])
    with tempfile.TemporaryDirectory(prefix="pgkb-bench-") as tmp:
        folder = Path(tmp) / f"Qwen3-Embedding-{name}-random"
        parameters = save_model(folder, shape, tokenizer, args.device, dtype)
        pgkb = load_embedder(str(folder), device=args.device, batch_tokens=args.batch_tokens)
        # The saved tokenizer pads on the left, so sentence-transformers' does too.
        reference = SentenceTransformer(str(folder), device=args.device, model_kwargs={"dtype": dtype})
    texts = chunk_texts(words, pgkb.count_tokens, args.chunks, args.min_tokens, args.max_tokens)
    tokens = sum(len(ids) for ids in pgkb.input_ids(texts))
    contenders = {
        "sentence-transformers encode": lambda: reference.encode(texts, batch_size=args.st_batch_size,
                                                                 normalize_embeddings=True),
        "pgkb local backend": lambda: pgkb.embed_documents(texts),
    }
    sample = texts[:64]
    ours, theirs = pgkb.embed_documents(sample), reference.encode(sample, normalize_embeddings=True)
    agreement = float(np.mean(np.sum(ours * theirs, axis=1)))
    for run in contenders.values():  # warm-up: kernels, cuBLAS heuristics, allocator
        run()
    seconds = alternate(contenders, args.repeats)

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    peak = args.peak_tflops or peak_tflops(device_name)
    print(f"\n{name}-shaped Qwen3 ({parameters / 1e6:,.0f} M layer parameters, {dtype}) on {device_name}: "
          f"{len(texts)} chunks, {tokens} tokens; mean cosine pgkb vs sentence-transformers {agreement:.4f}")
    rates, sides = {}, {}
    for contender, runs in seconds.items():
        median = statistics.median(runs)
        rates[contender] = tokens / median
        utilisation = 2 * parameters * tokens / median / (peak * 1e12) if peak else None
        mfu = f"MFU {utilisation:6.1%}" if peak else "MFU n/a (give --peak-tflops)"
        print(f"  {contender:30s} {rates[contender]:9.0f} tokens/s  {len(texts) / median:7.1f} chunks/s  {mfu}"
              f"   runs: {', '.join(f'{s:.2f}' for s in runs)} s")
        sides[contender] = {"seconds": runs, "tokens_per_second": rates[contender],
                            "tokens_per_second_runs": [tokens / run for run in runs],
                            "chunks_per_second": len(texts) / median, "mfu": utilisation}
    ratio = rates["pgkb local backend"] / rates["sentence-transformers encode"]
    print(f"  pgkb / sentence-transformers: {ratio:.2f}x (targets: >= 1.5x, and >= 40% MFU for 4B)")
    return {"shape": name, "layer_parameters": parameters, "dtype": str(dtype), "device": device_name,
            "peak_tflops": peak, "chunks": len(texts), "tokens": tokens, "mean_cosine": agreement,
            "sides": sides, "ratio": ratio}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["0.6B", "4B"], choices=list(SHAPES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--min-tokens", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-tokens", type=int, default=16384, help="pgkb's token budget per batch")
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers' batch size")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, when its name is not known")
    parser.add_argument("--corpus", type=Path, help="a BEIR corpus.jsonl to take the text from")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU here: run this on a machine with an NVIDIA GPU, "
              "or check the script with --device cpu --shapes tiny", file=sys.stderr)
        return 2
    words = corpus_words(args.corpus) if args.corpus else synthetic_words()
    print(f"torch {torch.__version__}, text from {args.corpus or 'generated words'}, "
          f"lengths {args.min_tokens}-{args.max_tokens} tokens, {args.repeats} alternating repeats")
    shapes = []
    for name in args.shapes:
        shapes.append(bench_shape(name, args, words))
        if args.device.startswith("cuda"):
            gc.collect()  # this shape's two models, before the next shape's
            torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps({
            "torch": torch.__version__, "text": str(args.corpus or "generated words"), "repeats": args.repeats,
            "lengths": [args.min_tokens, args.max_tokens], "batch_tokens": args.batch_tokens,
            "st_batch_size": args.st_batch_size, "shapes": shapes, "date": time.strftime("%Y-%m-%d"),
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
