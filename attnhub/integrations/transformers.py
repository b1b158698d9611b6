"""Hugging Face transformers: ``attn_implementation="attnhub"``.

    from attnhub.integrations.transformers import register
    register()
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="attnhub")

:func:`register` adds :func:`attention_forward` to transformers' ``AttentionInterface`` and
a mask function returning the 2-D padding mask (or ``None``) to its
``AttentionMaskInterface`` (:func:`padding_mask`).  Every attention layer then calls :func:`attnhub.attention`
(auto-dispatch, or the backend given to ``register``).

What the model passes, and where it goes:

* ``is_causal`` / ``module.is_causal`` → ``causal=`` (bottom-right aligned, so decoding with a
  KV cache needs nothing special); ``scaling`` → ``scale=``; ``softcap`` → ``softcap=``
  (Gemma-2); ``sliding_window=w`` → ``window=(w - 1, w - 1)``, transformers' convention
  (``kv_idx > q_idx - w``; Mistral, Gemma-2).  GQA/MQA: K/V arrive un-repeated and stay so.
* A padding mask never gets dropped.  Each row of the batch is cut into three segments
  (padding before, the tokens, padding after) and the batch runs as one
  :func:`attnhub.attention_varlen` call over those segments, in place: no gather, no copy,
  no host sync under ``torch.compile``.  Queries only meet keys of their own segment, so
  padding never leaks into a real token; outputs at padded positions are meaningless, as in
  every implementation.  A mask with holes inside a row, or a 4-D mask the user built, is
  not a segment pattern: it goes to a dense fallback that applies the mask as given.
* Packed sequences (batch 1, ``position_ids`` restarting, no mask; or flash-attn's
  ``cu_seq_lens_q/k`` kwargs) run as varlen, one segment per sequence, as in transformers'
  flash-attention paths (its eager/sdpa paths separate them only when no cache is used).
* ``dropout > 0`` raises (no attnhub backend implements attention dropout); so do attention
  sinks (``s_aux``) and position biases, which the contract has no place for.
"""

from __future__ import annotations

import logging
import warnings
from typing import Optional

import torch

import attnhub
from attnhub._validate import tensor_memo

__all__ = ["register", "attention_forward", "padding_mask", "NAME"]

NAME = "attnhub"

_log = logging.getLogger(__name__)


def register(name: str = NAME, *, backend: Optional[str] = None) -> str:
    """Register ``attn_implementation=name`` with transformers; returns ``name``.

    Args:
        name: the string models will be given as ``attn_implementation``.
        backend: pin an attnhub backend for this name (e.g. ``register("attnhub-triton",
            backend="triton-fa2")``); ``None`` auto-dispatches per problem.
    """
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("attnhub.integrations.transformers needs transformers >= 5: "
                          "pip install 'attnhub[transformers]'") from exc
    if not isinstance(name, str) or not name:
        raise TypeError(f"name={name!r}: expected a non-empty str, e.g. 'attnhub'")
    if "flash" in name or "/" in name or "|" in name:
        raise ValueError(f"name={name!r}: transformers reads names containing 'flash', '/' or "
                         "'|' as flash-attention, hub-kernel or paged requests; choose another, "
                         "e.g. 'attnhub-fa2'")
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend={backend!r}: expected None or a backend name (str); "
                        "see `attnhub list-backends`")

    def forward(module, query, key, value, attention_mask, **kwargs):
        return attention_forward(module, query, key, value, attention_mask, backend=backend,
                                 **kwargs)

    forward.__name__ = forward.__qualname__ = f"attnhub_attention_forward[{name}]"
    AttentionInterface.register(name, forward)
    AttentionMaskInterface.register(name, padding_mask)
    return name


def padding_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0,
                 kv_offset: int = 0, mask_function=None,
                 attention_mask: Optional[torch.Tensor] = None, **kwargs):
    """transformers' mask-function signature: the 2-D padding mask (its last ``kv_length``
    columns), or ``None`` when there is none.  Causal and sliding-window patterns are not
    materialised: :func:`attention_forward` gets them from the module.

    Unlike transformers' flash-attention mask it never reads the mask's values under
    ``torch.compile`` (an all-ones mask simply runs as segments without padding), so a
    compiled model with a padding mask has no graph break.
    """
    if attention_mask is None:
        return None
    attention_mask = attention_mask[:, -kv_length:]
    if not torch.compiler.is_compiling() and attention_mask.shape[1] == kv_length \
            and bool(attention_mask.all()):
        return None
    return attention_mask


def attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                      value: torch.Tensor, attention_mask: Optional[torch.Tensor],
                      dropout: float = 0.0, scaling: Optional[float] = None,
                      sliding_window: Optional[int] = None, softcap: Optional[float] = None,
                      is_causal: Optional[bool] = None, backend: Optional[str] = None,
                      **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature over :func:`attnhub.attention`.

    ``query (B, Hq, Sq, D)``, ``key``/``value`` ``(B, Hk, Sk, D)``; returns
    ``(out (B, Sq, Hq, Dv), None)`` like transformers' sdpa and flash functions.
    """
    _refuse_unsupported(module, dropout, kwargs)
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    common = dict(causal=causal, scale=scaling, softcap=softcap, backend=backend,
                  window=_window(sliding_window))
    if attention_mask is not None and attention_mask.dim() == 4:
        return _dense_masked(query, key, value, attention_mask, scaling, softcap), None
    if attention_mask is not None and attention_mask.dim() != 2:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected a "
                         "2-D padding mask (batch, keys) or a 4-D mask (batch, 1, queries, keys)")
    if attention_mask is not None:
        return _padded(query, key, value, attention_mask.bool(), common), None
    packed = _packed_offsets(query, key, kwargs)
    if packed is not None:
        cu_q, cu_k, max_q, max_k = packed
        o = attnhub.attention_varlen(query[0].transpose(0, 1), key[0].transpose(0, 1),
                                     value[0].transpose(0, 1), cu_q, cu_k, max_q, max_k,
                                     **common)
        return o.unsqueeze(0), None
    o = attnhub.attention(query, key, value, **common)
    return o.transpose(1, 2), None


def _refuse_unsupported(module, dropout, kwargs) -> None:
    if dropout:
        raise ValueError(
            f"attention dropout={dropout}: attnhub backends compute exact attention and "
            "implement no dropout. Set config.attention_dropout=0.0, call model.eval(), or "
            "use attn_implementation='eager' / 'sdpa' for this model.")
    for arg, what in (("s_aux", "attention sinks"), ("position_bias", "position biases")):
        if kwargs.get(arg) is not None:
            raise ValueError(f"{arg} ({what}) is not part of the attnhub contract; use "
                             f"attn_implementation='eager' for {type(module).__name__}")
    cache = kwargs.get("cache")
    if cache is not None and type(cache).__name__ == "PagedAttentionCache":
        raise ValueError("paged KV caches (continuous batching) are not supported by "
                         "attn_implementation='attnhub'; use generate() with the default cache")
    if kwargs.get("output_attentions"):
        warnings.warn("attnhub never materialises attention weights; output_attentions=True "
                      "returns None for them (use attn_implementation='eager' to get them)",
                      stacklevel=3)


def _window(sliding_window: Optional[int]) -> Optional[tuple[int, int]]:
    if sliding_window is None:
        return None
    if isinstance(sliding_window, bool) or not isinstance(sliding_window, int) \
            or sliding_window < 1:
        raise ValueError(f"sliding_window={sliding_window!r}: expected None or an int >= 1 "
                         "(keys j with i - j < sliding_window are visible)")
    return (sliding_window - 1, sliding_window - 1)


# -- padding masks -------------------------------------------------------------------------

def _segments(mask: torch.Tensor):
    """Offsets of the three segments (pad, tokens, pad) of each row of a 2-D bool mask.

    Returns ``(cu (3B + 1,) int32, contiguous)`` where ``contiguous`` is a 0-d bool tensor:
    False when some row's tokens are not one run (holes), and the offsets are then wrong.
    """
    B, L = mask.shape
    n = mask.sum(1)
    first = torch.where(n > 0, mask.int().argmax(1), torch.zeros_like(n))
    start = torch.arange(B, device=mask.device) * L
    cu = torch.stack([start + first, start + first + n, start + L], 1).flatten()
    cu = torch.cat([cu.new_zeros(1), cu]).to(torch.int32)
    idx = torch.arange(L, device=mask.device)
    inside = (idx >= first[:, None]) & (idx < (first + n)[:, None])
    return cu, (inside == mask).all()


def _mask_segments(mask, Sq, read=False):
    cu_q, ok_q = _segments(mask[:, mask.shape[1] - Sq:])
    cu_k, ok_k = _segments(mask)
    contiguous = ok_q & ok_k
    return cu_q, cu_k, bool(contiguous) if read else contiguous


def _padded(query, key, value, mask, common):
    B, Hq, Sq, D = query.shape
    Sk = key.shape[2]
    if mask.shape[0] != B or mask.shape[1] > Sk:
        raise ValueError(f"attention_mask has shape {tuple(mask.shape)}; expected (batch={B}, "
                         f"keys<={Sk})")
    if mask.shape[1] < Sk:  # a static cache: slots past the mask are unused
        key, value = key[:, :, :mask.shape[1]], value[:, :, :mask.shape[1]]
        Sk = mask.shape[1]
    if Sq > Sk:
        raise ValueError(f"{Sq} queries but {Sk} keys in the padding mask; expected the queries "
                         "to be the last tokens of the keys")
    if torch.compiler.is_compiling():
        cu_q, cu_k, contiguous = _mask_segments(mask, Sq)
        torch._assert_async(contiguous, "attnhub: a padding mask with holes inside a row "
                            "cannot run under torch.compile; run it eagerly")
    else:
        # every layer gets the same mask: cut it (and read it: a host sync) once per forward
        cu_q, cu_k, contiguous = tensor_memo(mask, f"segments{Sq}", lambda: _mask_segments(
            mask, Sq, read=True))
        if not contiguous:
            return _dense_padded(query, key, value, mask, common)
    # (B, H, S, D) -> (B*S, H, D): a view when the tensors are BSHD in memory, as
    # transformers' projections produce them.
    q = query.transpose(1, 2).reshape(B * Sq, Hq, D)
    k = key.transpose(1, 2).reshape(B * Sk, key.shape[1], key.shape[3])
    v = value.transpose(1, 2).reshape(B * Sk, value.shape[1], value.shape[3])
    o = attnhub.attention_varlen(q, k, v, cu_q, cu_k, Sq, Sk, **common)
    return o.view(B, Sq, Hq, value.shape[3])


def _packed_offsets(query, key, kwargs):
    """flash-attn style packing: explicit ``cu_seq_lens_*`` kwargs, or batch-1
    ``position_ids`` that restart (the rule transformers' masks use)."""
    if kwargs.get("cu_seq_lens_q") is not None:
        if query.shape[0] != 1:
            raise ValueError("cu_seq_lens_q/k need the packed batch of size 1, got batch "
                             f"{query.shape[0]}")
        cu_q = kwargs["cu_seq_lens_q"].to(torch.int32)
        cu_k = kwargs.get("cu_seq_lens_k", kwargs["cu_seq_lens_q"]).to(torch.int32)
        max_q = kwargs.get("max_length_q")
        max_k = kwargs.get("max_length_k", max_q)
        if max_q is None:
            raise ValueError("cu_seq_lens_q given without max_length_q; pass both, as "
                             "DataCollatorWithFlattening(return_flash_attn_kwargs=True) does")
        return cu_q, cu_k, int(max_q), int(max_k)
    position_ids = kwargs.get("position_ids")
    if position_ids is None or query.shape[0] != 1 or position_ids.shape[-1] < 2 \
            or position_ids.shape[-1] != query.shape[2] or query.shape[2] != key.shape[2]:
        return None  # not one flattened batch, or decoding with a cache
    if torch.compiler.is_compiling():
        restarts = torch.diff(position_ids.reshape(-1)) != 1
        torch._assert_async(~restarts.any(), "attnhub: packed sequences (position_ids that "
                            "restart) under torch.compile need cu_seq_lens_q/k and "
                            "max_length_q/k kwargs; run eagerly otherwise")
        return None
    # Every layer gets the same position_ids: read them (a host sync) once per forward.
    return tensor_memo(position_ids, "packed", lambda: _restart_offsets(position_ids.reshape(-1)))


def _restart_offsets(pos: torch.Tensor):
    restarts = torch.diff(pos) != 1  # a new sequence starts after each True
    if not bool(restarts.any()):
        return None
    offs = torch.nonzero(restarts).flatten() + 1
    cu = torch.cat([offs.new_zeros(1), offs, offs.new_tensor([pos.numel()])]).to(torch.int32)
    longest = int(torch.diff(cu).max())
    return cu, cu, longest, longest


# -- the dense fallback: masks that are not segments ---------------------------------------

def _dense_padded(query, key, value, mask, common):
    """Padding with holes: the mask as transformers' eager path builds it (positions, not
    ranks), applied densely.  Correct, O(S²) memory: a rare case."""
    Sq, Sk = query.shape[2], key.shape[2]
    i = torch.arange(Sq, device=query.device)[:, None] + (Sk - Sq)
    j = torch.arange(Sk, device=query.device)[None, :]
    allowed = mask[:, None, None, :].expand(-1, 1, Sq, -1)
    if common["causal"]:
        allowed = allowed & (j <= i)
    if common["window"] is not None:
        left, right = common["window"]
        allowed = allowed & (j >= i - left) & (j <= i + right)
    return _dense_masked(query, key, value, allowed, common["scale"], common["softcap"])


def _dense_masked(query, key, value, mask, scaling, softcap):
    """A user-built 4-D mask (bool: True = keep; float: added), applied as given."""
    _log.warning("attnhub: attention with an explicit 4-D mask runs a dense fallback "
                 "(O(S^2) memory), not an attnhub backend")
    group = query.shape[1] // key.shape[1]
    k = key.repeat_interleave(group, dim=1)
    v = value.repeat_interleave(group, dim=1)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    s = torch.matmul(query.float(), k.float().transpose(-1, -2)) * scale
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    if mask.dtype == torch.bool:
        s = s.masked_fill(~mask, float("-inf"))
    else:
        s = s + mask.float()
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # rows with no key: O = 0
    o = torch.matmul(p, v.float()).to(query.dtype)
    return o.transpose(1, 2)
