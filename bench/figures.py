"""The figures the issues ask for, read out of each benchmark's JSON: pgkb's value, the peer's,
their ratio and the target.

Every benchmark's list of figures is fixed, whatever its JSON holds: a figure the JSON lacks
(the benchmark did not run, failed, or ran without a GPU) is kept with the reason it was not
measured, never filled in. The ratio is pgkb's advantage, above 1 when pgkb is better: its
throughput (or score) over the peer's, or the peer's time or memory over pgkb's.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

PII_ENGLISH_TYPES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN")
PII_CHINESE_TYPES = ("CN_ID_CARD", "CN_MOBILE", "CN_LANDLINE", "CN_BANK_CARD", "CN_SOCIAL_CREDIT_CODE",
                     "CN_PASSPORT", "EMAIL_ADDRESS", "CN_NAME")
GPU_SHAPES = ("0.6B", "4B")
RETRIEVAL_LANGUAGES = ("English", "Chinese")  # the first set of each language in the results gives its figures
# Our reading of the issues' "flat" peak memory: the larger corpus's peak within 10% of the 1x peak.
FLAT_MEMORY = 1.10


@dataclass(frozen=True)
class Target:
    """`ratio`: pgkb's advantage over the peer at least `value`; `min` / `max`: pgkb's own
    value at least / at most `value`."""

    kind: str
    value: float


@dataclass(frozen=True)
class Spread:
    """Median, lowest and highest of a figure over a benchmark's repeated runs."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values) -> Spread | None:
        values = [v for v in values or [] if v is not None]
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclass
class Figure:
    benchmark: str
    issue: int
    name: str
    unit: str                      # how values print: see bench/report.py
    peer_name: str | None          # None: a figure with an absolute target and no peer
    higher_is_better: bool = True
    target: Target | None = None
    pgkb: float | None = None
    peer: float | None = None
    pgkb_spread: Spread | None = None
    peer_spread: Spread | None = None
    missing: str | None = None       # why pgkb's value was not measured
    peer_missing: str | None = None  # why the peer's was not
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.pgkb or not self.peer:
            return None
        return self.pgkb / self.peer if self.higher_is_better else self.peer / self.pgkb

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.ratio if self.target.kind == "ratio" else self.pgkb
        if value is None:
            return None
        return value <= self.target.value if self.target.kind == "max" else value >= self.target.value

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


class Lookup:
    """A benchmark's JSON, read by key paths; a missing key reads None."""

    def __init__(self, data: dict | None):
        self.data = data

    def __call__(self, *path):
        value = self.data
        for key in path:
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
                value = value[key]
            else:
                return None
        return value


def figures_for(benchmark: str, data: dict | None, reason: str | None = None) -> list[Figure]:
    """`benchmark`'s figures from its JSON (None when there is none: `reason` says why)."""
    figures = EXTRACTORS[benchmark](Lookup(data))
    fallback = reason or ("no results" if data is None else "not in the results file (an older format?)")
    for figure in figures:
        if figure.pgkb is None and figure.missing is None:
            figure.missing = fallback
        if figure.peer_name and figure.peer is None and figure.peer_missing is None:
            figure.peer_missing = fallback
    return figures


def parsing(d: Lookup) -> list[Figure]:
    pgkb, peer = d("sides", "pgkb"), d("sides", "unstructured")
    note = ""
    if d("files"):
        note = (f"{d('files')} PDFs, {d('pages')} pages, {d('repeats') or len(d('ratio_per_round') or [])} round(s); "
                f"peer's spaCy: {d('peer_nlp')}")
    return [Figure("parsing", 3, "PDF parsing with chunking, pages/s", "pages/s",
                   "unstructured partition_pdf(fast) + chunk_by_title", target=Target("ratio", 10),
                   pgkb=d("sides", "pgkb", "pages_per_second"), peer=d("sides", "unstructured", "pages_per_second"),
                   pgkb_spread=Spread.of((pgkb or {}).get("rounds")), peer_spread=Spread.of((peer or {}).get("rounds")),
                   note=note)]


def tables(d: Lookup) -> list[Figure]:
    note = (f"{d('documents')} PDFs, {d('pages')} pages with ground-truth tables ({d('data')}); "
            "relations micro-averaged" if d("documents") else "")
    figures = [Figure("tables", 23, "Table structure in PDF, adjacency-relation F1", "score",
                      "PyMuPDF page.find_tables()", target=Target("min", 0.85), pgkb=d("sides", "pgkb", "f1"),
                      peer=d("sides", "pymupdf find_tables", "f1"), note=note)]
    for measure in ("precision", "recall"):
        figures.append(Figure("tables", 23, f"Table structure in PDF, adjacency-relation {measure}", "score",
                              "PyMuPDF page.find_tables()", pgkb=d("sides", "pgkb", measure),
                              peer=d("sides", "pymupdf find_tables", measure)))
    return figures


