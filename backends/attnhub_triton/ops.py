"""Host side of the triton-fa2 kernels: layouts, configs, launches and torch custom ops.

Public entry points (plain functions; the ``hopper-fa3`` backend reuses the backward)::

    flash_forward(q, k, v, problem)                               -> (o, lse)
    flash_backward(do, q, k, v, o, lse, problem, variant=None)    -> (dq, dk, dv)

    dense   q (B, Hq, Sq, D)   k (B, Hk, Sk, D)   v (B, Hk, Sk, Dv)   any strides
            o (B, Hq, Sq, Dv)  lse (B, Hq, Sq) float32 (natural log)
    varlen  q (total_q, Hq, D) k, v (total_k, Hk, D|Dv) with problem.cu_seqlens_*
            o (total_q, Hq, Dv) lse (Hq, total_q)

Under ``torch.compile`` both go through the custom ops ``torch.ops.attnhub_triton.fwd`` /
``.bwd`` (with fake implementations), so ``torch.compile(fullgraph=True)`` traces them as
single nodes; eager calls skip the op's dispatch (host time only, same function).

Forward kernels: the common case -- dense, no window, no softcap, causal or not, D == Dv
in {64, 128, 256}, fp16/bf16, ``scale > 0``, tensors TMA can read, on sm90 (or the
interpreter) -- can go to the lean kernel (``_kernel_lean.py``: 4 warps, two programs per
SM); everything else, and every call with ``ATTNHUB_TRITON_LEAN=0``, to the general one.
The split backward's dK/dV pass has a lean kernel for the same case too
(``ATTNHUB_TRITON_LEAN_BWD``; the default at d64, where it was measured to win).

Outputs follow the inputs' memory order: a BSHD view in gives a BSHD view out, so no copy
is made on either side.  K/V are never repeated for GQA: kernels index head ``hq // group``.

Backward variants (``variant=`` argument, else ``ATTNHUB_TRITON_BWD``, else the default):
    "atomic"   Δ pre-pass, then one kernel for dK, dV and dQ; dQ is added into a float32
               buffer with atomics (5 matmuls per block pair, as in the FlashAttention-2
               paper), then scaled and cast.  Not bitwise deterministic: the order of the
               float additions into dQ changes from run to run.
    "split"    dQ (with Δ) in its own kernel, then dK/dV (7 matmuls): deterministic.
    default    "split": faster at every H100 benchmark point so far (NOTES.md, "Backward
               variants"); "atomic" fails under torch.use_deterministic_algorithms(True).

Environment knobs (read per call):
    ATTNHUB_TRITON_BWD=atomic|split   the backward variant (see above)
    ATTNHUB_TRITON_AUTOTUNE=0   use the fixed per-head-dim configs below instead of autotuning
    ATTNHUB_TRITON_LEAN=0|1     the lean forward (above): 0 never, 1 wherever it applies;
                                unset: where it was measured to win
                                (``LEAN_DEFAULT`` from ``LEAN_MIN_KEYS`` keys)
    ATTNHUB_TRITON_LEAN_BWD=0|1 the lean dK/dV kernel of the split backward: 0 never, 1
                                wherever it applies; unset: ``LEAN_BWD_DEFAULT`` (d64)
    ATTNHUB_TRITON_DELTA_PREPASS=0|1   split backward: Δ in its own pass (1) or in the
                                dQ kernel (0); unset: ``DELTA_PREPASS`` (empty: in the dQ kernel)
    ATTNHUB_TRITON_DKDV_PARTS=0|1   split backward, general dK/dV kernel: two launches, dV
                                then dK, one accumulator each (1); unset: ``DKDV_PARTS``
                                (empty: one launch)
    ATTNHUB_TRITON_TMA=0        never use TMA descriptors (pointer loads everywhere; no lean)
    ATTNHUB_TRITON_PTR_FWD=0|1  the general forward on pointer loads with 8-warp 128x64 tiles
                                ("fwd_ptr") for dense 16-bit d64 on sm90: 0 never, 1
                                wherever it applies; unset: where it was measured to win
                                (``POINTER_FWD``)
    ATTNHUB_TRITON_LPT=1 / 0    lean causal forward: longest blocks first across L2-sized
                                windows of (batch, head) pairs always / never (unset: with
                                at least LPT_MIN_KEYS keys, as measured)
    ATTNHUB_TRITON_DQ_REDUCE=pointer   atomic variant: element atomics for dQ, never TMA
    TRITON_INTERPRET=1          run the kernels on the CPU (Triton's interpreter): one small
                                fixed config, no autotuning
"""

import contextlib
import functools
import importlib
import os
import warnings
from typing import Optional

import torch
import triton
import triton.language as tl

from attnhub.contract import int32_safe

from . import _kernel_lean as _kl
from . import _kernels as _k

__all__ = ["flash_forward", "flash_backward"]

# -- environment --------------------------------------------------------------------------


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _autotune_enabled() -> bool:
    return os.environ.get("ATTNHUB_TRITON_AUTOTUNE", "1") != "0"


_CC: dict = {}


def _capability(device: torch.device) -> tuple:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _CC:
        _CC[index] = torch.cuda.get_device_capability(index)
    return _CC[index]


def _tma_ok(device: torch.device, tensors) -> bool:
    """TMA descriptors need sm90+, a 16-byte aligned base, 16-byte aligned strides, a unit
    last stride and rows that do not overlap; anything else takes the pointer-load path."""
    if os.environ.get("ATTNHUB_TRITON_TMA", "auto") == "0":
        return False
    if not hasattr(tl, "make_tensor_descriptor"):
        return False
    if device.type == "cuda":
        if _capability(device) < (9, 0):
            return False
    elif not _interpreting():
        return False
    for t in tensors:
        if t.stride(-1) != 1 or t.data_ptr() % 16:
            return False
        if any((s * t.element_size()) % 16 for s in t.stride()[:-1]):
            return False
        # the descriptors are per (sequence, head) with the row stride as theirs: a
        # broadcast row dimension (stride 0, e.g. the dO of (o * w).sum() for w of shape
        # (D,)) is outside what TMA documents (strides describe a non-overlapping layout);
        # pointer loads read it as it is.  Batch or head strides of 0 never reach a
        # descriptor.
        rows = -2 if t.dim() == 4 else 0
        if t.stride(rows) == 0 and t.shape[rows] > 1:
            return False
    return True


def _tma_allocator(size: int, alignment: int, stream: Optional[int]):
    return torch.empty(size, dtype=torch.int8, device="cuda")


def _ensure_allocator() -> None:
    """In-kernel TMA descriptors need scratch memory from ``triton.set_allocator``.  The
    allocator is a ContextVar (per thread: autograd runs backward in its own thread), so
    set it before each launch unless the caller installed one."""
    try:
        from triton.runtime import _allocation
        if not isinstance(_allocation._allocator.get(), _allocation.NullAllocator):
            return
    except (ImportError, AttributeError):  # pragma: no cover - other triton layouts
        pass
    triton.set_allocator(_tma_allocator)


# -- configs --------------------------------------------------------------------------------

# Shared memory a config may plan for: below the 227 KB per-block limit on sm90, leaving
# room for the layout conversions the compiler adds.
_SMEM_BYTES = 200 * 1024
# fp32 values (accumulators + score tile) one thread may hold before the compiler spills.
_REGS_PER_THREAD = 192


def _bucket(n: int) -> int:
    """Sequence-length bucket for the autotuning key (powers of two, 16 .. 16384)."""
    return min(_pow2(max(n, 1)), 16384)


def _warp_spec_ok(args) -> bool:
    """Warp-specialised variants are opt-in (ATTNHUB_TRITON_WARP_SPEC=1), for experiments
    only: on sm90 Triton 3.6 fails to compile them for this kernel ("PassManager::run
    failed"), Triton 3.9's NVGPUWarpSpecialization pass aborts the whole process (an
    assertion, which no autotuner can skip), and where Triton 3.6 did compile a minimal
    FlashAttention loop with it on the H100 the outputs were wrong and later kernels read
    corrupted inputs (benchmarks/triton_floor.py, NOTES.md "Twenty-third session";
    triton-lang/triton#8311).  The autotuner does not check each config's output, so
    turning it on warns."""
    on = bool(args["USE_TMA"]) and not _interpreting() and \
        os.environ.get("ATTNHUB_TRITON_WARP_SPEC", "0") == "1"
    if on:
        warnings.warn("ATTNHUB_TRITON_WARP_SPEC=1: warp-specialised Triton configs are "
                      "autotuned without a per-config output check, and Triton 3.6 gave "
                      "wrong outputs with warp_specialize=True on an H100 (NOTES.md); unset "
                      "it for results you need to trust", RuntimeWarning, stacklevel=2)
    return on


_FWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "WARP_SPEC": ws}, num_warps=w, num_stages=s)
    for bm in (64, 128)
    for bn in (32, 64, 128)
    for w in (4, 8)
    for s in (2, 3)
    for ws in (False, True)
]


