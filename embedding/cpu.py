"""A transformers model made faster on a CPU, computing the same function.

Three changes (all-MiniLM-L6-v2 in bf16 on 2 cores of an AMD EPYC embedded the test
corpus's 5,453 chunk texts in 55 s before them, 42 s after):
- Linear layers run through oneDNN's matmul. MKL, behind torch's default CPU matmul, takes
  its generic code path on AMD processors; oneDNN uses the widest vector unit of any x86 CPU
  (2.2x MKL's speed).
- Where a linear layer feeds an exact GELU (the feed-forward of BERT and its kin), oneDNN
  applies the GELU as the matmul writes its output: one pass less over the largest
  activation (4% less time). Each block is checked against its unfused output.
- Bidirectional attention runs in slices of a few texts, each through two batched matrix
  products and one pass over its scores, which stay in the cache (see `sliced_attention`),
  where that is faster on this CPU: it is timed against PyTorch's fused kernel when the model
  loads. On an AMD EPYC (Zen 5) the fused kernel spends its time on small matrix products:
  with MiniLM's 32-wide heads it ran at 90 GFLOP/s, the slices at 210 (20% less time in
  all). On an Intel Xeon with AMX (Emerald Rapids) the fused kernel was 1.4 to 2.5x faster
  than the slices.
Vectors stay as close to float32's as before: cosine 0.99994 on average in bf16.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

log = logging.getLogger(__name__)

# Attention scores computed at a time: a few MiB stay in the cache. (MiniLM on an AMD EPYC:
# 1 to 8 MiB within 3% of each other; a whole batch of 84 texts at once, 1.6x slower.)
SLICE_SCORE_BYTES = 4 << 20
SLICED_ATTENTION = "pgkb_sliced_sdpa"
# A slice whose scores all stay below this skips the softmax's shift by their maximum: exp(60)
# is 1e26, so sums of exp(score) x value over 100,000 keys stay below float32's and bf16's
# largest number (3.4e38) for values up to 1e7. (float16's is 65,504: SDPA computes those.)
SAFE_EXP_ARGUMENT = 60.0


def speed_up(model) -> None:
    """Make `model`, loaded for a CPU with SDPA attention, faster in place."""
    if use_onednn_linear(model):
        fuse_gelu_into_linear(model)
    use_sliced_attention(model)


def bound_onednn_caches() -> None:
    """Keep oneDNN's caches of built matmuls small; read when the first oneDNN op runs, so set
    before it (a value the user set is kept).

    oneDNN (and ideep, PyTorch's layer over it) keep the matmul built for each input shape, up
    to 1,024 of each, about 1.5 MB apiece. Sorted batches rarely repeat a shape (texts x width),
    so the caches only grew with the corpus: 150 batches took 230 MB; a few entries are enough
    for a forward pass's layers to share theirs.
    """
    for cache in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.setdefault(cache, "16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere oneDNN
    emulates it, slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: stay with float32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache
def onednn_linear_class(post_op: str = "none"):
    """nn.Linear computed by oneDNN's matmul (the op PyTorch's own compiler uses on CPU),
    followed by `post_op` in the same pass: "none", or "gelu" (exact, with erf)."""
    import torch

    algorithm = {"none": "", "gelu": "none"}[post_op]  # oneDNN's GELU variant: "none" is erf

    class OneDNNLinear(torch.nn.Linear):
        def forward(self, x):
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight, self.bias, post_op, [], algorithm)

    OneDNNLinear.__name__ = OneDNNLinear.__qualname__ = "OneDNNLinear" if post_op == "none" else "OneDNNLinearGELU"
    return OneDNNLinear


def use_onednn_linear(model) -> bool:
    """Switch the nn.Linear layers of `model` to oneDNN's matmul, where this torch has
    the op and it gives the same numbers; returns whether it did."""
    import torch

    linear = onednn_linear_class()
    try:
        probe, x = torch.nn.Linear(16, 8), torch.randn(3, 5, 16)
        with torch.inference_mode():
            same = torch.allclose(linear.forward(probe, x), probe(x), atol=1e-5)
    except (AttributeError, RuntimeError, NotImplementedError):  # a torch built without oneDNN
        same = False
    if not same:
        log.info("oneDNN matmul unavailable; using torch's default CPU matmul")
        return False
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype in (torch.float32, torch.bfloat16):
            module.__class__ = linear  # same parameters and state dict; only forward changes
    return True


def fuse_gelu_into_linear(model) -> int:
    """Where a block computes `intermediate_act_fn(dense(x))` (BERT's *Intermediate, and
    the models copied from it) with an exact GELU, compute the GELU in the matmul. Each
    block is checked on a probe input and left as it was if the output differs; returns
    how many blocks were fused."""
    import torch
    from transformers.activations import GELUActivation

    linear, fused_linear = onednn_linear_class(), onednn_linear_class("gelu")
    fused = 0
    for block in model.modules():
        dense, act = getattr(block, "dense", None), getattr(block, "intermediate_act_fn", None)
        if dense is None or act is None or not (
                type(dense) is linear and type(act) is GELUActivation and act.act is torch.nn.functional.gelu):
            continue
        dtype = dense.weight.dtype
        # Fused, the GELU reads the matmul's float32 sums rather than their rounding to dtype.
        tolerance = max(4 * torch.finfo(dtype).eps, 1e-5)
        probe = torch.randn(2, 3, dense.in_features, dtype=dtype)
        try:
            with torch.inference_mode():
                before = block(probe)
                dense.__class__, block.intermediate_act_fn = fused_linear, torch.nn.Identity()
                same = torch.allclose(block(probe).float(), before.float(), rtol=tolerance, atol=tolerance)
        except (TypeError, RuntimeError):  # a block that only looks like BERT's
            same = False
        if same:
            fused += 1
        else:
            dense.__class__, block.intermediate_act_fn = linear, act
    return fused


def use_sliced_attention(model) -> None:
    """Compute `model`'s bidirectional attention in slices (see `sliced_attention`), if that is
    faster than SDPA on this CPU for its heads."""
    config = model.config
    if config._attn_implementation != "sdpa":
        return
    width = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if sliced_attention_is_faster(config.num_attention_heads, width, model.dtype):
        register_sliced_attention()
        model.set_attn_implementation(SLICED_ATTENTION)


@functools.cache
def sliced_attention_is_faster(heads: int, width: int, dtype) -> bool:
    """Whether `sliced_attention` beats SDPA by 10% on a batch of documents (16 texts of 128
    tokens), on this CPU and torch's current threads: each timed five times, alternately,
    the best time of each compared (a few tens of ms)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    query, key, value = (torch.randn(16, heads, 128, width, dtype=dtype) for _ in range(3))
    encoder = SimpleNamespace(is_causal=False)
    best = {sliced_attention: float("inf"), sdpa_attention_forward: float("inf")}
    with torch.inference_mode():
        for _ in range(5):
            for attention in best:
                started = time.perf_counter()
                attention(encoder, query, key, value, None, scaling=width ** -0.5, is_causal=False)
                best[attention] = min(best[attention], time.perf_counter() - started)
    sliced, sdpa = best[sliced_attention], best[sdpa_attention_forward]
    log.debug("attention of %d heads of %d in %s: sliced %.1f ms, SDPA %.1f ms", heads, width, dtype,
              sliced * 1e3, sdpa * 1e3)
    return sliced < 0.9 * sdpa


