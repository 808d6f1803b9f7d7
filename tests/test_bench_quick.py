"""The benchmark harness's smoke run, so that it cannot rot: `python -m bench --quick` runs every
benchmark side by side with its peer on generated inputs (the peers installed into their own
virtualenvs on first use, as a user's first run would), and its results are checked here:
every benchmark's JSON, the machine and versions in summary.json, every figure on the page,
plots that are real PNG images. This measures nothing: speed and quality figures are the
harness's business, never assertions of a test. It takes a few minutes (more on the first
run, which installs the peers). The serving load test's own quick mode is run alone too (a
minute): a real server process, both sides at every level, every search correct.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bench.figures import EXTRACTORS, figures_for
from bench.fixtures import write_inputs
from bench.harness import BENCHMARKS, OFFLINE_ENV
from bench.report import PLOTS
from bench.serve_load import CLIENTS, VARIANTS

ROOT = Path(__file__).parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.bench


def test_quick_run_measures_every_figure_side_by_side(tmp_path, reachable_tmp_path_factory):
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--results", str(results),
                          "--work-dir", str(reachable_tmp_path_factory("bench-work"))],
                         cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, f"{run.stdout[-6000:]}\n{run.stderr[-3000:]}"

    summary = json.loads((results / "summary.json").read_text())
    machine = summary["machine"]
    for key in ("cpu", "cores", "ram_gib", "os", "python", "torch", "postgresql", "pgvector"):
        assert machine[key], key
    assert summary["pgkb_versions"]["torch"] and summary["pgkb_versions"]["matplotlib"]
    for peer in ("unstructured", "langchain", "langchain-postgres", "bm25"):
        assert all(summary["peers"][peer]["versions"].values()), summary["peers"][peer]

    for name, benchmark in BENCHMARKS.items():
        if benchmark.gpu:  # only with --gpu
            assert name not in summary["runs"] and not (results / f"{name}.json").exists()
            continue
        record = summary["runs"][name]
        assert record["status"] == "ok", record
        assert record["quick"] and record["commit"] and record["seconds"] > 0
        assert json.loads((results / f"{name}.json").read_text()), name

    # Every figure of every benchmark that ran has pgkb's value and, where it has a peer, the
    # peer's, except the scale points beyond the quick run's 2x.
    page = (results / "BENCHMARKS.md").read_text()
    figures = summary["figures"]
    assert {f["benchmark"] for f in figures} == set(EXTRACTORS)
    for figure in figures:
        assert figure["name"] in page
        if figure["benchmark"] == "embed_gpu" or "at 8x" in figure["name"] or "at 4x" in figure["name"]:
            assert figure["pgkb"] is None and figure["missing"], figure
            continue
        assert figure["pgkb"] is not None, figure
        if figure["peer_name"]:
            assert figure["peer"] is not None and figure["ratio"] is not None, figure
    assert [f["name"] for f in figures] == [f.name for name in EXTRACTORS for f in figures_for(name, None)]
    assert "not measured: not run" in page  # the GPU figures, with the reason

    for file, (benchmark, _, caption) in PLOTS.items():
        path = results / "plots" / file
        if benchmark == "embed_gpu":
            assert not path.exists() and f"**{caption}**: not measured" in page
            continue
        png = path.read_bytes()
        assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR", file
        width, height = struct.unpack(">II", png[16:24])
        assert width > 300 and height > 200, (file, width, height)
        assert f"(plots/{file})" in page


def test_serve_load_quick_run_searches_over_http_and_in_process(tmp_path, reachable_tmp_path_factory):
    inputs = write_inputs(tmp_path / "inputs", documents=0)
    out = tmp_path / "serve_load.json"
    run = subprocess.run([sys.executable, "-m", "bench.serve_load", "--quick", "--chunks", "2000", "--seconds", "1",
                          "--corpus", str(inputs.beir / "corpus.jsonl"),
                          "--chinese-corpus", str(inputs.chinese_beir / "corpus.jsonl"),
                          "--data-dir", str(reachable_tmp_path_factory("serve-load")), "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **OFFLINE_ENV})
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"

    report = json.loads(out.read_text())
    assert report["rows"]["chunks"] == 2000 and report["access"]["restricted_key_reads"] == 0.1
    assert [level["clients"] for level in report["levels"]] == list(CLIENTS)
    asked = set()
    for level in report["levels"]:
        for side in ("http", "in_process"):
            figures = level[side]
            # An error is a failed search or a hit of a document the read key's groups may not read.
            assert figures["requests"] > 0 and figures["errors"] == 0, (level["clients"], side, figures)
            assert 0 < figures["p50_ms"] <= figures["p95_ms"]
            asked |= set(figures["by_variant"])
        assert level["http"]["inside_server_ms"]["p50"] < level["http"]["p95_ms"]
    assert asked == {name for name, *_ in VARIANTS}
    assert report["targets"]["errors"] == 0
    assert "HTTP p95 at 4 clients" in run.stdout
    figures = figures_for("serve_load", report)
    assert figures and all(f.pgkb is not None and f.peer is not None for f in figures), figures