def pii_eval(d: Lookup) -> list[Figure]:
    figures = []
    for entity in PII_ENGLISH_TYPES:
        figures.append(Figure("pii_eval", 4, f"Masking recall, English set, {entity}", "score", None,
                              target=Target("min", 0.95), pgkb=d("synth", "types", entity, "recall")))
    for entity in PII_CHINESE_TYPES:
        figures.append(Figure("pii_eval", 4, f"Masking recall, generated Chinese set, {entity}", "score", None,
                              pgkb=d("chinese", "types", entity, "recall")))
    for folder in ("examples", "corpus"):
        figures.append(Figure("pii_eval", 4, f"Masking share of ingest time, {folder}", "share", None,
                              higher_is_better=False, target=Target("max", 0.15),
                              pgkb=d("ingest", folder, "share_of_ingest"),
                              note=(f"ingest of {folder}: {d('ingest', folder, 'files')} files, "
                                    f"{d('ingest', folder, 'characters'):,} characters"
                                    if d("ingest", folder, "characters") else "")))
    figures.append(Figure("pii_eval", 4, "Masking throughput within ingest (corpus), characters/s", "chars/s",
                          "the same masker, one Presidio call per element", pgkb=d("ingest", "corpus",
                                                                                   "mask_chars_per_second"),
                          peer=d("ingest", "corpus", "per_element_chars_per_second")))
    return figures


def embed_cpu(d: Lookup) -> list[Figure]:
    figures = []
    ours, theirs = d("mixed", "sides", "pgkb local backend"), d("mixed", "sides", "sentence-transformers encode")
    note = (f"{d('mixed', 'chunks')} chunks of {d('mixed', 'min_tokens')}-{d('mixed', 'max_tokens')} tokens, "
            f"{d('threads')} torch threads, {d('repeats')} alternating repeats" if d("mixed", "chunks") else "")
    for unit, key in (("tokens/s", "tokens_per_second"), ("chunks/s", "chunks_per_second")):
        figures.append(Figure(
            "embed_cpu", 5, f"CPU embedding (all-MiniLM-L6-v2), {unit}", unit, "sentence-transformers encode",
            target=Target("ratio", 1.3), pgkb=d("mixed", "sides", "pgkb local backend", key),
            peer=d("mixed", "sides", "sentence-transformers encode", key),
            pgkb_spread=_runs_spread(ours, key, d("mixed", "chunks")),
            peer_spread=_runs_spread(theirs, key, d("mixed", "chunks")), note=note))
    return figures


def _runs_spread(side: dict | None, key: str, chunks: int | None) -> Spread | None:
    if not side:
        return None
    if key == "tokens_per_second":
        return Spread.of(side.get("tokens_per_second_runs"))
    return Spread.of([chunks / seconds for seconds in side.get("seconds", [])] if chunks else None)


def embed_gpu(d: Lookup) -> list[Figure]:
    shapes = {shape.get("shape"): shape for shape in d("shapes") or []}
    figures = []
    for name in GPU_SHAPES:
        shape = Lookup(shapes.get(name))
        absent = f"this run measured the {', '.join(shapes)} shape(s) only" if shapes and name not in shapes else None
        unknown_peak = ("the GPU's bf16 peak is not known: give embed_gpu.py --peak-tflops"
                        if shape("device") and not shape("peak_tflops") else None)
        note = (f"{shape('device')}, {shape('chunks')} chunks, {shape('tokens')} tokens, bf16"
                if shape("device") else "")
        figures.append(Figure(
            "embed_gpu", 5, f"GPU embedding, Qwen3-Embedding-{name} shape, tokens/s", "tokens/s",
            "sentence-transformers encode", target=Target("ratio", 1.5),
            pgkb=shape("sides", "pgkb local backend", "tokens_per_second"),
            peer=shape("sides", "sentence-transformers encode", "tokens_per_second"),
            pgkb_spread=Spread.of(shape("sides", "pgkb local backend", "tokens_per_second_runs")),
            peer_spread=Spread.of(shape("sides", "sentence-transformers encode", "tokens_per_second_runs")),
            missing=absent, peer_missing=absent, note=note))
        figures.append(Figure(
            "embed_gpu", 5, f"GPU model FLOPs utilisation, Qwen3-Embedding-{name} shape", "share",
            "sentence-transformers encode", target=Target("min", 0.40) if name == "4B" else None,
            pgkb=shape("sides", "pgkb local backend", "mfu"),
            peer=shape("sides", "sentence-transformers encode", "mfu"),
            missing=absent or unknown_peak, peer_missing=absent or unknown_peak,
            note=f"MFU against a peak of {shape('peak_tflops')} TFLOP/s bf16" if shape("peak_tflops") else ""))
    return figures


