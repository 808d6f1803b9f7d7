"""embedding/cpu.py: each CPU speed-up computes what it replaces, on small randomly
initialised BERT models and on SDPA's own output."""

from types import SimpleNamespace

import pytest
import torch
import transformers
from torch.nn.functional import scaled_dot_product_attention as sdpa

from embedding import cpu

ENCODER = SimpleNamespace(is_causal=False)  # what sliced_attention reads of a layer


def padded_batch(lengths, tokens=7, heads=2, width=8, seed=0):
    """query, key, value [texts, heads, tokens, width] and SDPA's boolean mask for texts of
    `lengths` real tokens, padded on the right."""
    generator = torch.Generator().manual_seed(seed)
    query, key, value = (torch.randn(len(lengths), heads, tokens, width, generator=generator) for _ in range(3))
    real = torch.arange(tokens)[None, :] < torch.tensor(lengths)[:, None]
    return query, key, value, real[:, None, None, :].expand(len(lengths), 1, tokens, tokens)


@pytest.mark.parametrize("slice_bytes", [1, cpu.SLICE_SCORE_BYTES])  # one text per slice, or all at once
def test_sliced_attention_is_sdpa_with_padding_and_with_scores_beyond_exp(monkeypatch, slice_bytes):
    monkeypatch.setattr(cpu, "SLICE_SCORE_BYTES", slice_bytes)
    query, key, value, mask = padded_batch([7, 5, 2])
    query[1] *= 40  # the middle text's scores reach hundreds: exp would overflow, so the softmax
    scores = torch.matmul(query, key.transpose(-1, -2)) * 8 ** -0.5
    assert scores[1].abs().max() > 100 > 10 > scores[[0, 2]].abs().max()
    for attention_mask in (mask, None):
        got, weights = cpu.sliced_attention(ENCODER, query, key, value, attention_mask, scaling=8 ** -0.5)
        expected = sdpa(query, key, value, attn_mask=attention_mask).transpose(1, 2)
        assert weights is None and got.shape == expected.shape == (3, 7, 2, 8)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_other_masks_and_causal_attention_are_left_to_sdpa():
    query, key, value, _ = padded_batch([7, 7])
    causal = torch.ones(7, 7, dtype=torch.bool).tril()[None, None].expand(2, 1, 7, 7)
    assert cpu._real_keys(causal, key) is None  # not padding: SDPA computes it
    got, _ = cpu.sliced_attention(ENCODER, query, key, value, causal, scaling=0.5)
    torch.testing.assert_close(got, sdpa(query, key, value, attn_mask=causal, scale=0.5).transpose(1, 2))
    decoder = SimpleNamespace(is_causal=True)
    got, _ = cpu.sliced_attention(decoder, query, key, value, None, scaling=0.5)
    torch.testing.assert_close(got, sdpa(query, key, value, is_causal=True, scale=0.5).transpose(1, 2))


SMALL = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
OTHER_FAMILIES = {  # embedding models are built on these too (multilingual-e5, gte-modernbert, Qwen3-Embedding)
    "XLMRoberta": dict(SMALL, pad_token_id=1),
    "DistilBert": dict(vocab_size=100, dim=64, n_layers=2, n_heads=4, hidden_dim=128),
    "ModernBert": dict(SMALL, global_attn_every_n_layers=2, local_attention=4, pad_token_id=0, eos_token_id=2,
                       bos_token_id=1, cls_token_id=1, sep_token_id=2),  # local attention: SDPA computes it
    "Qwen3": dict(SMALL, num_key_value_heads=2, head_dim=16),           # causal: SDPA computes it
}


def small_model(family: str, **config):
    torch.manual_seed(0)
    config = getattr(transformers, f"{family}Config")(**config, attn_implementation="sdpa")
    return getattr(transformers, f"{family}Model")(config).eval()


