"""FP8 (e4m3) quantisation of attention inputs, FlashAttention-3 style.

    q8, k8, v8, q_descale, k_descale, v_descale = attnhub.quantize_fp8(q, k, v)
    o = attnhub.attention(q8, k8, v8, q_descale=q_descale, k_descale=k_descale,
                          v_descale=v_descale)           # o: bf16

Two techniques of the FlashAttention-3 paper cut the quantisation error:

* **Block scaling.**  One scale per block instead of one per tensor.  A block here is one
  (batch, KV head) slice — for Q, the ``Hq // Hk`` query heads that share that KV head —
  over the whole sequence and head dim.  That is the finest block the public descale
  shape ``(B, Hk)`` (FlashAttention-3's API) can carry, so no extra object travels: the
  descales *are* the block scales.  (Finer, per-tile scales would need a kernel argument
  the API does not have.)
* **Incoherent processing.**  Q and K are multiplied by the same random orthogonal matrix
  ``M`` on the head dim (a Hadamard matrix with random signs; for head dims that are not a
  power of two, Hadamard ⊗ a random orthogonal matrix).  ``(QM)(KM)ᵀ = QKᵀ``, so the
  attention is unchanged, but a few large "outlier" channels are spread over all channels
  and no longer dominate the block's scale.  V is not rotated (that would rotate O).

Everything here is plain torch: it runs on any device, including the CPU.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["FP8Inputs", "quantize_fp8", "random_orthogonal", "E4M3_MAX"]

E4M3_MAX = 448.0  # largest finite float8_e4m3fn value
_ROTATION_SEED = 0x5EED  # fixed: quantize_fp8 is deterministic
_ROTATIONS: dict = {}


class FP8Inputs(NamedTuple):
    """What :func:`quantize_fp8` returns (unpacks as a 6-tuple).

    q: (B, Hq, Sq, D), k: (B, Hk, Sk, D), v: (B, Hk, Sk, Dv), all ``torch.float8_e4m3fn``;
    ``v`` is stored sequence-major (``v.stride(-2) == 1``), the layout fp8 tensor cores read
    without a transpose.  Descales: float32 (B, Hk); ``x ≈ x8.float() * x_descale`` per
    (batch, KV head) block (q after its rotation when ``hadamard=True``).
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    q_descale: torch.Tensor
    k_descale: torch.Tensor
    v_descale: torch.Tensor

    def descales(self) -> dict:
        """``dict(q_descale=..., k_descale=..., v_descale=...)`` for ``attnhub.attention``."""
        return dict(q_descale=self.q_descale, k_descale=self.k_descale,
                    v_descale=self.v_descale)


def _hadamard(n: int) -> torch.Tensor:
    """Sylvester Hadamard matrix of order n (a power of two), entries ±1, float64."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def random_orthogonal(d: int, device=None, seed: int = _ROTATION_SEED) -> torch.Tensor:
    """The (d, d) float32 rotation ``M`` quantize_fp8 applies to Q and K (``M Mᵀ = I``).

    ``M = diag(±1) · (H_{2^a} ⊗ R_m) / sqrt(2^a)`` for ``d = 2^a · m`` (m odd), with random
    signs and, when m > 1, a random m×m orthogonal ``R_m``; a plain randomised Hadamard
    transform for power-of-two head dims.  Deterministic for a given ``seed``.
    """
    key = (d, seed, str(device))
    if key not in _ROTATIONS:
        g = torch.Generator().manual_seed(seed + d)
        a = (d & -d).bit_length() - 1  # largest power of two dividing d
        m = d >> a
        h = _hadamard(1 << a) / math.sqrt(1 << a)
        if m > 1:
            r, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
            h = torch.kron(h, r.contiguous())
        signs = torch.randint(0, 2, (d,), generator=g, dtype=torch.float64) * 2 - 1
        _ROTATIONS[key] = (signs[:, None] * h).to(torch.float32).to(device)
    return _ROTATIONS[key]


def _block_quantize(x: torch.Tensor, heads_kv: int):
    """x: (B, H, S, D) float32 -> (e4m3 tensor, float32 (B, Hk) descale): one scale per
    (batch, KV head) block, mapping the block's max |x| to E4M3_MAX."""
    B, H, S, D = x.shape
    blocks = x.reshape(B, heads_kv, H // heads_kv * S * D)
    amax = blocks.abs().amax(dim=-1) if blocks.shape[-1] else x.new_zeros(B, heads_kv)
    scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax)).to(torch.float32)
    per_head = scale.repeat_interleave(H // heads_kv, dim=1)[:, :, None, None]
    x8 = (x / per_head).clamp_(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return x8, scale


def quantize_fp8(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                 hadamard: bool = True) -> FP8Inputs:
    """Quantise attention inputs to FP8 (e4m3) with per-block scales.

    q: (B, Hq, Sq, D), k: (B, Hk, Sk, D), v: (B, Hk, Sk, Dv) in any float dtype and any
    strides (BSHD buffers: pass ``.transpose(1, 2)`` views).  ``Hq`` must be a multiple of
    ``Hk`` (GQA/MQA).  ``hadamard=True`` rotates Q and K by :func:`random_orthogonal`
    first (QKᵀ unchanged; much smaller error when a few channels carry outliers).

    Returns :class:`FP8Inputs` ``(q, k, v, q_descale, k_descale, v_descale)``: fp8 tensors
    (``v`` stored sequence-major) and float32 ``(B, Hk)`` descales, ready for
    ``attnhub.attention(q, k, v, q_descale=..., k_descale=..., v_descale=...)``, whose
    output is bf16.
    """
    if not hasattr(torch, "float8_e4m3fn"):
        raise RuntimeError(f"torch {torch.__version__} has no float8_e4m3fn; FP8 needs "
                           "torch >= 2.1")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"quantize_fp8: {name} has shape {tuple(t.shape)}; expected "
                             f"(B, H, S, D) (varlen/packed inputs are not supported: "
                             f"quantize each sequence as a (1, H, S, D) view)")
        if not t.is_floating_point():
            raise ValueError(f"quantize_fp8: {name} has dtype {t.dtype}; expected a float "
                             "tensor")
    B, Hq, _, D = q.shape
    Hk = k.shape[1]
    if k.shape[0] != B or v.shape[:3] != k.shape[:3] or k.shape[3] != D or Hq % Hk:
        raise ValueError(f"quantize_fp8: shapes q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)} do not fit (B, Hq, Sq, D), (B, Hk, Sk, D), "
                         "(B, Hk, Sk, Dv) with Hq a multiple of Hk")
    qf, kf, vf = q.float(), k.float(), v.float()
    if hadamard:
        m = random_orthogonal(D, device=q.device)
        qf, kf = qf @ m, kf @ m
    q8, q_ds = _block_quantize(qf, Hk)
    k8, k_ds = _block_quantize(kf, Hk)
    v8, v_ds = _block_quantize(vf, Hk)
    v8 = v8.transpose(-1, -2).contiguous().transpose(-1, -2)  # sequence-major storage
    return FP8Inputs(q8, k8, v8, q_ds, k_ds, v_ds)