def ingest_e2e(d: Lookup) -> list[Figure]:
    sides = d("sides") or {}

    def spread(side: str, key: str) -> Spread | None:
        return Spread.of([r.get(key) for r in (sides.get(side) or {}).get("rounds", [])])

    note = f"{d('files')} files ({d('pdf')} PDF, {d('docx')} DOCX), {d('repeats')} round(s)" if d("files") else ""
    figures = [
        Figure("ingest_e2e", 6, "End-to-end ingest wall time, pgkb defaults (PII masking on)", "s",
               "LangChain pipeline", higher_is_better=False, target=Target("ratio", 3),
               pgkb=d("sides", "pgkb", "seconds"), peer=d("sides", "langchain", "seconds"),
               pgkb_spread=spread("pgkb", "seconds"), peer_spread=spread("langchain", "seconds"), note=note),
        Figure("ingest_e2e", 6, "End-to-end ingest wall time, pgkb --no-pii (like for like)", "s",
               "LangChain pipeline", higher_is_better=False, target=Target("ratio", 3),
               pgkb=d("sides", "pgkb --no-pii", "seconds"), peer=d("sides", "langchain", "seconds"),
               pgkb_spread=spread("pgkb --no-pii", "seconds"), peer_spread=spread("langchain", "seconds")),
        Figure("ingest_e2e", 6, "End-to-end ingest peak memory (process tree)", "MiB", "LangChain pipeline",
               higher_is_better=False, pgkb=d("sides", "pgkb", "peak_mib"), peer=d("sides", "langchain", "peak_mib"),
               pgkb_spread=spread("pgkb", "peak_mib"), peer_spread=spread("langchain", "peak_mib")),
        Figure("ingest_e2e", 6, "Re-run on unchanged files, share of the first run's time", "share", None,
               higher_is_better=False, target=Target("max", 0.05), pgkb=d("rerun_share_of_first_run"),
               note="LangChain's pipeline has no incremental mode: a re-run does all the work again"),
    ]
    series = d("scale_series_corpus") or "the 1x corpus, copied"
    ours, theirs = d("pgkb_memory_by_scale"), d("langchain_memory_by_scale")
    for scale in (4, 8):
        figures.append(Figure(
            "ingest_e2e", 6, f"Peak memory at {scale}x the corpus / at 1x", "x", "LangChain pipeline",
            higher_is_better=False, target=Target("max", FLAT_MEMORY),
            pgkb=_growth(ours, scale, "peak_mib"), peer=_growth(theirs, scale, "peak_mib"),
            missing=_no_scale(ours, scale), peer_missing=_no_scale(theirs, scale, d.data),
            note=f"scale series: {series}"))
    figures.append(Figure(
        "ingest_e2e", 6, "Wall time per corpus copy at 8x / at 1x (1 = linear)", "x", "LangChain pipeline",
        higher_is_better=False, pgkb=_per_copy_growth(ours, 8), peer=_per_copy_growth(theirs, 8),
        missing=_no_scale(ours, 8), peer_missing=_no_scale(theirs, 8, d.data),
        note="wall time per corpus copy: below 1 means start-up (imports, model load) spread over more files"))
    return figures


def _no_scale(by_scale: dict | None, scale: int, data: dict | None = None) -> str | None:
    """Why a scale series has no point at `scale` (None: it has, or there are no results)."""
    if by_scale and str(scale) not in by_scale:
        return f"this run's scale series went to {max(map(int, by_scale))}x"
    if by_scale is None and data is not None:
        return "LangChain ran at 1x only (--scale-peer not given)"
    return None


def _growth(by_scale: dict | None, scale: int, key: str) -> float | None:
    if not by_scale or str(scale) not in by_scale or "1" not in by_scale:
        return None
    return by_scale[str(scale)][key] / by_scale["1"][key]


def _per_copy_growth(by_scale: dict | None, scale: int) -> float | None:
    growth = _growth(by_scale, scale, "seconds")
    return growth / scale if growth is not None else None


def retrieval_quality(d: Lookup) -> list[Figure]:
    """Per language, pgkb's search modes against the peers. A target is issue 20's acceptance
    check, as the least value that passes: bench/retrieval_quality.py works it out from the peer."""
    sets = d("sets") or {}
    figures = []
    for language in RETRIEVAL_LANGUAGES:
        name = next((name for name, result in sets.items() if result.get("language") == language), None)
        figures += _retrieval_quality_in(language, name, Lookup(sets.get(name)), d("vector_search"))
    return figures


