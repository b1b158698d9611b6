"""The warp-specialised CUDA backward of ``hopper-fa3`` (``fa3_bwd.cu``): build and launch.

Same machinery as :mod:`cuda_fwd` (NVRTC through CuPy, TMA maps from ``cuda.bindings``,
``cuLaunchKernel`` on torch's stream).  Three steps per call:

1. :func:`prepare` (one Triton pass, ``bwd_host.py``): log2-LSE (``+inf`` for rows with no
   keys and for padding, so their probabilities are 0) and Δ = rowsum(dO∘O) in float32,
   padded to whole query blocks; a zeroed float32 dQ accumulator.
2. the kernel: one CTA per (128-key block, or 64 at d256; KV head; batch) computes dK, dV
   for its keys over every query head of the group and adds its share of dQ into the
   accumulator by L2 reductions (not bitwise deterministic, like FlashAttention-3's).
3. :func:`dq_from_accum` (one Triton pass): the accumulator, stored in the consumer
   threads' register order, becomes dQ·scale in q's dtype and memory order.

What it covers (the Triton backward of ``triton-fa2`` takes the rest, with the reason in
:func:`unsupported_reason`): dense fp16/bf16, head dim 64, 128 or 256 for both QK and V,
causal or not (bottom-right), MHA/GQA/MQA, 16-byte-aligned BHSD/BSHD strides, no window, no
softcap, not under ``torch.use_deterministic_algorithms(True)``.

**Status: on by default** since its device check (``cuda_bwd_check.py``,
``benchmarks/device_cuda_bwd.sh``) passed on an H100 on 2026-12-05: 88/88 cases under the
tolerance rule, every variant, and 1.01-1.13x cuDNN at d64, 0.94-1.00x at d128, 0.93-1.07x
at d256 over the FA grid (NOTES.md, "CUDA backward").  ``ATTNHUB_HOPPER_CUDA_BWD=0`` turns
it off (triton-fa2's backward runs instead).
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

from . import cuda_fwd, wgmma_ptx

__all__ = ["BwdTile", "VARIANTS", "default_tile", "tile_override", "tiles_for", "block_m_for",
           "block_n_for", "unsupported_reason", "enabled", "backward", "prepare",
           "dq_from_accum", "source", "options", "nvrtc_options", "smem_bytes", "nvcc_check"]

_SRC = pathlib.Path(__file__).with_name("fa3_bwd.cu")
_LOG2E = 1.4426950408889634
HEAD_DIMS = (64, 128, 256)

#: Why the backward at head dims between the kernel's (:func:`kernel_head_dim`) still waits
#: for its GPU check (``cuda_bwd_check.py --dims 96,224``), or None once it passed: refused
#: with this reason unless ATTNHUB_HOPPER_CUDA_UNVERIFIED=1.  Checked 2026-12-06 on an H100
#: (48/48 cases at d96/d224, after a first run stopped at the pre-pass's tl.arange).
PADDED_UNVERIFIED: Optional[str] = None


class BwdTile(NamedTuple):
    """One specialisation beyond (head dim, causal, dtype): the depth of the Q/dO ring; how
    dQ reaches the accumulator: shared memory + one bulk L2 reduction per warpgroup and
    query block (``dq_atomic=False``), or 8-byte ``red.global.add`` straight from the
    registers (no staging buffer, no barriers; more L2 requests); and whether dV's product
    is issued as soon as P is ready, under the wait for dPᵀ and the dS arithmetic
    (``early_dv``; keeps P in float32 and 16 bits at once).  Two schedule changes for d64 and
    d128: ``early_release`` hands the Q/dO stage back to the producer as soon as dV's and
    dK's products retire, not after dQ's too; ``s_ahead`` issues the next query block's Sᵀ
    right after this block's dQ product, so that it runs under the dQ hand-off (shared
    memory, barriers, the bulk reduction) and the next block starts at dPᵀ.  ``vec_io``
    (staging-buffer dQ only) halves the shared-memory instructions of the per-row log2-LSE /
    Δ reads and the dQ staging stores with 16-byte accesses; the host lays the rows out
    permuted for it (:func:`prepare`) and reads dQ back in its order (:func:`dq_from_accum`).
    ``poly`` (0-4): of every 4 groups of 8 query columns, how many compute P's exp2 on the
    FMA pipe (``exp2_poly``) instead of MUFU, whose instructions share the MIO queue with
    the shared-memory traffic (the 2026-12-05 stall profile, NOTES.md).  ``lpt`` (causal
    problems; the same binary): CTAs take their key blocks longest first across windows of
    (batch, head) pairs (:func:`sched_window`), so the last wave is not a few long CTAs.
    ``dq_db`` (staging-buffer dQ, where shared memory allows: d128) gives each warpgroup two
    staging buffers used by alternate blocks, so a block's dQ stores wait only for the
    reduction of two blocks back, not the previous one (the hand-off was 12-14 % of a
    d128 block in the 2026-12-05 phase profile).  ``red_v4`` (atomic dQ): 16-byte
    ``red.global.add.v4.f32`` in ``vec_io``'s element order instead of 8-byte ones, half
    the instructions (d256: the hand-off was 28 % of a block, lg_throttle 2.96 stalls per
    issue against cuDNN's 0).  ``dq_alt`` (d128, staged dQ): the warpgroups take turns,
    block by block, computing the whole block's dQ as one N = 128 product (dS and K read
    once from shared memory instead of twice) while the other goes on to the next block;
    it releases the stage once dV and dK retire and needs 32 KB of staging per warpgroup.
    ``fold`` (causal problems; non-causal ones build without it): a CTA takes key blocks kb
    and n - 1 - kb of its head one after the other (the ring carries over; the second K/V
    load waits for the first tile's dK/dV stores and follows its first Q/dO loads), so every
    CTA has the same work, n + 1 query blocks, and half as many CTAs start and drain.
    ``relay`` (d256): instead of swapping Pᵀ and dPᵀ through two float32 buffers so that both
    warpgroups form dSᵀ, warpgroup 0 hands Pᵀ to warpgroup 1 and issues dV, warpgroup 1
    alone forms dSᵀ, stores it for dQ and hands its 16-bit registers back through the same
    buffer: a quarter less swap traffic, and 16 KB freed, which makes room for a 2-deep
    Q/dO ring at d256 (``q_wait`` was 11-14 % of its cycles with one stage).  ``tail``
    (non-causal problems; causal ones build without it): the last wave's key blocks are
    cut along their (query head, query block) pairs into :func:`tail_plan`'s pieces, which
    sum their dK/dV partials in piece order (one CTA a key block leaves ⌈waves⌉ ÷ waves =
    1.031 of the ideal time at every FA-grid point on 132 SMs)."""

    stages: int = 2
    dq_atomic: bool = False
    early_dv: bool = False
    early_release: bool = False
    s_ahead: bool = False
    vec_io: bool = False
    poly: int = 0
    lpt: bool = False
    dq_db: bool = False
    red_v4: bool = False
    dq_alt: bool = False
    fold: bool = False
    relay: bool = False
    tail: bool = False

    def __str__(self):
        return (f"s{self.stages}" + ("-atomic" if self.dq_atomic else "")
                + ("-early" if self.early_dv else "")
                + ("-release" if self.early_release else "")
                + ("-ahead" if self.s_ahead else "")
                + ("-vec" if self.vec_io else "")
                + (f"-poly{self.poly}" if self.poly else "")
                + ("-lpt" if self.lpt else "") + ("-db" if self.dq_db else "")
                + ("-v4" if self.red_v4 else "") + ("-alt" if self.dq_alt else "")
                + ("-fold" if self.fold else "") + ("-relay" if self.relay else "")
                + ("-tail" if self.tail else ""))


VARIANTS = (BwdTile(2, False), BwdTile(2, True), BwdTile(3, True), BwdTile(3, False),
            BwdTile(2, False, True), BwdTile(3, True, True), BwdTile(1, True),
            BwdTile(2, early_release=True), BwdTile(2, s_ahead=True),
            BwdTile(2, early_release=True, s_ahead=True),
            BwdTile(3, True, early_release=True, s_ahead=True),
            BwdTile(2, False, True, s_ahead=True),
            BwdTile(2, vec_io=True), BwdTile(2, early_release=True, vec_io=True),
            BwdTile(2, poly=1), BwdTile(2, poly=2),
            BwdTile(2, early_release=True, poly=1), BwdTile(2, early_release=True, poly=2),
            BwdTile(2, lpt=True), BwdTile(2, early_release=True, lpt=True),
            BwdTile(1, True, lpt=True),
            BwdTile(2, dq_db=True), BwdTile(2, poly=1, dq_db=True),
            BwdTile(2, early_release=True, dq_db=True),
            BwdTile(2, early_release=True, lpt=True, dq_db=True),
            BwdTile(1, True, red_v4=True), BwdTile(1, True, lpt=True, red_v4=True),
            BwdTile(2, True, red_v4=True),
            BwdTile(2, dq_alt=True), BwdTile(2, poly=1, dq_alt=True),
            BwdTile(2, lpt=True, dq_alt=True),
            # fold: d256; at d64 / d128 only since the tiles' numbers are re-read from shared
            # memory and the loop's bases are opaque (OPAQUE_BASES in fa3_bwd.cu: before, the
            # d128 s2-alt build spilled 176 bytes inside the block loop; NOTES.md, twelfth
            # session) -- built and spill-free, not yet run on a GPU, no default
            BwdTile(1, True, red_v4=True, fold=True),
            BwdTile(2, poly=1, fold=True), BwdTile(2, dq_alt=True, fold=True),
            # relay: d256 only; with it two stages fit there (s2-atomic-v4-relay: d256's
            # default since 2026-12-06)
            BwdTile(1, True, red_v4=True, relay=True), BwdTile(2, True, red_v4=True, relay=True),
            BwdTile(2, True, red_v4=True, fold=True, relay=True),
            # tail: the shipped non-causal tiles with the last wave cut (thirty-third
            # session: built, compiled, not yet run on a GPU, no default)
            BwdTile(2, poly=1, tail=True), BwdTile(2, poly=1, dq_alt=True, tail=True),
            BwdTile(2, True, red_v4=True, relay=True, tail=True))


def tiles_for(head_dim: int) -> list:
    """The variants that build cleanly at ``head_dim``: shared memory within the limit (d64
    has no room for three stages with the dQ staging buffer; d256 room for one stage and
    no staging buffer), no spills (``early_dv`` at d64 holds Sᵀ and dPᵀ at 64 registers
    each plus P in 16 bits: ptxas spills 12-32 bytes; ``vec_io`` there: 40 bytes), and
    d256's layout (SPLIT_D in fa3_bwd.cu: dQ by atomics, no early dV).  A single-stage ring
    only where nothing deeper fits."""
    return list(_tiles(head_dim))


@functools.lru_cache(maxsize=None)
def _tiles(head_dim: int) -> tuple:
    ok = [t for t in VARIANTS if smem_bytes(head_dim, t) <= cuda_fwd._SMEM_LIMIT
          and not (t.early_dv and head_dim in (64, 256))
          and not (t.vec_io and (t.dq_atomic or head_dim != 128))
          and not (t.dq_db and t.dq_atomic) and not (t.red_v4 and not t.dq_atomic)
          and not (t.fold and t.lpt) and not (t.tail and (t.fold or t.lpt))
          and not (t.dq_alt and (head_dim != 128 or t.dq_atomic or t.dq_db or t.vec_io
                                 or t.s_ahead or t.early_dv or t.early_release))
          and not (t.relay and head_dim != 256)
          and (head_dim != 256 or (t.dq_atomic and not (t.early_release or t.s_ahead)))]
    # single-stage rings only where no deeper one fits without relay (d256: the one-stage
    # tiles stay beside relay's two-stage ones, for A/B runs against the former default)
    deep = [t for t in ok if t.stages > 1 and not t.relay]
    return tuple(t for t in ok if t.stages > 1) if deep else tuple(ok)


#: Where the shipped backward variant is not the first that fits, by (head dim, causal).
#: H100 measurements of 2026-12-05 (NOTES.md has them all):
#: - d128 causal: s2-release (the Q/dO stage goes back to the producer once dV and dK
#:   retire), four grid runs (``hopper_fa3_cuda_bwd_h100_2026-12-05_run2..5``): +1.1 %
#:   geometric mean over s2 across 40 (point, run) pairs, −6..+6 % each;
#: - d128 non-causal: s2-poly1 (a quarter of P's exp2 on the FMA pipe), 4 interleaved
#:   rounds (``ab_hopper_h100_2026-12-05_run2``): +0.0..+3.1 % over s2-release and
#:   +0.1..+2.4 % over s2 at every point (medians); causal it lost to s2-release-lpt
#:   (−6 % at 4k-8k);
#: - d64: s2-poly1, +0.7..+3.9 % non-causal and −0.3..+2.2 % causal over s2
#:   (``ab_hopper_h100_2026-12-05``); s2-release lost there (−1.7 %).
#: - d256: s1-atomic-v4 (16-byte dQ reductions), medians of 4 interleaved rounds
#:   (``ab_hopper_h100_2026-12-05_run4``): +0.0..+3.3 % over s1-atomic at all ten points,
#:   the dQ hand-off 31 → 27 % of a block in the phase split (the round-by-round geometric
#:   mean spans −1.2..+6.5 %: one slow round on either side).
#: - d256, since 2026-12-06: s2-atomic-v4-relay (Pᵀ relayed to one warpgroup, dSᵀ back
#:   through the same buffer, which makes room for a 2-deep Q/dO ring), medians of 4
#:   interleaved rounds on an H100 (``ab_hopper_h100_2026-12-06_run4..6``): over
#:   s1-atomic-v4, non-causal +0.7 / −5.4 / +1.3 / +3.3 % at 2k / 4k / 8k / 16k in one run
#:   (the 4k round range 303-383 TFLOP/s) and +1.9 / +3.5 / +4.4 / +4.6 % in another (the
#:   fold build, which is the same kernel without causality); causal +8.3 / +3.3 / +2.0 /
#:   +2.2 %, and over s1-atomic-v4-fold (the causal default at 4k-8k until then) +5.3 /
#:   +1.0 / +4.1 % at 1k / 4k / 8k.  The relay one-stage build alone: −2.7..+4.0 %.
#: - d128 non-causal, since: s2-poly1-alt (alternate warpgroups compute a block's whole
#:   dQ), +4.0 / +3.3 / +2.4 / +2.4 / +4.3..4.9 % at 1k / 2k / 4k / 8k / 16k over s2-poly1,
#:   medians of 4 interleaved rounds in two runs of opposite order
#:   (``ab_hopper_h100_2026-12-05_run11..12``); causal s2-lpt-alt was −0.6..+3.4 % over
#:   s2-release-lpt (+0.3..+1.4 % at 1k-8k), too close to call then.
#: - d128 causal, since: s2-alt (s2-lpt-alt at 2k-8k), after two more runs in both orders
#:   (``ab_hopper_h100_2026-12-05_run14..15``): over s2-release(-lpt) in 12 interleaved
#:   comparisons at 1k-16k, 9 gained, mean +1.5 %; per length, the mean of both orders is
#:   +3.7 / +1.7 / −0.3 / −0.9 / +2.4 % at 1k / 2k / 4k / 8k / 16k (each ±2-3 %).
#: - d256 non-causal, since 2026-12-07: s2-atomic-v4-relay-tail (``BwdTile.tail``: the last
#:   wave cut along the queries), medians of 10 interleaved rounds on an H100 in both orders
#:   (``ab_bwd_tail_h100_2026-12-07_s34``, ``ab_bwd_tail_d256_rev_h100_2026-12-07_s34``):
#:   +2.0 / +3.4 / −0.4 / +3.3 % and +1.8 / +3.2 / +5.8 / +3.7 % at 2k / 4k / 8k / 16k.  At
#:   d64 the tail build lost 2-4 % and at d128 it was flat: the build itself costs that
#:   (the same build with no block cut loses as much, NOTES.md), so they keep their tiles.
MEASURED_DEFAULTS = {(64, False): BwdTile(2, poly=1), (64, True): BwdTile(2, poly=1),
                     (128, False): BwdTile(2, poly=1, dq_alt=True),
                     (128, True): BwdTile(2, dq_alt=True),
                     (256, False): BwdTile(2, True, red_v4=True, relay=True, tail=True),
                     (256, True): BwdTile(2, True, red_v4=True, relay=True)}

#: Causal problems with queries in this range launch in ``BwdTile.lpt``'s order, by head
#: dim: d128 +0.9 / +3.5 / +4.3 % at 2k / 4k / 8k, −0.4 % at 1k and +0.3 % at 16k (medians
#: of 4 interleaved rounds, ``ab_hopper_h100_2026-12-05``).  d64 (−4.8..+1.8 %) and d256
#: (−1.2..+2.0 %) keep the plain order.
LPT_QUERIES = {128: (2048, 8192)}

#: Causal problems with queries in this range run ``BwdTile.fold`` (pairs of key blocks per
#: CTA), by head dim.  Empty since 2026-12-06: d256 had (4096, 8192) for s1-atomic-v4-fold
#: (over s1-atomic-v4, ``ab_hopper_h100_2026-12-05_run16..18``: 4k +1.4..+4.8 %, 8k +6.3 /
#: −0.5 %; 1k, 2k and 16k lost), but s2-atomic-v4-relay beats it there (+1.0 / +4.1 % at
#: 4k / 8k) and its own fold build lost to it (causal, vs s1-atomic-v4: +1.1 / +0.6 / −2.0
#: / −0.8 % at 2k-16k against +8.3 / +3.3 / +2.0 / +2.2 %; ``ab_hopper_h100_2026-12-06_run5``).
FOLD_QUERIES: dict = {}


def default_tile(head_dim: int, causal: bool = False, seqlen_q: int = 0) -> BwdTile:
    """The shipped variant: ``MEASURED_DEFAULTS``, else the first that fits (s2-poly1 at
    d64, s2-poly1-alt at d128 non-causal, s2-alt at d128 causal, s2-atomic-v4-relay-tail at
    d256 non-causal, s2-atomic-v4-relay at d256 causal;
    NOTES.md has the measurements), in ``lpt`` order for causal problems with
    ``LPT_QUERIES`` queries, as key-block pairs (``fold``) for those with ``FOLD_QUERIES``.
    ``ATTNHUB_HOPPER_BWD_TILE=<name>`` (e.g. ``s2-ahead``) picks another one at every head
    dim where it builds, for experiments and profiles."""
    head_dim = kernel_head_dim(head_dim) or head_dim  # padded head dims: their kernel's
    tiles = _tiles(head_dim)  # the cached tuple: this runs on every backward call
    name = tile_override()
    if name:
        for t in tiles:
            if str(t) == name:
                return t
    measured = MEASURED_DEFAULTS.get((head_dim, bool(causal)))
    tile = measured if measured in tiles else tiles[0]
    if causal:  # the causal launch orders, each where it was measured to pay
        for field, table in (("lpt", LPT_QUERIES), ("fold", FOLD_QUERIES)):
            lo, hi = table.get(head_dim, (1, 0))
            if lo <= seqlen_q <= hi and tile._replace(**{field: True}) in tiles:
                tile = tile._replace(**{field: True})
    return tile


def tile_override() -> Optional[str]:
    """ATTNHUB_HOPPER_BWD_TILE, checked against the variants' names (ValueError if it names
    none at any head dim)."""
    name = os.environ.get("ATTNHUB_HOPPER_BWD_TILE", "").strip()
    if not name:
        return None
    names = {str(t) for D in HEAD_DIMS for t in tiles_for(D)}
    if name not in names:
        raise ValueError(f"ATTNHUB_HOPPER_BWD_TILE={name!r} names no backward variant; "
                         f"use one of {sorted(names)} or unset it")
    return name


def enabled() -> bool:
    """On unless ATTNHUB_HOPPER_CUDA_BWD=0 (or the CUDA forward is off: they share the
    build machinery)."""
    return os.environ.get("ATTNHUB_HOPPER_CUDA_BWD", "1") != "0" and cuda_fwd.enabled()


def block_m_for(head_dim: int) -> int:
    """Queries per block: what fits the consumers' 240 registers (d64: dK 32 + dV 32 + Sᵀ 64
    + dPᵀ 64; d128: 64 + 64 + 32 + 32; d256, head dim split between the warpgroups: 64 +
    64 + 32 + 32)."""
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"head_dim must be one of {HEAD_DIMS} for the CUDA backward, "
                         f"got {head_dim}")
    return 128 if head_dim == 64 else 64


def block_n_for(head_dim: int) -> int:
    """Keys per CTA: 128 (64 per consumer warpgroup), or at d256 64 shared by both."""
    block_m_for(head_dim)  # validates
    return 64 if head_dim == 256 else 128


def _kv_n(head_dim: int) -> int:
    """dK / dV columns a consumer warpgroup holds (d256: half the head dim)."""
    return head_dim // 2 if head_dim == 256 else head_dim


def _dq_n(head_dim: int) -> int:
    """dQ columns per consumer warpgroup: 128-query blocks split dQ's rows between the two
    warpgroups, 64-query blocks its columns."""
    return head_dim if block_m_for(head_dim) == 128 else head_dim // 2


def sched_window(batch: int, heads_k: int, group: int, seqlen_q: int, head_dim: int) -> int:
    """``lpt``'s window: how many (batch, KV head) pairs take their key blocks together,
    longest first (fa3_bwd.cu, ``sched_window``): as many as keep their Q and dO (``group``
    query heads each) within ``cuda_fwd.SCHED_WINDOW_BYTES``, at least 1, at most all of
    them.  A list schedule of the FA grid's causal CTAs on 132 SMs gives 1.06 → 1.00-1.02
    of the ideal time at 1k-8k (d128; NOTES.md)."""
    return cuda_fwd.window_pairs(batch * heads_k, 4 * seqlen_q * head_dim * group)


#: ``tail_plan``'s cost of a piece beyond its share of the block's query blocks, in query
#: blocks: loading K and V, the ring's first waits, writing the partial and, for the last
#: piece, summing them (a guess until the GPU measures it).
TAIL_PIECE_COST = 2.0


#: ``tail_plan``'s bound on the pieces' partials (float32 dK and dV of a key block each).
TAIL_WS_BYTES = 32 << 20


def tail_plan(n_blocks: int, n_sm: int, n_iter: int, piece_bytes: int = 0,
              max_parts: int = 16) -> tuple:
    """``(n_whole, parts)`` for ``BwdTile.tail``: the first ``n_whole`` of ``n_blocks``
    equal key blocks (``n_iter`` query blocks each) run whole, one CTA each; each of the
    rest is cut into ``parts`` pieces of consecutive query blocks, launched after them.
    ``parts`` minimises a list schedule's makespan on ``n_sm`` SMs, a piece costing its
    query blocks plus :data:`TAIL_PIECE_COST`, with at most ``max_parts`` pieces a block
    and the partials (``piece_bytes`` each) within :data:`TAIL_WS_BYTES`; ``(n_blocks, 1)``
    (no cut) where nothing gains: a whole last wave, a single wave or less, or blocks too
    short to cut."""
    if n_blocks < 1 or n_sm < 1 or n_iter < 1:
        raise ValueError(f"tail_plan: n_blocks, n_sm and n_iter must be positive, got "
                         f"{n_blocks}, {n_sm}, {n_iter}")
    tail = n_blocks % n_sm
    if tail == 0 or n_blocks <= n_sm:
        return n_blocks, 1
    if piece_bytes > 0:
        max_parts = min(max_parts, TAIL_WS_BYTES // (tail * piece_bytes))
    best, best_parts = float(n_iter), 1  # the last wave, whole: one block's time
    for parts in range(2, min(max_parts, n_iter) + 1):
        rounds = math.ceil(tail * parts / n_sm)
        cost = rounds * (math.ceil(n_iter / parts) + TAIL_PIECE_COST)
        if cost < best:
            best, best_parts = cost, parts
    if best_parts == 1:
        return n_blocks, 1
    return n_blocks - tail, best_parts


def rows_per_block(block_m: int, vec_io: bool = False) -> int:
    """Floats per query block in the log2-LSE and Δ buffers: ``block_m``, or with ``vec_io``
    the permuted layout of fa3_bwd.cu (row 8j + 2p + e at p·(block_m/4 + 4) + 2j + e)."""
    return 4 * (block_m // 4 + 4) if vec_io else block_m


def smem_bytes(head_dim: int, tile: Optional[BwdTile] = None) -> int:
    tile = tile or default_tile(head_dim)
    bm, bn = block_m_for(head_dim), block_n_for(head_dim)
    kv = 2 * bn * head_dim * 2
    q_do = 2 * tile.stages * bm * head_dim * 2
    ds = 2 * bm * bn * 2  # double-buffered dS
    dq = 0 if tile.dq_atomic else (4 if tile.dq_db or tile.dq_alt else 2) * 64 * _dq_n(head_dim) * 4
    # P and dPᵀ between the warpgroups (relay: P one way, dS back, in one buffer)
    swap = (1 if tile.relay else 2) * 64 * bm * 4 if head_dim == 256 else 0
    rows = tile.stages * rows_per_block(bm, tile.vec_io) * 8
    bars = 8 * (2 + 3 * tile.stages) + 2 * PROF_STRIDE * 4 + 32  # + BWD_PROF's, FOLD's slots
    return kv + q_do + ds + dq + swap + rows + bars + 1024  # + alignment slack


def source(head_dim: int, dtype: torch.dtype) -> str:
    name = {torch.bfloat16: "bf16", torch.float16: "f16"}.get(dtype)
    if name is None:
        raise TypeError(f"dtype must be torch.float16 or torch.bfloat16, got {dtype}")
    bm = block_m_for(head_dim)
    return (cuda_fwd._PRELUDE
            + wgmma_ptx.header([bm], [_kv_n(head_dim)], name,
                               # + dq_alt's whole-block product at d128
                               sst_widths=[_dq_n(head_dim)] + ([128] if head_dim == 128 else []))
            + "\n" + cuda_fwd._COMMON.read_text() + "\n" + _SRC.read_text())


def options(head_dim: int, causal: bool, dtype, tile: Optional[BwdTile] = None,
            trace: bool = False, prof: bool = False) -> tuple:
    tile = tile or default_tile(head_dim)
    return (f"-DBWD_TRACE={int(trace)}", f"-DBWD_PROF={int(prof)}", f"-DHEAD_DIM={head_dim}",
            f"-DBLOCK_M={block_m_for(head_dim)}", f"-DDQ_N={_dq_n(head_dim)}",
            f"-DSTAGES={tile.stages}",
            f"-DCAUSAL={int(bool(causal))}", f"-DIS_BF16={int(dtype == torch.bfloat16)}",
            f"-DDQ_ATOMIC={int(tile.dq_atomic)}", f"-DEARLY_DV={int(tile.early_dv)}",
            f"-DEARLY_RELEASE={int(tile.early_release)}", f"-DS_AHEAD={int(tile.s_ahead)}",
            f"-DVEC_IO={int(tile.vec_io)}", f"-DPOLY_EXP={int(tile.poly)}",
            f"-DDQ_DB={int(tile.dq_db)}", f"-DRED_V4={int(tile.red_v4)}",
            f"-DDQ_ALT={int(tile.dq_alt)}", f"-DFOLD={int(tile.fold and bool(causal))}",
            f"-DRELAY={int(tile.relay)}", f"-DTAIL_SPLIT={int(tile.tail and not causal)}")


def nvrtc_options(head_dim: int, causal: bool, dtype, tile: Optional[BwdTile] = None,
                  trace: bool = False, prof: bool = False) -> tuple:
    """NVRTC's options (CuPy on the device; the CPU tests pass the same).  NVRTC 13.0 takes
    the generic lambda fa3_bwd.cu instantiates per warpgroup for a host function unless
    told that unannotated functions are device code (nvcc needs no flag)."""
    return (("-arch=sm_90a", "-std=c++17", "-default-device")
            + options(head_dim, causal, dtype, tile, trace, prof))


def kernel_head_dim(head_dim: int) -> Optional[int]:
    """The backward kernel's head dim for a problem's: :func:`cuda_fwd.kernel_head_dim`
    (the next kernel up, TMA zero-filling the missing columns on load and clipping them on
    store) where that is one of :data:`HEAD_DIMS` (no d192 backward: 144-184 are not
    served), else None."""
    kd = cuda_fwd.kernel_head_dim(head_dim)
    return kd if kd in HEAD_DIMS else None


def unsupported_reason(q, k, v, problem) -> Optional[str]:
    """Why the CUDA backward cannot run this problem (None: it can)."""
    if not enabled():
        return "off (ATTNHUB_HOPPER_CUDA_BWD=0, or the CUDA forward is off)"
    if problem.is_varlen:
        return "varlen (cu_seqlens) inputs"
    if problem.is_fp8:
        return "fp8 (no FP8 backward)"
    if problem.dtype not in (torch.float16, torch.bfloat16):
        return f"dtype {problem.dtype}"
    kd = kernel_head_dim(problem.head_dim)
    if problem.head_dim != problem.head_dim_v or kd is None:
        return (f"head dims {problem.head_dim}/{problem.head_dim_v} (needs equal head dims "
                "of 64, 128 or 256, or a multiple of 8 at most a quarter below one)")
    why = cuda_fwd._unverified_reason(problem.head_dim, kd, "cuda_bwd_check.py",
                                      PADDED_UNVERIFIED)
    if why:
        return why
    if problem.window is not None:
        return "sliding window"
    if problem.softcap is not None:
        return "softcap"
    if not problem.scale > 0:
        return f"scale {problem.scale} (needs a positive scale)"
    if problem.batch > 65535 or problem.heads_q > 65535:  # grid y and z dimensions
        return f"batch {problem.batch} / heads {problem.heads_q} above 65535"
    if torch.are_deterministic_algorithms_enabled():
        return "deterministic algorithms requested (dQ is summed by L2 reductions)"
    if not all(cuda_fwd._aligned(t) for t in (q, k, v)):
        return "q/k/v strides or base not 16-byte aligned for TMA"
    if q.device.type != "cuda":
        return "not a CUDA tensor"
    return cuda_fwd._import_reason()


def prepare(do: torch.Tensor, o: torch.Tensor, lse: torch.Tensor, block_m: int,
            vec_io: bool = False):
    """``(lse2, delta)``, both (B, H, n_m·rows_per_block) float32 contiguous: LSE·log2(e)
    with ``+inf`` where LSE is ``-inf`` (a row with no visible key) and on the padding rows,
    and Δ = rowsum(dO∘O) with 0 on the padding; with ``vec_io`` each block's rows permuted
    as :func:`rows_per_block` says (its 16 padding floats are never read).  One Triton pass
    on CUDA tensors (``bwd_host._prep``), torch elsewhere."""
    if o.is_cuda:
        return _prepare_triton(do, o, lse, block_m, vec_io)
    return _prepare_torch(do, o, lse, block_m, vec_io)


def _permute_rows(x: torch.Tensor, block_m: int) -> torch.Tensor:
    """(B, H, n_m·block_m) → the VEC_IO layout: row 8j + 2p + e of a block at
    p·(block_m/4 + 4) + 2j + e, 4 padding floats per p (zeros here; never read, and left
    unwritten by the Triton pass)."""
    B, H, n = x.shape
    t = x.view(B, H, n // block_m, block_m // 8, 4, 2).permute(0, 1, 2, 4, 3, 5)
    t = t.reshape(B, H, n // block_m, 4, block_m // 4)
    return torch.nn.functional.pad(t, (0, 4), value=0.0).reshape(B, H, -1)


def _prepare_torch(do, o, lse, block_m, vec_io=False):
    B, H, S, _ = o.shape
    pad = -S % block_m
    lse2 = torch.where(torch.isneginf(lse), torch.full_like(lse, math.inf), lse * _LOG2E)
    lse2 = torch.nn.functional.pad(lse2.float(), (0, pad), value=math.inf)
    delta = torch.einsum("bhsd,bhsd->bhs", do.float(), o.float())
    delta = torch.nn.functional.pad(delta, (0, pad), value=0.0)
    if vec_io:
        lse2, delta = _permute_rows(lse2, block_m), _permute_rows(delta, block_m)
    return lse2.contiguous(), delta.contiguous()


def _prepare_triton(do, o, lse, block_m, vec_io=False):
    from . import bwd_host

    B, H, S, D = o.shape
    n_m = math.ceil(S / block_m)
    rpb = rows_per_block(block_m, vec_io)
    lse2 = torch.empty(B, H, n_m * rpb, dtype=torch.float32, device=o.device)
    delta = torch.empty_like(lse2)
    bwd_host._prep[(n_m, H, B)](
        o, do, lse, lse2, delta, *o.stride(), *do.stride(), *lse.stride(),
        H, S, n_m * rpb, D, HEAD_DIM=1 << (D - 1).bit_length(), BLOCK=block_m, VEC=vec_io)
    return lse2, delta


def dq_from_accum(acc: torch.Tensor, q: torch.Tensor, scale: float,
                  vec_io: bool = False) -> torch.Tensor:
    """dQ (shape, dtype and memory order of ``q``) from the kernel's float32 accumulator
    (B, H, n_m, 2, 64·dq_n): warpgroup w's share of query block m is stored in its threads'
    register order, element (j, h, e) of thread t = 32·warp + lane at ((2j + h)·128 + t)·2
    + e, for row 16·warp + lane/4 + 8h and column 8j + 2·(lane % 4) + e of its 64 × dq_n
    tile (rows 64w.. of a 128-query block, or columns dq_n·w.. of a 64-query block);
    ``vec_io`` (also ``red_v4``'s order): at (j·128 + t)·4 + 2h + e.  One Triton pass on
    CUDA tensors (``bwd_host._dq_convert``), torch elsewhere."""
    if acc.is_cuda:
        return _dq_from_accum_triton(acc, q, scale, vec_io)
    return _dq_from_accum_torch(acc, q, scale, vec_io)


def _dq_from_accum_torch(acc, q, scale, vec_io=False):
    B, H, S, D = q.shape
    kd = kernel_head_dim(D)  # the accumulator's columns; those past D are dropped
    bm = block_m_for(kd)
    n = _dq_n(kd)
    n_m = acc.shape[2]
    if vec_io:  # w, j, warp, lane/4, lane%4, h, e
        t = acc.view(B, H, n_m, 2, n // 8, 4, 8, 4, 2, 2)
        t = t.permute(0, 1, 2, 3, 5, 8, 6, 4, 7, 9).reshape(B, H, n_m, 2, 64, n)
    else:  # w, j, h, warp, lane/4, lane%4, e
        t = acc.view(B, H, n_m, 2, n // 8, 2, 4, 8, 4, 2)
        t = t.permute(0, 1, 2, 3, 6, 5, 7, 4, 8, 9).reshape(B, H, n_m, 2, 64, n)
    if bm == 128:  # warpgroup w: rows 64w..
        t = t.reshape(B, H, n_m * 128, kd)
    else:  # warpgroup w: columns n·w..
        t = t.permute(0, 1, 2, 4, 3, 5).reshape(B, H, n_m * 64, kd)
    out = cuda_fwd._empty_o(q, B, H, S, D, q.dtype)
    return out.copy_(t[:, :, :S, :D].mul_(scale))


#: ``bwd_host._dq_convert``'s launch by head dim: (columns per program, 0 = all of a
#: warpgroup's share; warps).  H100, 2026-12-05 (``hopper_fa3_dq_convert_h100_*``, FA-grid
#: size, 134 MB of float32 in, 67 MB out): 8 warps take every head dim to 72 us (2.8 TB/s);
#: 4 warps took 83 / 79 / 102 us at d64 / d128 / d256 (cuDNN's conversion: 72 us).
DQ_CONVERT = {64: (0, 8), 128: (0, 8), 256: (0, 8)}


def _dq_from_accum_triton(acc, q, scale, vec_io=False, config=None):
    from . import bwd_host

    B, H, S, D = q.shape
    kd = kernel_head_dim(D)  # the accumulator's columns; those past D are not stored
    bm = block_m_for(kd)
    cols, warps = config or DQ_CONVERT[kd]
    n = _dq_n(kd)
    if cols and (n % cols or cols % 8):
        raise ValueError(f"dQ conversion: cols must divide {n} and be a multiple of 8, "
                         f"got {cols}")
    out = cuda_fwd._empty_o(q, B, H, S, D, q.dtype)
    bwd_host._dq_convert[(acc.shape[2] * 2 * (n // cols if cols else 1), H, B)](
        acc, out, *out.stride(), H, S, D, float(scale),
        BLOCK_M=bm, DQ_N=n, SPLIT_ROWS=bm == 128, VEC=vec_io, COLS=cols, num_warps=warps)
    return out


def _tma_input(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if TMA can address it, else a contiguous copy (an upstream dO can be
    an expanded or odd-strided view)."""
    if cuda_fwd._aligned(t):
        return t
    return t.contiguous()


@functools.lru_cache(maxsize=None)
def _kernel(device_index: int, head_dim: int, causal: bool, dtype,
            tile: Optional[BwdTile] = None, trace: bool = False, prof: bool = False):
    tile = tile or default_tile(head_dim)
    if tile not in tiles_for(head_dim):
        raise ValueError(f"hopper-fa3 CUDA backward: tile {tile!r} does not build at head dim "
                         f"{head_dim} (shared memory, spills or layout); use one of "
                         f"{[repr(t) for t in tiles_for(head_dim)]}")
    smem = smem_bytes(head_dim, tile)
    mod, func = cuda_fwd._build(device_index, source(head_dim, dtype),
                                nvrtc_options(head_dim, causal, dtype, tile, trace, prof),
                                "attnhub_fa3_bwd", smem)
    return mod, func, smem


def launch_grid(B: int, Hq: int, Hk: int, Sq: int, Sk: int, kd: int, tile: BwdTile,
                causal: bool, n_sm: int) -> tuple:
    """``(grid, n_whole, parts)`` of the backward's launch: (key blocks, KV heads, batch),
    key-block pairs under ``fold`` (causal), or under ``tail`` (non-causal) a 1-D grid of
    ``n_whole`` whole key blocks and ``parts`` pieces of each other one (:func:`tail_plan`
    for ``n_sm`` SMs)."""
    fold = tile.fold and causal
    grid = (math.ceil(math.ceil(Sk / block_n_for(kd)) / (2 if fold else 1)), Hk, B)
    if not (tile.tail and not causal):
        return grid, 0, 1
    n_blocks = math.prod(grid)
    n_whole, parts = tail_plan(n_blocks, n_sm, math.ceil(Sq / block_m_for(kd)) * (Hq // Hk),
                               piece_bytes=2 * _kv_n(kd) * 128 * 4)
    return (n_whole + (n_blocks - n_whole) * parts, 1, 1), n_whole, parts


def _sm_count(device: torch.device) -> int:
    """The device's SMs (:func:`cuda_fwd._sm_count`, cached per device); off CUDA, where
    the tests plan launches, an H100's 132."""
    if device.type != "cuda":
        return 132
    return cuda_fwd._sm_count(device.index if device.index is not None
                              else torch.cuda.current_device())


def backward(do, q, k, v, o, lse, problem, tile: Optional[BwdTile] = None,
             trace: Optional[torch.Tensor] = None, prof: Optional[torch.Tensor] = None):
    """``(dq, dk, dv)`` shaped like ``(q, k, v)`` for a problem :func:`unsupported_reason`
    accepted.  ``trace``: a pinned int32 host tensor of 4 per CTA, to run the tracing build
    (``BWD_TRACE``, see fa3_bwd.cu) for debugging.  ``prof``: an int32 CUDA tensor of
    (CTAs, 2, PROF_STRIDE), to run the phase-profiling build (:func:`phase_profile`)."""
    if trace is not None and prof is not None:
        raise ValueError("backward: pass trace or prof, not both (they share one pointer)")
    B, Hq, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    dk = cuda_fwd._empty_o(k, B, Hk, Sk, D, k.dtype)
    dv = cuda_fwd._empty_o(v, B, Hk, Sk, D, v.dtype)
    if Sq == 0 or Sk == 0 or B == 0 or Hq == 0:
        return torch.zeros_like(q), dk.zero_(), dv.zero_()
    kd = kernel_head_dim(D)  # the maps keep D: TMA zero-fills the rest, clips the stores
    bm = block_m_for(kd)
    n_m = math.ceil(Sq / bm)
    scale = float(problem.scale)
    do = _tma_input(do)
    tile = BwdTile(*(tile or default_tile(D, bool(problem.causal), Sq)))
    lse2, delta = prepare(do, o, lse, bm, tile.vec_io)
    acc = torch.zeros(B, Hq, n_m, 2, 64 * _dq_n(kd), dtype=torch.float32, device=q.device)
    dev = q.device.index if q.device.index is not None else torch.cuda.current_device()
    _, func, smem = _kernel(dev, kd, bool(problem.causal), q.dtype, tile._replace(lpt=False),
                            trace is not None, prof is not None)  # lpt: the same binary
    grid, n_whole, parts = launch_grid(B, Hq, Hk, Sq, Sk, kd, tile, bool(problem.causal),
                                       _sm_count(q.device))
    bn = block_n_for(kd)
    fold = tile.fold and bool(problem.causal)
    ws = cnt = None
    if tile.tail and not problem.causal:  # a 1-D grid; the pieces' partials and counters
        n_cut = (grid[0] - n_whole) // parts
        ws = torch.empty(max(n_cut * parts, 1) * 2 * _kv_n(kd) * 128, dtype=torch.float32,
                         device=q.device)
        cnt = torch.zeros(max(n_cut, 1) * 2, dtype=torch.int32, device=q.device)
    if prof is not None and (prof.dtype != torch.int32 or prof.device != q.device
                             or prof.numel() < math.prod(grid) * 2 * PROF_STRIDE):
        raise ValueError(f"backward: prof must be an int32 tensor on {q.device} of at least "
                         f"{math.prod(grid)} CTAs × 2 × {PROF_STRIDE}")
    trace = prof if prof is not None else trace
    tm = cuda_fwd._tensor_map
    maps = (tm(q, bm), tm(k, bn), tm(v, bn), tm(do, bm), tm(dk, 64), tm(dv, 64))
    window = sched_window(B, Hk, Hq // Hk, Sq, D) if tile.lpt and problem.causal else 0
    if fold and window:
        raise ValueError(f"backward tile {tile}: fold and lpt are two launch orders; pick one")
    cuda_fwd._launch(func, grid, 384, smem, q.device, maps, (
        ctypes.c_void_p(lse2.data_ptr()), ctypes.c_void_p(delta.data_ptr()),
        ctypes.c_void_p(acc.data_ptr()), ctypes.c_int(Hq // Hk), ctypes.c_int(Sq),
        ctypes.c_int(Sk), ctypes.c_float(scale * _LOG2E), ctypes.c_float(scale),
        ctypes.c_int(n_m), ctypes.c_int(window),
        ctypes.c_void_p(0 if trace is None else trace.data_ptr()),
        ctypes.c_int(n_whole), ctypes.c_int(parts), ctypes.c_int(Hk),
        ctypes.c_void_p(0 if ws is None else ws.data_ptr()),
        ctypes.c_void_p(0 if cnt is None else cnt.data_ptr())))
    return dq_from_accum(acc, q, scale, tile.vec_io or tile.red_v4), dk, dv


#: fa3_bwd.cu's BWD_PROF slots, in order (PROF_SLOTS of them, then the block count).
PROF_PHASES = ("kv_load", "q_wait", "s_issue_do_wait", "dp_issue_s_wait", "softmax_ds",
               "ds_barrier", "dq_product", "dq_out", "epilogue_barrier", "dkdv_store",
               "dq_out_wait")
PROF_STRIDE = 16


def packing(cta_cycles, n_sm: int) -> dict:
    """How well CTAs of these durations (in launch order) fill ``n_sm`` SMs, one CTA per SM
    at a time, each next CTA on the first SM to free up (the block scheduler, idealised):
    the makespan, and the busy share sum / (n_sm * makespan).  Below 1 by the last wave's
    idle SMs and the spread of durations -- what key-block pairs (equal work per CTA, half
    as many CTAs) change."""
    import heapq

    free = [0] * n_sm
    end = 0
    for c in cta_cycles:
        t = heapq.heappop(free) + int(c)
        end = max(end, t)
        heapq.heappush(free, t)
    total = int(sum(int(c) for c in cta_cycles))
    return {"n_sm": n_sm, "makespan_cycles": end, "busy": total / (n_sm * end) if end else 1.0}


def phase_profile(do, q, k, v, o, lse, problem, tile: Optional[BwdTile] = None,
                  n_sm: Optional[int] = None) -> dict:
    """Where a consumer warpgroup's cycles go, from one launch of the BWD_PROF build: per
    phase (:data:`PROF_PHASES`) the share of all consumer cycles and the mean cycles per
    query block, summed over every CTA and both warpgroups; and :func:`packing` of the
    CTAs' own durations (their slots' sums, the longer warpgroup) on ``n_sm`` SMs (default:
    the device's).  The build's own time is not the kernel's (the clock reads); the split
    is what it is for."""
    B, Hk, Sk, D = k.shape
    tile = BwdTile(*(tile or default_tile(D, bool(problem.causal), problem.seqlen_q)))
    sms = _sm_count(q.device)  # the launch's (backward plans with it too)
    n_sm = sms if n_sm is None else n_sm
    grid, _, _ = launch_grid(B, q.shape[1], Hk, q.shape[2], Sk, kernel_head_dim(D), tile,
                             bool(problem.causal), sms)
    prof = torch.zeros(math.prod(grid), 2, PROF_STRIDE, dtype=torch.int32, device=q.device)
    got = backward(do, q, k, v, o, lse, problem, tile, prof=prof)
    # the profiled build must compute what the plain one does (dK, dV bit for bit; dQ up to
    # the order of its L2 reductions)
    plain = backward(do, q, k, v, o, lse, problem, tile)
    diff = {n: float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
            for n, a, b in zip(("dq", "dk", "dv"), got, plain)}
    cyc = prof[:, :, :len(PROF_PHASES)].to(torch.int64) & 0xFFFFFFFF  # unsigned 32-bit sums
    per = cyc.sum(dim=(0, 1)).tolist()
    blocks = int(prof[:, :, len(PROF_PHASES)].to(torch.int64).sum())
    total = sum(per) or 1
    # each CTA's duration; its row is its linear block index, which is the launch order
    cta = cyc.sum(dim=2).max(dim=1).values.tolist()
    return {"blocks": blocks, "cycles": total, "max_diff_vs_plain": diff,
            "share": {n: c / total for n, c in zip(PROF_PHASES, per)},
            "per_block": {n: c / max(blocks, 1) for n, c in zip(PROF_PHASES, per)},
            "packing": packing(cta, n_sm)}


def nvcc_check(head_dim: int, causal: bool, dtype, tile: Optional[BwdTile] = None,
               nvcc: Optional[str] = None, cubin: Optional[str] = None,
               trace: bool = False, prof: bool = False) -> str:
    """Compile with ``nvcc`` for sm_90a; returns ptxas's ``-v`` report (and keeps the cubin
    at ``cubin`` if given).  Raises RuntimeError with the compiler output on failure."""
    nvcc = nvcc or shutil.which("nvcc")
    if nvcc is None:
        raise FileNotFoundError("nvcc not found on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp, "fa3_bwd_full.cu")
        src.write_text(source(head_dim, dtype))
        out = cubin or str(pathlib.Path(tmp, "out.cubin"))
        cmd = [nvcc, "-gencode=arch=compute_90a,code=sm_90a", "-cubin", "-std=c++17",
               "-Xptxas", "-v", *options(head_dim, causal, dtype, tile, trace, prof), "-o", out,
               str(src)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        report = res.stdout + res.stderr
        if res.returncode != 0:
            raise RuntimeError(f"nvcc failed ({' '.join(cmd)}):\n{report}")
        return report
