"""PDF parsing with chunking, pages per second: pgkb against unstructured, side by side.

    python -m bench.parsing --setup-peer          # once: the peer's own virtualenv
    python -m bench.parsing                       # ../shared/corpus, 3 interleaved rounds

pgkb: ingest's own path, a ParserPool worker parsing each PDF (PyMuPDF) and chunk_elements
cutting it with the default model's tokenizer. The peer: unstructured's
`partition_pdf(strategy="fast")` (pdfminer) and `chunk_by_title`, installed in a separate
virtualenv (--peer-venv) so its PDF extras never become pgkb dependencies. Both sides run as
subprocesses on the same files (the PDFs of the corpus that open without a password, less
any that either side fails on), each warmed up on a file first; rounds alternate which side
goes first, and the medians of the rounds are reported, since the CPUs may be shared.

Offline: both sides run with the network refused beyond loopback and with DO_NOT_TRACK /
SCARF_NO_ANALYTICS set. unstructured's text heuristics load the spaCy model en_core_web_sm
and, when it is missing, try to download it from GitHub; where it is not installed, the peer
runs with a blank English spaCy pipeline plus a sentencizer in its place, which is faster
than the real tagger and parser, so the ratio printed is, if anything, in the peer's favour.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.peers import make_venv

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
DEFAULT_PEER_VENV = Path("/tmp/peers/unstructured-pdf")
# The peer and what its PDF path imports. unstructured-inference goes in without its
# dependencies: strategy="fast" imports it but never runs its models, and its torch
# requirement would pull several GB of CUDA wheels.
PEER_PACKAGES = ["unstructured==0.27.32", "pdfminer.six", "pi_heif", "pypdf", "pikepdf", "pypdfium2",
                 "opencv-python-headless", "pdf2image", "pandas", "scipy", "onnx", "onnxruntime",
                 "huggingface_hub", "matplotlib", "rapidfuzz", "spacy"]
PEER_NO_DEPS = ["unstructured-inference==1.6.14"]
OFFLINE_ENV = {"DO_NOT_TRACK": "true", "SCARF_NO_ANALYTICS": "true", "UNSTRUCTURED_DISABLE_NOTICE": "1",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder searched for PDFs")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--limit", type=int, help="only the first N readable PDFs (a quick smoke run)")
    parser.add_argument("--peer-venv", type=Path, default=DEFAULT_PEER_VENV)
    parser.add_argument("--setup-peer", action="store_true", help="create the peer's virtualenv and exit")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--side", choices=["pgkb", "unstructured"], help=argparse.SUPPRESS)
    parser.add_argument("--files", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        _refuse_network()
        files = json.loads(args.files.read_text())
        timings = _run_pgkb(files) if args.side == "pgkb" else _run_unstructured(files)
        args.out.write_text(json.dumps(timings))
        return 0
    if args.setup_peer:
        setup_peer(args.peer_venv)
        return 0
    results = run(args.corpus, args.repeats, args.peer_venv / "bin" / "python", args.limit)
    print_results(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def setup_peer(venv: Path) -> None:
    make_venv(venv, PEER_PACKAGES, ["--no-deps", *PEER_NO_DEPS])


def run(corpus: Path, repeats: int, peer_python: Path, limit: int | None = None) -> dict:
    """Interleaved rounds over the corpus's PDFs (the first `limit`, if given); per-round and
    median pages per second."""
    if not peer_python.exists():
        raise SystemExit(f"no peer at {peer_python}: run `python -m bench.parsing --setup-peer` first")
    pages = dict(list(_readable_pdfs(corpus).items())[:limit])
    if not pages:
        raise SystemExit(f"no PDF that opens without a password under {corpus}")
    rounds: dict[str, list[dict]] = {"pgkb": [], "unstructured": []}
    for round_number in range(repeats):
        order = ["pgkb", "unstructured"] if round_number % 2 == 0 else ["unstructured", "pgkb"]
        for side in order:
            python = Path(sys.executable) if side == "pgkb" else peer_python
            rounds[side].append(_side(python, side, sorted(pages)))
            print(f"round {round_number + 1}: {side} done", file=sys.stderr, flush=True)
    failed = {f for side_rounds in rounds.values() for r in side_rounds for f in r["errors"]}
    common = sorted(set(pages) - failed)
    total_pages = sum(pages[f] for f in common)
    summary = {}
    for side, side_rounds in rounds.items():
        rates = [total_pages / sum(r["seconds"][f] for f in common) for r in side_rounds]
        summary[side] = {"pages_per_second": statistics.median(rates), "rounds": rates,
                         "chunks": sum(side_rounds[0]["chunks"][f] for f in common),
                         "seconds_per_file": {f: statistics.median(r["seconds"][f] for r in side_rounds)
                                              for f in common}}
    return {
        "files": len(common), "pages": total_pages, "excluded": sorted(failed),
        "errors": {side: side_rounds[0]["errors"] for side, side_rounds in rounds.items()},
        "sides": summary, "ratio": summary["pgkb"]["pages_per_second"] / summary["unstructured"]["pages_per_second"],
        "ratio_per_round": [ours / theirs for ours, theirs in zip(summary["pgkb"]["rounds"],
                                                                   summary["unstructured"]["rounds"])],
        "peer_nlp": rounds["unstructured"][0].get("nlp"), "machine": {"cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
    }


def print_results(results: dict) -> None:
    pgkb, peer = results["sides"]["pgkb"], results["sides"]["unstructured"]
    print(f"{results['files']} PDFs, {results['pages']} pages "
          f"({len(results['excluded'])} excluded: failed on one side or both)")
    for name, side in (("pgkb (PyMuPDF + chunk_elements)", pgkb),
                       ("unstructured (partition_pdf fast + chunk_by_title)", peer)):
        rounds = ", ".join(f"{r:.1f}" for r in side["rounds"])
        print(f"  {name}: {side['pages_per_second']:.1f} pages/s (rounds: {rounds}), {side['chunks']} chunks")
    print(f"  peer's spaCy pipeline: {results['peer_nlp']}")
    rounds = ", ".join(f"{r:.1f}x" for r in results["ratio_per_round"])
    print(f"ratio: pgkb is {results['ratio']:.1f}x the peer's pages per second (medians; round by round: {rounds})")


def _readable_pdfs(corpus: Path) -> dict[str, int]:
    """PDF path -> pages, for the PDFs that open without a password."""
    import pymupdf

    pages = {}
    for path in sorted(corpus.rglob("*.pdf")):
        try:
            with pymupdf.open(path) as doc:
                if not doc.needs_pass and doc.page_count:
                    pages[str(path)] = doc.page_count
        except Exception:  # not a readable PDF: neither side gets it
            continue
    return pages


def _side(python: Path, side: str, files: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="pgkb-bench-") as tmp:
        file_list, out = Path(tmp) / "files.json", Path(tmp) / "out.json"
        file_list.write_text(json.dumps(files))
        subprocess.run([str(python), "-m", "bench.parsing", "--side", side, "--files", str(file_list),
                        "--out", str(out)], cwd=ROOT, check=True, env={**os.environ, **OFFLINE_ENV})
        return json.loads(out.read_text())


def _timed(files: list[str], work) -> dict:
    """Seconds and chunks per file for `work(path) -> chunks`, after one untimed warm-up."""
    work(min(files, key=lambda f: Path(f).stat().st_size))
    result: dict = {"seconds": {}, "chunks": {}, "errors": {}}
    for path in files:
        started = time.perf_counter()
        try:
            chunks = work(path)
        except Exception as exc:  # noqa: BLE001 - a failure excludes the file from both sides
            result["errors"][path] = f"{type(exc).__name__}: {exc}"
            continue
        result["seconds"][path] = time.perf_counter() - started
        result["chunks"][path] = chunks
    return result


def _run_pgkb(files: list[str]) -> dict:
    from embedding import load_embedder
    from ingest.chunking import chunk_elements
    from ingest.parsers import ParseOptions
    from ingest.parsers.pool import ParserPool
    from pgkb.settings import Settings

    embedder = load_embedder()
    max_tokens = min(Settings().chunk_tokens, embedder.max_text_tokens)
    # The peer's "fast" strategy does not OCR: neither does pgkb here, so image-only PDFs
    # fail on this side and leave the comparison.
    with ParserPool(ParseOptions(ocr_languages="none")) as pool:
        def work(path: str) -> int:
            parsed = pool.parse(Path(path), "application/pdf")
            return len(chunk_elements(parsed.elements, path, embedder.count_tokens, max_tokens, parsed.metadata))

        return _timed(files, work)


def _run_unstructured(files: list[str]) -> dict:
    import spacy
    import unstructured.nlp.tokenize as nlp_tokenize

    nlp = "en_core_web_sm"
    if not spacy.util.is_package("en_core_web_sm"):
        blank = spacy.blank("en")
        blank.add_pipe("sentencizer")
        # In place of the model unstructured would download (a monkeypatch mypy cannot follow).
        nlp_tokenize._get_nlp = lambda: blank  # type: ignore[assignment]
        nlp = "blank English + sentencizer (en_core_web_sm is not installed; unstructured would download it)"
    from unstructured.chunking.title import chunk_by_title
    from unstructured.partition.pdf import partition_pdf

    def work(path: str) -> int:
        return len(chunk_by_title(partition_pdf(filename=path, strategy="fast", languages=["eng"])))

    return {**_timed(files, work), "nlp": nlp}


def _refuse_network() -> None:
    """Connections beyond loopback fail: nothing in a benchmark run may download."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(101, f"network refused in the benchmark: {address!r}")
        return real_connect(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]  # a monkeypatch, for this process


if __name__ == "__main__":
    sys.exit(main())