def assert_speed_up_keeps_hidden_states(model):
    """Three texts of 12, 7 and 2 tokens, padded: the same states before and after speed_up
    (padded positions' states are never read)."""
    input_ids = torch.randint(3, 100, (3, 12), generator=torch.Generator().manual_seed(1))
    attention_mask = (torch.arange(12)[None, :] < torch.tensor([[12], [7], [2]])).long()
    with torch.inference_mode():
        before = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        cpu.speed_up(model)
        after = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    real = attention_mask.bool()
    torch.testing.assert_close(after[real], before[real], atol=1e-5, rtol=1e-5)


@pytest.fixture
def sliced_attention_wins(monkeypatch):
    """Whichever attention is faster on this CPU, the sliced one is chosen."""
    monkeypatch.setattr(cpu, "sliced_attention_is_faster", lambda heads, width, dtype: True)


@pytest.mark.parametrize("hidden_act, fused", [("gelu", 2), ("gelu_new", 0)])  # tanh GELU: not fused
def test_a_bert_model_sped_up_computes_the_same_hidden_states(sliced_attention_wins, hidden_act, fused):
    model = small_model("Bert", **SMALL, hidden_act=hidden_act)
    assert_speed_up_keeps_hidden_states(model)
    assert model.config._attn_implementation == cpu.SLICED_ATTENTION
    assert sum(type(m) is cpu.onednn_linear_class("gelu") for m in model.modules()) == fused
    assert all(type(m) is not torch.nn.Linear for m in model.modules())  # all through oneDNN


@pytest.mark.parametrize("family", OTHER_FAMILIES)
def test_other_model_families_sped_up_compute_the_same_hidden_states(sliced_attention_wins, family):
    assert_speed_up_keeps_hidden_states(small_model(family, **OTHER_FAMILIES[family]))


def test_where_sdpa_is_faster_the_model_keeps_it(monkeypatch):
    monkeypatch.setattr(cpu, "sliced_attention_is_faster", lambda heads, width, dtype: False)
    model = small_model("Bert", **SMALL)
    assert_speed_up_keeps_hidden_states(model)
    assert model.config._attn_implementation == "sdpa"
    assert sum(type(m) is cpu.onednn_linear_class("gelu") for m in model.modules()) == 2


def test_the_default_model_runs_sped_up_on_cpu(embedder):
    config = embedder.model.config
    width = config.hidden_size // config.num_attention_heads
    faster = cpu.sliced_attention_is_faster(config.num_attention_heads, width, embedder.model.dtype)  # as timed at load
    assert config._attn_implementation == (cpu.SLICED_ATTENTION if faster else "sdpa")
    fused = cpu.onednn_linear_class("gelu")
    assert sum(type(m) is fused for m in embedder.model.modules()) == embedder.model.config.num_hidden_layers


def test_a_thread_embedding_queries_uses_one_cpu_thread_without_changing_a_thread_that_embeds_documents(embedder):
    import os
    import threading

    documents_threads = torch.get_num_threads()
    searched = threading.Event()
    seen: dict[str, int] = {}

    def search():
        embedder.embed_queries(["when does the canteen open"])
        seen["search"] = torch.get_num_threads()
        searched.set()

    searcher = threading.Thread(target=search)
    searcher.start()
    searched.wait(60)
    embedder.embed_documents(["The canteen opens at eight."])  # in this thread, while the other has searched
    seen["ingest"] = torch.get_num_threads()
    searcher.join()
    assert seen == {"search": 1, "ingest": documents_threads}
    embedder.embed_queries(["lunch"])  # a thread that turns to searching uses one thread...
    assert torch.get_num_threads() == 1
    embedder.embed_documents(["Lunch is at noon."])  # ...and its own count again for documents
    assert torch.get_num_threads() == documents_threads
    # Set when the tokenizer and the model loaded, not when embedding was imported.
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == os.environ["LRU_CACHE_CAPACITY"] == "16"


def test_importing_embedding_sets_no_environment_variable():
    import os
    import subprocess
    import sys

    code = "import os; before = set(os.environ); import embedding; print(sorted(set(os.environ) - before))"
    env = {k: v for k, v in os.environ.items()
           if k not in ("TOKENIZERS_PARALLELISM", "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    added = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert added.stdout.strip() == "[]"