@functools.cache
def register_sliced_attention() -> None:
    """Make SLICED_ATTENTION a transformers attention implementation, with SDPA's masks."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SLICED_ATTENTION, sliced_attention)
    AttentionMaskInterface.register(SLICED_ATTENTION, sdpa_mask)


def sliced_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                     scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """transformers' SDPA attention, computed a slice of texts at a time on a CPU.

    Takes SDPA's arguments (query, key, value: [texts, heads, tokens, head width]; the mask
    boolean or additive, broadcastable to the scores) and returns what it returns. Handles
    attention that is bidirectional with at most padded keys masked out, the attention of
    encoders, in float32 or bf16; anything else (causal attention, grouped keys, position
    biases, dropout, float16, other devices) goes to SDPA itself.

    A slice takes two matrix products and, where no score can be large enough for its exp to
    overflow, one pass over the scores: the weights are exp(scores), unshifted, and the value
    vectors get a last component, 1 for real keys and 0 for padding (whose values are zeroed
    too), so that the second product yields both the weighted sums of values and, in that
    last column, the softmax's denominators. Other slices take the softmax.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)  # SDPA's default
    real_keys = _real_keys(attention_mask, key)
    if (real_keys is None or causal or dropout or query.device.type != "cpu" or key.shape[1] != query.shape[1]
            or query.dtype not in (torch.float32, torch.bfloat16)
            or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)

    texts, heads, tokens, width = query.shape
    query = query * (scaling if scaling is not None else width ** -0.5)  # scaled once, not every score
    # |q.k| <= |q| |k|: a text's scores are all below this in every head. (Norms in the
    # model's precision: bf16's 0.4% is well within the margin below exp's limit.)
    largest_score = (torch.linalg.vector_norm(query, dim=-1).amax(dim=-1).float()
                     * torch.linalg.vector_norm(key, dim=-1).amax(dim=-1).float()).amax(dim=-1)
    exp_is_safe = (largest_score < SAFE_EXP_ARGUMENT).tolist()
    real = real_keys.to(value.dtype)
    values_and_ones = torch.cat([value * real, real.expand(*value.shape[:-1], 1)], dim=-1)
    padding = ~real_keys.transpose(-1, -2)  # [texts, 1, 1, keys], for the softmax
    step = max(1, SLICE_SCORE_BYTES // (heads * tokens * key.shape[2] * query.element_size()))
    out = torch.empty(texts, tokens, heads, value.shape[-1], dtype=value.dtype)
    for start in range(0, texts, step):
        rows = slice(start, start + step)
        scores = torch.matmul(query[rows], key[rows].transpose(-1, -2))
        if all(exp_is_safe[rows]):
            sums = torch.matmul(scores.exp_(), values_and_ones[rows])
            out[rows] = (sums[..., :-1] / sums[..., -1:]).transpose(1, 2)
        else:
            scores.masked_fill_(padding[rows] if len(padding) > 1 else padding, float("-inf"))
            out[rows] = torch.matmul(torch.softmax(scores, dim=-1), value[rows]).transpose(1, 2)
    return out, None


def _real_keys(attention_mask, key):
    """[texts, 1, keys, 1]: True where a key may be attended to, for a mask that masks out
    whole keys (padding) and nothing else; None for any other mask."""
    import torch

    if attention_mask is None:
        return torch.ones(1, 1, key.shape[2], 1, dtype=torch.bool)
    if attention_mask.dtype != torch.bool or attention_mask.dim() != 4:
        return None
    first_query = attention_mask[:, :, :1, :]
    if attention_mask.shape[1] != 1 or not torch.equal(attention_mask, first_query.expand_as(attention_mask)):
        return None
    return first_query.transpose(-1, -2)