def _keep_fwd(conf, args) -> bool:
    bm, bn, ws = conf.kwargs["BLOCK_M"], conf.kwargs["BLOCK_N"], conf.kwargs["WARP_SPEC"]
    w, s = conf.num_warps, conf.num_stages
    d, dv, es = args["BLOCK_D"], args["BLOCK_DV"], args["Q"].element_size()
    if ws and not (_warp_spec_ok(args) and w == 4 and bm == 128):
        return False
    if (bn < 64) if d <= 128 else (bn > 64):  # small head dims: wide key blocks
        return False
    if bm == 64 and args["bucket_q"] > 64 and d <= 128:  # 64-row blocks: short queries only
        return False
    if w == 8 and bm * bn < 128 * 64:
        return False
    if bm * (dv + bn) >= _REGS_PER_THREAD * 32 * w:  # O accumulator + score tile
        return False
    return (s * bn * (d + dv) + bm * d) * es <= _SMEM_BYTES


_DQ_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, w in ((64, 4), (128, 8))  # one warpgroup per 64 query rows
    for bn in (32, 64, 128)
    for s in (2, 3)
]


def _keep_dq(conf, args) -> bool:
    bm, bn = conf.kwargs["BLOCK_M"], conf.kwargs["BLOCK_N"]
    w, s = conf.num_warps, conf.num_stages
    d, dv, es = args["BLOCK_D"], args["BLOCK_DV"], args["Q"].element_size()
    if bm == 128 and args["bucket_q"] <= 64:
        return False
    if (bn == 32) if d <= 64 else (bn == 128):
        return False
    if bm * (d + 2 * bn) >= _REGS_PER_THREAD * 32 * w:  # dQ + P/dP tiles
        return False
    return (s * bn * (d + dv) + bm * (d + dv)) * es <= _SMEM_BYTES


_DKDV_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm in (16, 32, 64)
    for bn, w in ((32, 4), (32, 8), (64, 8), (128, 8))  # BLOCK_N key rows: dK/dV accumulators
    for s in (2, 3)
]


def _keep_dkdv(conf, args) -> bool:
    bm, bn = conf.kwargs["BLOCK_M"], conf.kwargs["BLOCK_N"]
    w, s = conf.num_warps, conf.num_stages
    d, dv, es = args["BLOCK_D"], args["BLOCK_DV"], args["Q"].element_size()
    # Register use here does not follow a simple formula (ptxas reports in NOTES.md: 32x128
    # fits at D=128 while 64x64 spills), so the filter only keeps the shapes that made sense
    # there and lets the autotuner time the rest.
    if d <= 128:
        if bm < 32 or (w == 8 and bn == 32):
            return False
    elif bm > 32 or bn > 64 or w != 8:  # large D: thin tiles, two warpgroups
        return False
    return (s * bm * (d + dv) + bn * (d + dv)) * es <= _SMEM_BYTES


# The dK/dV kernel in two parts (PART 1: dV, PART 2: dK; ATTNHUB_TRITON_DKDV_PARTS): one
# accumulator per program.  At d256 that is what lets 64-query steps fit (ptxas, Triton 3.6,
# sm90: 64x64 w8 dV 245 registers, dK 255 + 8 B of stack, no loop spills; NOTES.md).
def _keep_dkdv_part(conf, args) -> bool:
    bm, bn = conf.kwargs["BLOCK_M"], conf.kwargs["BLOCK_N"]
    d, dv, es = args["BLOCK_D"], args["BLOCK_DV"], args["Q"].element_size()
    if d <= 128 and dv <= 128:
        return _keep_dkdv(conf, args)
    if bm < 32 or bn != 64 or conf.num_warps != 8:
        return False
    return (conf.num_stages * bm * (d + dv) + bn * (d + dv)) * es <= _SMEM_BYTES


# The atomic variant (dK/dV kernel + dQ per query step): two warpgroups, wide key blocks
# (dQ atomic traffic = Sq·D·4 bytes per key block).  H100 sweep (NOTES.md): 64x128 best at
# D <= 128 (32x128 -12..25 %, 32x64 -50..57 %), 32x64 at D = 256 (32x32, mma.sync: -45 %).
_DKDVQ_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=8, num_stages=s)
    for bm, bn in ((32, 128), (64, 128), (32, 64))
    for s in (2, 3)
]


def _keep_dkdvq(conf, args) -> bool:
    """Like _keep_dkdv, plus a float32 (BLOCK_M, D) dQ tile per step."""
    bm, bn = conf.kwargs["BLOCK_M"], conf.kwargs["BLOCK_N"]
    s = conf.num_stages
    d, dv, es = args["BLOCK_D"], args["BLOCK_DV"], args["Q"].element_size()
    if (bn != 128) if d <= 128 else (bm, bn) != (32, 64):
        return False
    # Q/dO stages, K (two shared layouts) and V, and the float32 dQ staging tile (TMA).
    smem = (s * bm * (d + dv) + bn * (2 * d + dv)) * es + bm * d * 4
    return smem <= _SMEM_BYTES


# The lean forward: one warpgroup per program (4 warps), 128-row query blocks (64 for short
# queries), so that two programs share an SM where registers and shared memory allow.
_LEAN_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "WARP_SPEC": ws}, num_warps=4, num_stages=s)
    for bm in (64, 128)
    for bn in (64, 128)
    for s in (2, 3)
    for ws in (False, True)
] + [  # head dim 256 only (ptxas, Triton 3.9, sm90: sm90_report): 64x32 w4 s2 178 registers,
    # 96 KB, two programs per SM; 128x64 w8 s2 205-208 registers, 192 KB, one (the general
    # kernel's tile: 254-255 registers + 24 B of stack)
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "WARP_SPEC": False}, num_warps=w, num_stages=2)
    for bm, bn, w in ((64, 32, 4), (128, 64, 8))
]


def _keep_lean(conf, args) -> bool:
    bm, bn, ws = conf.kwargs["BLOCK_M"], conf.kwargs["BLOCK_N"], conf.kwargs["WARP_SPEC"]
    d, es = args["HEAD_DIM"], args["Q"].element_size()
    if (d == 256) != (bn == 32 or conf.num_warps == 8):  # the d256 list above, only there
        return False
    if ws and not (_warp_spec_ok(dict(args, USE_TMA=True)) and bm == 128):
        return False
    if d < 256 and (bm == 64) != (args["bucket_q"] <= 64):
        return False
    if d == 128 and bn == 128:  # ptxas (3.9, sm90): 255 registers + 560 B of stack
        return False
    return (conf.num_stages * bn * 2 * d + bm * d) * es <= _SMEM_BYTES  # K, V stages and Q


# The lean dK/dV kernel (split backward): one warpgroup per program, 64 keys (its wgmma M),
# 32 or 64 query rows per step.  ptxas (Triton 3.9, sm90, ``sm90_report``): d64 0 spills
# (169-255 registers); d128 255 registers, 32x64 s2 with its 64-96 B of stack outside the
# loops, 64x64 s2 with 25-82 local loads per loop; two programs per SM where the general
# kernel's 64x128 w8 fits one.
_LEAN_DKDV_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": 64}, num_warps=4, num_stages=s)
    for bm in (32, 64)
    for s in (2, 3)
]


def _keep_lean_dkdv(conf, args) -> bool:
    """Configs that leave room for a second program on the SM (the kernel's point)."""
    bm, s = conf.kwargs["BLOCK_M"], conf.num_stages
    d, es = args["HEAD_DIM"], args["Q"].element_size()
    return (s * bm * 2 * d + 64 * 2 * d) * es <= _SMEM_BYTES // 2  # Q/dO stages, K and V


def _pruner(keep):
    def prune(configs, named_args, **kwargs):
        args = {**named_args, **kwargs}
        kept = [c for c in configs if keep(c, args)]
        return kept or [_default_config_obj(args, configs)]
    return prune


