"""Launchers of the ``hopper-fa3`` kernel: descriptors, strides, tile configs.

Imported lazily by the backend (it imports triton).  Entry points::

    forward(q, k, v, problem, config=None) -> (O, LSE)
    candidate_configs(problem) -> [Config, ...]    # what the tuner / device_check try

Inputs are BHSD tensors (possibly strided views) or packed varlen (total, H, D) tensors,
as in :mod:`attnhub.contract`.  Nothing is copied on the hot path, with one exception: an
FP8 ``v`` that is not sequence-major (``v.stride(-2) != 1``) is transposed once, because
fp8 wgmma reads both operands K-major; :func:`attnhub.quantize_fp8` already returns V in
that layout.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import torch

from attnhub.contract import int32_safe

from . import kernels

__all__ = ["Config", "forward", "candidate_configs", "default_config", "interpreting"]


@dataclasses.dataclass(frozen=True)
class Config:
    """One tile configuration of the kernel."""

    block_m: int = 128
    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 2
    warp_spec: bool = False
    pipe_qk: bool = False
    maxnreg: Optional[int] = None

    def __str__(self) -> str:
        s = f"m{self.block_m}n{self.block_n}w{self.num_warps}s{self.num_stages}"
        s += "-ws" if self.warp_spec else ""
        s += "-pipe" if self.pipe_qk else ""
        return s + (f"-r{self.maxnreg}" if self.maxnreg else "")


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _pad_dim(d: int) -> int:
    return max(16, 1 << (d - 1).bit_length())  # triton.next_power_of_2 costs µs a call


# Tile configs measured best on the H100 (device_check.py run 1, NOTES.md), by padded head
# dim, causal, fp8; 96 and 192 use the 128 and 256 rows.  Missing keys: first candidate.
_TUNED: dict[tuple[int, bool, bool], Config] = {
    (64, False, False): Config(128, 64, 4, 3),
    (64, True, False): Config(128, 64, 4, 3),
    (128, False, False): Config(128, 128, 8, 2, pipe_qk=True),
    (128, True, False): Config(128, 64, 8, 3),
    (256, False, False): Config(128, 64, 8, 2),
    (256, True, False): Config(128, 64, 8, 2),
    (64, False, True): Config(128, 64, 8, 3),
    (64, True, True): Config(128, 64, 8, 3),
    (128, False, True): Config(128, 128, 8, 2),
    (128, True, True): Config(128, 128, 8, 2),
    (256, False, True): Config(128, 128, 8, 2),
    (256, True, True): Config(128, 128, 8, 2),
}

_SMEM_LIMIT = 232448  # bytes of shared memory one block may use on sm90 (227 KiB)


def _smem_bytes(cfg: Config, d: int, dv: int, elem: int) -> int:
    """Shared memory of a config: the Q tile and (K, V) tiles per stage (Triton 3.6 on
    sm90 reuses them for the O store; ``pipe_qk`` adds one K tile)."""
    q = cfg.block_m * d * elem
    kv = cfg.block_n * (d + dv) * elem * cfg.num_stages
    return q + kv + (cfg.block_n * d * elem if cfg.pipe_qk else 0)


def candidate_configs(problem) -> list[Config]:
    """Configs worth timing for ``problem``: 128-row tiles on two consumer warpgroups
    (8 warps) or one (4 warps), 64-row tiles on one, pruned by shared memory."""
    d, dv = _pad_dim(problem.head_dim), _pad_dim(problem.head_dim_v)
    elem = 1 if problem.is_fp8 else 2

    def keep(cfg: Config) -> bool:
        if cfg.block_m == 64 and cfg.num_warps == 8:
            return False  # 32 rows per warpgroup: below wgmma's m64
        if cfg.block_m == 128 and cfg.num_warps == 4 and max(d, dv) > 64:
            return False  # spills (ptxas: 568-byte stack at d128)
        return _smem_bytes(cfg, d, dv, elem) <= _SMEM_LIMIT

    return [cfg for cfg in (Config(bm, bn, w, s, pipe_qk=pipe)
                            for bm in (128, 64) for bn in (128, 64, 32) for w in (8, 4)
                            for s in (2, 3, 4) for pipe in (False, True))
            if keep(cfg)]


def default_config(problem) -> Config:
    key = (_pad_dim(max(problem.head_dim, problem.head_dim_v)), problem.causal, problem.is_fp8)
    cfg = _TUNED.get(key)
    if cfg is None:
        cfg = candidate_configs(problem)[0]
    return cfg


def _tma_ok(t: torch.Tensor) -> bool:
    """Can a TMA descriptor address ``t`` (16-byte aligned base and strides, unit last
    stride, no broadcast (stride-0) dimension: the descriptor spans the whole tensor, and
    TMA documents strides of a non-overlapping layout)?"""
    e = t.element_size()
    return (t.data_ptr() % 16 == 0 and t.stride(-1) == 1
            and all((s * e) % 16 == 0 and (s > 0 or n == 1)
                    for s, n in zip(t.stride()[:-1], t.shape[:-1])))


def _desc(t: torch.Tensor, block: list[int], padded_last: int):
    from triton.tools.tensor_descriptor import TensorDescriptor

    block = list(block)
    block[-1] = padded_last
    return TensorDescriptor(t, list(t.shape), list(t.stride()), block)


def _empty_like_layout(q: torch.Tensor, shape, dtype) -> torch.Tensor:
    """O for a dense q: BSHD memory when q is a BSHD view (so the caller's transpose back
    is free), else contiguous BHSD."""
    B, H, S, D = shape
    if q.dim() == 4 and q.stride(1) < q.stride(2):
        return torch.empty(B, S, H, D, dtype=dtype, device=q.device).transpose(1, 2)
    return torch.empty(B, H, S, D, dtype=dtype, device=q.device)


def _seq_major(v: torch.Tensor) -> torch.Tensor:
    """``v`` with the sequence dimension contiguous (a transposed copy unless it already
    is): what fp8 wgmma needs for the P·V product."""
    if v.stride(-2) == 1:
        return v
    return v.transpose(-1, -2).contiguous().transpose(-1, -2)


def forward(q, k, v, problem, config: Optional[Config] = None, use_tma: Optional[bool] = None):
    """``(O, LSE)`` for a resolved problem; layouts as in :mod:`attnhub.contract`."""
    varlen = problem.is_varlen
    fp8 = problem.is_fp8
    if fp8 and varlen:
        raise NotImplementedError("hopper-fa3: FP8 varlen is not supported; pass dense "
                                  "(B, H, S, D) FP8 tensors")
    d, dv = problem.head_dim, problem.head_dim_v
    D, DV = _pad_dim(d), _pad_dim(dv)
    hq, hk = problem.heads_q, problem.heads_kv
    out_dtype = problem.out_dtype
    dev = q.device
    # in-sequence offsets are int32 (rows x stride): long BSHD/packed rows get a head-major
    # copy; an FP8 v then goes sequence-major, which rows_past_int32 keeps in range too
    rows_q = int(problem.max_seqlen_q) if varlen else problem.seqlen_q
    rows_k = int(problem.max_seqlen_k) if varlen else problem.seqlen_k
    q, k, v = int32_safe(q, rows_q), int32_safe(k, rows_k), int32_safe(v, rows_k)
    if fp8:
        v = _seq_major(v)

    # -- outputs -------------------------------------------------------------------------
    if varlen:
        total_q = q.shape[0]
        o = int32_safe(torch.empty(total_q, hq, dv, dtype=out_dtype, device=dev), rows_q)
        lse = torch.empty(hq, total_q, dtype=torch.float32, device=dev)
        batch = problem.batch
    else:
        batch = q.shape[0]
        o = int32_safe(_empty_like_layout(q, (batch, hq, problem.seqlen_q, dv), out_dtype),
                       rows_q)
        lse = torch.empty(batch, hq, problem.seqlen_q, dtype=torch.float32, device=dev)
    max_q = rows_q
    if o.numel() == 0 or max_q == 0 or batch == 0:
        return o.zero_(), lse.fill_(float("-inf"))

    if interpreting():
        cfg = config or Config(16, 16, 4, 1, False)
    else:
        cfg = config or default_config(problem)
    if use_tma is None:
        use_tma = all(_tma_ok(t) for t in (q, k, v.transpose(-1, -2) if fp8 else v))
    tma_store = bool(use_tma and not varlen and _tma_ok(o))

    # -- tensors the kernel addresses ----------------------------------------------------
    if use_tma:
        if varlen:
            qa = _desc(q, [cfg.block_m, 1, D], D)
            ka = _desc(k, [cfg.block_n, 1, D], D)
            va = _desc(v, [cfg.block_n, 1, DV], DV)
        else:
            qa = _desc(q, [1, 1, cfg.block_m, D], D)
            ka = _desc(k, [1, 1, cfg.block_n, D], D)
            if fp8:  # the (B, Hk, Dv, Sk) view, unit stride along Sk
                vt = v.transpose(-1, -2)
                va = _desc(vt, [1, 1, DV, cfg.block_n], cfg.block_n)
            else:
                va = _desc(v, [1, 1, cfg.block_n, DV], DV)
    else:
        qa, ka, va = q, k, v
    oa = _desc(o, [1, 1, cfg.block_m, DV], DV) if tma_store else o

    def strides4(t):
        if varlen:  # (total, H, D): no batch stride
            return 0, t.stride(1), t.stride(0), t.stride(2)
        return t.stride(0), t.stride(1), t.stride(2), t.stride(3)

    if varlen:
        lse_strides = (0, lse.stride(0), lse.stride(1))
    else:
        lse_strides = (lse.stride(0), lse.stride(1), lse.stride(2))

    dummy = torch.empty(1, dtype=torch.float32, device=dev)
    ds = [problem.q_descale, problem.k_descale, problem.v_descale]
    if fp8:  # None means 1; any (B, Hk)-broadcastable float tensor is accepted
        ones = torch.ones(batch, hk, dtype=torch.float32, device=dev)
        ds = [(t if t is not None else ones).to(torch.float32).expand(batch, hk) for t in ds]
        ds_strides = (ds[0].stride(0), ds[0].stride(1))
        if any(t.stride() != ds[0].stride() for t in ds):
            ds = [t.contiguous() for t in ds]
            ds_strides = (hk, 1)
    else:
        ds = [dummy, dummy, dummy]
        ds_strides = (0, 0)
    cu_q = problem.cu_seqlens_q if varlen else dummy
    cu_k = problem.cu_seqlens_k if varlen else dummy

    left, right = problem.window_bounds
    scale = float(problem.scale)
    if problem.softcap is not None:
        cap = float(problem.softcap)
        qk_scale, softcap_in, softcap_out = 1.0, scale / cap, cap * kernels.LOG2E
    else:
        qk_scale, softcap_in, softcap_out = scale * kernels.LOG2E, 1.0, 1.0

    grid = (-(-max_q // cfg.block_m), hq, batch)
    extra = {}
    if cfg.maxnreg:
        extra["maxnreg"] = cfg.maxnreg
    kernels._attn_fwd[grid](
        qa, ka, va, oa, lse, ds[0], ds[1], ds[2], cu_q, cu_k,
        *strides4(q), *strides4(k), *strides4(v), *strides4(o),
        *lse_strides, *ds_strides,
        hq, hq // hk, problem.seqlen_q, problem.seqlen_k,
        qk_scale, softcap_in, softcap_out, max(left, 0), max(right, 0),
        HEAD_DIM=D, HEAD_DIM_V=DV, D_ACT=d, DV_ACT=dv,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        MASK_LEFT=left >= 0, MASK_RIGHT=right >= 0, SOFTCAP=problem.softcap is not None,
        IS_FP8=fp8, V_SEQ_MAJOR=fp8, VARLEN=varlen,
        USE_TMA=use_tma, TMA_STORE=tma_store, WARP_SPEC=cfg.warp_spec,
        REVERSE_M=right >= 0 and not varlen, PIPE_QK=cfg.pipe_qk,
        DOT_UPCAST=interpreting(), P_BIAS=8.0 if fp8 else 0.0,
        NEG_SCALE=problem.scale < 0 and problem.softcap is None,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages, **extra,
    )
    return o, lse
