"""The warp-specialised CUDA forward of ``hopper-fa3`` (``fa3_fwd.cu``): build and launch.

Compiled at run time with NVRTC through CuPy (``-arch=sm_90a``), one module per
(head dim, key-block width, stages, causal, dtype), cached by CuPy in memory per device and
on disk.  TMA tensor maps come from ``cuda.bindings.driver.cuTensorMapEncodeTiled``; the
kernel is launched on torch's current stream with ``cuLaunchKernel``.

What it covers (everything else goes to the Triton kernel in ``kernels.py``, with the
reason in :func:`unsupported_reason`): dense (B, H, S, D) fp16/bf16 inputs, head dim 64,
128, 192 or 256 for both QK and V, or one up to a quarter below these, padded up by TMA's
zero fill (:func:`kernel_head_dim`; a kernel built but not yet checked on a GPU waits in
:data:`UNVERIFIED_HEAD_DIMS` / :data:`PADDED_UNVERIFIED`), causal or not (bottom-right),
GQA/MQA, BHSD or BSHD strides (16-byte aligned), no sliding window, no softcap, positive
scale; and the same in FP8 (e4m3 Q/K/V with FlashAttention-3's (B, Hk) descales, bf16 O) at
head dim 128 or 256.  FP8
V is read with its keys permuted (:func:`key_order`): either copied once into that order
before the launch (``fp8_v.cu``) or, for short problems (``Tile.v_smem``), permuted by the
kernel in shared memory.

``ATTNHUB_HOPPER_CUDA=0`` turns it off; ``ATTNHUB_HOPPER_CUDA_UNVERIFIED=1`` lets it run what
still waits for its GPU check (for the device checks).  :func:`nvcc_check` compiles the same
source with ``nvcc`` for sm_90a (the CPU CI does this) and returns ptxas's resource report.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import NamedTuple, Optional

import torch

from . import wgmma_ptx

__all__ = ["Tile", "default_tile", "shipped_tiles", "unsupported_reason", "installed_reason",
           "forward", "source", "options", "nvrtc_options", "smem_bytes", "nvcc_check",
           "nvrtc_compile",
           "nvrtc_library", "enabled"]

_SRC = pathlib.Path(__file__).with_name("fa3_fwd.cu")
_V_SRC = pathlib.Path(__file__).with_name("fp8_v.cu")
_COMMON = pathlib.Path(__file__).with_name("fa3_common.cuh")  # PTX helpers fwd/bwd share
_LOG2E = 1.4426950408889634
_SMEM_LIMIT = 232448  # bytes of dynamic shared memory one block may use on sm90

_PRELUDE = "typedef unsigned int u32;\ntypedef unsigned long long u64;\n"
# exp2_poly's cubic for 2^f on [-0.5, 0.5] (c0..c3; fa3_fwd.cu spells them out), fitted for
# minimax relative error: 7.5e-5 in float32 (tests/backends/test_hopper_cuda.py)
POLY_COEFFS = (0.9999280572, 0.6932609677, 0.2426111251, 0.0551716685)


class Tile(NamedTuple):
    """One specialisation: key-block width, pipeline stages, ping-pong between the two
    consumer warpgroups (FA3 §3.1), (FP8 only) V's keys permuted in shared memory by the
    producer warps rather than by a pass over V before the launch, a persistent grid
    (one CTA per SM taking tiles from an atomic counter) instead of one CTA per tile, and
    ``poly`` of every 4 groups of 8 score columns exponentiated by a cubic on the FMA pipe
    instead of the MUFU unit (``exp2_poly`` in fa3_common.cuh; 0-3), ``lpt`` (causal
    launches; the same binary): tiles longest first across windows of (batch, head) pairs
    (:func:`sched_window`) instead of one pair after another, and ``consumers``: consumer
    warpgroups of 64 query rows each, 2 (128-row tiles, 384 threads) or 3 (FA3's 192-row
    tile at d64: 512 threads, 160 registers per consumer thread; 16-bit d64 only), and
    ``cluster``: 2 launches CTA pairs on adjacent query tiles of one head that load half of
    each K/V tile each and multicast it to both (non-causal 16-bit one-CTA-per-tile
    kernels; problems with an odd number of query tiles run the cluster-1 twin), and
    ``ones_sum`` (16-bit d64): the softmax's row sums accumulated by the P·V product
    against a block of ones (measured in the eighteenth session, NOTES.md), and ``lazy``
    (16-bit): FA4's conditional rescale, a row's running max moves only when a key block's
    max is more than 8 (log2) above it, so P stays <= 256 and O is rescaled only when some
    row of the warp moved (nineteenth session, NOTES.md), and ``skip`` (causal): a consumer
    warpgroup issues no S product for a tile's first key block that lies wholly past its
    last row (the first 128-key block for a 192-row tile's top 64 rows; twenty-first
    session, NOTES.md; 0: off), and ``max_tree``: each row's block max by a pairwise tree
    instead of a chain through the thread's columns (the same maxima; twenty-fourth
    session; shipped on the 16-bit tiles in the twenty-fifth), and ``halves`` (causal): a
    warpgroup's masked key block tests only the 64 columns its diagonal crosses, sets the
    columns past them to -inf without a test and leaves those before them alone (for the
    diagonal positions 64-row tiles and key blocks give; built in the twenty-seventh
    session, shipped at d64 causal 1025-2048 keys in the twenty-eighth and up to 1024 in
    the twenty-ninth), and ``split`` (persistent, non-causal): the last wave's tiles
    split along the keys over every CTA (:func:`split_plan`; built in the thirty-first
    session, shipped at d64 non-causal 1025-4096 keys in the thirty-second)."""

    block_n: int
    stages: int
    pingpong: bool = False
    v_smem: bool = False
    persistent: bool = False
    poly: int = 0
    lpt: bool = False
    consumers: int = 2
    cluster: int = 1
    ones_sum: bool = False
    lazy: bool = False
    skip: int = 1
    max_tree: bool = False
    halves: bool = False
    split: bool = False

    @property
    def block_m(self) -> int:
        return 64 * self.consumers

    def __str__(self):
        return (f"n{self.block_n}s{self.stages}" + ("-pp" if self.pingpong else "")
                + ("-vs" if self.v_smem else "") + ("-persistent" if self.persistent else "")
                + (f"-poly{self.poly}" if self.poly else "") + ("-lpt" if self.lpt else "")
                + (f"-m{self.block_m}" if self.consumers != 2 else "")
                + (f"-c{self.cluster}" if self.cluster != 1 else "")
                + ("-ones" if self.ones_sum else "") + ("-lazy" if self.lazy else "")
                + ("-noskip" if self.skip == 0 else "") + ("-tree" if self.max_tree else "")
                + ("-halves" if self.halves else "") + ("-split" if self.split else ""))


#: The window's K and V bytes stay under this (about a third of the H100's 50 MB L2).
SCHED_WINDOW_BYTES = 16 << 20


def window_pairs(n_pairs: int, bytes_per_pair: int) -> int:
    """How many of ``n_pairs`` (batch, head) pairs fit SCHED_WINDOW_BYTES (at least 1): the
    window of the ``lpt`` launch orders, forward and backward."""
    return max(1, min(n_pairs, SCHED_WINDOW_BYTES // max(bytes_per_pair, 1)))


def sched_window(batch: int, heads_q: int, group: int, seqlen_k: int, head_dim: int,
                 elem_bytes: int = 2) -> int:
    """``Tile.lpt``'s window: how many (batch, query head) pairs take their tiles together,
    longest first (fa3_fwd.cu's ``decode``): as many as keep their K and V (shared by
    ``group`` query heads) within SCHED_WINDOW_BYTES, at least 1, at most all of them."""
    return window_pairs(batch * heads_q, 2 * seqlen_k * head_dim * elem_bytes // max(group, 1))


@functools.lru_cache(maxsize=4096)  # on every forward call's path
def default_tile(head_dim: int, causal: bool, seqlen_k: int, fp8: bool = False) -> Tile:
    """The tile measured best on the H100 (NOTES.md, "CUDA forward", runs 2, 4 and 6, and the
    tenth session's A/B): ping-pong pays at d64 everywhere and at d128 below 8k keys
    (non-causal: up to 8k); wide key blocks pay at long sequences; three consumer
    warpgroups (192 rows, with the row sums by the P·V product) pay at d64 from 2k keys;
    CTA pairs sharing K/V pay a little at d128 non-causal 16k; the persistent grid pays at
    short sequences (d64 up to 4k keys; d128 up to 2k);
    d256 runs 80-wide blocks without ping-pong when causal (and up to 1k keys), 64-wide
    blocks with ping-pong when non-causal above 1k keys, and has no shared memory for the
    persistent kernel's O buffer.  Causal problems with :data:`LPT_KEYS` keys take their
    longest tiles first (``Tile.lpt``); 16-bit tiles rescale lazily (``Tile.lazy``) and take
    the row max by a tree (``Tile.max_tree``); d64 causal problems with up to 2048 keys
    mask by halves (``Tile.halves``; d128 causal 1k-4k measured +0.0..+0.7 % with it).
    FP8 always uses 128-key blocks (one swizzle row of the transposed V); ping-pong paid at
    d256 up to 4k keys (+1-4 %) and not beyond, and cost 1-8 % at d128; permuting V in
    shared memory beat the 30 us pass over V only for causal problems up to 4k keys
    (NOTES.md, FP8 runs 2-7)."""
    if fp8:
        short = seqlen_k <= 4096
        # d256 16k with ping-pong after the P·V wait moved: 1316 then 1211 TFLOP/s against
        # 1191 then 1243 without it in two runs (nineteenth session): not a change
        return Tile(128, 2, head_dim == 256 and short, causal and short)
    kernel_dim = kernel_head_dim(head_dim) or head_dim
    tile = _bf16_tile(kernel_dim, causal, seqlen_k)
    if kernel_dim != head_dim:  # the split has run on the GPU only at the kernel dims
        tile = tile._replace(split=False)
    # lazy (FA4's conditional rescale): +0.3..+3.2 % at all 12 points of an interleaved A/B
    # (d64/128/256, 2k/8k, causal or not; ab_split_lazy_h100_2026-12-06).  max_tree (the
    # row max by a tree): B/A 0.979..1.022, geometric mean +0.6 %, at least 1.0 at 16 of 20
    # points, 8 interleaved rounds (ab_max_tree_h100_2026-12-06_s25; d64 / d128 causal and not,
    # d256 non-causal, 2k-16k); the maxima are the same, so the outputs are bit-identical
    tile = tile._replace(lazy=True, max_tree=True)
    lo, hi = LPT_KEYS
    return tile._replace(lpt=True) if causal and lo <= seqlen_k <= hi else tile


#: Causal bf16/fp16 problems with keys in this range launch in Tile.lpt's order (longest
#: tiles first).  H100, 2026-12-05: +0.1-5.0 % at 2k-8k (d256 +4-5 %, d128 +2-3 %), median
#: of 4 interleaved rounds (``ab_hopper_h100_2026-12-05``); grid run ``..._run11``: d128 and
#: d256 +1.5..+21 %, d64 −0.5..+1.6 %.  At 1k it lost up to 5 % (d64); at 16k it was
#: +0.6..+1.8 % in the interleaved rounds but −6.5 % and −8 % at d128 in grid runs 10 and
#: 11, so 16k keeps the plain order.  FP8 was not measured with it.
LPT_KEYS = (2048, 8192)


def _bf16_tile(head_dim: int, causal: bool, seqlen_k: int) -> Tile:
    """The 16-bit tile of a kernel head dim; a smaller problem head dim on TMA's zero fill
    (:func:`kernel_head_dim`) gets the same tile as its kernel dim."""
    if head_dim == 64:
        if seqlen_k <= 1024:
            # halves at causal 1k: +1.3 % (8 rounds) and +1.4 % (12 rounds, the tile against
            # itself -0.1 % in the same rounds; ab_halves_1k*_h100_2026-12-07_s29)
            return Tile(128, 2, True, persistent=True, halves=causal)
        # three consumer warpgroups (192-row tiles), medians of 4 interleaved rounds,
        # ab_hopper_h100_2026-12-05_run4..7: non-causal persistent +5.0/+5.8 % at 2k/4k,
        # plain +5.0..+7.9 % at 8k-16k (both orders); causal +3.5..+6.0 % at 8k-16k and
        # −3..−6 % at 2k-4k (192-row causal tiles are coarser), persistent at 4k +2.5 / +3.7 %
        # (ab_hopper_h100_2026-12-05_run7, _run13).
        # ones_sum (the row sums by the P·V product) on all of them since the P·V wait
        # follows the exps and the rescale is lazy (ab_ones_*_h100_2026-12-06, nineteenth
        # session, both orders): causal 2k (with the persistent 192-row tile, against the
        # 128-row one) +3.4 / +3.0 %, causal 4k +3.5 / +3.8 %, non-causal 2k +1.7 %, 4k
        # +2.0 / +1.9 %, causal 8k / 16k +1.6 / +0.5 %; non-causal 8k-16k +3.2..+5.7 %
        # before (ab_ones_h100_2026-12-06, _run2)
        # halves (the causal mask tests only the 64 columns the diagonal crosses) at causal
        # 2k: +1.7 % (8 rounds) and +0.7 % (12 rounds, the tile against itself +0.2 % in the
        # same rounds); 4k 0.999 (ab_halves*_h100_2026-12-07_s28), so only up to 2k (1k: above)
        # split (the last wave's tiles cut along the keys over every CTA) on the persistent
        # non-causal tile: 2k +1.1 / +0.7 %, 4k +2.2 / +1.0 % in both orders (10 / 16
        # interleaved rounds), fp16 +1.5 / +1.7 % (ab_split_d64*_h100_2026-12-07_s32;
        # prediction +1.8..+2.7 %, an upper bound); d128 2k gained nothing (+0.2 / -0.4 %)
        persistent = seqlen_k <= 4096
        return Tile(128, 2, True, persistent=persistent, consumers=3, ones_sum=True,
                    halves=causal and seqlen_k <= 2048, split=persistent and not causal)
    if head_dim == 128:
        # non-causal 2k: persistent, +3.4 / +3.8 / +3.3 % in three interleaved runs, the last
        # two in opposite orders (ab_hopper_h100_2026-12-05_run7, _run13); 4k −0.6..+1.6 %.
        # Causal 2k: persistent (in the longest-first order) +7.1 % with ping-pong, +7.7 %
        # without, 8 interleaved rounds (ab_d128c_persistent_h100_2026-12-06); at 4k +2.9 /
        # +3.5 %.  Without ping-pong against that, 10 interleaved rounds
        # (ab_d128c_2k_nopp_h100_2026-12-06): 2k +1.3 %, 4k +3.6 % (and +3.2 / +5.2 % against
        # the one-CTA-per-tile kernel at 4k in ab_d128_4k8k_nopp / ab_d128c_4k; 8k +0.8 %)
        if causal and 1024 < seqlen_k <= 4096:
            return Tile(128, 2, persistent=True)
        if seqlen_k <= 2048:
            return Tile(128, 2, causal or seqlen_k > 1024, persistent=True)
        # non-causal 8k: ping-pong 128-key blocks against 176-key blocks +2.2 / +2.9 % in two
        # interleaved runs of 8 and 12 rounds (ab_d128_full_8k*_h100_2026-12-06_s27); at 16k
        # +0.5 % (as much as the shipped tile against itself there), so 16k keeps the pairs
        if seqlen_k < 8192 or (seqlen_k == 8192 and not causal):
            return Tile(128, 2, True)
        if causal:
            return Tile(128, 2)
        # CTA pairs multicasting K/V: +2.1 / +2.1 / +1.1 % at 16k in three interleaved runs
        # (ab_hopper_h100_2026-12-05_run9-10, both orders), 0 / +2.1 % at 8k, −2..−3 % at 4k
        # and −9 % at 2k
        return Tile(176, 2, cluster=2 if seqlen_k >= 16384 else 1)
    if head_dim == 192:
        # the widest key block that fits two stages (222,312 of 232,448 bytes), no
        # ping-pong, as at d256: best or within the spread of n96 / ping-pong / persistent at
        # 2k-16k (hopper_fa3_cuda_fwd_dims_h100_2026-12-06; n96s2-pp +3 % at 1k only)
        return Tile(112, 2)
    # non-causal: ping-pong 64-key blocks against 80-key blocks without it: 4k +2.1 % (8
    # rounds, twenty-seventh session) and +2.5 % (12 rounds,
    # ab_d256_full_4k_confirm_h100_2026-12-07_s28; n80s2-pp +1.6 %); thirtieth session, 12
    # interleaved rounds in both orders (ab_f256_n64pp*_h100_2026-12-07_s30): 2k +2.7 / +0.8 %,
    # 8k +2.5 / +0.8 %, 16k +0.9 / +1.0 %; fp16 2k +1.6 %, 8k +4.6 %.  1k and below not measured.
    # The padded dims (200-248) take it too: d224 on this tile passed its GPU case at Sq 1023
    # / Sk 1031 (test_cuda_forward_every_tile, thirty-second session)
    if not causal and seqlen_k > 1024:
        return Tile(64, 2, True)
    return Tile(80, 2)


def shipped_tiles(fp8: bool = False) -> set:
    """Every (head dim, causal, tile) :func:`default_tile` can return."""
    dims = (128, 256) if fp8 else HEAD_DIMS
    return {(d, c, default_tile(d, c, s, fp8)) for d in dims for c in (False, True)
            for s in (1024, 2048, 4096, 8192, 16384)}



def enabled() -> bool:
    return os.environ.get("ATTNHUB_HOPPER_CUDA", "1") not in ("0", "")


#: 16-bit head dims the kernel builds for (a multiple of 64: Q/K/V rows are 128-byte TMA
#: boxes of 64 columns).
HEAD_DIMS = (64, 128, 192, 256)

#: Head dims that build (NVRTC and nvcc, no spills) but have not yet passed the tolerance
#: cases on a GPU: refused, with this reason, unless ATTNHUB_HOPPER_CUDA_UNVERIFIED=1.
#: (d192 waited here until its first GPU run, 2026-12-06: 112/112 tolerance cases.)
UNVERIFIED_HEAD_DIMS: dict = {}

#: Why the forward at head dims between the kernel's (:func:`kernel_head_dim`) still waits,
#: or None once a GPU has checked it (2026-12-06: d96/160/224, every case passed).
PADDED_UNVERIFIED: Optional[str] = None


@functools.lru_cache(maxsize=None)  # on every call's path (unsupported_reason, forward)
def kernel_head_dim(head_dim: int) -> Optional[int]:
    """The kernel's head dim for a problem's: itself for :data:`HEAD_DIMS`, else the next
    one up when that wastes at most a quarter of the work (96-120 -> 128; 144-184 ->
    192; 200-248 -> 256; 48, 56 -> 64) and rows are 16-byte multiples (a multiple of 8).
    No copy: the TMA maps keep the tensors' own head dim, so loads fill the missing columns
    of Q, K and V with zeros (QKᵀ unchanged, O's extra columns 0) and the O store clips them.
    None: not served (the Triton kernel runs)."""
    if head_dim % 8:
        return None
    up = next((d for d in HEAD_DIMS if d >= head_dim), None)
    return up if up is not None and 4 * head_dim >= 3 * up else None


def unverified_allowed() -> bool:
    """``ATTNHUB_HOPPER_CUDA_UNVERIFIED=1``: run what still waits for its GPU check."""
    return os.environ.get("ATTNHUB_HOPPER_CUDA_UNVERIFIED", "0") == "1"


def _unverified_reason(head_dim: int, kd: Optional[int] = None,
                       checker: str = "cuda_check.py",
                       padded_why: Optional[str] = None) -> Optional[str]:
    """Why ``head_dim`` (on kernel head dim ``kd``, default :func:`kernel_head_dim`) still
    waits for its GPU check, or None; ``checker`` is the device script that checks it and
    ``padded_why`` the gate of that direction's padded head dims (the forward's
    :data:`PADDED_UNVERIFIED`, the backward's ``cuda_bwd.PADDED_UNVERIFIED``)."""
    kd = kernel_head_dim(head_dim) if kd is None else kd
    parts = []
    if kd is not None and kd != head_dim and padded_why:
        parts.append(f"runs the d{kd} kernel on TMA's zero fill, {padded_why}")
    if kd in UNVERIFIED_HEAD_DIMS:
        parts.append(("" if kd == head_dim else f"the d{kd} kernel is ")
                     + UNVERIFIED_HEAD_DIMS[kd])
    if not parts or unverified_allowed():
        return None
    why = "; ".join(parts)
    return (f"head dim {head_dim}: {why} (ATTNHUB_HOPPER_CUDA_UNVERIFIED=1 runs it; "
            f"backends/attnhub_hopper/{checker} checks it)")


_FP8 = getattr(torch, "float8_e4m3fn", None)
_WGMMA_TYPES = {torch.bfloat16: "bf16", torch.float16: "f16", _FP8: "e4m3"}


def smem_bytes(head_dim: int, block_n: int, stages: int, fp8: bool = False,
               persistent: bool = False, block_m: int = 128, ones_sum: bool = False) -> int:
    """Dynamic shared memory of a specialisation."""
    e = 1 if fp8 else 2
    q = block_m * head_dim * e
    kv = block_n * head_dim * e
    o = block_m * head_dim * 2 if (fp8 or persistent) else 0  # O staged in its own buffer
    bars = 8 * (3 + 5 * stages)  # mbarriers and the persistent kernel's tile slot
    ones = block_n * 128 if ones_sum else 0  # Tile.ones_sum's block of ones
    return q + 2 * stages * kv + o + ones + bars + 1024  # + alignment slack


def tile_smem_bytes(head_dim: int, tile: Tile, dtype) -> int:
    """:func:`smem_bytes` of one specialisation, from its tile."""
    return smem_bytes(head_dim, tile.block_n, tile.stages, dtype == _FP8, tile.persistent,
                      tile.block_m, tile.ones_sum)


def source(head_dim: int, block_n: int, dtype: torch.dtype, ones_sum: bool = False) -> str:
    """The full translation unit: typedefs, generated wgmma wrappers, the shared PTX
    helpers (``fa3_common.cuh``), ``fa3_fwd.cu``."""
    name = _WGMMA_TYPES.get(dtype)
    if name is None:
        raise TypeError(f"dtype must be torch.float16, torch.bfloat16 or "
                        f"torch.float8_e4m3fn, got {dtype}")
    rs = [head_dim + 8] if ones_sum else [head_dim]  # Tile.ones_sum: P·V 8 columns wider
    return (_PRELUDE + wgmma_ptx.header([block_n], rs, name) + "\n"
            + _COMMON.read_text() + "\n" + _SRC.read_text())


def options(head_dim: int, tile: Tile, causal: bool, dtype) -> tuple:
    fp8 = dtype == _FP8
    return (f"-DHEAD_DIM={head_dim}", f"-DBLOCK_N={tile.block_n}", f"-DSTAGES={tile.stages}",
            f"-DCAUSAL={int(bool(causal))}",
            f"-DIS_BF16={int(fp8 or dtype == torch.bfloat16)}",  # FP8's O is bf16
            f"-DPINGPONG={int(tile.pingpong)}", f"-DIS_FP8={int(fp8)}",
            f"-DV_SMEM_PERMUTE={int(fp8 and tile.v_smem)}",
            f"-DPERSISTENT={int(tile.persistent)}", f"-DPOLY_EXP={int(tile.poly)}",
            f"-DCONSUMERS={tile.consumers}", f"-DCLUSTER={tile.cluster}",
            f"-DONES_SUM={int(tile.ones_sum)}", f"-DLAZY_RESCALE={int(tile.lazy)}",
            f"-DDEAD_SKIP={int(tile.skip)}", f"-DMAX_TREE={int(tile.max_tree)}",
            f"-DMASK_HALVES={int(tile.halves)}", f"-DSPLIT_TAIL={int(tile.split)}")


def nvrtc_options(head_dim: int, tile: Tile, causal: bool, dtype) -> tuple:
    """NVRTC's options for one specialisation (what CuPy compiles with on the device; the
    CPU tests pass the same to NVRTC)."""
    # ATTNHUB_HOPPER_LINEINFO=1 (profiling): source lines for ncu's per-instruction samples
    line = ("-lineinfo",) if os.environ.get("ATTNHUB_HOPPER_LINEINFO") == "1" else ()
    return ("-arch=sm_90a", "-std=c++17") + line + options(head_dim, tile, causal, dtype)


def _aligned(t: torch.Tensor) -> bool:
    """Can a 4-D tensor map address ``t``: 16-byte aligned base and strides, unit last
    stride, and no broadcast (stride-0) dimension of size > 1 (an expanded K/V or dO: TMA
    documents strides of a non-overlapping layout).  Size-1 dims may carry any stride."""
    e = t.element_size()
    return (t.data_ptr() % 16 == 0 and t.stride(-1) == 1
            and all(n == 1 or (s > 0 and (s * e) % 16 == 0)
                    for s, n in zip(t.stride()[:-1], t.shape[:-1])))


@functools.lru_cache(maxsize=None)
def _import_reason() -> Optional[str]:
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a CuPy built for another CUDA
        return f"cupy is not importable ({exc}); pip install cupy-cuda13x"
    try:
        from cuda.bindings import driver  # noqa: F401
    except Exception as exc:
        return f"cuda.bindings is not importable ({exc}); pip install cuda-bindings"
    return None


def installed_reason() -> Optional[str]:
    """Why the CUDA forward cannot run here, judged without importing CuPy (for listings,
    which run for every backend at registry load): off, or a package not installed."""
    import importlib.util

    if not enabled():
        return "ATTNHUB_HOPPER_CUDA=0"
    for mod, pip_name in (("cupy", "cupy-cuda13x"), ("cuda.bindings", "cuda-bindings")):
        try:
            found = importlib.util.find_spec(mod) is not None
        except ImportError:  # the parent package is missing
            found = False
        if not found:
            return f"{mod} is not installed; pip install {pip_name}"
    return None


def unsupported_reason(q, k, v, problem) -> Optional[str]:
    """Why the CUDA forward cannot run this problem (None: it can)."""
    if not enabled():
        return "ATTNHUB_HOPPER_CUDA=0"
    if problem.is_varlen:
        return "varlen (cu_seqlens) inputs"
    if problem.is_fp8:
        if problem.dtype != _FP8 or problem.out_dtype != torch.bfloat16:
            return f"fp8 dtype {problem.dtype} -> {problem.out_dtype} (needs e4m3 -> bf16)"
        if problem.head_dim != problem.head_dim_v or problem.head_dim not in (128, 256):
            return (f"fp8 head dims {problem.head_dim}/{problem.head_dim_v} "
                    "(needs equal head dims of 128 or 256)")
    elif problem.dtype not in (torch.float16, torch.bfloat16):
        return f"dtype {problem.dtype}"
    elif problem.head_dim != problem.head_dim_v or kernel_head_dim(problem.head_dim) is None:
        return (f"head dims {problem.head_dim}/{problem.head_dim_v} (needs equal head dims, "
                f"one of {', '.join(map(str, HEAD_DIMS))} or a multiple of 8 at most a "
                "quarter below one)")
    elif why := _unverified_reason(problem.head_dim, padded_why=PADDED_UNVERIFIED):
        return why
    if problem.window is not None:
        return "sliding window"
    if problem.softcap is not None:
        return "softcap"
    if not problem.scale > 0:
        return f"scale {problem.scale} (needs a positive scale)"
    if problem.batch > 65535 or problem.heads_q > 65535:  # the grid's y and z limits
        return f"batch {problem.batch} / heads {problem.heads_q} above 65535"
    # an FP8 v is copied into the kernel's layout, so only q and k are read in place
    if not all(_aligned(t) for t in ((q, k) if problem.is_fp8 else (q, k, v))):
        return ("q/k strides or base not 16-byte aligned for TMA" if problem.is_fp8
                else "q/k/v strides or base not 16-byte aligned for TMA")
    if q.device.type != "cuda":
        return "not a CUDA tensor"
    return _import_reason()


def tile_refusal(head_dim: int, tile: Tile, causal: bool, dtype) -> Optional[str]:
    """Why ``tile`` cannot be built for (head dim, causal, dtype), or None: what
    :func:`_kernel` refuses with, for the check scripts to skip the same combinations."""
    if tile.lazy and dtype == _FP8:
        return (f"hopper-fa3 CUDA tile {tile}: lazy needs 16-bit inputs (FP8's P is already "
                "scaled by 2^8 and e4m3 ends at 448); set lazy=False")
    if tile.ones_sum and (head_dim != 64 or dtype == _FP8):
        return (f"hopper-fa3 CUDA tile {tile}: ones_sum needs 16-bit head dim 64 (the block "
                f"of ones sits in P·V's second 64-column chunk); got d{head_dim} {dtype}")
    if tile.persistent and tile.v_smem and dtype == _FP8:
        return (f"hopper-fa3 CUDA tile {tile}: the persistent kernel takes V already permuted "
                "(v_smem=False)")
    if tile.consumers not in (2, 3) or (tile.consumers == 3
                                        and (head_dim != 64 or dtype == _FP8)):
        return (f"hopper-fa3 CUDA tile {tile}: consumers must be 2, or 3 at 16-bit head dim "
                f"64 (160 registers a thread); got {tile.consumers} at d{head_dim} {dtype}")
    if tile.cluster not in (1, 2) or (tile.cluster == 2 and (
            causal or tile.persistent or dtype == _FP8 or tile.block_n % 16)):
        return (f"hopper-fa3 CUDA tile {tile}: cluster must be 1, or 2 for a non-causal "
                "16-bit kernel with one CTA per tile (not persistent) and key blocks of a "
                f"multiple of 16; got d{head_dim} causal={causal} {dtype}")
    if tile.split and (causal or not tile.persistent or tile.cluster != 1):
        return (f"hopper-fa3 CUDA tile {tile}: split needs a persistent non-causal kernel "
                f"without CTA pairs (every tile the same key blocks); got causal={causal}")
    smem = tile_smem_bytes(head_dim, tile, dtype)
    if smem > _SMEM_LIMIT:
        return (f"hopper-fa3 CUDA tile d{head_dim} {tile} needs {smem} bytes of shared memory "
                f"(limit {_SMEM_LIMIT})")
    return None


@functools.lru_cache(maxsize=None)
def _kernel(device_index: int, head_dim: int, tile: Tile, causal: bool, dtype):
    """(CuPy module, CUfunction, dynamic shared memory bytes) of one specialisation on one
    device; the module is returned so the cache keeps it loaded."""
    why = tile_refusal(head_dim, tile, causal, dtype)
    if why:
        raise ValueError(why)
    smem = tile_smem_bytes(head_dim, tile, dtype)
    mod, func = _build(device_index, source(head_dim, tile.block_n, dtype, tile.ones_sum),
                       nvrtc_options(head_dim, tile, causal, dtype), "attnhub_fa3_fwd", smem)
    return mod, func, smem


def _build(device_index: int, code: str, opts: tuple, name: str, smem: int = 0):
    """(CuPy module, CUfunction ``name``) compiled by NVRTC on one device, allowed ``smem``
    bytes of dynamic shared memory; the module is returned so a cache keeps it loaded."""
    import cupy
    from cuda.bindings import driver as cu

    with cupy.cuda.Device(device_index):
        mod = cupy.RawModule(code=code, options=tuple(opts), backend="nvrtc")
        func = cu.CUfunction(mod.get_function(name).kernel.ptr)  # RawKernel -> CUfunction
        if smem:
            _check(cu.cuFuncSetAttribute(
                func, cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem))
    return mod, func


def _check(ret):
    from cuda.bindings import driver as cu

    err = ret[0] if isinstance(ret, tuple) else ret
    if err != cu.CUresult.CUDA_SUCCESS:
        _, msg = cu.cuGetErrorString(err)
        raise RuntimeError(f"hopper-fa3 CUDA forward: {err!r} ({msg})")
    return ret[1] if isinstance(ret, tuple) and len(ret) == 2 else ret


def _tensor_map(t: torch.Tensor, box_rows: int):
    """A 4-D TMA map over the (D, S, H, B) view of a (B, H, S, D) tensor, 128B swizzle,
    boxes of 128 bytes by ``box_rows``.  A map holds only the address, sizes and strides,
    so maps are reused for tensors that share all three (a training step's layers do)."""
    return _encode(t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.element_size(),
                   str(t.dtype), box_rows)


@functools.lru_cache(maxsize=512)
def _encode(ptr: int, shape: tuple, stride: tuple, e: int, dtype: str, box_rows: int):
    from cuda.bindings import driver as cu

    B, H, S, D = shape
    strides = []
    for n, s in ((S, stride[2]), (H, stride[1]), (B, stride[0])):
        # a size-1 dim may carry any stride; TMA wants a 16-byte multiple: repeat the last
        strides.append(s * e if n != 1 else (strides[-1] if strides else 16))
    types = cu.CUtensorMapDataType
    dt = {"torch.bfloat16": types.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
          "torch.float16": types.CU_TENSOR_MAP_DATA_TYPE_FLOAT16}.get(
        dtype, types.CU_TENSOR_MAP_DATA_TYPE_UINT8)  # e4m3 and its uint8 views
    u64, u32 = cu.cuuint64_t, cu.cuuint32_t
    return _check(cu.cuTensorMapEncodeTiled(
        dt, 4, ptr, [u64(x) for x in (D, S, H, B)], [u64(x) for x in strides],
        [u32(128 // e), u32(box_rows), u32(1), u32(1)], [u32(1)] * 4,
        cu.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
        cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
        cu.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE))


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _empty_o(q: torch.Tensor, B, H, S, D, dtype) -> torch.Tensor:
    """O in q's memory order (BSHD memory for a BSHD view), contiguous either way."""
    if q.stride(1) < q.stride(2):
        return torch.empty(B, S, H, D, dtype=dtype, device=q.device).transpose(1, 2)
    return torch.empty(B, H, S, D, dtype=dtype, device=q.device)


def key_order() -> torch.Tensor:
    """The order of V's keys the FP8 kernel reads: for each position of a 16-key chunk,
    the key it holds.  The thread that owns S columns {2q, 2q+1, 8+2q, 9+2q} (and 16 +
    those) of a k32 step packs them as e4m3 A-register positions {4q .. 4q+3} (and 16 +
    those), so position 4q + 2a + e holds key 8a + 2q + e (the tests check this against an
    emulation of the register layouts)."""
    pos = torch.arange(16)
    e, a, q = pos % 2, (pos // 2) % 2, pos // 4
    return 8 * a + 2 * q + e


def fp8_v_reference(v: torch.Tensor) -> torch.Tensor:
    """What :func:`_fp8_v` computes, in torch (any device): (B, Hk, Dv, Sk') uint8, keys
    contiguous and permuted within each 16-key chunk by :func:`key_order`, Sk' = Sk rounded
    up to 32 with zero keys."""
    B, H, S, D = v.shape
    vt = v.view(torch.uint8).transpose(-1, -2)
    vt = torch.nn.functional.pad(vt, (0, -S % 32))
    return vt.reshape(B, H, D, -1, 16)[..., key_order().to(v.device)].reshape(B, H, D, -1)


@functools.lru_cache(maxsize=None)
def _v_kernel(device_index: int):
    return _build(device_index, _V_SRC.read_text(), ("-std=c++17",), "attnhub_fp8_v_layout")


def _fp8_v(v: torch.Tensor, device_index: int) -> torch.Tensor:
    """V for the FP8 kernel (see :func:`fp8_v_reference`) by ``fp8_v.cu``: one pass over V
    from any layout, 16-byte loads for sequence-major V (how quantize_fp8 stores it);
    30 us for 8 x 16k x 256 on the H100."""
    B, H, S, D = v.shape
    skp = -(-S // 32) * 32
    out = torch.empty(B, H, D, skp, dtype=torch.uint8, device=v.device)
    rows = B * H * D
    threads = rows * (skp // 32)
    _, func = _v_kernel(device_index)
    _launch(func, (-(-threads // 256), 1, 1), 256, 0, v.device, (), (
        ctypes.c_void_p(v.data_ptr()), ctypes.c_void_p(out.data_ptr()),
        ctypes.c_longlong(v.stride(0)), ctypes.c_longlong(v.stride(1)),
        ctypes.c_longlong(v.stride(3)), ctypes.c_longlong(v.stride(2)), ctypes.c_int(H),
        ctypes.c_int(D), ctypes.c_int(S), ctypes.c_int(skp), ctypes.c_longlong(rows)))
    return out


def _fp8_vt(v: torch.Tensor) -> torch.Tensor:
    """For ``Tile.v_smem``: the (B, Hk, Dv, Sk) view of an FP8 V that the kernel's TMA
    reads, keys contiguous, rows 16-byte aligned.  quantize_fp8's V (sequence-major
    storage) is used in place; anything else is copied once, rows padded to 16 bytes (keys
    past Sk are never read: the TMA map ends at Sk and fills zeros)."""
    vt = v.view(torch.uint8).transpose(-1, -2)
    if _aligned(vt):
        return vt
    B, H, D, S = vt.shape
    buf = torch.empty(B, H, D, S + (-S % 16), dtype=torch.uint8, device=v.device)
    return buf[..., :S].copy_(vt)


def _descale_ptrs(problem, B, Hk, device):
    """q/k/v descales as (B, Hk) contiguous float32 tensors and their addresses; None stays
    a null pointer (the kernel reads it as 1).  Anything broadcastable to (B, Hk) is
    accepted, as in the Triton kernel."""
    keep, ptrs = [], []
    for t in (problem.q_descale, problem.k_descale, problem.v_descale):
        if t is None:
            ptrs.append(0)
            continue
        t = t.to(device=device, dtype=torch.float32).expand(B, Hk).contiguous()
        keep.append(t)
        ptrs.append(t.data_ptr())
    return keep, ptrs


#: The shortest range of key blocks :func:`split_plan` cuts (a piece costs about one
#: block more than a whole tile: its own Q load, its partial out and the merge).
SPLIT_MIN_BLOCKS = 4


@functools.lru_cache(maxsize=256)
def split_plan(n_tiles: int, n_blocks: int, n_ctas: int,
               min_blocks: int = SPLIT_MIN_BLOCKS) -> tuple:
    """``Tile.split``'s work plan: ``(n_whole, first, segs)``.  Tiles 0 .. n_whole - 1 are
    handed out whole; the key blocks of the rest (the last wave, fewer tiles than CTAs) are
    laid end to end and cut into ``len(first) - 1`` near-equal ranges of at least
    ``min_blocks`` and at most one a CTA; range j is segments ``first[j] .. first[j + 1] -
    1``, each ``(tile, first key block, end key block, first segment of that tile << 8 |
    that tile's segments)``; a tile's segments are consecutive.  No ranges (``first`` =
    ``(0,)``, ``n_whole`` = ``n_tiles``) where no tile would be cut: a whole last wave, or
    too few blocks to share."""
    if n_tiles <= 0 or n_blocks <= 0 or n_ctas <= 0:
        raise ValueError(f"split_plan({n_tiles}, {n_blocks}, {n_ctas}): expected positive "
                         "tile, key-block and CTA counts")
    tail = n_tiles % n_ctas
    work = tail * n_blocks
    n_ranges = min(n_ctas, work // max(1, min_blocks))
    if tail == 0 or n_ranges <= tail:
        return n_tiles, (0,), ()
    n_whole = n_tiles - tail
    bounds = [j * work // n_ranges for j in range(n_ranges + 1)]
    segs, first = [], []
    for j in range(n_ranges):
        first.append(len(segs))
        a, b = bounds[j], bounds[j + 1]
        while a < b:
            ti, lo = divmod(a, n_blocks)
            hi = min(n_blocks, lo + b - a)
            segs.append([n_whole + ti, lo, hi])
            a += hi - lo
    first.append(len(segs))
    start = 0
    for i in range(1, len(segs) + 1):  # a tile's segments: consecutive
        if i == len(segs) or segs[i][0] != segs[start][0]:
            if i - start > 255:
                raise ValueError(f"split_plan: tile {segs[start][0]} in {i - start} pieces "
                                 "(at most 255); raise min_blocks")
            for seg in segs[start:i]:
                seg.append((start << 8) | (i - start))
            start = i
    return n_whole, tuple(first), tuple(tuple(seg) for seg in segs)


@functools.lru_cache(maxsize=64)
def _split_tensors(plan: tuple, device_index: int) -> tuple:
    """A plan's ``first`` and ``segs`` (a plan with ranges) as int32 tensors on the device,
    kept per plan."""
    _, first, segs = plan
    dev = torch.device("cuda", device_index)
    return (torch.tensor(first, dtype=torch.int32, device=dev),
            torch.tensor(segs, dtype=torch.int32, device=dev))


def _launch(func, grid, block, smem, device, maps, scalars, cluster: int = 1):
    """cuLaunchKernel on torch's current stream (cuLaunchKernelEx with a cluster dimension
    along x when ``cluster`` > 1).  kernelParams is an array of pointers to each argument's
    bytes (the maps' 128-byte storage, then ctypes scalars), laid out as the kernel's
    signature."""
    from cuda.bindings import driver as cu

    stream = cu.CUstream(torch.cuda.current_stream(device).cuda_stream)
    params = (ctypes.c_void_p * (len(maps) + len(scalars)))(
        *[m.getPtr() for m in maps], *[ctypes.addressof(x) for x in scalars])
    if cluster == 1:
        _check(cu.cuLaunchKernel(func, *grid, block, 1, 1, smem, stream,
                                 ctypes.addressof(params), 0))
        return
    cfg = cu.CUlaunchConfig()
    cfg.gridDimX, cfg.gridDimY, cfg.gridDimZ = grid
    cfg.blockDimX, cfg.blockDimY, cfg.blockDimZ = block, 1, 1
    cfg.sharedMemBytes, cfg.hStream = smem, stream
    attr = cu.CUlaunchAttribute()
    attr.id = cu.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
    attr.value.clusterDim.x, attr.value.clusterDim.y, attr.value.clusterDim.z = cluster, 1, 1
    cfg.attrs, cfg.numAttrs = [attr], 1
    _check(cu.cuLaunchKernelEx(cfg, func, ctypes.addressof(params), 0))


def forward(q, k, v, problem, tile: Optional[Tile] = None):
    """``(O, LSE)`` of a dense problem :func:`unsupported_reason` accepted."""
    B, Hq, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    fp8 = q.dtype == _FP8
    o = _empty_o(q, B, Hq, Sq, D, torch.bfloat16 if fp8 else q.dtype)
    lse = torch.empty(B, Hq, Sq, dtype=torch.float32, device=q.device)
    if o.numel() == 0:
        return o, lse.fill_(float("-inf"))
    if Sk == 0:
        return o.zero_(), lse.fill_(float("-inf"))
    causal = bool(problem.causal)
    kd = D if fp8 else kernel_head_dim(D)  # the maps keep D: TMA zero-fills the rest
    tile = Tile(*(tile or default_tile(D, causal, Sk, fp8)))
    if tile.cluster > 1 and math.ceil(Sq / tile.block_m) % tile.cluster:
        tile = tile._replace(cluster=1)  # CTA pairs need an even number of query tiles
    dev = q.device.index if q.device.index is not None else torch.cuda.current_device()
    _, func, smem = _kernel(dev, kd, tile._replace(lpt=False), causal, q.dtype)  # lpt: same binary
    keep, ds_ptrs = [], [0, 0, 0]
    if fp8:
        keep, ds_ptrs = _descale_ptrs(problem, B, Hk, q.device)  # alive until the launch
        vt = _fp8_vt(v) if tile.v_smem else _fp8_v(v, dev)
        vmap = _tensor_map(vt, D)  # boxes of 128 keys by all Dv rows
    else:
        vmap = _tensor_map(v, tile.block_n // tile.cluster)  # each CTA loads its share
    maps = (_tensor_map(q, tile.block_m), _tensor_map(k, tile.block_n // tile.cluster), vmap,
            _tensor_map(o, 64))
    n_m = math.ceil(Sq / tile.block_m)
    n_tiles = n_m * Hq * B
    counter = None
    n_whole, n_ranges, split_ptrs, part = n_tiles, 0, [0, 0], None
    if tile.persistent:  # tiles after the first wave come from this counter
        n_counts = 1
        if tile.split:
            plan = split_plan(n_tiles, math.ceil(Sk / tile.block_n), _sm_count(dev))
            n_whole, n_ranges = plan[0], len(plan[1]) - 1
            if n_ranges:
                first_t, segs_t = _split_tensors(plan, dev)
                split_ptrs = [first_t.data_ptr(), segs_t.data_ptr()]
                # per piece and consumer warpgroup: O, m and l of 128 threads' rows
                o_n = kd + 8 if tile.ones_sum else kd
                part = torch.empty(len(plan[2]) * tile.consumers * (o_n // 2 + 4) * 128,
                                   dtype=torch.float32, device=q.device)
                n_counts += (n_tiles - n_whole) * tile.consumers  # pieces arrived, per tile
        counter = torch.zeros(n_counts, dtype=torch.int32, device=q.device)
        grid = (min(n_whole + n_ranges, _sm_count(dev)), 1, 1)
    else:
        grid = (n_m, Hq, B)
    _launch(func, grid, 128 * (1 + tile.consumers), smem, q.device, maps, (
        ctypes.c_void_p(lse.data_ptr()), ctypes.c_longlong(lse.stride(0)),
        ctypes.c_longlong(lse.stride(1)), ctypes.c_int(Hq // Hk), ctypes.c_int(Sq),
        ctypes.c_int(Sk), ctypes.c_float(float(problem.scale) * _LOG2E),
        *[ctypes.c_void_p(x) for x in ds_ptrs], ctypes.c_int(Hq), ctypes.c_int(n_m),
        ctypes.c_int(n_tiles), ctypes.c_void_p(0 if counter is None else counter.data_ptr()),
        ctypes.c_int(sched_window(B, Hq, Hq // Hk, Sk, D, q.element_size())
                     if tile.lpt and causal else 0),
        ctypes.c_int(n_whole), ctypes.c_int(n_ranges),
        *[ctypes.c_void_p(x) for x in split_ptrs],
        ctypes.c_void_p(0 if part is None else part.data_ptr())), cluster=tile.cluster)
    return o, lse


def nvcc_check(head_dim: int, tile: Tile, causal: bool, dtype,
               nvcc: Optional[str] = None, cubin: Optional[pathlib.Path] = None) -> str:
    """Compile the translation unit with ``nvcc`` for sm_90a; returns ptxas's ``-v`` report
    (the cubin is written to ``cubin`` when given, for ``cuobjdump -sass``).  Raises
    RuntimeError with the compiler output on failure."""
    nvcc = nvcc or shutil.which("nvcc")
    if nvcc is None:
        raise FileNotFoundError("nvcc not found on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp, "fa3_fwd_full.cu")
        src.write_text(source(head_dim, tile.block_n, dtype, tile.ones_sum))
        cmd = [nvcc, "-gencode=arch=compute_90a,code=sm_90a", "-cubin", "-std=c++17",
               "-Xptxas", "-v", *options(head_dim, tile, causal, dtype),
               "-o", str(cubin or pathlib.Path(tmp, "out.cubin")), str(src)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        report = res.stdout + res.stderr
        if res.returncode != 0:
            raise RuntimeError(f"nvcc failed ({' '.join(cmd)}):\n{report}")
        return report


@functools.lru_cache(maxsize=None)
def nvrtc_library() -> Optional[str]:
    """Path of a libnvrtc to check the sources with on a machine without a GPU: the
    ``nvidia-cuda-nvrtc`` wheel's (the dev extra pins the device's CUDA 13.0), else the
    system's; None if neither is there."""
    import ctypes.util
    import glob
    import importlib.util

    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations if spec else []) or []:
        found = sorted(glob.glob(os.path.join(root, "cu*", "lib", "libnvrtc.so*")))
        if found:
            return found[0]
    return ctypes.util.find_library("nvrtc")


def nvrtc_compile(src: str, opts) -> str:
    """Compile a translation unit with NVRTC, the compiler CuPy runs on the device (through
    ctypes, no GPU needed); returns NVRTC's log.  Raises RuntimeError with the log when it
    fails, FileNotFoundError without a libnvrtc (pip install nvidia-cuda-nvrtc)."""
    path = nvrtc_library()
    if path is None:
        raise FileNotFoundError("no libnvrtc found; pip install 'nvidia-cuda-nvrtc==13.0.88'")
    # libnvrtc dlopens its builtins by name: load the wheel's copy first, globally
    for builtins in sorted(pathlib.Path(path).parent.glob("libnvrtc-builtins.so*")):
        ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(path)
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"attnhub.cu", 0, None, None):
        raise RuntimeError("nvrtcCreateProgram failed")
    try:
        args = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), args)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
    text = log.value.decode(errors="replace")
    if rc:
        raise RuntimeError(f"NVRTC failed ({' '.join(opts)}):\n{text}")
    return text