def _default_config_obj(args, configs):
    """The smallest config, when the filter leaves none (keeps the autotuner going)."""
    return min(configs, key=lambda c: (c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"], c.num_stages))


def _bench(kernel_call, quantiles):
    """Autotuner timing: short runs; a config that fails to compile is skipped, not fatal."""
    try:
        return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)
    except Exception:  # noqa: BLE001 - e.g. a warp-specialised variant the compiler rejects
        return [float("inf")] * len(quantiles)


# The autotuning key: head dims, masking (causal = HAS_RIGHT with right 0), softcap,
# varlen, TMA, sequence-length buckets; Triton adds the tensors' dtypes itself.
_KEY = ["HEAD_DIM", "HEAD_DIM_V", "HAS_LEFT", "HAS_RIGHT", "SOFTCAP", "VARLEN", "USE_TMA",
        "bucket_q", "bucket_k"]

_TUNED_FWD = triton.autotune(_FWD_CONFIGS, key=_KEY, do_bench=_bench,
                             prune_configs_by={"early_config_prune": _pruner(_keep_fwd)})(_k._attn_fwd)
_TUNED_DQ = triton.autotune(_DQ_CONFIGS, key=_KEY, do_bench=_bench,
                            prune_configs_by={"early_config_prune": _pruner(_keep_dq)})(_k._attn_bwd_dq)
_TUNED_DKDV = triton.autotune(_DKDV_CONFIGS, key=_KEY + ["DQ_TMA"], do_bench=_bench,
                              prune_configs_by={"early_config_prune": _pruner(_keep_dkdv)})(_k._attn_bwd_dkdv)
# The two-part dK/dV pass: one tuner for both parts, PART in its key.
_TUNED_DKDV_PART = triton.autotune(_DKDV_CONFIGS, key=_KEY + ["PART"], do_bench=_bench,
                                   prune_configs_by={"early_config_prune": _pruner(_keep_dkdv_part)})(_k._attn_bwd_dkdv)
# The atomic variant: same kernel with DQ_ATOMIC; DQ is zeroed before each timed candidate
# and once more before the real run (the candidates add into it).
_TUNED_DKDVQ = triton.autotune(_DKDVQ_CONFIGS, key=_KEY + ["DQ_TMA"], do_bench=_bench,
                               reset_to_zero=["DQ"],
                               prune_configs_by={"early_config_prune": _pruner(_keep_dkdvq)})(_k._attn_bwd_dkdv)

_TUNED_LEAN = triton.autotune(
    _LEAN_CONFIGS, key=["HEAD_DIM", "IS_CAUSAL", "bucket_q", "bucket_k"], do_bench=_bench,
    prune_configs_by={"early_config_prune": _pruner(_keep_lean)})(_kl._attn_fwd_lean)
_TUNED_LEAN_DKDV = triton.autotune(
    _LEAN_DKDV_CONFIGS, key=["HEAD_DIM", "IS_CAUSAL", "bucket_q", "bucket_k"], do_bench=_bench,
    prune_configs_by={"early_config_prune": _pruner(_keep_lean_dkdv)})(_kl._attn_bwd_dkdv_lean)

# kind -> (kernel, autotuned kernel).  "dkdvq" is dK/dV + atomic dQ (the atomic variant).
_KERNELS = {
    "fwd": (_k._attn_fwd, _TUNED_FWD),
    "fwd_ptr": (_k._attn_fwd, _TUNED_FWD),  # the same kernel, USE_TMA=False (POINTER_FWD)
    "dq": (_k._attn_bwd_dq, _TUNED_DQ),
    "dkdv": (_k._attn_bwd_dkdv, _TUNED_DKDV),
    "dkdvq": (_k._attn_bwd_dkdv, _TUNED_DKDVQ),
    "dv_part": (_k._attn_bwd_dkdv, _TUNED_DKDV_PART),  # _attn_bwd_dkdv with PART=1
    "dk_part": (_k._attn_bwd_dkdv, _TUNED_DKDV_PART),  # ... PART=2
    "lean": (_kl._attn_fwd_lean, _TUNED_LEAN),
    "lean_dkdv": (_kl._attn_bwd_dkdv_lean, _TUNED_LEAN_DKDV),
}

#: The forward kinds: their kernels take WARP_SPEC (always False outside the autotuner).
_FWD_KINDS = ("fwd", "fwd_ptr", "lean")

#: Block sizes under TRITON_INTERPRET (BLOCK_M, BLOCK_N): small, so CPU tests cross several
#: blocks on short sequences.  Tests may change them to exercise BLOCK_M != BLOCK_N.
INTERPRET_BLOCKS = {"fwd": (16, 16), "fwd_ptr": (16, 16), "dq": (16, 16), "dkdv": (16, 16),
                    "dkdvq": (16, 16),
                    "dv_part": (16, 16), "dk_part": (16, 16),
                    "lean": (32, 16), "lean_dkdv": (16, 32)}

# Fixed configs when not autotuning: (BLOCK_M, BLOCK_N, num_warps, num_stages) per kernel,
# by padded head dim.  For dkdv(q) BLOCK_N is the key block, BLOCK_M the query step.
# fwd and dkdv follow the H100 autotuner's run-2 choices, dkdvq the run-3 sweep (NOTES.md);
# the backward ones were timed as fixed configs in run 3.
_DEFAULTS = {
    "fwd": {64: (128, 64, 4, 3), 128: (128, 64, 8, 3), 256: (128, 64, 8, 2)},
    # dq d64/d128: one warpgroup per program, two per SM -- H100 2026-12-05 (NOTES.md, "Lean
    # dK/dV and 4-warp dQ"): +5..10 % of the whole backward over 128x64 w8 at every point
    "dq": {64: (64, 64, 4, 2), 128: (64, 64, 4, 2), 256: (128, 32, 8, 2)},
    "dkdv": {64: (64, 128, 8, 2), 128: (64, 128, 8, 2), 256: (32, 64, 8, 2)},
    "dkdvq": {64: (64, 128, 8, 2), 128: (64, 128, 8, 2), 256: (32, 64, 8, 2)},
    # the two-part dK/dV (not a default: measured slower, DKDV_PARTS): d256 64-query steps;
    # d64/d128 the one-kernel tile
    "dv_part": {64: (64, 128, 8, 2), 128: (64, 128, 8, 2), 256: (64, 64, 8, 2)},
    "dk_part": {64: (64, 128, 8, 2), 128: (64, 128, 8, 2), 256: (64, 64, 8, 2)},
    # the general forward on pointer loads (POINTER_FWD): the tile of the floor kernel that
    # beat every TMA variant at d64 (benchmarks/triton_floor.py, NOTES.md)
    "fwd_ptr": {64: (128, 64, 8, 3)},
    "lean": {64: (128, 64, 4, 3), 128: (128, 64, 4, 2),  # best or tied in the lean sweep
             256: (64, 32, 4, 2)},  # only with ATTNHUB_TRITON_LEAN=1: it lost (NOTES.md)
    # d64: timed best or tied (H100 2026-12-05); d128 (not a default route): 64x64 s2 was
    # its best tile there (the spill-free 32x64 lost 5..21 %: N = 32 wgmma)
    "lean_dkdv": {64: (64, 64, 4, 2), 128: (64, 64, 4, 2)},
}
# float32 inputs (3-pass tf32 dots, twice the bytes): small tiles, never autotuned.
_FP32 = {
    "fwd": {128: (64, 32, 4, 2), 256: (64, 32, 4, 1)},
    "dq": {128: (64, 32, 4, 1), 256: (32, 32, 4, 1)},
    "dkdv": {128: (32, 32, 8, 2), 256: (32, 32, 8, 1)},
    "dkdvq": {128: (32, 32, 8, 2), 256: (32, 32, 8, 1)},
    "dv_part": {128: (32, 32, 8, 2), 256: (32, 32, 8, 1)},
    "dk_part": {128: (32, 32, 8, 2), 256: (32, 32, 8, 1)},
}


def _fixed_config(kind: str, meta: dict, bucket_q: int):
    """(kwargs, num_warps, num_stages) for a launch without autotuning."""
    if _interpreting():
        bm, bn = INTERPRET_BLOCKS[kind]
        return {"BLOCK_M": bm, "BLOCK_N": bn}, 1, 1
    d = meta["HEAD_DIM"] if kind.startswith("lean") else max(meta["BLOCK_D"], meta["BLOCK_DV"])
    fp32 = meta.get("DOT_PRECISION", "tf32") != "tf32"
    table = _FP32[kind] if fp32 else _DEFAULTS[kind]
    bm, bn, w, s = table[min(t for t in table if t >= d)]
    if kind in ("fwd", "fwd_ptr", "dq", "lean") and bucket_q <= 64 and not fp32:
        bm = 64  # short queries: smaller row blocks
    return {"BLOCK_M": bm, "BLOCK_N": bn}, w, s


#: Pinned configs, for tests and benchmarks: {"fwd": ({"BLOCK_M": 128, "BLOCK_N": 64},
#: num_warps, num_stages), ...}; a pinned kernel neither autotunes nor uses the defaults.
FORCED_CONFIGS: dict = {}


@contextlib.contextmanager
def pinned(kind: Optional[str] = None, config: Optional[tuple] = None, **switches: str):
    """For tests and benchmarks: ``kind`` pinned to ``config`` (FORCED_CONFIGS) and the
    environment ``switches`` set, for the block; both put back after it."""
    saved = {key: os.environ.get(key) for key in switches}
    os.environ.update(switches)
    if kind is not None:
        FORCED_CONFIGS[kind] = config
    try:
        yield
    finally:
        if kind is not None:
            FORCED_CONFIGS.pop(kind, None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def candidate_configs(kind: str, problem, tma: bool = True) -> list:
    """The autotuning candidates ``keep()`` leaves for ``problem``: [(kwargs, warps, stages)]."""
    configs, keep = {"fwd": (_FWD_CONFIGS, _keep_fwd), "fwd_ptr": (_FWD_CONFIGS, _keep_fwd),
                     "dq": (_DQ_CONFIGS, _keep_dq),
                     "dkdv": (_DKDV_CONFIGS, _keep_dkdv), "dkdvq": (_DKDVQ_CONFIGS, _keep_dkdvq),
                     "dv_part": (_DKDV_CONFIGS, _keep_dkdv_part),
                     "dk_part": (_DKDV_CONFIGS, _keep_dkdv_part),
                     "lean": (_LEAN_CONFIGS, _keep_lean),
                     "lean_dkdv": (_LEAN_DKDV_CONFIGS, _keep_lean_dkdv)}[kind]
    args = {"BLOCK_D": _pow2(problem.head_dim), "BLOCK_DV": _pow2(problem.head_dim_v),
            "HEAD_DIM": problem.head_dim,
            "Q": torch.empty(0, dtype=problem.dtype), "USE_TMA": tma,
            "bucket_q": _bucket(problem.max_seqlen_q or problem.seqlen_q)}
    out = []
    for c in configs:
        if keep(c, args):
            kwargs = {k: v for k, v in c.kwargs.items() if k != "WARP_SPEC"}
            out.append((kwargs, c.num_warps, c.num_stages))
    return out


_TUNED_KEYS: set = set()


def _launch(kind: str, grid, args: tuple, meta: dict, bucket_q: int, bucket_k: int) -> None:
    """Run one kernel: autotuned on its first call per key, else a fixed config.  While a
    CUDA graph is being captured an untuned key takes the fixed config (no benchmarking
    inside a capture)."""
    raw, tuned = _KERNELS[kind]
    if kind in _FWD_KINDS:
        meta = dict(meta, WARP_SPEC=False)
    if kind in FORCED_CONFIGS:
        kwargs, num_warps, num_stages = FORCED_CONFIGS[kind]
        raw[grid](*args, **{**meta, **kwargs}, num_warps=num_warps, num_stages=num_stages)
        return
    key = (kind, args[0].dtype, bucket_q, bucket_k) + tuple(sorted(meta.items()))
    use_tuner = (_autotune_enabled() and not _interpreting()
                 and meta.get("DOT_PRECISION", "tf32") == "tf32"
                 and (key in _TUNED_KEYS or not torch.cuda.is_current_stream_capturing()))
    if use_tuner:
        if kind in _FWD_KINDS:
            meta.pop("WARP_SPEC")
        tuned[grid](*args, **meta)
        _TUNED_KEYS.add(key)
        return
    kwargs, num_warps, num_stages = _fixed_config(kind, meta, bucket_q)
    raw[grid](*args, **meta, **kwargs, num_warps=num_warps, num_stages=num_stages)


# -- layouts --------------------------------------------------------------------------------


def _pow2(d: int) -> int:
    # plain Python: triton.next_power_of_2 goes through a JIT wrapper, ≈ 4 µs a call on the
    # host path of every launch (benchmarks/host_overhead.py)
    return max(16, 1 << (d - 1).bit_length())


def _strides(t: torch.Tensor, varlen: bool) -> tuple:
    """(batch, head, seq, dim) strides; varlen (total, H, D) tensors get batch stride 0."""
    if varlen:
        return (0, t.stride(1), t.stride(0), t.stride(2))
    return tuple(t.stride())


def _empty_like_layout(t: torch.Tensor, last: int, dtype=None) -> torch.Tensor:
    """A new tensor shaped like ``t`` with last dim ``last``, in ``t``'s memory order:
    BSHD-strided views give BSHD-backed outputs, head-major varlen tensors (see
    ``attnhub.contract.int32_safe``) head-major ones, everything else is contiguous."""
    dtype = t.dtype if dtype is None else dtype
    if t.dim() == 4 and t.stride(1) < t.stride(2):
        b, h, s, _ = t.shape
        return torch.empty(b, s, h, last, dtype=dtype, device=t.device).transpose(1, 2)
    if t.dim() == 3 and t.shape[0] > 1 and t.stride(0) < t.stride(1):
        total, h, _ = t.shape
        return torch.empty(h, total, last, dtype=dtype, device=t.device).transpose(0, 1)
    return torch.empty(*t.shape[:-1], last, dtype=dtype, device=t.device)


def _out_shapes(q, v, varlen: bool, max_sq: int):
    # O follows q's layout, int32-safe itself: with Dv > D its rows can pass 2**31 where q's
    # did not
    o = int32_safe(_empty_like_layout(q, v.shape[-1]), max_sq if varlen else q.shape[2])
    if varlen:
        lse = torch.empty(q.shape[1], q.shape[0], dtype=torch.float32, device=q.device)
    else:
        lse = torch.empty(q.shape[:3], dtype=torch.float32, device=q.device)
    return o, lse


class _Launch:
    """Everything the three kernels share for one call: sizes, masks, strides."""

    def __init__(self, q, k, v, scale, left, right, softcap, cu_q, cu_k, max_sq, max_sk):
        self.varlen = cu_q is not None
        if self.varlen:
            self.batch = cu_q.numel() - 1
            self.heads_q, self.heads_k = q.shape[1], k.shape[1]
            self.seqlen_q, self.seqlen_k = max_sq, max_sk
            self.empty = self.batch <= 0 or q.shape[0] == 0
            self.no_keys = k.shape[0] == 0
        else:
            self.batch, self.heads_q, self.seqlen_q = q.shape[:3]
            self.heads_k, self.seqlen_k = k.shape[1], k.shape[2]
            self.empty = q.numel() == 0
            self.no_keys = self.seqlen_k == 0
        self.cu_q, self.cu_k = cu_q, cu_k
        self.bucket_q, self.bucket_k = _bucket(self.seqlen_q), _bucket(self.seqlen_k)
        self.scalars = (self.seqlen_q, self.seqlen_k, self.heads_q // self.heads_k,
                        float(scale), float(softcap), max(left, 0), max(right, 0),
                        self.bucket_q, self.bucket_k)
        self.meta = dict(
            HEAD_DIM=q.shape[-1], HEAD_DIM_V=v.shape[-1],
            BLOCK_D=_pow2(q.shape[-1]), BLOCK_DV=_pow2(v.shape[-1]),
            HAS_LEFT=left >= 0, HAS_RIGHT=right >= 0, SOFTCAP=softcap > 0,
            VARLEN=self.varlen, USE_TMA=False,
            # float32 inputs: 3-pass tf32 (fp32-level error on tensor cores; "ieee" dots
            # spill kilobytes of registers).  16-bit inputs ignore this.
            DOT_PRECISION="tf32x3" if q.dtype == torch.float32 else "tf32",
        )

    def strides(self, t):
        return _strides(t, self.varlen)

    def lse_strides(self, lse):
        return (0, lse.stride(0)) if self.varlen else (lse.stride(0), lse.stride(1))

    def run(self, kind, args, tma_tensors=(), meta=None, **extra_meta):
        """Launch ``kind``; ``meta`` replaces the general kernels' constexprs (lean: TMA only)."""
        device = args[0].device
        if meta is None:
            meta = dict(self.meta, USE_TMA=_tma_ok(device, tma_tensors), **extra_meta)
        if (kind.startswith("lean") or meta["USE_TMA"] or meta.get("DQ_TMA")) \
                and device.type == "cuda":
            _ensure_allocator()
        if kind in ("dkdv", "dkdvq", "dv_part", "dk_part", "lean_dkdv"):
            grid = lambda m: (-(-self.seqlen_k // m["BLOCK_N"]), self.heads_k, self.batch)  # noqa: E731
        else:
            grid = lambda m: (-(-self.seqlen_q // m["BLOCK_M"]), self.heads_q, self.batch)  # noqa: E731
        with torch.cuda.device(device) if device.type == "cuda" else _nullcontext():
            _launch(kind, grid, args, meta, self.bucket_q, self.bucket_k)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# -- the two passes ----------------------------------------------------------------------------


# The switches above that choose kernels or tiles (TRITON_INTERPRET is fixed at import).
_KERNEL_SWITCHES = ("ATTNHUB_TRITON_BWD", "ATTNHUB_TRITON_LEAN", "ATTNHUB_TRITON_LEAN_BWD",
                    "ATTNHUB_TRITON_DELTA_PREPASS", "ATTNHUB_TRITON_DKDV_PARTS",
                    "ATTNHUB_TRITON_TMA", "ATTNHUB_TRITON_AUTOTUNE", "ATTNHUB_TRITON_DQ_REDUCE",
                    "ATTNHUB_TRITON_WARP_SPEC", "ATTNHUB_TRITON_LPT", "ATTNHUB_TRITON_PTR_FWD",
                    "ATTNHUB_TRITON_GLUON", "ATTNHUB_TRITON_GLUON_BWD",
                    "ATTNHUB_TRITON_GLUON_VARIANT")


def kernel_tag() -> str:
    """The kernel switches that are set, e.g. ``"bwd=atomic,lean_bwd=1"`` (empty when none
    is): part of the dispatch cache key (``Backend.cache_tag``), so a verdict or a timing
    earned by one set of kernels is not reused for another."""
    return ",".join(f"{name[len('ATTNHUB_TRITON_'):].lower()}={os.environ[name]}"
                    for name in _KERNEL_SWITCHES if os.environ.get(name))


def forward_tag() -> str:
    """``"gluon-fwd=<variant>"`` where the sm90 forward can take the Gluon kernel (this
    Triton has it and ``GLUON_DEFAULT`` turns it on somewhere), else empty: part of
    triton-fa2's cache tag, so verdicts earned by the plain-Triton forward are not reused
    for it."""
    if any(GLUON_DEFAULT.values()) and gluon_module()[0] is not None:
        return "gluon-fwd=" + ";".join(
            [GLUON_VARIANT] + [f"{d}{'c' if causal else ''}>={floor}:{spec}"
                               for (d, causal), rows in sorted(GLUON_VARIANTS.items())
                               for floor, spec in rows]
            + ["from=" + ",".join(f"{k[0]}{'c' if k[1] else 'n'}:{v}" if isinstance(k, tuple)
                                  else f"{k}:{v}" for k, v in sorted(GLUON_MIN_KEYS.items(),
                                                                     key=str))]
            + ([] if GLUON_LAYOUTS == ("bh",) else ["rows=" + "+".join(GLUON_LAYOUTS)])
            + _gluon_bwd_tag())
    return ""


def _gluon_bwd_tag() -> list:
    """``["bwd=d64,d128c,..."]`` where the Gluon backward is on by default (``forward_tag``'s
    part for the backward: a verdict earned by the plain-Triton backward is not reused)."""
    on = [f"d{d}{'c' if causal else ''}" for (d, causal), flag in sorted(GLUON_BWD_DEFAULT.items())
          if flag]
    return ["bwd=" + ",".join(on)] if on and gluon_bwd_module()[0] is not None else []


#: The window of the lean forward's longest-first causal order (``_lpt_order``): the (batch,
#: head) pairs whose K and V fit in this many bytes (a third of the H100's 50 MB L2, as
#: hopper-fa3's Tile.lpt).
LPT_WINDOW_BYTES = 16 << 20

#: Causal lean forwards with at least this many keys take the longest-first order when
#: ATTNHUB_TRITON_LPT is unset.  H100, 2026-12-05, medians of 4 interleaved rounds
#: (``ab_hopper_h100_2026-12-05_run4``): d128 +3.9/+3.1/+3.4 % and d64 +1.7/+2.6/+2.2 % at
#: 4k/8k/16k; at 1k-2k −6..+5 % with rounds spread up to 2x (the lean kernel's short
#: problems), so they keep the grid's order.
LPT_MIN_KEYS = 4096


def lpt_window(call, q) -> int:
    """``sched_window`` for a causal lean forward: 0 (the grid's head order) with
    ATTNHUB_TRITON_LPT=0, or unset and fewer than LPT_MIN_KEYS keys; else as many (batch,
    query head) pairs as keep their K and V (shared by a group's query heads) within
    LPT_WINDOW_BYTES, at least 1 (NOTES.md, "Ninth session" and its measurement)."""
    flag = os.environ.get("ATTNHUB_TRITON_LPT", "")
    if flag == "0" or (flag != "1" and call.seqlen_k < LPT_MIN_KEYS):
        return 0
    pairs = call.batch * call.heads_q
    group = max(call.heads_q // call.heads_k, 1)
    per_pair = max(2 * call.seqlen_k * q.shape[-1] * q.element_size() // group, 1)
    return max(1, min(pairs, LPT_WINDOW_BYTES // per_pair))


#: Where the lean forward is the default (ATTNHUB_TRITON_LEAN unset), by (head dim, causal).
#: H100 run of 2026-11-23 (NOTES.md, "Lean forward"), fixed configs, against the general
#: forward: d128 +5..17 % at S = 2k and 16k; d64 -1 % (noise) at 2k, +5..6 % at 16k.
#: d256 (64x32 tiles, two programs per SM) lost 9..20 % to the general forward on the H100
#: (2026-12-05), 128x64 w8 -9..+1 %: off.
LEAN_DEFAULT = {(64, False): True, (64, True): True, (128, False): True, (128, True): True}

#: Fewest keys for which ``LEAN_DEFAULT`` turns the lean forward on, by head dim.  H200,
#: 2026-12-06, medians of 3 interleaved rounds (``ab_tri_h200_2026-12-06``): at d64 the
#: general kernel beat the lean one at 512 keys (+10.4 % causal, +7.1 % full) and 1k
#: (+5.4 %, +2.8 %) and tied at 2k (+1.1 %, -0.6 %); at d128 the lean one won by 15-22 %
#: from 512 to 2k.  (H100, 2026-12-05, one run: the same +3..+13 % at d64 512-1k.)
LEAN_MIN_KEYS = {64: 2048}


#: Where the lean dK/dV kernel is the split backward's default (ATTNHUB_TRITON_LEAN_BWD
#: unset), by (head dim, causal).  H100 2026-12-05 (NOTES.md), fixed configs: with the
#: 64x64 w4 dQ tile +7..11 % at d64 over the general kernel; at d128 it loses (32x64: -5..-21 %,
#: 64x64: -7..+3 %), so d128 keeps the general kernel.
LEAN_BWD_DEFAULT: dict = {(64, False): True, (64, True): True}


#: Where the forward takes the general kernel on pointer loads with the floor kernel's tile
#: (``_DEFAULTS["fwd_ptr"]``: 128x64, 8 warps, 3 stages) when ATTNHUB_TRITON_PTR_FWD is
#: unset: {(head dim, causal): (fewest keys, most keys or None)}.  H100, 2026-12-06, medians
#: of 8 interleaved rounds against the path it replaces (``ab_tri_ptr_h100_2026-12-06``):
#: causal +23 / +18 / +14 / +2.4 % at 512 / 1k / 2k / 4k keys, 0.997 / 0.984 at 8k / 16k;
#: full +18 / +11 / +6 / +2.3 %, then 1.002 / 1.015.  From 8k keys it is a wash, and the
#: lean kernel keeps its longest-first causal order there.
POINTER_FWD: dict = {(64, False): (0, 4096), (64, True): (0, 4096)}


def _use_pointer_fwd(call, q, v, scale, left, right, softcap) -> bool:
    """Whether the forward takes "fwd_ptr": ATTNHUB_TRITON_PTR_FWD=1, or unset (and
    ATTNHUB_TRITON_LEAN not 1) and inside ``POINTER_FWD``; only for the case it was measured
    on -- dense, no window or softcap, D == Dv == 64, 16-bit, more than 64 query rows, sm90
    (or the interpreter)."""
    mode = os.environ.get("ATTNHUB_TRITON_PTR_FWD", "auto")
    if mode == "0" or (mode != "1" and os.environ.get("ATTNHUB_TRITON_LEAN") == "1"):
        return False  # off, or unset and the lean forward asked for by name
    if call.seqlen_q <= 64 or not _sm90_dense_case(call, q, v, scale, left, right, softcap,
                                                   (64,)):
        return False
    if mode == "1":
        return True
    span = POINTER_FWD.get((q.shape[-1], right == 0))
    return span is not None and span[0] <= call.seqlen_k \
        and (span[1] is None or call.seqlen_k <= span[1])


def _sm90_dense_case(call, q, v, scale, left, right, softcap, dims) -> bool:
    """The common case the lean and pointer-load routes were tuned on: dense, no window or
    softcap, D == Dv in ``dims``, 16-bit, ``scale > 0``, sm90 (or the interpreter)."""
    d = q.shape[-1]
    if call.varlen or left >= 0 or right > 0 or softcap > 0 or scale <= 0:
        return False
    if d not in dims or v.shape[-1] != d or q.dtype not in (torch.float16, torch.bfloat16):
        return False
    if q.device.type == "cuda":
        return _capability(q.device)[0] == 9  # tuned on sm90 only
    return _interpreting()


def _lean_case(call, q, k, v, tensors, scale, left, right, softcap, dims) -> bool:
    """The case the lean kernels handle (``_kernel_lean`` docstring): the sm90 dense case,
    and every tensor in ``tensors`` readable by TMA."""
    return (_sm90_dense_case(call, q, v, scale, left, right, softcap, dims)
            and _tma_ok(q.device, tensors))


def min_keys_for(table: dict, d: int, causal: bool) -> int:
    """A from-keys table's floor for (d, causal): its (d, causal) entry, else its d entry,
    else 0."""
    return table.get((d, causal), table.get(d, 0))


def _lean_mode(variable: str, default: dict, d: int, causal: bool,
               keys: Optional[int] = None, min_keys: Optional[dict] = None) -> bool:
    """The variable's 0 or 1, else ``default`` for (d, causal) -- for the forward (``keys``
    given) only from ``min_keys`` (``LEAN_MIN_KEYS``) keys."""
    mode = os.environ.get(variable, "auto")
    floor = min_keys_for(LEAN_MIN_KEYS if min_keys is None else min_keys, d, causal)
    return mode == "1" or (mode != "0" and default.get((d, causal), False)
                           and (keys is None or keys >= floor))


def _use_lean(call, q, k, v, o, scale, left, right, softcap) -> bool:
    """Whether the lean forward takes this call: the case it handles, switched on by
    ATTNHUB_TRITON_LEAN=1, or, unset, by ``LEAN_DEFAULT`` from ``LEAN_MIN_KEYS`` keys."""
    return (_lean_mode("ATTNHUB_TRITON_LEAN", LEAN_DEFAULT, q.shape[-1], right == 0,
                       call.seqlen_k)
            and _lean_case(call, q, k, v, (q, k, v, o), scale, left, right, softcap,
                           (64, 128, 256)))


#: Where the Gluon forward (``_gluon_fwd``: a producer warp filling a TMA ring, two consumer
#: warpgroups of 64 rows in ping-pong, ``setmaxnreg``; GLUON_NOTES.md) takes the call when
#: ATTNHUB_TRITON_GLUON is unset, by (head dim, causal), from ``GLUON_MIN_KEYS`` keys.  H100,
#: 2026-12-07, bf16, 2 interleaved rounds against SDPA in the same run
#: (``triton_gluon_fwd_h100_2026-12-07_s34``), at 2k-16k keys: 0.88-0.99x cuDNN at d64 and
#: 0.98-1.15x at d128, where the lean / pointer forwards read 0.87-0.92x and 0.70-0.88x
#: (grid run20).  d256 (64-key blocks, ``ws2``; thirty-sixth session, the kernel alone,
#: ``triton_gluon_d256_h100_2026-12-07_s36``): 0.98-1.13x non-causal, 0.98-1.15x causal.
GLUON_DEFAULT = {(64, False): True, (64, True): True, (128, False): True, (128, True): True,
                 (256, False): True, (256, True): True}

#: Fewest keys for ``GLUON_DEFAULT``, by head dim.  Through the backend against the plain-Triton
#: forward, 3 interleaved rounds (``ab_tri_gluon_h100_2026-12-07_s36``), Gluon ÷ plain:
#: d64 0.77 / 0.95 / 1.04 / 1.03 / 1.06 / 1.09 at 512 / 1k / 2k / 4k / 8k / 16k (causal 0.59 /
#: 0.93 / 0.99 / 1.05 / 1.04 / 1.05); d128 0.80 / 1.26 / 1.27 / 1.21 / 1.19 / 1.21 (causal
#: 0.59 / 0.80 / 1.26 / 1.20 / 1.22 / 1.23); d256 (``ab_tri_gluon_d256_h100_2026-12-07_s36``)
#: 1.41 / 1.34 / 1.26 / 1.26 / 1.22 at 1k-16k (causal 1.48 / 1.40 / 1.32 / 1.26 / 1.25),
#: 0.96-1.07x cuDNN.  Each from the shortest length where the Gluon forward won or tied; a
#: (head dim, causal) entry overrides its head dim's (``min_keys_for``).
GLUON_MIN_KEYS = {64: 2048, 128: 2048, (128, False): 1024, 256: 1024}

#: The Gluon forward's variant (``_gluon_fwd.VARIANTS``): "pp" and "ws2" timed alike (d64
#: 0.955x / 0.944x, d128 1.073x / 1.078x cuDNN, means over the eight points).  In the
#: thirty-sixth session's run (``triton_gluon_fwd_h100_2026-12-07_s36``) nothing beat it at
#: d64 / d128: the persistent grid +3 % at d64 2k non-causal but -2..-6 % causal, the 192-row
#: tile with 64-key blocks -1..-10 %, 64-key blocks -10..-20 %, the lazy rescale -2..-8 %.
GLUON_VARIANT = "pp"

#: Where another variant (a ``_gluon_fwd.parse_spec`` string) beats ``GLUON_VARIANT``: by
#: (head dim, causal), ``((from_keys, spec), ...)`` in ascending keys, the last entry whose
#: from_keys the call's keys reach wins.  "pp-dynamic" (the persistent grid drawing its tiles
#: from an atomic counter): H100, 2026-12-08, through the backend, 3 interleaved rounds
#: (``ab_tri_gluon_dyn_h100_2026-12-08_s39``), pp-dynamic ÷ pp at 512 / 1k / 2k / 4k / 8k /
#: 16k keys: d64 0.94 / 1.14 / 1.07 / 1.02 / 1.03 / 1.03, causal 0.95 / 0.92 / 1.12 / 1.09 /
#: 1.03 / 1.01; d128 0.99 / 1.08 / 1.05 / 1.03 / 1.01 / 1.00, causal 0.89 / 1.03 / 1.18 /
#: 1.05 / 1.04 / 1.02 (0.96-1.05x cuDNN at d64 from 2k, 1.01-1.12x at d128 from 1k).  Each
#: from the shortest length where it won; 90/90 tolerance cases of the kernel alone and the
#: GPU tests through the backend passed (``triton_gluon_fwd_h100_2026-12-08_s39``).
GLUON_VARIANTS: dict = {(64, False): ((1024, "pp-dynamic"),),
                        (64, True): ((2048, "pp-dynamic"),),
                        (128, False): ((1024, "pp-dynamic"),),
                        (128, True): ((1024, "pp-dynamic"),),
                        (256, False): ((0, "ws2"),), (256, True): ((0, "ws2"),)}

#: The row layouts (``_gluon_common.row_mode``) the Gluon forward takes when
#: ATTNHUB_TRITON_GLUON is unset: "bh" (contiguous (B, H, S, D)) and "bs" (flash-attn's
#: (B, S, H, D), packed QKV: the heads of a position adjacent; the same schedule, registers
#: and shared memory).  H100, 2026-12-07, the same values in both layouts, 2 interleaved
#: rounds (``triton_gluon_fwd_h100_2026-12-07_s36``), "bs" ÷ "bh" at 2k-16k: d64 0.93-1.03,
#: d128 0.96-1.07 (mean 1.00); packed QKV alike; every case passed in both.
GLUON_LAYOUTS = ("bh", "bs")

_GLUON: dict = {}


def gluon_variant(d: int, causal: bool, keys: int) -> str:
    """The Gluon forward's variant spec for this head dim, masking and key count; the
    ATTNHUB_TRITON_GLUON_VARIANT switch (a ``_gluon_fwd.parse_spec`` string, for A/B runs)
    overrides the tables wherever the Gluon forward runs."""
    override = os.environ.get("ATTNHUB_TRITON_GLUON_VARIANT")
    if override:
        return override
    spec = GLUON_VARIANT
    for floor, row_spec in GLUON_VARIANTS.get((d, causal), ()):
        if keys >= floor:
            spec = row_spec
    return spec


def _gluon_import(cache: dict, name: str):
    """``(module, "")`` for the Gluon kernel module ``name``, or ``(None, why)`` where this
    Triton has no Gluon Hopper module (it came with Triton 3.5); imported once into ``cache``."""
    if not cache:
        try:
            mod = importlib.import_module(f".{name}", __package__)
        except Exception as exc:  # an older Triton: no triton.experimental.gluon
            cache["mod"], cache["why"] = None, f"{type(exc).__name__}: {exc}"
        else:
            why = mod._IMPORT_ERROR or ""
            cache["mod"], cache["why"] = (None if why else mod), why
    return cache["mod"], cache["why"]


@functools.lru_cache(maxsize=None)
def _gluon_spec(spec: str) -> tuple:
    """``_gluon_fwd.parse_spec`` once per spec string (not on every call): (name, knob items).
    A bad spec can only come from ATTNHUB_TRITON_GLUON_VARIANT (the tables are tested)."""
    try:
        name, knobs = gluon_module()[0].parse_spec(spec)
    except ValueError as exc:
        raise ValueError(f"ATTNHUB_TRITON_GLUON_VARIANT={spec!r}: {exc}") from None
    return name, tuple(sorted(knobs.items()))


def gluon_module():
    """``(module, "")`` for ``_gluon_fwd``, or ``(None, why)``."""
    return _gluon_import(_GLUON, "_gluon_fwd")


def _use_gluon(call, q, k, v, o, scale, left, right, softcap) -> bool:
    """Whether the Gluon forward takes this call: compiled GPU code on sm90 (Gluon has no
    interpreter), the dense case at d64 / d128 / d256, q, k, v and O each in a row layout its 3-D
    descriptors address (``_gluon_common.row_mode``: contiguous, or with the heads of a
    position adjacent), at most 65535 (batch, head) pairs (the grid's y), switched on by
    ATTNHUB_TRITON_GLUON=1 (any such layout), or, unset, by ``GLUON_DEFAULT`` from
    ``GLUON_MIN_KEYS`` keys in the layouts of ``GLUON_LAYOUTS``."""
    switch = os.environ.get("ATTNHUB_TRITON_GLUON")
    if q.device.type != "cuda" or _interpreting() or switch == "0":
        return False
    if not _lean_mode("ATTNHUB_TRITON_GLUON", GLUON_DEFAULT, q.shape[-1], right == 0,
                      call.seqlen_k, GLUON_MIN_KEYS):
        return False
    if not _sm90_dense_case(call, q, v, scale, left, right, softcap, (64, 128, 256)):
        return False
    mod = gluon_module()[0]
    if call.batch * call.heads_q > 65535 or mod is None:
        return False
    layouts = ("bh", "bs") if switch == "1" else GLUON_LAYOUTS
    return all(mod.row_mode(t) in layouts for t in (q, k, v, o))


#: Where the Gluon backward (``_gluon_bwd``: one CTA per 128-key block, a producer warp
#: streaming Q / dO blocks, two consumer warpgroups of 64 keys; GLUON_BWD_NOTES.md) takes the
#: call when ATTNHUB_TRITON_GLUON_BWD is unset, by (head dim, causal), from
#: ``GLUON_BWD_MIN_KEYS`` keys.  H100, 2026-12-07, through the backend against the
#: plain-Triton backward, 3 interleaved rounds (``ab_trib_gluon_h100_2026-12-07_s36``),
#: Gluon ÷ plain at 1k-16k: d64 1.16-1.22 (causal 1.18-1.24), d128 1.07-1.10 (causal
#: 1.08-1.14); ×cuDNN 0.87-0.96 at d64, 0.79-0.95 at d128.  64/64 tolerance cases passed.
#: d256 (the HSPLIT build, ``h64``): H100, 2026-12-08, 2 interleaved rounds
#: (``ab_trib_gluon_d256_h100_2026-12-08_s39``), Gluon ÷ plain at 2k / 4k / 8k / 16k 1.22 /
#: 1.29 / 1.34 / 1.38 (causal 1.21 / 1.24 / 1.23 / 1.30), ×cuDNN 0.68-0.75 against
#: 0.54-0.58; 7/7 d256 quick cases and the GPU tests through the backend passed.
GLUON_BWD_DEFAULT = {(64, False): True, (64, True): True, (128, False): True, (128, True): True,
                     (256, False): True, (256, True): True}

#: Fewest keys for ``GLUON_BWD_DEFAULT``: the shortest length timed.
GLUON_BWD_MIN_KEYS = {64: 1024, 128: 1024, 256: 2048}

_GLUON_BWD: dict = {}


def gluon_bwd_module():
    """``(module, "")`` for ``_gluon_bwd``, or ``(None, why)``."""
    return _gluon_import(_GLUON_BWD, "_gluon_bwd")


def _use_gluon_bwd(call, q, k, v, o, do, scale, left, right, softcap) -> bool:
    """Whether the Gluon backward takes this call: the Gluon forward's case (sm90, dense
    d64 / d128 / d256 (d256: the HSPLIT build), 16-bit, contiguous BHSD q, k, v, O and dO,
    16-byte aligned), switched on by ATTNHUB_TRITON_GLUON_BWD=1, or, unset, by
    ``GLUON_BWD_DEFAULT`` from ``GLUON_BWD_MIN_KEYS`` keys."""
    if q.device.type != "cuda" or _interpreting():
        return False
    if not _lean_mode("ATTNHUB_TRITON_GLUON_BWD", GLUON_BWD_DEFAULT, q.shape[-1], right == 0,
                      call.seqlen_k, GLUON_BWD_MIN_KEYS):
        return False
    if not _sm90_dense_case(call, q, v, scale, left, right, softcap, (64, 128, 256)):
        return False
    if call.batch * call.heads_k > 65535 or not all(
            t.is_contiguous() and t.data_ptr() % 16 == 0 for t in (q, k, v, o, do)):
        return False
    return gluon_bwd_module()[0] is not None


def _use_lean_bwd(call, q, k, v, do, dk, dv, scale, left, right, softcap) -> bool:
    """Whether the lean dK/dV kernel takes the split backward's second pass: the lean
    case (dO, dK and dV TMA-readable too), switched on by ATTNHUB_TRITON_LEAN_BWD=1, or,
    unset, by ``LEAN_BWD_DEFAULT``."""
    return (_lean_mode("ATTNHUB_TRITON_LEAN_BWD", LEAN_BWD_DEFAULT, q.shape[-1], right == 0)
            and _lean_case(call, q, k, v, (q, k, v, do, dk, dv), scale, left, right, softcap,
                           (64, 128)))  # d256: dK + dV alone would be 256 registers


def _fit_rows(q, k, v, max_sq, max_sk, *more_q):
    """q, k, v (and tensors with q's rows: O, dO) made ``int32_safe`` (attnhub.contract):
    the pointer paths index inside one (sequence, head) with int32 offsets."""
    sq = max_sq if q.dim() == 3 else q.shape[2]
    sk = max_sk if k.dim() == 3 else k.shape[2]
    return (int32_safe(q, sq), int32_safe(k, sk), int32_safe(v, sk),
            *(int32_safe(t, sq) for t in more_q))


def _forward(q, k, v, scale, left, right, softcap, cu_q, cu_k, max_sq, max_sk):
    q, k, v = _fit_rows(q, k, v, max_sq, max_sk)
    call = _Launch(q, k, v, scale, left, right, softcap, cu_q, cu_k, max_sq, max_sk)
    o, lse = _out_shapes(q, v, call.varlen, max_sq)
    if call.empty:
        return o, lse
    if call.no_keys:  # nothing to attend to: every row is fully masked
        return o.zero_(), lse.fill_(float("-inf"))
    if _use_gluon(call, q, k, v, o, scale, left, right, softcap):
        with torch.cuda.device(q.device):  # Triton launches on the current device
            name, knobs = _gluon_spec(gluon_variant(q.shape[-1], right == 0, call.seqlen_k))
            gluon_module()[0].gluon_attention_fwd(q, k, v, causal=right == 0,
                                                  softmax_scale=scale, variant=name, out=o,
                                                  lse_out=lse, **dict(knobs))
        return o, lse
    pointer = _use_pointer_fwd(call, q, v, scale, left, right, softcap)
    if not pointer and _use_lean(call, q, k, v, o, scale, left, right, softcap):
        args = (q, k, v, o, lse, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3],
                *o.stride()[:3], *call.lse_strides(lse), call.seqlen_q, call.seqlen_k,
                call.heads_q // call.heads_k, float(scale), call.bucket_q, call.bucket_k,
                lpt_window(call, q) if right == 0 else 0)
        call.run("lean", args, meta=dict(HEAD_DIM=q.shape[-1], IS_CAUSAL=right == 0))
        return o, lse
    args = (q, k, v, o, lse, cu_q, cu_k,
            *call.strides(q), *call.strides(k), *call.strides(v), *call.strides(o),
            *call.lse_strides(lse), *call.scalars)
    if pointer:
        call.run("fwd_ptr", args, meta=dict(call.meta, USE_TMA=False))
    else:
        call.run("fwd", args, (k, v))
    return o, lse


#: How the atomic variant adds dQ, for benchmarks: None reads ATTNHUB_TRITON_DQ_REDUCE,
#: "auto" (the default: a TMA bulk reduction where the TMA path is in use and the buffer
#: allows it, else element atomics), or "pointer" (element atomics always).
DQ_REDUCE: Optional[str] = None

BWD_VARIANTS = ("atomic", "split")


def _bwd_variant(variant: Optional[str]) -> str:
    """The explicit argument, else ATTNHUB_TRITON_BWD, else "split" (faster on the H100 at
    every benchmark point, NOTES.md).  "atomic" under torch.use_deterministic_algorithms(True)
    fails like torch's own non-deterministic kernels (warns with warn_only=True)."""
    if variant is None:
        variant = os.environ.get("ATTNHUB_TRITON_BWD") or "split"
    if variant not in BWD_VARIANTS:
        raise ValueError(f"triton-fa2 backward variant {variant!r} (known: "
                         f"{', '.join(BWD_VARIANTS)}); set ATTNHUB_TRITON_BWD=atomic or split")
    if variant == "atomic" and torch.are_deterministic_algorithms_enabled():
        message = ("triton-fa2's atomic backward adds dQ with float atomics and is not "
                   "deterministic; use variant='split' (ATTNHUB_TRITON_BWD=split), or turn "
                   "off torch.use_deterministic_algorithms")
        if not torch.is_deterministic_algorithms_warn_only_enabled():
            raise RuntimeError(message)
        warnings.warn(message)
    return variant


def _dq_reduce_tma(use_tma: bool, device: torch.device, dq_acc: torch.Tensor) -> bool:
    """TMA bulk reduction of dQ: compiled GPU code only (the interpreter has no descriptor
    reductions), on the TMA path, into an aligned float32 buffer."""
    mode = DQ_REDUCE or os.environ.get("ATTNHUB_TRITON_DQ_REDUCE", "auto")
    if mode == "pointer" or _interpreting() or device.type != "cuda":
        return False
    return use_tma and _tma_ok(device, (dq_acc,))


def _delta(call, o, do, delta, cu_q) -> None:
    """Δ = rowsum(dO ∘ O): the atomic variant's pre-pass (memory-bound, fixed tiles)."""
    dv = call.meta["BLOCK_DV"]
    bm = 16 if _interpreting() else max(16, min(128, 8192 // dv))
    args = (o, do, delta, cu_q, *call.strides(o), *call.strides(do), *call.lse_strides(delta),
            call.seqlen_q)
    grid = (-(-call.seqlen_q // bm), call.heads_q, call.batch)
    with torch.cuda.device(o.device) if o.device.type == "cuda" else _nullcontext():
        _k._attn_bwd_delta[grid](*args, HEAD_DIM_V=call.meta["HEAD_DIM_V"], BLOCK_DV=dv,
                                 VARLEN=call.varlen, BLOCK_M=bm, num_warps=4, num_stages=1)


#: Where the split backward computes Δ in its own pre-pass (``_attn_bwd_delta``) instead of
#: in the dQ kernel's prologue (ATTNHUB_TRITON_DELTA_PREPASS unset), by padded head dim:
#: nowhere -- the H100 run of 2026-12-05 measured -3..+2 % at d64-d256 (noise).  The
#: pre-pass costs a launch and a read of O and dO; it saves the dQ kernel 0.8k (d64), 1.8k
#: (d128), 4.7k SASS instructions + ~1000 spill loads/stores (d256) per program -- a third
#: of its instructions at S = 1k (NOTES.md, sm90_report).
DELTA_PREPASS: dict = {}


#: Where the split backward's dK/dV pass runs as two launches, dV then dK, one accumulator
#: each (ATTNHUB_TRITON_DKDV_PARTS unset), by padded head dim: nowhere -- the H100 run of
#: 2026-12-05 measured d256 (64-query steps) −2..−11 % and d128 −20..−23 % (NOTES.md).
DKDV_PARTS: dict = {}


def _padded_switch(variable: str, table: dict, call) -> bool:
    """``variable`` = 1 (on) / 0 (off), else ``table`` by the call's padded head dim."""
    mode = os.environ.get(variable, "auto")
    d = max(call.meta["BLOCK_D"], call.meta["BLOCK_DV"])
    return mode == "1" or (mode != "0" and table.get(d, False))


def _use_dkdv_parts(call) -> bool:
    return _padded_switch("ATTNHUB_TRITON_DKDV_PARTS", DKDV_PARTS, call)


def _use_delta_prepass(call) -> bool:
    return _padded_switch("ATTNHUB_TRITON_DELTA_PREPASS", DELTA_PREPASS, call)


def _backward(do, q, k, v, o, lse, scale, left, right, softcap, cu_q, cu_k, max_sq, max_sk,
              variant):
    q, k, v, o, do = _fit_rows(q, k, v, max_sq, max_sk, o, do)
    call = _Launch(q, k, v, scale, left, right, softcap, cu_q, cu_k, max_sq, max_sk)
    dq = _empty_like_layout(q, q.shape[-1])
    dk = _empty_like_layout(k, k.shape[-1])
    dv = _empty_like_layout(v, v.shape[-1])
    if call.empty or call.no_keys:
        return dq.zero_(), dk.zero_(), dv.zero_()
    lse = lse.contiguous()
    if _use_gluon_bwd(call, q, k, v, o, do, scale, left, right, softcap):
        with torch.cuda.device(q.device):  # Triton launches on the current device
            gluon_bwd_module()[0].gluon_attention_bwd(q, k, v, o, do, lse, causal=right == 0,
                                                      softmax_scale=scale, dq=dq, dk=dk, dv=dv)
        return dq, dk, dv
    delta = torch.empty_like(lse)  # Δ = rowsum(dO ∘ O)
    common = (*call.strides(q), *call.strides(k), *call.strides(v))
    if variant == "split":
        args = (q, k, v, o, do, lse, delta, dq, cu_q, cu_k, *common,
                *call.strides(o), *call.strides(do), *call.strides(dq),
                *call.lse_strides(lse), *call.scalars)
        prepass = _use_delta_prepass(call)
        if prepass:
            _delta(call, o, do, delta, cu_q)
        call.run("dq", args, (k, v), DELTA_IN=prepass)  # writes Δ too unless DELTA_IN
        if _use_lean_bwd(call, q, k, v, do, dk, dv, scale, left, right, softcap):
            args = (q, k, v, do, lse, delta, dk, dv, *q.stride()[:3], *k.stride()[:3],
                    *v.stride()[:3], *do.stride()[:3], *dk.stride()[:3], *dv.stride()[:3],
                    *call.lse_strides(lse), call.seqlen_q, call.seqlen_k,
                    call.heads_q // call.heads_k, float(scale), call.bucket_q, call.bucket_k)
            call.run("lean_dkdv", args, meta=dict(HEAD_DIM=q.shape[-1], IS_CAUSAL=right == 0))
            return dq, dk, dv
        dq_acc, kind = dq, "dkdv"  # dq_acc: unused by the dK/dV kernel here
    else:
        _delta(call, o, do, delta, cu_q)
        # Unscaled dQ, summed in float32 over the key blocks, in dq's memory order.
        dq_acc = dq if q.dtype == torch.float32 else _empty_like_layout(q, q.shape[-1],
                                                                         torch.float32)
        dq_acc.zero_()
        kind = "dkdvq"
    args = (q, k, v, do, lse, delta, dk, dv, dq_acc, cu_q, cu_k, *common,
            *call.strides(do), *call.strides(dk), *call.strides(dv), *call.strides(dq_acc),
            *call.lse_strides(lse), *call.scalars)
    if kind == "dkdv" and _use_dkdv_parts(call):
        call.run("dv_part", args, (q, do), DQ_ATOMIC=False, DQ_TMA=False, PART=1)
        call.run("dk_part", args, (q, do), DQ_ATOMIC=False, DQ_TMA=False, PART=2)
        return dq, dk, dv
    use_tma = _tma_ok(q.device, (q, do))
    call.run(kind, args, (q, do), DQ_ATOMIC=kind == "dkdvq",
             DQ_TMA=kind == "dkdvq" and _dq_reduce_tma(use_tma, q.device, dq_acc))
    if kind == "dkdvq":
        if dq_acc is dq:
            dq.mul_(scale)
        else:
            torch.mul(dq_acc, scale, out=dq)  # scale and cast in one elementwise pass
    return dq, dk, dv


# -- torch custom ops ----------------------------------------------------------------------------


@torch.library.custom_op("attnhub_triton::fwd", mutates_args=())
def _fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
            window_left: int, window_right: int, softcap: float,
            cu_seqlens_q: Optional[torch.Tensor], cu_seqlens_k: Optional[torch.Tensor],
            max_seqlen_q: int, max_seqlen_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _forward(q, k, v, scale, window_left, window_right, softcap,
                    cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)


@_fwd_op.register_fake
def _fwd_fake(q, k, v, scale, window_left, window_right, softcap,
              cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
    q, k, v = _fit_rows(q, k, v, max_seqlen_q, max_seqlen_k)  # the layouts _forward uses
    return _out_shapes(q, v, cu_seqlens_q is not None, max_seqlen_q)


@torch.library.custom_op("attnhub_triton::bwd", mutates_args=())
def _bwd_op(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            o: torch.Tensor, lse: torch.Tensor, scale: float,
            window_left: int, window_right: int, softcap: float,
            cu_seqlens_q: Optional[torch.Tensor], cu_seqlens_k: Optional[torch.Tensor],
            max_seqlen_q: int, max_seqlen_k: int,
            variant: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if variant not in BWD_VARIANTS:
        raise ValueError(f"variant {variant!r} (known: {', '.join(BWD_VARIANTS)})")
    return _backward(do, q, k, v, o, lse, scale, window_left, window_right, softcap,
                     cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, variant)


@_bwd_op.register_fake
def _bwd_fake(do, q, k, v, o, lse, scale, window_left, window_right, softcap,
              cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, variant):
    q, k, v = _fit_rows(q, k, v, max_seqlen_q, max_seqlen_k)
    return (_empty_like_layout(q, q.shape[-1]), _empty_like_layout(k, k.shape[-1]),
            _empty_like_layout(v, v.shape[-1]))


# -- public functions --------------------------------------------------------------------------


def _op_args(problem) -> tuple:
    left, right = problem.window_bounds  # causal folded in: right = 0
    return (float(problem.scale), int(left), int(right), float(problem.softcap or 0.0),
            problem.cu_seqlens_q, problem.cu_seqlens_k,
            int(problem.max_seqlen_q or 0), int(problem.max_seqlen_k or 0))


def flash_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, problem):
    """FlashAttention-2 forward for a resolved :class:`attnhub.Problem`.

    Returns ``(o, lse)``: ``o`` like ``q`` with head dim Dv (same memory order), ``lse``
    float32 natural-log logsumexp, ``(B, Hq, Sq)`` dense or ``(Hq, total_q)`` varlen.
    Fully masked rows get ``o = 0`` and ``lse = -inf``.
    """
    if torch.compiler.is_compiling():
        return torch.ops.attnhub_triton.fwd(q, k, v, *_op_args(problem))
    # eager: the op's dispatch adds nothing but host time (≈ 38 µs a call on the lent H200's
    # host, 33 µs on the CI CPU), which short problems pay in full (benchmarks/host_overhead.py)
    return _forward(q, k, v, *_op_args(problem))


def flash_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   o: torch.Tensor, lse: torch.Tensor, problem, variant: Optional[str] = None):
    """FlashAttention-2 backward: ``(dq, dk, dv)`` shaped like ``(q, k, v)``, recomputed
    from ``(q, k, v, o, lse)`` blockwise, no S×S buffer; dK/dV summed over each GQA group
    inside one program.

    ``variant``: ``"split"`` (dQ in its own kernel: deterministic, the default) or
    ``"atomic"`` (Δ pre-pass, then dK/dV and dQ in one kernel, dQ by float32 atomics:
    fewer matmuls, not bitwise deterministic, so refused under
    ``torch.use_deterministic_algorithms(True)``); ``None`` reads ``ATTNHUB_TRITON_BWD``.
    """
    if torch.compiler.is_compiling():
        return torch.ops.attnhub_triton.bwd(do, q, k, v, o, lse, *_op_args(problem),
                                            _bwd_variant(variant))
    return _backward(do, q, k, v, o, lse, *_op_args(problem), _bwd_variant(variant))
