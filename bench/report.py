"""The results page: summary.json, BENCHMARKS.md and the plots, built from the benchmarks' JSON
in a results folder (and the harness's records of their runs), never from anything else.

    build(Path("bench/results"), ROOT / "BENCHMARKS.md", runs={...}, context={...})

A figure that no run produced is listed as not measured, with the reason. When the page is
the repository's own BENCHMARKS.md, the README's Performance table (between its
`<!-- bench:performance -->` markers) is rewritten from the same figures.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from bench import serve_load
from bench.figures import Figure, figures_for
from bench.harness import (
    BENCHMARKS,
    EMBED_BAND_CHUNKS,
    EMBED_BANDS,
    PII_CORPUS_FILES,
    QUICK_CHUNKS,
    QUICK_FILES,
    QUICK_QUERIES,
    QUICK_SCALES,
    QUICK_SERVE_SECONDS,
    ROOT,
    SCALE_FILES,
    SCALES,
    RunRecord,
)

if TYPE_CHECKING:
    import matplotlib.figure  # imported where plots are drawn: it takes a while

README = ROOT / "README.md"
# How the figures were reached: written by hand, copied onto the repository's own page.
ENGINEERING_NOTES = Path(__file__).with_name("engineering.md")
README_START, README_END = "<!-- bench:performance -->", "<!-- /bench:performance -->"
# The README's table: one headline figure per benchmark, by name.
HEADLINES = [
    "PDF parsing with chunking, pages/s",
    "Table structure in PDF, adjacency-relation F1",
    "CPU embedding (all-MiniLM-L6-v2), tokens/s",
    "GPU embedding, Qwen3-Embedding-4B shape, tokens/s",
    "End-to-end ingest wall time, pgkb defaults (PII masking on)",
    "Bulk load, rows/s, HNSW at the end",
    "Hybrid search latency p50, no filter",
    "Hybrid search latency p50, 1% filter",
    "Keyword search nDCG@10, against plain BM25, English",
    "Keyword search nDCG@10, against plain BM25, Chinese",
    "Hybrid search nDCG@10, against the better single leg, English",
    "Hybrid search nDCG@10, against the better single leg, Chinese",
    "Masking share of ingest time, corpus",
]
# The peers that run inside pgkb's own environment, beside it.
IN_PROCESS_PEERS = {
    "tables": "PyMuPDF's own `page.find_tables()` (default settings) on the same pages, in the same process",
    "pii_eval": "the same masker called once per element, as Presidio's BatchAnalyzerEngine is usually fed "
                "(recall and share of ingest time have absolute targets)",
    "embed_cpu": "sentence-transformers `encode` on the same model files, in the same process (the `bench` extra)",
    "embed_gpu": "sentence-transformers `encode` on the same model files, on the same GPU (the `bench` extra)",
    "serve_load": "`KnowledgeBase.search` called in the benchmark's own process from as many threads as there are "
                  "HTTP clients, the same mix of searches, right after the HTTP level",
}


def build(results: Path, page: Path, runs: dict[str, RunRecord] | None = None, context: dict | None = None) -> dict:
    """summary.json, the plots and `page` from `results`; `runs` and `context` (machine,
    versions, peers, inputs) come from the harness run that just ended, and are merged over
    what an earlier summary.json of the folder recorded. Returns the summary."""
    summary_path = results / "summary.json"
    earlier = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    records = {**earlier.get("runs", {}), **{name: asdict(record) for name, record in (runs or {}).items()}}
    summary = {**{key: value for key, value in earlier.items() if key not in ("runs", "figures")},
               **(context or {}), "runs": records, "generated": time.strftime("%Y-%m-%d %H:%M")}
    if context and earlier.get("peers"):  # peers not used this time keep what was known of them
        summary["peers"] = {**earlier["peers"], **context.get("peers", {})}
    data = {name: _load(results / f"{name}.json") for name in BENCHMARKS}
    figures = [figure for name in BENCHMARKS
               for figure in figures_for(name, data[name], _missing_reason(name, data[name], records.get(name)))]
    summary["figures"] = [figure.to_dict() for figure in figures]
    results.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")

    plots = write_plots(data, results / "plots", records)
    page.write_text(render_page(summary, figures, plots, data, page))
    if page.resolve() == (ROOT / "BENCHMARKS.md").resolve():
        update_readme(figures, summary)
    return summary


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _missing_reason(name: str, data: dict | None, record: dict | None) -> str | None:
    """Why a benchmark has no results; None where it has."""
    return None if data is not None else _why_not_run(name, record)


def _why_not_run(name: str, record: dict | None) -> str:
    if record and record.get("status") == "failed":
        return "the run failed (see Details)"
    if record and record.get("status") == "skipped":
        return f"not run: {record['reason']}"
    return f"not run yet (`python -m bench --only {name}`)"


# -- values as text --------------------------------------------------------------------------

def value_text(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    formats = {"pages/s": "{:,.1f} pages/s", "tokens/s": "{:,.0f} tokens/s", "chunks/s": "{:,.1f} chunks/s",
               "chars/s": "{:,.0f} chars/s", "rows/s": "{:,.0f} rows/s", "req/s": "{:,.1f} req/s", "s": "{:,.1f} s",
               "ms": "{:,.1f} ms", "MiB": "{:,.0f} MiB", "share": "{:.1%}", "score": "{:.3f}", "x": "{:.2f}x"}
    return formats[unit].format(value)


def target_text(figure: Figure) -> str:
    target = figure.target
    if target is None:
        return "—"
    if target.kind == "ratio":
        return f"≥ {target.value:g}x"
    return ("≤ " if target.kind == "max" else "≥ ") + value_text(target.value, figure.unit)


def _side_text(value: float, spread, unit: str) -> str:
    text = value_text(value, unit)
    if spread and spread.runs > 1:
        text += f" ({value_text(spread.low, unit)} to {value_text(spread.high, unit)})"
    return text


def pgkb_cell(figure: Figure) -> str:
    if figure.pgkb is None:
        return f"not measured: {figure.missing}"
    return _side_text(figure.pgkb, figure.pgkb_spread, figure.unit)


def peer_cell(figure: Figure) -> str:
    if figure.peer_name is None:
        return "—"
    if figure.peer is None:
        why = "" if figure.peer_missing == figure.missing else f" ({figure.peer_missing})"
        return f"{figure.peer_name}: not measured{why}"
    return f"{_side_text(figure.peer, figure.peer_spread, figure.unit)}, {figure.peer_name}"


def ratio_text(ratio: float | None) -> str:
    """Two decimals; three near 1, where a target of 1x is met or missed by less."""
    if ratio is None:
        return "—"
    return f"{ratio:.3f}x" if 0.95 < ratio < 1.05 else f"{ratio:.2f}x"


def met_text(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "—"}[met]


# -- the page ---------------------------------------------------------------------------------

def render_page(summary: dict, figures: list[Figure], plots: dict[str, str | Path], data: dict, page: Path) -> str:
    machine = summary.get("machine") or {}
    quick = any(record.get("quick") for record in summary["runs"].values())
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench` (bench/report.py) from bench/results/*.json: do not edit by hand. -->",
        "",
        "Every figure here comes from one command that runs each benchmark side by side with its peer",
        "(the peers in virtualenvs of their own, never pgkb's dependencies), on this machine, in one run:",
        "",
        "```bash",
        "pip install -e '.[bench]'          # matplotlib and sentence-transformers, beside pgkb",
        "python -m bench                    # everything; under 45 minutes on 2 cores (../shared/corpus)",
        "python -m bench --quick            # a smoke run on small generated inputs, a few minutes",
        "python -m bench --only parsing,ingest_e2e --corpus ./docs     # some of them, on your documents",
        "python -m bench --gpu              # adds the GPU embedding benchmark (NVIDIA GPU, offline)",
        "python -m bench --report-only      # this page and the plots again from bench/results",
        "```",
        "",
    ]
    if quick:
        lines += ["**A quick smoke run:** small generated inputs; the figures show the harness works, not how",
                  "pgkb compares on real documents.", ""]
    if machine:
        lines += [f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, "
                  f"GPU: {machine['gpu'] or 'none'}; {machine['os']}; Python {machine['python']}, "
                  f"torch {machine['torch']}; PostgreSQL {machine['postgresql']} with pgvector {machine['pgvector']} "
                  "(pgkb's embedded server).", ""]
    else:
        lines += ["Machine: not recorded (these results come from runs before the harness; each benchmark's "
                  "details say what its own results file recorded).", ""]
    versions = summary.get("pgkb_versions") or {}
    if versions:
        lines += ["pgkb's side: " + ", ".join(f"{package} {version}" for package, version in versions.items()
                                               if version) + ". Each peer's versions are under Details.", ""]
    dates = sorted({record["date"][:10] for record in summary["runs"].values() if record.get("date")})
    commits = sorted({record["commit"] for record in summary["runs"].values() if record.get("commit")})
    if dates:
        installs = summary.get("peer_install_seconds")
        last = (f" The last run took {summary['total_seconds'] / 60:.1f} minutes"
                + (f", {installs:.0f} s of it installing peers." if installs else ".")
                if summary.get("total_seconds") else "")
        lines += [f"Runs: {', '.join(dates)}; commit {', '.join(commits)}.{last} Each benchmark's own date, "
                  "command and duration are under Details.", ""]
    lines += [
        "## Ratios",
        "",
        "The ratio is pgkb's advantage over the peer, above 1 when pgkb is better: its throughput or score",
        "over the peer's, or the peer's time or memory over pgkb's. Where a benchmark repeats, values are",
        "medians, with the lowest and highest run in brackets. \"—\": the figure has no peer (its target",
        "is absolute) or no target.",
        "",
        "| issue | figure | pgkb | peer | ratio | target | met? |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for figure in figures:
        lines.append(f"| {figure.issue} | {figure.name} | {pgkb_cell(figure)} | {peer_cell(figure)} | "
                     f"{ratio_text(figure.ratio)} | "
                     f"{target_text(figure)} | {met_text(figure.met)} |")
    lines += ["", *sizes_section(), "", "## Plots", ""]
    for file, (_, _, caption) in PLOTS.items():
        where = plots.get(file)
        if isinstance(where, Path):
            lines += [f"**{caption}**", "", f"![{caption}]({os.path.relpath(where, page.parent)})", ""]
        else:
            lines += [f"**{caption}**: not measured: {where}.", ""]
    lines += ["## Details", ""]
    for name, benchmark in BENCHMARKS.items():
        lines += details(name, benchmark, summary, [f for f in figures if f.benchmark == name], data.get(name))
    if page.resolve() == (ROOT / "BENCHMARKS.md").resolve():
        lines += ["", ENGINEERING_NOTES.read_text()]
    return "\n".join(lines).rstrip() + "\n"


def sizes_section() -> list[str]:
    return [
        "## Sizes, and why",
        "",
        "- **Full run** (`python -m bench`): the documents of `--corpus` (default `../shared/corpus`), the",
        "  DBpedia BEIR set and presidio-synth-v2 of `../shared/eval` (generated stand-ins where they are",
        "  missing). Parsing: every PDF that opens, 3 interleaved rounds. CPU embedding: 400 chunks of",
        f"  30-256 tokens x 5 alternating repeats, then {EMBED_BAND_CHUNKS} chunks per length band "
        f"({EMBED_BANDS.replace(',', ', ')} tokens).",
        "  Ingest: the whole corpus side by side at 1x. Masking share of ingest time: a sample of",
        f"  {PII_CORPUS_FILES} corpus files (the ingest benchmark times pgkb with and without masking on the whole",
        "  corpus). Search: 100,000 chunks; retrieval quality: every dev set (DBpedia-entity, CMRC 2018),",
        "  all their test queries, exact vector search. Serving under load: the search collection, "
        f"{', '.join(map(str, serve_load.CLIENTS))}",
        f"  clients, {serve_load.DEFAULT_SECONDS} s per level and side (HTTP, then in-process).",
        f"- **Ingest scaling** ({SCALES.replace(',', ', ')}x, both sides): on a sample of {SCALE_FILES} of the "
        "corpus's files spread",
        "  over their sizes (sorted by size, the middle file of each of equal slices), copied with",
        "  distinct contents (bench/corpus.py); each scale starts from empty tables. 8x the whole corpus",
        "  would take pgkb about 15 and LangChain about 26 minutes alone, more than the 45 minutes the",
        "  whole run may take on 2 cores; a sample taken at even steps through the folders would be",
        "  mostly one-page test files, whose time is all start-up.",
        "- **Quick run** (`--quick`): generated inputs (bench/fixtures.py: six PDF and Word reports plus",
        "  examples/, a 400-entry BEIR set with 40 queries, a 150-entry Chinese one with 30, 150 English",
        f"  PII samples), one round each, {QUICK_FILES} files for ingest at {QUICK_SCALES.replace(',', ', ')}x, "
        f"search at {QUICK_CHUNKS:,} chunks with {QUICK_QUERIES} queries,",
        f"  serving {QUICK_SERVE_SECONDS} s per level. Peers are installed as in a full run.",
        "- `--repeats N` sets the rounds of every benchmark that repeats (parsing, embedding, ingest).",
    ]


def details(name: str, benchmark, summary: dict, figures: list[Figure], data: dict | None) -> list[str]:
    record = summary["runs"].get(name)
    lines = [f"### Issue {benchmark.issue}: {benchmark.title} (`bench/{name}.py`)", ""]
    if record:
        seconds = f", {record['seconds']:.0f} s" if record.get("seconds") is not None else ""
        lines.append(f"- Run: {record['status']}, {record['date']}{seconds}, commit {record.get('commit') or '?'}"
                     + (f"; {record['reason']}" if record.get("reason") else ""))
        if record.get("command"):
            lines.append(f"- Command: `{record['command']}`")
    elif data is not None:
        lines.append(f"- Run: before the harness existed ({data.get('date', 'date not recorded')}); "
                     f"command `{data.get('command', f'python -m bench.{name}')}`")
    peer = summary.get("peers", {}).get(benchmark.peer) if benchmark.peer else None
    if peer:
        versions = ", ".join(f"{package} {version}" for package, version in peer["versions"].items())
        lines.append(f"- Peer's virtualenv: `{peer['venv']}`: {versions}")
    elif name in IN_PROCESS_PEERS:
        lines.append(f"- Peer: {IN_PROCESS_PEERS[name]}")
    lines += [f"- {note}" for note in dict.fromkeys(figure.note for figure in figures if figure.note)]
    extra = DETAIL_TABLES.get(name)
    if extra and data:
        lines += ["", *extra(data)]
    return lines + [""]


def _pii_table(data: dict) -> list[str]:
    lines = ["| set | entity type | values | recall | masked (any type) | precision | false positives |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, key in (("English", "synth"), ("Chinese (generated)", "chinese")):
        for entity, row in (data.get(key) or {}).get("types", {}).items():
            scores = [value_text(row[k], "score") for k in ("recall", "masked", "precision")]
            lines.append(f"| {label} | {entity} | {row['gold']} | {' | '.join(scores)} | {row['false_positives']} |")
    return [f"English set: {(data.get('synth') or {}).get('path')}.", "", *lines]


def _embed_cpu_table(data: dict) -> list[str]:
    if not data.get("bands"):
        return []
    lines = ["| chunk length (tokens) | pgkb tokens/s | sentence-transformers tokens/s | ratio |",
             "| --- | --- | --- | --- |"]
    for band in data["bands"]:
        sides = band["sides"]
        lines.append(f"| {band['band'][0]}-{band['band'][1]} (median {band['median_tokens']:.0f}) | "
                     f"{sides['pgkb local backend']['tokens_per_second']:,.0f} | "
                     f"{sides['sentence-transformers encode']['tokens_per_second']:,.0f} | {band['ratio']:.2f}x |")
    return lines


def _ingest_table(data: dict) -> list[str]:
    pgkb, peer = data.get("pgkb_memory_by_scale") or {}, data.get("langchain_memory_by_scale") or {}
    lines = [f"Scale series: {data.get('scale_series_corpus', 'the 1x corpus, copied')}.", "",
             "| scale | files | pgkb s | pgkb peak MiB | LangChain s | LangChain peak MiB |",
             "| --- | --- | --- | --- | --- | --- |"]
    for scale, ours in pgkb.items():
        theirs = peer.get(scale, {})
        lines.append(f"| {scale}x | {ours['files']} | {ours['seconds']:.1f} | {ours['peak_mib']:,.0f} | "
                     f"{value_text(theirs.get('seconds'), 's').removesuffix(' s')} | "
                     f"{value_text(theirs.get('peak_mib'), 'MiB').removesuffix(' MiB')} |")
    return lines


# Retrieval quality's contenders: label, key in a set's scores.
RETRIEVAL_CONTENDERS = (("pgkb vector", "vector"), ("pgkb keyword", "keyword"), ("pgkb hybrid", "hybrid"),
                        ("plain BM25", "bm25"), ("exact dense", "exact_dense"))
RETRIEVAL_METRICS = (("ndcg_at_10", "nDCG@10"), ("recall_at_100", "recall@100"), ("mrr", "MRR"))


def _retrieval_table(data: dict) -> list[str]:
    sets = data.get("sets")
    if not sets:  # an older results file, of one set and without the peers
        return []
    lines = ["Peers: plain BM25 (bm25s, Lucene variant, k1 1.5, b 0.75, over the reference figures' tokens: "
             "bench/peers/bm25.py) and exact dense search (numpy cosine over the collection's own chunk vectors, "
             "a document ranked by its best chunk, in pgkb's process).", "",
             "| | " + " | ".join(f"{name} {label}" for name in sets for _, label in RETRIEVAL_METRICS) + " |",
             "| --- " * (1 + len(sets) * len(RETRIEVAL_METRICS)) + "|"]
    for label, key in RETRIEVAL_CONTENDERS:
        lines.append(f"| {label} | " + " | ".join(f"{sets[name]['scores'][key][metric]:.3f}" for name in sets
                                                  for metric, _ in RETRIEVAL_METRICS) + " |")
    lines.append("")
    for name, result in sets.items():
        checks = "; ".join(f"{'PASS' if check['passed'] else 'FAIL'} {check['check']}: {check['value']:.3f}"
                           for check in result["acceptance"].values())
        lines.append(f"- {name} ({result['language']}, {result['documents']:,} documents, {result['queries']} "
                     f"{data.get('split', 'test')} queries): {checks}")
    return lines


def _latency_table(data: dict) -> list[str]:
    lines = ["| torch threads | filter | p50 ms | p95 ms | of which embedding, p50 | the rest, p50 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for setting, latency in (data.get("latency") or {}).items():
        for condition in ("no filter", "1% filter"):
            parts = latency.get(condition, {})
            if "end_to_end_ms" in parts:
                lines.append(f"| {setting} | {condition} | {parts['end_to_end_ms']['p50']:.1f} | "
                             f"{parts['end_to_end_ms']['p95']:.1f} | {parts['embedding_ms']['p50']:.1f} | "
                             f"{parts['without_embedding_ms']['p50']:.1f} |")
            for language, values in parts.get("end_to_end_ms_by_language", {}).items():
                lines.append(f"| {setting} | {condition}, {language} queries | {values['p50']:.1f} | "
                             f"{values['p95']:.1f} | | |")
    server = data.get("server", {})
    return [f"PostgreSQL {server.get('postgresql', '?')}, pgvector {server.get('pgvector', '?')}, "
            f"shared_buffers {server.get('shared_buffers', '?')}.", "", *lines]


def _serve_load_table(data: dict) -> list[str]:
    lines = ["| clients | side | requests/s | p50 ms | p95 ms | in the server, p50 / p95 ms | errors | load average |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for level in data.get("levels") or []:
        for side, label in (("http", "HTTP"), ("in_process", "in-process")):
            figures = level[side]
            inside = figures.get("inside_server_ms")
            inside_text = f"{inside['p50']:.1f} / {inside['p95']:.1f}" if inside else "—"
            lines.append(f"| {level['clients']} | {label} | {figures['requests_per_second']:.1f} | "
                         f"{figures['p50_ms']:.1f} | {figures['p95_ms']:.1f} | {inside_text} | {figures['errors']} | "
                         f"{figures['load_average_before'][0]:.1f} - {figures['load_average_after'][0]:.1f} |")
    levels = data.get("levels") or []
    variants = list(dict.fromkeys(name for level in levels for name in level["http"]["by_variant"]))
    lines += ["", "p50 / p95 ms by the search's kind, HTTP and in-process:", "",
              "| search | " + " | ".join(f"{level['clients']} client(s), {label}" for level in levels
                                        for label in ("HTTP", "in-process")) + " |",
              "| --- " * (1 + 2 * len(levels)) + "|"]
    for name in variants:
        cells = [level[side]["by_variant"].get(name) for level in levels for side in ("http", "in_process")]
        lines.append(f"| {name} | " + " | ".join(f"{c['p50']:.1f} / {c['p95']:.1f}" if c else "—" for c in cells)
                     + " |")
    access = data.get("access", {})
    return [f"Access: {access.get('groups')} groups, one per tenth of the departments; the restricted key reads "
            f"{access.get('restricted_key_reads', 0):.0%} of the documents. \"In the server\": the search's own "
            "time inside the request (took_ms); the rest is HTTP, the key's check and JSON.", "", *lines]


DETAIL_TABLES: dict[str, Callable[[dict], list[str]]] = {
    "pii_eval": _pii_table, "embed_cpu": _embed_cpu_table, "ingest_e2e": _ingest_table,
    "retrieval_quality": _retrieval_table,
    "search_latency": _latency_table, "serve_load": _serve_load_table,
}


# -- the plots --------------------------------------------------------------------------------

def _ingest_plot(data: dict, axes_factory) -> matplotlib.figure.Figure:
    series = {"pgkb": data.get("pgkb_memory_by_scale"), "LangChain": data.get("langchain_memory_by_scale")}
    figure, (time_axes, memory_axes) = axes_factory(1, 2, figsize=(11, 4.2))
    for label, by_scale in series.items():
        if not by_scale:
            continue
        scales = sorted(int(scale) for scale in by_scale)
        time_axes.plot(scales, [by_scale[str(s)]["seconds"] for s in scales], marker="o", label=label)
        memory_axes.plot(scales, [by_scale[str(s)]["peak_mib"] for s in scales], marker="o", label=label)
        if label == "pgkb":
            time_axes.plot(scales, [by_scale["1"]["seconds"] * s for s in scales], linestyle="--", color="grey",
                           label="pgkb at 1x, times the scale")
    scales = sorted(int(scale) for scale in series["pgkb"] or {})
    for axes, label in ((time_axes, "wall time, s"), (memory_axes, "peak memory of the process tree, MiB")):
        axes.set_xlabel("corpus size (copies with distinct contents)")
        axes.set_ylabel(label)
        axes.set_xticks(scales, [f"{scale}x" for scale in scales])
        axes.set_ylim(bottom=0)
        axes.legend()
    figure.suptitle(f"Ingest against corpus size: {data.get('scale_series_corpus', 'the 1x corpus, copied')}")
    return figure


def _embedding_plot(data: dict, axes_factory) -> matplotlib.figure.Figure:
    figure, axes = axes_factory(figsize=(7, 4.2))
    bands = data.get("bands") or []
    for side, label in (("pgkb local backend", "pgkb"), ("sentence-transformers encode", "sentence-transformers")):
        if bands:
            axes.plot([b["median_tokens"] for b in bands], [b["sides"][side]["tokens_per_second"] for b in bands],
                      marker="o", label=f"{label}, by chunk length")
        mixed = data["mixed"]
        axes.scatter([mixed["median_tokens"]], [mixed["sides"][side]["tokens_per_second"]], marker="s",
                     label=f"{label}, mixed {mixed['min_tokens']}-{mixed['max_tokens']} tokens")
    axes.set_xlabel("chunk length, tokens (median of the band)")
    axes.set_ylabel("tokens/s")
    axes.set_ylim(bottom=0)
    axes.legend()
    axes.set_title(f"CPU embedding throughput, all-MiniLM-L6-v2, {data.get('threads')} threads")
    return figure


def _gpu_plot(data: dict, axes_factory) -> matplotlib.figure.Figure:
    figure, axes = axes_factory(figsize=(7, 4.2))
    shapes = data.get("shapes") or []
    names = [shape["shape"] for shape in shapes]
    for offset, (side, label) in enumerate((("pgkb local backend", "pgkb"),
                                            ("sentence-transformers encode", "sentence-transformers"))):
        axes.bar([i + offset * 0.4 for i in range(len(names))], [s["sides"][side]["tokens_per_second"] for s in shapes],
                 width=0.4, label=label)
    axes.set_xticks([i + 0.2 for i in range(len(names))], [f"Qwen3-Embedding-{n} shape" for n in names])
    axes.set_ylabel("tokens/s")
    axes.legend()
    axes.set_title(f"GPU embedding throughput, bf16, {shapes[0]['device'] if shapes else ''}")
    return figure


def _latency_plot(data: dict, axes_factory) -> matplotlib.figure.Figure:
    figure, axes = axes_factory(figsize=(9, 4.2))
    groups = [(setting, condition) for setting in data["latency"] for condition in ("no filter", "1% filter")
              if "end_to_end_ms" in data["latency"][setting].get(condition, {})]
    for offset, percentile in enumerate(("p50", "p95")):
        axes.bar([i + offset * 0.4 for i in range(len(groups))],
                 [data["latency"][s][c]["end_to_end_ms"][percentile] for s, c in groups], width=0.4,
                 label=f"{percentile}, end to end")
    for limit, label in ((20, "target p50 ≤ 20 ms"), (50, "target p95 ≤ 50 ms")):
        axes.axhline(limit, linestyle="--", color="grey" if limit == 20 else "black", linewidth=1, label=label)
    axes.set_xticks([i + 0.2 for i in range(len(groups))], [f"{c}\ntorch threads {s}" for s, c in groups])
    axes.set_ylabel("milliseconds")
    axes.legend()
    axes.set_title(f"Hybrid search(q, k=10) at {data['rows']['chunks']:,} chunks: latency percentiles")
    return figure


def _quality_plot(data: dict, axes_factory) -> matplotlib.figure.Figure:
    sets = data["sets"]
    figure, axes_row = axes_factory(1, len(sets), figsize=(5.5 * len(sets), 4.2), squeeze=False)
    for axes, (name, result) in zip(axes_row[0], sets.items()):
        for offset, (metric, label) in enumerate(RETRIEVAL_METRICS[:2]):
            axes.bar([i + offset * 0.4 for i in range(len(RETRIEVAL_CONTENDERS))],
                     [result["scores"][key][metric] for _, key in RETRIEVAL_CONTENDERS], width=0.4, label=label)
        axes.set_xticks([i + 0.2 for i in range(len(RETRIEVAL_CONTENDERS))],
                        [label for label, _ in RETRIEVAL_CONTENDERS], rotation=20)
        axes.set_ylim(0, 1)
        axes.legend(loc="lower right")
        axes.set_title(f"{name} ({result['language']}), {result['queries']} queries")
    figure.suptitle("Retrieval quality: pgkb's modes, plain BM25 and exact dense search")
    return figure


# file: (benchmark, draw, caption)
PLOTS = {
    "ingest_scaling.png": ("ingest_e2e", _ingest_plot, "Ingest time and peak memory against corpus size"),
    "embedding_throughput.png": ("embed_cpu", _embedding_plot, "CPU embedding throughput against chunk length"),
    "embedding_gpu.png": ("embed_gpu", _gpu_plot, "GPU embedding throughput per model shape"),
    "search_latency.png": ("search_latency", _latency_plot, "Hybrid search latency, with and without a filter"),
    "retrieval_quality.png": ("retrieval_quality", _quality_plot,
                              "nDCG@10 and recall@100 per search mode and peer, per dev set"),
}


def write_plots(data: dict, folder: Path, records: dict) -> dict[str, str | Path]:
    """Each plot whose benchmark has results, as a PNG in `folder`; for the others, why not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str | Path] = {}
    for file, (benchmark, draw, _) in PLOTS.items():
        path = folder / file
        path.unlink(missing_ok=True)  # never a plot of an earlier run beside this run's figures
        if data.get(benchmark) is None:
            written[file] = _why_not_run(benchmark, records.get(benchmark))
            continue
        try:
            figure = draw(data[benchmark], plt.subplots)
        except (KeyError, TypeError, IndexError) as error:  # an older or partial results file
            written[file] = f"its results lack what the plot needs ({type(error).__name__}: {error})"
            continue
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written[file] = path
    return written