def _retrieval_quality_in(language: str, name: str | None, found: Lookup, vector_search: object) -> list[Figure]:
    """retrieval_quality's figures for one language, whose set `name` (None: not run) found these."""
    note = f"{name}: {found('documents')} documents, {found('queries')} queries, " \
           f"{vector_search} vector search" if name else ""

    def figure(title: str, mode: str, peer: str | None, peer_name: str, metric: str, check: str | None = None):
        required = found("acceptance", check, "required")
        return Figure("retrieval_quality", 20, f"{title}, {language}", "score", peer_name,
                      target=None if required is None else Target("min", required),
                      pgkb=found("scores", mode, metric), peer=found("scores", peer, metric), note=note)

    def better_leg(metric: str) -> str | None:
        values = {leg: found("scores", leg, metric) for leg in ("vector", "keyword")}
        return max((leg for leg in values if values[leg] is not None), key=values.__getitem__, default=None)

    figures = [figure("Keyword search nDCG@10, against plain BM25", "keyword", "bm25",
                      "plain BM25 (bm25s, Lucene, k1 1.5, b 0.75)", "ndcg_at_10", "keyword_vs_bm25")]
    for metric, label, check in (("ndcg_at_10", "nDCG@10", "hybrid_vs_legs_ndcg"),
                                 ("recall_at_100", "recall@100", "hybrid_vs_legs_recall")):
        leg = better_leg(metric)
        figures.append(figure(f"Hybrid search {label}, against the better single leg", "hybrid", leg,
                              f"better single leg ({leg})" if leg else "better single leg", metric, check))
    figures.append(figure("Vector search nDCG@10, against exact dense search", "vector", "exact_dense",
                          "exact dense search (numpy, the same vectors)", "ndcg_at_10"))
    return figures


def search_latency(d: Lookup) -> list[Figure]:
    latency = d("latency") or {}
    default = next((key for key in latency if key.endswith("(default)")), None)
    rows = d("rows", "chunks")
    languages = ", ".join(f"{count} {language}" for language, count in (d("queries_by_language") or {}).items())
    figures = []
    for condition in ("no filter", "1% filter"):
        for percentile, target in (("p50", 20), ("p95", 50)):
            figures.append(Figure(
                "search_latency", 7, f"Hybrid search latency {percentile}, {condition}", "ms", None,
                higher_is_better=False, target=Target("max", target),
                pgkb=d("latency", default, condition, "end_to_end_ms", percentile) if default else None,
                note=f"{rows:,} chunks; {languages or 'English'} queries; search as pgkb runs it, torch threads "
                     f"{default} (other settings below)" if rows and default else ""))
    for condition in ("no filter", "1% filter"):
        figures.append(Figure("search_latency", 7, f"HNSW leg recall@10 against an exact scan, {condition}", "score",
                              None, target=Target("min", 0.98),
                              pgkb=d("recall", condition, "search, exact=None", "recall")))
    variants = {variant.get("index"): variant for variant in d("load", "variants") or []}
    for index in ("no HNSW", "HNSW at the end"):
        variant = Lookup(variants.get(index))
        figures.append(Figure("search_latency", 7, f"Bulk load, rows/s, {index}", "rows/s",
                              "langchain-postgres add_embeddings", target=Target("ratio", 10),
                              pgkb=variant("pgkb_rows_per_second"), peer=variant("langchain_rows_per_second"),
                              note=f"{rows:,} rows; {variant('how')}" if rows and variant("how") else ""))
    return figures


def serve_load(d: Lookup) -> list[Figure]:
    levels = {level.get("clients"): Lookup(level) for level in d("levels") or []}
    rows, errors = d("rows", "chunks"), d("targets", "errors")
    note = (f"{rows:,} chunks; {d('seconds_per_level'):g} s per level and side; {d('mix')}; errors in all levels: "
            f"{errors}" if rows and errors is not None else "")
    peer = "KnowledgeBase.search in-process, as many threads"

    def side(clients: int, *path: str) -> float | None:
        return levels[clients](*path) if clients in levels else None

    return [
        Figure("serve_load", 21, "HTTP search latency p50, 1 client", "ms", peer, higher_is_better=False,
               pgkb=side(1, "http", "p50_ms"), peer=side(1, "in_process", "p50_ms"), note=note),
        Figure("serve_load", 21, "HTTP search latency p95, 4 clients", "ms", peer, higher_is_better=False,
               target=Target("max", 50), pgkb=side(4, "http", "p95_ms"), peer=side(4, "in_process", "p95_ms")),
        Figure("serve_load", 21, "HTTP search throughput, 16 clients", "req/s", peer, target=Target("ratio", 0.8),
               pgkb=side(16, "http", "requests_per_second"), peer=side(16, "in_process", "requests_per_second")),
    ]


EXTRACTORS: dict[str, Callable[[Lookup], list[Figure]]] = {
    "parsing": parsing, "tables": tables, "pii_eval": pii_eval, "embed_cpu": embed_cpu, "embed_gpu": embed_gpu,
    "ingest_e2e": ingest_e2e, "retrieval_quality": retrieval_quality, "search_latency": search_latency,
    "serve_load": serve_load,
}
