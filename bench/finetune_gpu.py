"""Fine-tuning throughput on a GPU: a Qwen3-Embedding-0.6B-shaped model trained through LoRA for a
few steps with pgkb's fine-tuning (embedding/finetune.py), reporting triplets/s and peak GPU memory.

    python -m bench.finetune_gpu                                  # 0.6B shape, 30 steps of 32 triplets
    python -m bench.finetune_gpu --shape 4B --steps 20 --batch-size 16
    python -m bench.finetune_gpu --device cpu --shape tiny --steps 2   # checks the path without a GPU

The model is randomly initialised from the published config (throughput does not depend on
weight values, and nothing is downloaded; bench/embed_gpu.py builds it and its word-level
tokenizer). Each triplet is a query of --query-tokens words, a positive and one hard negative
of --text-tokens words, generated. Training runs in bf16 on CUDA (float32 on a CPU), with
LoRA adapters of rank embedding.finetune.LORA_RANK on every linear layer.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.embed_gpu import SHAPES, build_tokenizer, save_model, synthetic_words
from embedding.finetune import TrainingOptions, finetune


def write_triplets(path: Path, count: int, words: list[str], query_tokens: int, text_tokens: int, seed: int) -> None:
    rng = random.Random(seed)

    def text(length: int) -> str:
        start = rng.randrange(len(words) - length)
        return " ".join(words[start:start + length])

    rows = [{"anchor": text(query_tokens), "positive": text(text_tokens), "negative_1": text(text_tokens)}
            for _ in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def run(shape: str, device: str, steps: int, batch_size: int, query_tokens: int, text_tokens: int) -> dict:
    import torch

    with tempfile.TemporaryDirectory(prefix="pgkb-finetune-gpu-") as scratch:
        folder = Path(scratch) / f"Qwen3-Embedding-{shape}"  # the name gives it Qwen3-Embedding's profile
        folder.mkdir()
        words = synthetic_words()
        config = SHAPES[shape]
        save_model(folder, config, build_tokenizer(words, config["vocab_size"]), "cpu", torch.float32)
        training = Path(scratch) / "triplets.jsonl"
        write_triplets(training, steps * batch_size, words, query_tokens, text_tokens, seed=0)
        options = TrainingOptions(epochs=1, batch_size=batch_size, max_tokens=text_tokens + 8, lora="on",
                                  device=device, max_steps=steps)
        started = time.perf_counter()
        report = finetune(str(folder), training, Path(scratch) / "tuned", options)
        wall = time.perf_counter() - started
    device_name = torch.cuda.get_device_name(device) if report.device.startswith("cuda") else "cpu"
    return {"shape": shape, "device": device_name, "steps": report.steps, "batch_size": batch_size,
            "query_tokens": query_tokens, "text_tokens": text_tokens, "lora": report.lora,
            "parameters": report.parameters, "trained_parameters": report.trained_parameters,
            "training_seconds": report.seconds, "wall_seconds": round(wall, 1),
            "samples_per_second": report.samples_per_second,
            "peak_memory_gib": round(report.peak_memory_bytes / 2**30, 2),
            "first_loss": report.first_loss, "last_loss": report.last_loss, "date": time.strftime("%Y-%m-%d")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="0.6B")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32, help="triplets per step")
    parser.add_argument("--query-tokens", type=int, default=16)
    parser.add_argument("--text-tokens", type=int, default=256)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args.shape, args.device, args.steps, args.batch_size, args.query_tokens, args.text_tokens)
    print(f"{result['shape']}-shaped Qwen3-Embedding, LoRA ({result['trained_parameters']:,} of "
          f"{result['parameters']:,} parameters trained) on {result['device']}: {result['steps']} steps of "
          f"{result['batch_size']} triplets in {result['training_seconds']:.1f} s, "
          f"{result['samples_per_second']:.1f} triplets/s, peak memory {result['peak_memory_gib']:.2f} GiB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