# -- the README -------------------------------------------------------------------------------

def update_readme(figures: list[Figure], summary: dict) -> None:
    """The README's Performance table, between its markers, from the headline figures."""
    text = README.read_text()
    if README_START not in text or README_END not in text:
        return
    by_name = {figure.name: figure for figure in figures}
    machine = summary.get("machine") or {}
    measured = [by_name[name] for name in HEADLINES if name in by_name and by_name[name].pgkb is not None]
    dates = sorted({record["date"][:10] for record in summary["runs"].values() if record.get("date")})
    where = f"{machine['cores']} cores, {machine['cpu']}; {', '.join(dates)}" if machine else \
        "runs before the harness; the machine is in each results file"
    lines = [README_START, "", f"Latest figures ({where}):",
             "", "| figure | pgkb | peer | ratio | target |", "| --- | --- | --- | --- | --- |"]
    for figure in measured:
        ratio = f"**{ratio_text(figure.ratio)}**" if figure.ratio is not None else "—"
        peer = f"{value_text(figure.peer, figure.unit)} ({figure.peer_name})" if figure.peer is not None else "—"
        met = {True: " (met)", False: " (not met)", None: ""}[figure.met]
        lines.append(f"| {figure.name} | {value_text(figure.pgkb, figure.unit)} | {peer} | {ratio} | "
                     f"{target_text(figure)}{met} |")
    missing = [name for name in HEADLINES if name not in {figure.name for figure in measured}]
    if missing:
        lines += ["", f"Not measured in the latest results: {'; '.join(missing)}."]
    lines += ["", README_END]
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    README.write_text(text[:start] + "\n".join(lines) + text[end:])
