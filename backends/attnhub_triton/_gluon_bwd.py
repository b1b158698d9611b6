"""FlashAttention backward for Hopper (sm90) in Gluon -- a prototype (GLUON_BWD_NOTES.md).

Compiled offline and emulated on the CPU; **never run on a GPU** when written.

The structure is the CUDA FlashAttention-3 backward of ``../attnhub_hopper/fa3_bwd.cu``:

* one CTA per 128-key block of one (batch, KV head); grid ``(cdiv(Sk, 128), B * Hk)``;
* a producer partition (1 warp, 24 registers after ``setmaxnreg``) loads K and V once
  (two 64-key halves each, one per consumer), then, for every query head of the KV head's
  group and every query block that sees the CTA's keys, Q and dO into a ``STAGES``-deep
  ring (ready barriers per tensor, one empty barrier per slot released by both consumers);
* two consumer warpgroups (the default partition and a 4-warp worker, 240 registers
  each), warpgroup w owning keys ``n0 + 64 w ..``.  Per query block, with the products
  transposed so key rows are wgmma's M::

      Sᵀ  = K_w Qᵀ                 SS wgmma, 64 x BLOCK_M
      dPᵀ = V_w dOᵀ                SS wgmma (issued right after Sᵀ)
      Pᵀ  = exp2(Sᵀ scale log2e - LSE log2e)   (causal / Sk mask in the edge blocks)
      dSᵀ = Pᵀ (dPᵀ - Δ)
      dV_w += Pᵀ dO                RS wgmma (Pᵀ rounded to 16 bits, from registers)
      dK_w += dSᵀ Q                RS wgmma
      dSᵀ -> shared memory (stored through a transposed view, so the buffer holds dS,
             query rows x key columns, K-major: a plain A operand)
      dQ   = dS_0 K_0 + dS_1 K_1   SS wgmmas, by the warpgroup whose turn it is
             (``it % 2``: they alternate block by block, FA3's / fa3_bwd.cu's DQ_ALT), after
             an mbarrier that both warpgroups arrive on once their dS half is stored;
             fp32 atomics (relaxed ``red.global.add``) into a padded float32 dq_accum.

* dK * scale and dV go straight from the accumulator registers to global memory (masked
  to rows < Sk) after the last block.

Host side: a small Triton pre-pass writes Δ = rowsum(dO ∘ O) (fp32) and LSE·log2e into
padded (B·Hq, Sq_pad) buffers, with +inf for rows past Sq and for rows whose LSE is -inf
(so P = 0 there and those rows contribute no gradient), and zeroes dq_accum; a post-pass
converts dq_accum · scale to the output dtype.

The module imports without torch or a GPU (``compile_offline`` builds for sm90 with no GPU);
the host launcher needs both.
"""

from __future__ import annotations

import math

import triton
import triton.language as tl
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

try:  # private Triton API, for the dq_tma=1 experiment only (_tma_reduce_add)
    from triton._C.libtriton import ir as _ir
    from triton.experimental.gluon.language._core import builtin as _builtin
except Exception:  # pragma: no cover - depends on the installed Triton
    _ir = None

    def _builtin(fn):
        return fn

from ._gluon_common import IMPORT_ERROR as _IMPORT_ERROR
from ._gluon_common import LOG2E as _LOG2E
from ._gluon_common import (  # noqa: F401  (gluon_available: this module's API)
    desc3 as _desc3,
    fence_async_shared,
    gl_dtype,
    gluon_available,
    mbarrier,
    tma,
    tma_load as _tma_load,
    tma_store as _tma_store,
    warpgroup_mma,
    warpgroup_mma_wait,
)

_LAST = {}  # the last launched CompiledKernel (gluon_bwd_check.py reads n_regs / n_spills)

BLOCK_N = 128  # keys per CTA (two consumer warpgroups x 64)
KW = 64        # keys per consumer warpgroup

# --------------------------------------------------------------------------------------
# Variants: the kernel's knobs, by name (gluon_bwd_check.py --variants takes these names).
# --------------------------------------------------------------------------------------

VARIANTS = {
    # query blocks of 64 rows, a 2-deep Q/dO ring (fa3_bwd.cu's d128 shape; d64 too)
    "m64": dict(block_m=64, stages=2),
    # the same with a 3-deep ring
    "m64s3": dict(block_m=64, stages=3),
    # query blocks of 128 rows (fa3_bwd.cu's d64 shape); d64 only (registers)
    "m128": dict(block_m=128, stages=2),
    # dQ atomics 4 fp32 wide (red.global.add.v4.f32, SASS REDG.E.ADD.F32x4): the dQ partial
    # goes through one intra-warp layout change (half its registers swapped between lane
    # pairs) so each thread holds 4 adjacent columns; GLUON_BWD_NOTES.md, thirty-sixth session
    "m64v4": dict(block_m=64, stages=2, dq_vec=4),
    "m128v4": dict(block_m=128, stages=2, dq_vec=4),
    # dQ atomics 1 fp32 wide (inline-asm red.global.add.f32): a control for timing what the
    # wider atomics buy, never faster
    "m64v1": dict(block_m=64, stages=2, dq_vec=1),
    # dQ by one TMA bulk reduce per chunk (cp.reduce.async.bulk.tensor add.f32) through an fp32
    # staging copy in shared memory, no per-thread atomics; private Triton API (an experiment)
    "m64tma": dict(block_m=64, stages=2, dq_tma=1),
    # S_AHEAD: the next block's Sᵀ (m64a) or Sᵀ and dPᵀ (m64a2) issued before this block's
    # dQ wgmmas and atomics, so the tensor cores have this warpgroup's next product under its
    # dQ turn; GLUON_BWD_NOTES.md, "Thirty-sixth session (later): S_AHEAD"
    "m64a": dict(block_m=64, stages=2, s_ahead=1),
    "m64a2": dict(block_m=64, stages=2, s_ahead=2),
    # HSPLIT: 64-key CTAs whose two warpgroups split the query block (Sᵀ, dPᵀ) and the head
    # dim (dK, dV, dQ); the d256 default (the only build that fits there), also built at d128;
    # GLUON_BWD_NOTES.md, "Thirty-seventh session: HSPLIT"
    "h64": dict(block_m=64, stages=2, hsplit=1),
    # m64 with K and V's wgmma descriptors rebuilt per iteration instead of held across the
    # loop (kv_opaque=1: _opaque_zero); d128 m64 spills 24-48 B without it
    "m64o": dict(block_m=64, stages=2, kv_opaque=1),
    "m64ao": dict(block_m=64, stages=2, s_ahead=1, kv_opaque=1),
    # d128 with dQ split by columns, not by turns: every block, warpgroup w adds dQ's
    # columns 64w .. 64w + 63 (both dS halves against K's column half), as fa3_bwd.cu does at
    # d128 -- each warpgroup's dQ work and atomics the same every block; GLUON_BWD_NOTES.md,
    # "Fortieth session: dq_cols"
    "m64c": dict(block_m=64, stages=2, dq_cols=1),
    "m64co": dict(block_m=64, stages=2, dq_cols=1, kv_opaque=1),
    # the same sharing at d64 on 128-query blocks, by rows (fa3_bwd.cu's d64 split): every
    # block, warpgroup w adds dQ of query rows 64w .. 64w + 63 (its row slice of both dS
    # halves against all 128 keys); GLUON_BWD_NOTES.md, "Fortieth session: dq_rows"
    "m128r": dict(block_m=128, stages=2, dq_rows=1),
    "m128ro": dict(block_m=128, stages=2, dq_rows=1, kv_opaque=1),
    # dQ in one product instead of 64-column chunks, each retired and added before the next
    # is issued: m64o1 (d128, the turn's 64 x 128 dQ at once; spill-free only with
    # kv_opaque), h64w (d256 HSPLIT, each warpgroup's 64 x 128 half at once, issued with
    # dV and dK); GLUON_BWD_NOTES.md, "Fortieth session: one dQ product"
    "m64o1": dict(block_m=64, stages=2, kv_opaque=1, dq_split=1),
    "h64w": dict(block_m=64, stages=2, hsplit=1, dq_split=1),
    # HSPLIT with Sᵀ and dPᵀ split by role (hsplit=2): warpgroup 0 the whole Sᵀ and P,
    # warpgroup 1 the whole dPᵀ and dS (P read back in q's dtype), so both products are
    # N = 64 (fa3_bwd.cu's d256 SPLIT_D); GLUON_BWD_NOTES.md, "Fortieth session: role split"
    "h64r": dict(block_m=64, stages=2, hsplit=2),
    "h64rw": dict(block_m=64, stages=2, hsplit=2, dq_split=1),
}
HSPLIT_DIMS = (128, 256)  # head dims whose halves fall on 64-column swizzle atoms
DQ_VECS = (1, 2, 4)  # fp32 per dQ atomic; 2 is the default (the wgmma layout's column pairs)
S_AHEADS = (0, 1, 2)  # products of the next block issued before this block's dQ: none, Sᵀ, Sᵀ+dPᵀ
KNOBS = ("block_m", "stages", "dq_split", "dq_vec", "dq_tma", "s_ahead", "ahead_chunk",
         "hsplit", "kv_opaque", "dq_cols", "dq_rows")
#: The variant a head dim runs without one named: m64 at d64; h64 at d256 (the only build
#: that fits there); m64o at d128 -- H100, 2026-12-08, the kernel alone against m64 in the
#: same loops, +0.2..+3.7 % at all 8 points 2k-16k, causal or not, 3 rounds
#: (``triton_gluon_bwd_m64o_h100_2026-12-08_s39``) and +1..+8 % at 4 points, 2 rounds
#: (``triton_gluon_bwd_h100_2026-12-08_s39``); 13/13 quick cases passed in each run (m64o
#: not timed at d64).
DEFAULT_VARIANTS = {64: "m64", 128: "m64o", 256: "h64"}
HEAD_DIMS = (64, 128, 256)


# --------------------------------------------------------------------------------------
# Device code
# --------------------------------------------------------------------------------------


@gluon.jit
def _slot(j, STAGES: gl.constexpr):
    """Ring slot of iteration j and the parity its barriers are at."""
    return j % STAGES, (j // STAGES) & 1


@gluon.jit
def _opaque_zero(it):
    """0, through a side-effecting asm the compiler cannot see through.  Shared-memory views
    indexed with it inside the loop have their wgmma descriptors (one 64-bit value per
    k-step) rebuilt every iteration, not hoisted out of the loop and held (or spilled)
    across it -- 32 descriptors for K and V at d256."""
    return gl.inline_asm_elementwise("mov.u32 $0, 0;", "=r,r", [it], dtype=gl.int32,
                                     is_pure=False, pack=1)


@gluon.jit
def _advance(mb, bhq, m_first, n_mb, qbh0, GROUP, Sq_pad, BLOCK_M: gl.constexpr):
    """The next iteration's (query block, head row) and the first of its rows in the padded
    LSE / Δ buffers (after the last iteration: the group's last head, still in bounds)."""
    mb, bhq = _next_block(mb, bhq, m_first, n_mb)
    bhq_c = gl.minimum(bhq, qbh0 + GROUP - 1)
    return mb, bhq, bhq_c.to(gl.int64) * Sq_pad + mb * BLOCK_M


@gluon.jit
def _kv_views(k_smem, v_smem, it, WG: gl.constexpr, HEAD_D: gl.constexpr,
              KV_OPAQUE: gl.constexpr):
    """Warpgroup WG's K and V halves and both K halves (for dQ), viewed inside the loop:
    through ``_opaque_zero(it)`` with KV_OPAQUE, else at constant indices (hoisted by the
    compiler: the default builds' PTX)."""
    if KV_OPAQUE:
        kz = _opaque_zero(it)
    else:
        kz = 0
    return (k_smem.index(WG + kz).reshape([64, HEAD_D]),
            v_smem.index(WG + kz).reshape([64, HEAD_D]),
            k_smem.index(kz).reshape([64, HEAD_D]), k_smem.index(1 + kz).reshape([64, HEAD_D]))


@gluon.constexpr_function
def _red_layout(block_m, n, dq_vec, dq_layout):
    """The layout the dQ partial is added from: the accumulator's own (column pairs, 2-wide
    atomics where the launch specialises dq_ptr on 16-byte alignment), or 4 adjacent columns
    per thread after an intra-warp layout change (dq_vec=4)."""
    if int(getattr(dq_vec, "value", dq_vec)) == 4:
        return _dq_v4_layout(block_m, n)
    return getattr(dq_layout, "value", dq_layout)


@gluon.jit
def _dq_offsets(red_layout: gl.constexpr, BLOCK_M: gl.constexpr, DQ_N: gl.constexpr,
                HEAD_D: gl.constexpr):
    """Element offsets of a BLOCK_M x DQ_N dQ chunk in dq_accum (row stride HEAD_D)."""
    rq = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, red_layout))
    cq = gl.arange(0, DQ_N, layout=gl.SliceLayout(0, red_layout))
    return gl.expand_dims(rq, 1) * HEAD_D + gl.expand_dims(cq, 0)


@gluon.jit
def _next_block(mb, bhq, m_first, n_mb):
    """The iteration after (query block mb, query head row bhq): the next query block, or the
    group's next head from block m_first (no integer division in the loop)."""
    mb = mb + 1
    wrap = (mb == n_mb).to(gl.int32)
    return mb - wrap * (n_mb - m_first), bhq + wrap


@gluon.constexpr_function
def _dq_v4_layout(block_m, n):
    """The dQ partial's layout for 4-wide atomics: wgmma's accumulator layout (Hopper,
    4 warps, M = 64 per warpgroup) with register bit 1 (row + 8) and lane bit 0 (column + 2)
    swapped, so each thread holds 4 adjacent columns of one row and the layout change stays
    inside each warp (one shuffle round over half the registers, no shared memory).

    wgmma: registers [0,1] [8,0] [0,8] [0,16] .. (+[64,0] at M = 128), lanes [0,2] [0,4]
    [1,0] [2,0] [4,0], warps [16,0] [32,0] (``gl.to_linear_layout`` of the accumulator)."""
    block_m, n = int(getattr(block_m, "value", block_m)), int(getattr(n, "value", n))
    regs = [[0, 1], [0, 2]] + [[0, c] for c in (8, 16, 32, 64) if c < n]
    if block_m == 128:
        regs.append([64, 0])
    return gl.DistributedLinearLayout(reg_bases=regs,
                                      lane_bases=[[8, 0], [0, 4], [1, 0], [2, 0], [4, 0]],
                                      warp_bases=[[16, 0], [32, 0]], block_bases=[],
                                      shape=[block_m, n])


@_builtin
def _tma_reduce_add(desc, coord, value, _semantic=None):
    """``value`` added into the box of ``desc`` at ``coord`` by a TMA bulk reduce
    (``cp.reduce.async.bulk.tensor...add``): Triton's ``tt.descriptor_reduce``, the op under
    ``tl``'s ``tensor_descriptor.atomic_add``, which Gluon 3.6 does not wrap.  Gluon's
    ``tma_lowering`` pass turns it into a shared-memory copy of ``value``, a proxy fence, the
    bulk reduce and a wait until the copy has been read.  Private Triton API (``_semantic``,
    ``ir.DESCRIPTOR_REDUCE_KIND``): the dq_tma=1 experiment only."""
    offsets = _semantic._convert_to_ir_values(coord, require_i64=False)
    handle = _semantic.builder.create_descriptor_reduce(_ir.DESCRIPTOR_REDUCE_KIND.ADD,
                                                        desc.handle, value.handle, offsets)
    return gl.tensor(handle, gl.void)


@gluon.jit
def _red_add_f32(ptrs, vals):
    """Scalar relaxed fp32 adds to global memory (``red.global.add.f32``, one per element)
    through inline asm: the dq_vec=1 control, whatever the pointers' alignment."""
    # the address as an int64 (inline_asm_elementwise will not broadcast a pointer with a
    # float); the asm must have a result, a dummy 0
    gl.inline_asm_elementwise("red.global.add.f32 [$1], $2;\n\tmov.b32 $0, 0;", "=r,l,f",
                              [ptrs.to(gl.int64, bitcast=True), vals], dtype=gl.int32,
                              is_pure=False, pack=1)


@gluon.jit
def _producer(descs, smem, bars, ints, BLOCK_M: gl.constexpr, STAGES: gl.constexpr,
              KV_BOXES: gl.constexpr):
    """1 warp: K and V once (KV_BOXES 64-key boxes each: two halves, or one under HSPLIT),
    then Q and dO of every iteration."""
    q_desc, k_desc, v_desc, do_desc = descs
    q_smem, k_smem, v_smem, do_smem, ds_smem = smem
    kv_bar, q_ready, do_ready, qdo_empty, ds_bar = bars
    kv_bh, n0, qbh0, m_first, n_mb, n_iter = ints

    mbarrier.expect(kv_bar, KV_BOXES * (k_desc.block_type.nbytes + v_desc.block_type.nbytes))
    for w in gl.static_range(KV_BOXES):
        _tma_load(k_desc, [kv_bh, n0 + w * 64, 0], kv_bar, k_smem.index(w))
        _tma_load(v_desc, [kv_bh, n0 + w * 64, 0], kv_bar, v_smem.index(w))
    mb = m_first
    bhq = qbh0
    for it in range(n_iter):
        st, ph = _slot(it, STAGES)
        # a fresh mbarrier passes a wait on parity 1: the first STAGES waits are free.
        mbarrier.wait(qdo_empty.index(st), ph ^ 1)
        mbarrier.expect(q_ready.index(st), q_desc.block_type.nbytes)
        _tma_load(q_desc, [bhq, mb * BLOCK_M, 0], q_ready.index(st), q_smem.index(st))
        mbarrier.expect(do_ready.index(st), do_desc.block_type.nbytes)
        _tma_load(do_desc, [bhq, mb * BLOCK_M, 0], do_ready.index(st), do_smem.index(st))
        mb, bhq = _next_block(mb, bhq, m_first, n_mb)


# --------------------------------------------------------------------------------------
# S_AHEAD (s_ahead=1, 2): the consumer loop rotated so the next block's Sᵀ (s_ahead=2: and
# dPᵀ) is issued before this block's dQ wgmmas and atomics (GLUON_BWD_NOTES.md, "Thirty-sixth
# session (later): S_AHEAD").  Used only when the knob is set; the default loop in _consumer
# is untouched.
# --------------------------------------------------------------------------------------


@gluon.jit
def _iteration(it, mb, bhq, q_smem, do_smem, Sq_pad, HEAD_D: gl.constexpr,
               BLOCK_M: gl.constexpr, STAGES: gl.constexpr):
    """A consumer iteration's bookkeeping: its first query row, ring slot and parity, the Q
    and dO views, the dS parity, its (batch, query head) and the row base of its LSE / Δ /
    dQ rows."""
    m0 = mb * BLOCK_M
    st, ph = _slot(it, STAGES)
    q_v = q_smem.index(st).reshape([BLOCK_M, HEAD_D])
    do_v = do_smem.index(st).reshape([BLOCK_M, HEAD_D])
    return m0, st, ph, q_v, do_v, it % 2, bhq, bhq.to(gl.int64) * Sq_pad + m0


@gluon.jit
def _dkdv(p, dp, dv, dk, q_v, do_v, ds_smem, ds_bar, qdo_empty, par, st, WG: gl.constexpr,
          a_layout: gl.constexpr):
    """One block's dSᵀ = Pᵀ (dPᵀ - Δ) (Δ is in dPᵀ's start value), stored for the dQ turn, and
    dV += Pᵀ dO, dK += dSᵀ Q (RS wgmmas, A from registers); then the slot's Q and dO are
    released.  Returns dv, dk."""
    dtype: gl.constexpr = q_v.dtype
    ds = p * dp
    p16 = gl.convert_layout(p.to(dtype), a_layout)
    ds16 = ds.to(dtype)
    # dSᵀ into this warpgroup's half of the parity's buffer, through the transposed view: the
    # buffer holds dS (query rows, key columns), K-major for the dQ product.
    ds_smem.index(par * 2 + WG).permute((1, 0)).store(ds16)
    ds_a = gl.convert_layout(ds16, a_layout)
    dv_tok = warpgroup_mma(p16, do_v, dv, is_async=True)
    dk_tok = warpgroup_mma(ds_a, q_v, dk, is_async=True)
    fence_async_shared()
    mbarrier.arrive(ds_bar.index(par))  # partition bar.sync, then one arrive
    dv, dk, p16, ds_a = warpgroup_mma_wait(0, deps=(dv_tok, dk_tok, p16, ds_a))
    mbarrier.arrive(qdo_empty.index(st))  # Q and dO of this slot no longer read
    return dv, dk


@gluon.jit
def _dq_add(dq, dq_ptr, dq_desc, row_base, bhq_now, m0, h, dq_off, HEAD_D: gl.constexpr,
            BLOCK_M: gl.constexpr, DQ_N: gl.constexpr, DQ_VEC: gl.constexpr,
            DQ_TMA: gl.constexpr, red_layout: gl.constexpr):
    """Chunk h of a block's dQ partial added into dq_accum: one TMA bulk reduce of the whole
    BLOCK_M x DQ_N partial through shared memory (DQ_TMA), or per-thread fp32 atomics of
    DQ_VEC adjacent columns (1: scalar inline asm, 2: the wgmma layout's pairs, 4: after a
    conversion inside each warp)."""
    if DQ_TMA:
        _tma_reduce_add(dq_desc, [bhq_now, m0, h * DQ_N], gl.reshape(dq, [1, BLOCK_M, DQ_N]))
    else:
        dq_at = dq_ptr + row_base * HEAD_D + h * DQ_N + dq_off
        if DQ_VEC == 1:
            _red_add_f32(dq_at, dq)
        else:
            if DQ_VEC == 4:
                dq = gl.convert_layout(dq, red_layout)
            gl.atomic_add(dq_at, dq, sem="relaxed")


@gluon.jit
def _dq_turn(ds_smem, k_0, k_1, dq_ptr, dq_desc, row_base, bhq_now, m0, par, dq_off, dq_zero,
             HEAD_D: gl.constexpr, BLOCK_M: gl.constexpr, DQ_SPLIT: gl.constexpr,
             DQ_VEC: gl.constexpr, DQ_TMA: gl.constexpr, red_layout: gl.constexpr):
    """A warpgroup's dQ turn: dQ of the block from both dS halves, DQ_SPLIT column chunks one
    after the other (a BLOCK_M x D/DQ_SPLIT fp32 accumulator at a time), each retired and
    added into dq_accum before the next is issued."""
    for h in gl.static_range(DQ_SPLIT):
        _dq_chunk(ds_smem, k_0, k_1, dq_ptr, dq_desc, row_base, bhq_now, m0, par, dq_off,
                  dq_zero, h, HEAD_D, BLOCK_M, DQ_SPLIT, DQ_VEC, DQ_TMA, red_layout)


@gluon.jit
def _dq_chunk(ds_smem, k_0, k_1, dq_ptr, dq_desc, row_base, bhq_now, m0, par, dq_off, dq_zero,
              h: gl.constexpr, HEAD_D: gl.constexpr, BLOCK_M: gl.constexpr,
              DQ_SPLIT: gl.constexpr, DQ_VEC: gl.constexpr, DQ_TMA: gl.constexpr,
              red_layout: gl.constexpr):
    """Column chunk h (of DQ_SPLIT) of a block's dQ: both dS halves against K's columns of
    the chunk (``_dq_pair``)."""
    DQ_N: gl.constexpr = HEAD_D // DQ_SPLIT
    _dq_pair(ds_smem.index(par * 2), k_0.slice(h * DQ_N, DQ_N, dim=1), ds_smem.index(par * 2 + 1),
             k_1.slice(h * DQ_N, DQ_N, dim=1), dq_zero, dq_ptr, dq_desc, row_base, bhq_now, m0,
             h, dq_off, HEAD_D, BLOCK_M, DQ_N, DQ_VEC, DQ_TMA, red_layout)


@gluon.jit
def _dq_pair(ds_0, k_0, ds_1, k_1, dq_zero, dq_ptr, dq_desc, row_base, bhq_now, m0, h, dq_off,
             HEAD_D: gl.constexpr, BLOCK_M: gl.constexpr, DQ_N: gl.constexpr,
             DQ_VEC: gl.constexpr, DQ_TMA: gl.constexpr, red_layout: gl.constexpr):
    """One dQ product of a 128-key CTA, ds_0 k_0 + ds_1 k_1 (its two dS halves against their
    K halves, or slices of them), retired, then added into dq_accum as chunk h of the
    BLOCK_M rows at row_base / m0."""
    q_tok = warpgroup_mma(ds_0, k_0, dq_zero, use_acc=False, is_async=True)
    q_tok = warpgroup_mma(ds_1, k_1, q_tok, is_async=True)
    dq = warpgroup_mma_wait(0, deps=(q_tok, ))
    _dq_add(dq, dq_ptr, dq_desc, row_base, bhq_now, m0, h, dq_off, HEAD_D, BLOCK_M, DQ_N, DQ_VEC,
            DQ_TMA, red_layout)


@gluon.jit
def _s_start(lse_c, ccols, keys, n0, m0, Sk, offset, inv_scale_log2, st_zero,
             col_l: gl.constexpr, CAUSAL: gl.constexpr, NK: gl.constexpr = 128):
    """Sᵀ's accumulator start: -log2-LSE / (scale log2e) per query column, -inf where the
    causal / Sk mask drops (key, query) in an edge block.  With it Pᵀ = exp2(acc · scale
    log2e) is one FMUL + EX2 and no LSE registers stay live under the products (+inf LSE:
    -inf start, P = 0).  The per-column causal limit m0 + col + offset comes from the compact
    layout (``ccols``): an arange in col_l is loop-invariant, and LLVM would keep its 16
    registers live across the whole loop (spills at d128)."""
    s_init = st_zero - gl.expand_dims(gl.convert_layout(lse_c, col_l) * inv_scale_log2, 0)
    need = n0 + NK > Sk  # NK: the CTA's keys (n0 .. n0 + NK - 1)
    if CAUSAL:
        need = need | (n0 + NK - 1 > m0 + offset)
    if need:
        keep = gl.expand_dims(keys < Sk, 1)
        if CAUSAL:
            lim = gl.convert_layout(m0 + offset + ccols, col_l)
            keep = keep & (gl.expand_dims(keys, 1) <= gl.expand_dims(lim, 0))
        s_init = gl.where(keep, s_init, -float("inf"))
    return s_init


@gluon.jit
def _next_products(k_w, q_t, v_w, do_t, nx, st_zero, col_l: gl.constexpr,
                   CAUSAL: gl.constexpr, S_AHEAD: gl.constexpr):
    """Issue the next block's Sᵀ (S_AHEAD=2: and dPᵀ), their start values computed here,
    just before, so they hold no registers earlier; nx = (lse_c, delta_c, ccols, keys, n0,
    its m0, Sk, offset, inv_scale_log2).  Returns the accumulators in flight (dPᵀ's is
    Sᵀ's when S_AHEAD=1, unused)."""
    lse_c, delta_c, ccols, keys, n0, m0, Sk, offset, inv_scale_log2 = nx
    s_init = _s_start(lse_c, ccols, keys, n0, m0, Sk, offset, inv_scale_log2, st_zero, col_l,
                      CAUSAL)
    s_tok = warpgroup_mma(k_w, q_t, s_init, is_async=True)
    dp_tok = s_tok
    if S_AHEAD == 2:
        dp_init = st_zero - gl.expand_dims(gl.convert_layout(delta_c, col_l), 0)
        dp_tok = warpgroup_mma(v_w, do_t, dp_init, is_async=True)
    return s_tok, dp_tok


@gluon.jit
def _retire_next(s_tok, dp_tok, S_AHEAD: gl.constexpr):
    """Wait for the next block's Sᵀ (S_AHEAD=2: and dPᵀ) alone; returns (Sᵀ, dPᵀ), the
    second Sᵀ again when S_AHEAD=1 (unused then)."""
    if S_AHEAD == 2:
        s, dp = warpgroup_mma_wait(0, deps=(s_tok, dp_tok))
    else:
        s = warpgroup_mma_wait(0, deps=(s_tok, ))
        dp = s
    return s, dp


@gluon.jit
def _dq_turn_ahead(ds_smem, k_0, k_1, dq_ptr, dq_desc, row_base, bhq_now, m0, par, dq_off,
                   dq_zero, k_w, q_t, v_w, do_t, nx, st_zero, col_l: gl.constexpr,
                   CAUSAL: gl.constexpr, HEAD_D: gl.constexpr,
                   BLOCK_M: gl.constexpr, DQ_SPLIT: gl.constexpr, DQ_VEC: gl.constexpr,
                   DQ_TMA: gl.constexpr, S_AHEAD: gl.constexpr, AHEAD_CHUNK: gl.constexpr,
                   red_layout: gl.constexpr, s_tok=None, dp_tok=None):
    """This warpgroup's dQ turn (the default loop's, chunk by chunk) with the next block's
    Sᵀ (and dPᵀ) issued just before chunk AHEAD_CHUNK's wgmmas, so it runs on the tensor
    cores under this turn's atomics (and the later chunks' wgmmas).  A chunk's wait(0) also
    retires those products (wgmma groups retire in order).  AHEAD_CHUNK=-2: they were issued
    before the turn's branch (s_tok, dp_tok) and the first chunk's wait retires them.
    Returns (Sᵀ, dPᵀ) of the next block, retired."""
    DQ_N: gl.constexpr = HEAD_D // DQ_SPLIT
    RETIRE: gl.constexpr = 0 if AHEAD_CHUNK < 0 else AHEAD_CHUNK
    for h in gl.static_range(DQ_SPLIT):
        if h == AHEAD_CHUNK:
            s_tok, dp_tok = _next_products(k_w, q_t, v_w, do_t, nx, st_zero, col_l, CAUSAL,
                                           S_AHEAD)
        q_tok = warpgroup_mma(ds_smem.index(par * 2), k_0.slice(h * DQ_N, DQ_N, dim=1),
                              dq_zero, use_acc=False, is_async=True)
        q_tok = warpgroup_mma(ds_smem.index(par * 2 + 1), k_1.slice(h * DQ_N, DQ_N, dim=1),
                              q_tok, is_async=True)
        if h == RETIRE:
            if S_AHEAD == 2:
                dq, s, dp = warpgroup_mma_wait(0, deps=(q_tok, s_tok, dp_tok))
            else:
                dq, s = warpgroup_mma_wait(0, deps=(q_tok, s_tok))
                dp = s
        else:
            dq = warpgroup_mma_wait(0, deps=(q_tok, ))
        _dq_add(dq, dq_ptr, dq_desc, row_base, bhq_now, m0, h, dq_off, HEAD_D, BLOCK_M, DQ_N,
                DQ_VEC, DQ_TMA, red_layout)
    return s, dp


@gluon.jit
def _consumer_loop_ahead(WG: gl.constexpr, smem, bars, ptrs, ints, scale_log2, dk, dv, lse_c,
                         delta_c, keys, ccols, dq_off, st_zero, dq_zero, HEAD_D: gl.constexpr,
                         BLOCK_M: gl.constexpr, STAGES: gl.constexpr, CAUSAL: gl.constexpr,
                         DQ_SPLIT: gl.constexpr, DQ_VEC: gl.constexpr, DQ_TMA: gl.constexpr,
                         S_AHEAD: gl.constexpr, AHEAD_CHUNK: gl.constexpr,
                         st_layout: gl.constexpr, a_layout: gl.constexpr,
                         red_layout: gl.constexpr, KV_OPAQUE: gl.constexpr = 0):
    """The consumer's main loop with block it + 1's Sᵀ (S_AHEAD=2: and dPᵀ) issued after
    block it's dV/dK retired and before block it's dQ turn, so the tensor cores have this
    warpgroup's next product while it waits for dS and does its dQ wgmmas and atomics.
    Every product is retired inside the iteration that issued it (nothing in flight across
    the back edge: ptxas would serialise every wgmma); the next block's Sᵀ (dPᵀ) enters the
    next iteration as plain registers.  After the last block, one Sᵀ (dPᵀ) of a block that
    does not exist is issued without waiting and thrown away: the ring slot it reads holds
    no TMA in flight (its last load was waited), and a wgmma under a condition made ptxas
    inject waits in fa3_bwd.cu.  On entry lse_c, delta_c hold block 0's rows; returns
    (dk, dv)."""
    q_smem, k_smem, v_smem, do_smem, ds_smem = smem
    kv_bar, q_ready, do_ready, qdo_empty, ds_bar = bars
    lse2_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr, dq_desc = ptrs
    kv_bh, n0, qbh0, m_first, n_mb, n_iter, Sk, Sq_pad, GROUP, offset, inv_scale_log2 = ints
    dtype: gl.constexpr = q_smem.dtype
    col_l: gl.constexpr = gl.SliceLayout(0, st_layout)
    k_w = k_smem.index(WG).reshape([64, HEAD_D])
    v_w = v_smem.index(WG).reshape([64, HEAD_D])
    last_bhq = qbh0 + GROUP - 1

    # ---- prologue: block 0's Sᵀ (and dPᵀ), retired before the loop ----
    mb = m_first
    bhq = qbh0
    s_init = _s_start(lse_c, ccols, keys, n0, mb * BLOCK_M, Sk, offset, inv_scale_log2,
                      st_zero, col_l, CAUSAL)
    mbarrier.wait(q_ready.index(0), 0)
    s_tok = warpgroup_mma(k_w, q_smem.index(0).reshape([BLOCK_M, HEAD_D]).permute((1, 0)),
                          s_init, is_async=True)
    if S_AHEAD == 2:
        dp_init = st_zero - gl.expand_dims(gl.convert_layout(delta_c, col_l), 0)
        mbarrier.wait(do_ready.index(0), 0)
        dp_tok = warpgroup_mma(v_w, do_smem.index(0).reshape([BLOCK_M, HEAD_D]).permute((1, 0)),
                               dp_init, is_async=True)
        s, dp = warpgroup_mma_wait(0, deps=(s_tok, dp_tok))
    else:
        s = warpgroup_mma_wait(0, deps=(s_tok, ))
    # block 1's log2-LSE (S_AHEAD=2: and Δ); S_AHEAD=1 keeps block 0's Δ for its dPᵀ
    nmb, nbhq = _next_block(mb, bhq, m_first, n_mb)
    nrow = gl.minimum(nbhq, last_bhq).to(gl.int64) * Sq_pad + nmb * BLOCK_M
    lse_c = gl.load(lse2_ptr + nrow + ccols)
    if S_AHEAD == 2:
        delta_c = gl.load(delta_ptr + nrow + ccols)

    for it in range(n_iter):
        m0, st, ph, q_v, do_v, par, bhq_now, row_base = _iteration(
            it, mb, bhq, q_smem, do_smem, Sq_pad, HEAD_D, BLOCK_M, STAGES)
        mb, bhq = _next_block(mb, bhq, m_first, n_mb)  # block it + 1
        kw_i, vw_i, k0_i, k1_i = _kv_views(k_smem, v_smem, it, WG, HEAD_D, KV_OPAQUE)
        if S_AHEAD == 1:
            # dPᵀ - Δ of this block; Pᵀ's exp2 runs under it
            dp_init = st_zero - gl.expand_dims(gl.convert_layout(delta_c, col_l), 0)
            mbarrier.wait(do_ready.index(st), ph)
            dp_tok = warpgroup_mma(vw_i, do_v.permute((1, 0)), dp_init, is_async=True)
            nrow = gl.minimum(bhq, last_bhq).to(gl.int64) * Sq_pad + mb * BLOCK_M
            delta_c = gl.load(delta_ptr + nrow + ccols)  # block it + 1's Δ
            p = gl.exp2(s * scale_log2)
            dp = warpgroup_mma_wait(0, deps=(dp_tok, ))
        else:
            p = gl.exp2(s * scale_log2)
        dv, dk = _dkdv(p, dp, dv, dk, q_v, do_v, ds_smem, ds_bar, qdo_empty, par, st, WG,
                       a_layout)

        # ---- block it + 1's Sᵀ (and dPᵀ), ahead of this block's dQ ----
        st1, ph1 = _slot(it + 1, STAGES)
        has_next = it + 1 < n_iter
        nx = (lse_c, delta_c, ccols, keys, n0, mb * BLOCK_M, Sk, offset, inv_scale_log2)
        q_t = q_smem.index(st1).reshape([BLOCK_M, HEAD_D]).permute((1, 0))
        do_t = do_smem.index(st1).reshape([BLOCK_M, HEAD_D]).permute((1, 0))
        if has_next:  # (after the last block: no wait, the products are thrown away)
            mbarrier.wait(q_ready.index(st1), ph1)
            if S_AHEAD == 2:
                mbarrier.wait(do_ready.index(st1), ph1)
        if AHEAD_CHUNK == -2:
            # the second diagnostic placement (ahead_chunk=-2): issued before the turn's
            # branch by both warpgroups, retired inside each arm (the turn's by its first dQ
            # chunk's wait): the overlap kept, no wgmma issued inside an arm but dQ's
            s_tok, dp_tok = _next_products(kw_i, q_t, vw_i, do_t, nx, st_zero, col_l, CAUSAL,
                                           S_AHEAD)
            if par == WG:
                mbarrier.wait(ds_bar.index(par), (it // 2) & 1)
                s, dp_next = _dq_turn_ahead(ds_smem, k0_i, k1_i, dq_ptr, dq_desc, row_base,
                                            bhq_now, m0, par, dq_off, dq_zero, kw_i, q_t, vw_i,
                                            do_t, nx, st_zero, col_l, CAUSAL, HEAD_D, BLOCK_M,
                                            DQ_SPLIT, DQ_VEC, DQ_TMA, S_AHEAD, AHEAD_CHUNK,
                                            red_layout, s_tok, dp_tok)
            else:
                s, dp_next = _retire_next(s_tok, dp_tok, S_AHEAD)
        elif AHEAD_CHUNK == -1:
            # the diagnostic placement (ahead_chunk=-1): both warpgroups issue and retire
            # block it + 1's products before the turn, so no if-arm holds a wgmma but dQ's;
            # no overlap with the atomics is left, only the loop's rotation
            s_tok, dp_tok = _next_products(kw_i, q_t, vw_i, do_t, nx, st_zero, col_l, CAUSAL,
                                           S_AHEAD)
            s, dp_next = _retire_next(s_tok, dp_tok, S_AHEAD)
            if par == WG:
                mbarrier.wait(ds_bar.index(par), (it // 2) & 1)
                _dq_turn(ds_smem, k0_i, k1_i, dq_ptr, dq_desc, row_base, bhq_now, m0, par,
                         dq_off, dq_zero, HEAD_D, BLOCK_M, DQ_SPLIT, DQ_VEC, DQ_TMA, red_layout)
        elif par == WG:
            # this warpgroup's turn: dQ of block it, with block it + 1's products issued
            # before chunk AHEAD_CHUNK's wgmmas
            mbarrier.wait(ds_bar.index(par), (it // 2) & 1)
            s, dp_next = _dq_turn_ahead(ds_smem, k0_i, k1_i, dq_ptr, dq_desc, row_base, bhq_now,
                                        m0, par, dq_off, dq_zero, kw_i, q_t, vw_i, do_t, nx,
                                        st_zero, col_l, CAUSAL, HEAD_D, BLOCK_M, DQ_SPLIT,
                                        DQ_VEC, DQ_TMA, S_AHEAD, AHEAD_CHUNK, red_layout)
        else:
            s_tok, dp_tok = _next_products(kw_i, q_t, vw_i, do_t, nx, st_zero, col_l, CAUSAL,
                                           S_AHEAD)
            s, dp_next = _retire_next(s_tok, dp_tok, S_AHEAD)
        if S_AHEAD == 2:
            dp = dp_next
        # block it + 2's log2-LSE (and Δ)
        nmb, nbhq = _next_block(mb, bhq, m_first, n_mb)
        nrow = gl.minimum(nbhq, last_bhq).to(gl.int64) * Sq_pad + nmb * BLOCK_M
        lse_c = gl.load(lse2_ptr + nrow + ccols)
        if S_AHEAD == 2:
            delta_c = gl.load(delta_ptr + nrow + ccols)
    return dk, dv


@gluon.jit
def _consumer(WG: gl.constexpr, smem, bars, ptrs, ints, scale_log2, scale,
              HEAD_D: gl.constexpr, BLOCK_M: gl.constexpr, STAGES: gl.constexpr,
              CAUSAL: gl.constexpr, DQ_SPLIT: gl.constexpr, DQ_VEC: gl.constexpr,
              DQ_TMA: gl.constexpr, S_AHEAD: gl.constexpr, AHEAD_CHUNK: gl.constexpr,
              KV_OPAQUE: gl.constexpr, DQ_SHARE: gl.constexpr):
    """One consumer warpgroup (4 warps): keys n0 + 64 WG .. n0 + 64 WG + 63."""
    q_smem, k_smem, v_smem, do_smem, ds_smem = smem
    kv_bar, q_ready, do_ready, qdo_empty, ds_bar = bars
    lse2_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr, dq_desc = ptrs
    kv_bh, n0, qbh0, m_first, n_mb, n_iter, Sk, Sq_pad, GROUP, offset, inv_scale_log2 = ints
    dtype: gl.constexpr = q_smem.dtype

    st_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_M, 16])
    kv_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HEAD_D, 16])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=kv_layout, k_width=2)
    col_l: gl.constexpr = gl.SliceLayout(0, st_layout)  # per query (Sᵀ columns)
    row_l: gl.constexpr = gl.SliceLayout(1, st_layout)  # per key (Sᵀ rows)

    dk = gl.zeros([64, HEAD_D], gl.float32, kv_layout)
    dv = gl.zeros([64, HEAD_D], gl.float32, kv_layout)
    st_zero = gl.zeros([64, BLOCK_M], gl.float32, st_layout)
    DQ_N: gl.constexpr = HEAD_D // DQ_SPLIT
    dq_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, DQ_N, 16])
    DQ_M: gl.constexpr = 64 if DQ_SHARE == 2 else BLOCK_M  # dQ rows a product (dq_rows: 64)
    dq_zero = gl.zeros([DQ_M, DQ_N], gl.float32, dq_layout)
    keys = n0 + WG * 64 + gl.arange(0, 64, layout=row_l)
    red_layout: gl.constexpr = _red_layout(DQ_M, DQ_N, DQ_VEC, dq_layout)
    dq_off = _dq_offsets(red_layout, DQ_M, DQ_N, HEAD_D)
    # offset = Sk - Sq (bottom-right causal: query row i sees key j iff j <= i + offset) and
    # inv_scale_log2 come from the host: kernel arguments live in the constant bank, not in
    # registers

    # log2-LSE and Δ rows of iteration `it`, prefetched one iteration ahead in a compact
    # layout (one value per thread), broadcast over the key rows only where used.
    cl: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    ccols = gl.arange(0, BLOCK_M, layout=cl)
    lse_c = gl.load(lse2_ptr + qbh0.to(gl.int64) * Sq_pad + m_first * BLOCK_M + ccols)
    delta_c = gl.load(delta_ptr + qbh0.to(gl.int64) * Sq_pad + m_first * BLOCK_M + ccols)

    mbarrier.wait(kv_bar, 0)
    if S_AHEAD:
        # the next block's Sᵀ (and dPᵀ) issued before this block's dQ (GLUON_BWD_NOTES.md,
        # "S_AHEAD"); a separate loop, so the default build is unchanged
        dk, dv = _consumer_loop_ahead(
            WG, smem, bars, ptrs, ints, scale_log2, dk, dv, lse_c, delta_c, keys, ccols, dq_off,
            st_zero, dq_zero, HEAD_D, BLOCK_M, STAGES, CAUSAL, DQ_SPLIT, DQ_VEC, DQ_TMA, S_AHEAD,
            AHEAD_CHUNK, st_layout, a_layout, red_layout, KV_OPAQUE)
    else:
        mb = m_first
        bhq = qbh0
        for it in range(n_iter):
            m0, st, ph, q_v, do_v, par, bhq_now, row_base = _iteration(
                it, mb, bhq, q_smem, do_smem, Sq_pad, HEAD_D, BLOCK_M, STAGES)
            mb, bhq, nrow = _advance(mb, bhq, m_first, n_mb, qbh0, GROUP, Sq_pad, BLOCK_M)
            k_w, v_w, k_0, k_1 = _kv_views(k_smem, v_smem, it, WG, HEAD_D, KV_OPAQUE)

            # Sᵀ - log2-LSE / (scale log2e) out of the wgmma, the causal / Sk mask in it too,
            # computed before the products are in flight, when fewer registers are live
            s_init = _s_start(lse_c, ccols, keys, n0, m0, Sk, offset, inv_scale_log2, st_zero,
                              col_l, CAUSAL)
            mbarrier.wait(q_ready.index(st), ph)
            s_tok = warpgroup_mma(k_w, q_v.permute((1, 0)), s_init, is_async=True)
            # dPᵀ - Δ straight out of the wgmma: its accumulator starts at -Δ (per query column)
            dp_init = st_zero - gl.expand_dims(gl.convert_layout(delta_c, col_l), 0)
            mbarrier.wait(do_ready.index(st), ph)
            dp_tok = warpgroup_mma(v_w, do_v.permute((1, 0)), dp_init, is_async=True)
            lse_c = gl.load(lse2_ptr + nrow + ccols)
            delta_c = gl.load(delta_ptr + nrow + ccols)
            s = warpgroup_mma_wait(1, deps=(s_tok, ))
            p = gl.exp2(s * scale_log2)
            dp = warpgroup_mma_wait(0, deps=(dp_tok, ))
            dv, dk = _dkdv(p, dp, dv, dk, q_v, do_v, ds_smem, ds_bar, qdo_empty, par, st, WG,
                           a_layout)
            if DQ_SHARE == 1:
                # every block, this warpgroup's column half of dQ (chunk WG of two)
                mbarrier.wait(ds_bar.index(par), (it // 2) & 1)
                _dq_chunk(ds_smem, k_0, k_1, dq_ptr, dq_desc, row_base, bhq_now, m0, par,
                          dq_off, dq_zero, WG, HEAD_D, BLOCK_M, DQ_SPLIT, DQ_VEC, DQ_TMA,
                          red_layout)
            elif DQ_SHARE == 2:
                # every block, this warpgroup's 64 of the block's 128 query rows of dQ
                mbarrier.wait(ds_bar.index(par), (it // 2) & 1)
                _dq_pair(ds_smem.index(par * 2).slice(64 * WG, 64, dim=0), k_0,
                         ds_smem.index(par * 2 + 1).slice(64 * WG, 64, dim=0), k_1, dq_zero,
                         dq_ptr, dq_desc, row_base + 64 * WG, bhq_now, m0 + 64 * WG, 0, dq_off,
                         HEAD_D, 64, DQ_N, DQ_VEC, DQ_TMA, red_layout)
            elif par == WG:
                # this warpgroup's turn: dQ of the block from both dS halves
                mbarrier.wait(ds_bar.index(par), (it // 2) & 1)
                _dq_turn(ds_smem, k_0, k_1, dq_ptr, dq_desc, row_base, bhq_now, m0, par, dq_off,
                         dq_zero, HEAD_D, BLOCK_M, DQ_SPLIT, DQ_VEC, DQ_TMA, red_layout)

    # ---- epilogue: dK * scale and dV from registers, rows < Sk ----
    kr = n0 + WG * 64 + gl.arange(0, 64, layout=gl.SliceLayout(1, kv_layout))
    cd = gl.arange(0, HEAD_D, layout=gl.SliceLayout(0, kv_layout))
    off = (kv_bh.to(gl.int64) * Sk + gl.expand_dims(kr, 1)) * HEAD_D + gl.expand_dims(cd, 0)
    mask = gl.expand_dims(kr < Sk, 1) & gl.expand_dims(cd < HEAD_D, 0)
    gl.store(dk_ptr + off, (dk * scale).to(dtype), mask=mask)
    gl.store(dv_ptr + off, dv.to(dtype), mask=mask)


# --------------------------------------------------------------------------------------
# HSPLIT (hsplit=1; d256, also built at d128): a 64-key CTA whose two consumer warpgroups
# split the query block for Sᵀ / dPᵀ and the head dim for dK / dV / dQ, so each holds a
# 64 x D/2 half of dK and of dV (d256: 64 + 64 registers a thread instead of 256).
# GLUON_BWD_NOTES.md, "Thirty-seventh session: HSPLIT".
# --------------------------------------------------------------------------------------


@gluon.jit
def _consumer_hsplit(WG: gl.constexpr, smem, bars, ptrs, ints, scale_log2, scale,
                     HEAD_D: gl.constexpr, BLOCK_M: gl.constexpr, STAGES: gl.constexpr,
                     CAUSAL: gl.constexpr, DQ_VEC: gl.constexpr, DQ_SPLIT: gl.constexpr,
                     ROLES: gl.constexpr):
    """One consumer warpgroup of a 64-key CTA (keys n0 .. n0 + 63).  Per query block:

        Sᵀ_w  = K Q_wᵀ,  dPᵀ_w = V dO_wᵀ      query columns QW w .. QW w + QW - 1 (QW = BLOCK_M/2)
        Pᵀ_w, dSᵀ_w -> the parity's P and dS buffers (query rows x key columns), both halves
                        awaited on ds_bar (count 2)
        dV[:, h] += Pᵀ dO[:, h],  dK[:, h] += dSᵀ Q[:, h]   h = head-dim columns DH w .. (SS
                        wgmmas, Pᵀ and dSᵀ read through transposed views of the buffers)
        dQ[:, h]  = dS K[:, h]   in DQ_SPLIT column chunks (64 columns each by default; one
                        chunk of DH with dq_split=1), fp32 atomics into dq_accum

    ROLES (hsplit=2, variants h64r / h64rw; fa3_bwd.cu's d256 SPLIT_D): the two products split
    by role instead of by query half -- warpgroup 0 computes Sᵀ = K Qᵀ and Pᵀ for the whole
    query block, warpgroup 1 dPᵀ = V dOᵀ -- both N = BLOCK_M products instead of two
    N = BLOCK_M / 2 halves of each, so half the shared-memory reads a MAC:

        WG 0: Sᵀ, Pᵀ -> the parity's P buffer; arrives on p_bar and ds_bar
        WG 1: dPᵀ; waits p_bar; Pᵀ read back (in q's dtype: one rounding more than the
              float32 P of the query split); dSᵀ = Pᵀ (dPᵀ - Δ) -> the dS buffer; arrives on
              ds_bar
        both: wait ds_bar, then dV, dK, dQ of their head-dim halves as above

    p_bar[par] / ds_bar[par] are reused every other block: warpgroup 0 writes the P buffer of
    block it + 2 only after its wait on ds_bar of block it + 1, which needs warpgroup 1's
    arrival there, after its read of block it's P and its dV / dK of block it."""
    q_smem, k_smem, v_smem, do_smem, ds_smem = smem
    if ROLES:
        kv_bar, q_ready, do_ready, qdo_empty, ds_bar, p_bar = bars
    else:
        kv_bar, q_ready, do_ready, qdo_empty, ds_bar = bars
    lse2_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr, dq_desc = ptrs
    kv_bh, n0, qbh0, m_first, n_mb, n_iter, Sk, Sq_pad, GROUP, offset, inv_scale_log2 = ints
    dtype: gl.constexpr = q_smem.dtype
    # this warpgroup's query columns of Sᵀ / dPᵀ: its half, or (ROLES) the whole block
    QW: gl.constexpr = BLOCK_M if ROLES else BLOCK_M // 2
    QOFF: gl.constexpr = 0 if ROLES else QW * WG
    DH: gl.constexpr = HEAD_D // 2    # this warpgroup's head-dim columns of dK / dV / dQ
    DQ_N: gl.constexpr = DH // DQ_SPLIT  # dQ chunk (64: a 128-byte swizzle atom of K)

    st_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, QW, 16])
    kv_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, DH, 16])
    dq_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, DQ_N, 16])
    col_l: gl.constexpr = gl.SliceLayout(0, st_layout)
    row_l: gl.constexpr = gl.SliceLayout(1, st_layout)

    dk = gl.zeros([64, DH], gl.float32, kv_layout)
    dv = gl.zeros([64, DH], gl.float32, kv_layout)
    st_zero = gl.zeros([64, QW], gl.float32, st_layout)
    dq_zero = gl.zeros([BLOCK_M, DQ_N], gl.float32, dq_layout)
    keys = n0 + gl.arange(0, 64, layout=row_l)
    red_layout: gl.constexpr = _red_layout(BLOCK_M, DQ_N, DQ_VEC, dq_layout)
    dq_off = _dq_offsets(red_layout, BLOCK_M, DQ_N, HEAD_D)

    cl: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    ccols = gl.arange(0, QW, layout=cl)
    row0 = qbh0.to(gl.int64) * Sq_pad + m_first * BLOCK_M + QOFF
    if ROLES:
        # warpgroup 0 needs the rows' log2-LSE, warpgroup 1 their Δ: one row vector each
        row_ptr = lse2_ptr if WG == 0 else delta_ptr
        row_c = gl.load(row_ptr + row0 + ccols)
    else:
        lse_c = gl.load(lse2_ptr + row0 + ccols)
        delta_c = gl.load(delta_ptr + row0 + ccols)

    mbarrier.wait(kv_bar, 0)
    mb = m_first
    bhq = qbh0
    for it in range(n_iter):
        m0, st, ph, q_v, do_v, par, bhq_now, row_base = _iteration(
            it, mb, bhq, q_smem, do_smem, Sq_pad, HEAD_D, BLOCK_M, STAGES)
        mb, bhq, nrow = _advance(mb, bhq, m_first, n_mb, qbh0, GROUP, Sq_pad, BLOCK_M)
        nrow = nrow + QOFF  # this warpgroup's query columns
        # K and V through an opaque 0: their descriptors rebuilt per iteration (at d256 the
        # hoisted ones spilled 132-220 B)
        kz = _opaque_zero(it)
        k_v = k_smem.index(kz).reshape([64, HEAD_D])
        v_v = v_smem.index(kz).reshape([64, HEAD_D])
        if ROLES:
            p_buf = ds_smem.index(par * 2)
            d_buf = ds_smem.index(par * 2 + 1)
            if WG == 0:
                s_init = _s_start(row_c, ccols, keys, n0, m0, Sk, offset, inv_scale_log2,
                                  st_zero, col_l, CAUSAL, 64)
                mbarrier.wait(q_ready.index(st), ph)
                s_tok = warpgroup_mma(k_v, q_v.permute((1, 0)), s_init, is_async=True)
                row_c = gl.load(row_ptr + nrow + ccols)
                s = warpgroup_mma_wait(0, deps=(s_tok, ))
                p = gl.exp2(s * scale_log2)
                p_buf.permute((1, 0)).store(p.to(dtype))
                fence_async_shared()
                mbarrier.arrive(p_bar.index(par))
                mbarrier.arrive(ds_bar.index(par))
                mbarrier.wait(do_ready.index(st), ph)  # dO: read by this warpgroup's dV
            else:
                dp_init = st_zero - gl.expand_dims(gl.convert_layout(row_c, col_l), 0)
                mbarrier.wait(do_ready.index(st), ph)
                dp_tok = warpgroup_mma(v_v, do_v.permute((1, 0)), dp_init, is_async=True)
                row_c = gl.load(row_ptr + nrow + ccols)
                dp = warpgroup_mma_wait(0, deps=(dp_tok, ))
                mbarrier.wait(p_bar.index(par), (it // 2) & 1)
                ds = p_buf.permute((1, 0)).load(st_layout).to(gl.float32) * dp
                d_buf.permute((1, 0)).store(ds.to(dtype))
                fence_async_shared()
                mbarrier.arrive(ds_bar.index(par))
                mbarrier.wait(q_ready.index(st), ph)  # Q: read by this warpgroup's dK
        else:
            s_init = _s_start(lse_c, ccols, keys, n0, m0 + QOFF, Sk, offset, inv_scale_log2,
                              st_zero, col_l, CAUSAL, 64)
            mbarrier.wait(q_ready.index(st), ph)
            s_tok = warpgroup_mma(k_v, q_v.slice(QOFF, QW, dim=0).permute((1, 0)), s_init,
                                  is_async=True)
            dp_init = st_zero - gl.expand_dims(gl.convert_layout(delta_c, col_l), 0)
            mbarrier.wait(do_ready.index(st), ph)
            dp_tok = warpgroup_mma(v_v, do_v.slice(QOFF, QW, dim=0).permute((1, 0)), dp_init,
                                   is_async=True)
            lse_c = gl.load(lse2_ptr + nrow + ccols)
            delta_c = gl.load(delta_ptr + nrow + ccols)
            s = warpgroup_mma_wait(1, deps=(s_tok, ))
            p = gl.exp2(s * scale_log2)
            dp = warpgroup_mma_wait(0, deps=(dp_tok, ))
            ds = p * dp
            # this warpgroup's query rows of P and dS (the buffers hold query rows x key
            # columns, K-major for dQ = dS K), stored through transposed views
            p_buf = ds_smem.index(par * 2)
            d_buf = ds_smem.index(par * 2 + 1)
            p_buf.slice(QOFF, QW, dim=0).permute((1, 0)).store(p.to(dtype))
            d_buf.slice(QOFF, QW, dim=0).permute((1, 0)).store(ds.to(dtype))
            fence_async_shared()
            mbarrier.arrive(ds_bar.index(par))
        mbarrier.wait(ds_bar.index(par), (it // 2) & 1)  # P and dS both stored
        dv, dk = _hsplit_grads(p_buf, d_buf, q_v, do_v, k_v, dv, dk, dq_zero, qdo_empty, st,
                               dq_ptr, row_base, bhq_now, m0, dq_off, WG, HEAD_D, BLOCK_M,
                               DQ_SPLIT, DQ_VEC, red_layout)
    _hsplit_store(dk, dv, dk_ptr, dv_ptr, kv_bh, n0, Sk, scale, WG, HEAD_D, kv_layout)


@gluon.jit
def _hsplit_grads(p_buf, d_buf, q_v, do_v, k_v, dv, dk, dq_zero, qdo_empty, st, dq_ptr, row_base,
                  bhq_now, m0, dq_off, WG: gl.constexpr, HEAD_D: gl.constexpr,
                  BLOCK_M: gl.constexpr, DQ_SPLIT: gl.constexpr, DQ_VEC: gl.constexpr,
                  red_layout: gl.constexpr):
    """A 64-key HSPLIT CTA's products after the block's P and dS are both stored (query rows
    x key columns): dV[:, h] += Pᵀ dO[:, h], dK[:, h] += dSᵀ Q[:, h] (SS, through transposed
    views) for this warpgroup's head-dim half h; the slot released; dQ[:, h] = dS K[:, h] in
    DQ_SPLIT chunks, the first issued with dV and dK, fp32 atomics.  Returns dv, dk."""
    DH: gl.constexpr = HEAD_D // 2
    DQ_N: gl.constexpr = DH // DQ_SPLIT
    N_CH: gl.constexpr = DQ_SPLIT
    dv_tok = warpgroup_mma(p_buf.permute((1, 0)), do_v.slice(DH * WG, DH, dim=1), dv,
                           is_async=True)
    dk_tok = warpgroup_mma(d_buf.permute((1, 0)), q_v.slice(DH * WG, DH, dim=1), dk,
                           is_async=True)
    q_tok = warpgroup_mma(d_buf, k_v.slice(DH * WG, DQ_N, dim=1), dq_zero, use_acc=False,
                          is_async=True)
    dv, dk = warpgroup_mma_wait(1, deps=(dv_tok, dk_tok))
    mbarrier.arrive(qdo_empty.index(st))  # Q and dO of this slot no longer read
    for h in gl.static_range(N_CH):
        if h > 0:
            q_tok = warpgroup_mma(d_buf, k_v.slice(DH * WG + h * DQ_N, DQ_N, dim=1),
                                  dq_zero, use_acc=False, is_async=True)
        dq = warpgroup_mma_wait(0, deps=(q_tok, ))
        _dq_add(dq, dq_ptr, None, row_base, bhq_now, m0, N_CH * WG + h, dq_off, HEAD_D,
                BLOCK_M, DQ_N, DQ_VEC, 0, red_layout)
    return dv, dk


@gluon.jit
def _hsplit_store(dk, dv, dk_ptr, dv_ptr, kv_bh, n0, Sk, scale, WG: gl.constexpr,
                  HEAD_D: gl.constexpr, kv_layout: gl.constexpr):
    """Epilogue of an HSPLIT warpgroup: its head-dim half of dK * scale and dV, rows < Sk."""
    DH: gl.constexpr = HEAD_D // 2
    kr = n0 + gl.arange(0, 64, layout=gl.SliceLayout(1, kv_layout))
    cd = DH * WG + gl.arange(0, DH, layout=gl.SliceLayout(0, kv_layout))
    off = (kv_bh.to(gl.int64) * Sk + gl.expand_dims(kr, 1)) * HEAD_D + gl.expand_dims(cd, 0)
    mask = gl.expand_dims(kr < Sk, 1) & gl.expand_dims(cd < HEAD_D, 0)
    gl.store(dk_ptr + off, (dk * scale).to(dk_ptr.dtype.element_ty), mask=mask)
    gl.store(dv_ptr + off, dv.to(dv_ptr.dtype.element_ty), mask=mask)


@gluon.jit(do_not_specialize=["Sq", "Sk", "Sq_pad", "Hq", "GROUP"])
def _attn_bwd_kernel(q_desc, k_desc, v_desc, do_desc, dq_desc,
                     lse2_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr,
                     Sq, Sk, Sq_pad, Hq, GROUP, scale_log2, inv_scale_log2, scale,
                     HEAD_D: gl.constexpr, BLOCK_M: gl.constexpr, STAGES: gl.constexpr,
                     CAUSAL: gl.constexpr, CONSUMER_REGS: gl.constexpr,
                     DQ_SPLIT: gl.constexpr, DQ_VEC: gl.constexpr, DQ_TMA: gl.constexpr,
                     S_AHEAD: gl.constexpr, AHEAD_CHUNK: gl.constexpr, HSPLIT: gl.constexpr,
                     KV_OPAQUE: gl.constexpr, DQ_SHARE: gl.constexpr, num_warps: gl.constexpr):
    dtype: gl.constexpr = q_desc.dtype
    NK: gl.constexpr = 64 if HSPLIT else 128  # keys per CTA
    KV_BOXES: gl.constexpr = NK // 64
    n0 = gl.program_id(0) * NK
    kv_bh = gl.program_id(1)
    Hk = Hq // GROUP
    b = kv_bh // Hk
    hk = kv_bh % Hk
    qbh0 = b * Hq + hk * GROUP  # the group's first query head, as a (B*Hq) row

    n_mb = (Sq + BLOCK_M - 1) // BLOCK_M
    if CAUSAL:  # the first query row that sees key n0 is n0 - (Sk - Sq)
        m_first = gl.maximum(n0 - (Sk - Sq), 0) // BLOCK_M
    else:
        m_first = n0 * 0
    n_iter = GROUP * (n_mb - m_first)

    q_smem = gl.allocate_shared_memory(dtype, [STAGES, 1, BLOCK_M, HEAD_D], q_desc.layout)
    do_smem = gl.allocate_shared_memory(dtype, [STAGES, 1, BLOCK_M, HEAD_D], do_desc.layout)
    k_smem = gl.allocate_shared_memory(dtype, [KV_BOXES, 1, 64, HEAD_D], k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [KV_BOXES, 1, 64, HEAD_D], v_desc.layout)
    ds_layout: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16,
                                                   rank=2)
    # [parity*2 + wg]: the dS halves; HSPLIT: [parity*2] P, [parity*2 + 1] dS
    ds_smem = gl.allocate_shared_memory(dtype, [4, BLOCK_M, 64], ds_layout)
    kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    q_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    do_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    qdo_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    ds_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    mbarrier.init(kv_bar, count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(q_ready.index(i), count=1)  # the producer's arrive.expect_tx
        mbarrier.init(do_ready.index(i), count=1)
        mbarrier.init(qdo_empty.index(i), count=2)  # one arrive per consumer warpgroup
    for i in gl.static_range(2):
        mbarrier.init(ds_bar.index(i), count=2)  # both dS halves stored

    smem = (q_smem, k_smem, v_smem, do_smem, ds_smem)
    bars = (kv_bar, q_ready, do_ready, qdo_empty, ds_bar)
    ptrs = (lse2_ptr, delta_ptr, dq_ptr, dk_ptr, dv_ptr, dq_desc)  # dq_desc: None unless DQ_TMA
    cints = (kv_bh, n0, qbh0, m_first, n_mb, n_iter, Sk, Sq_pad, GROUP, Sk - Sq, inv_scale_log2)
    pints = (kv_bh, n0, qbh0, m_first, n_mb, n_iter)
    descs = (q_desc, k_desc, v_desc, do_desc)
    if HSPLIT:
        if HSPLIT == 2:
            p_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
            for i in gl.static_range(2):
                mbarrier.init(p_bar.index(i), count=1)  # warpgroup 0's P stored
            hbars = (kv_bar, q_ready, do_ready, qdo_empty, ds_bar, p_bar)
        else:
            hbars = bars
        gl.warp_specialize([
            (_consumer_hsplit, (0, smem, hbars, ptrs, cints, scale_log2, scale, HEAD_D, BLOCK_M,
                                STAGES, CAUSAL, DQ_VEC, DQ_SPLIT, HSPLIT == 2)),
            (_consumer_hsplit, (1, smem, hbars, ptrs, cints, scale_log2, scale, HEAD_D, BLOCK_M,
                                STAGES, CAUSAL, DQ_VEC, DQ_SPLIT, HSPLIT == 2)),
            (_producer, (descs, smem, bars, pints, BLOCK_M, STAGES, KV_BOXES)),
        ], [4, 1], [CONSUMER_REGS, 24])
    else:
        gl.warp_specialize([
            (_consumer, (0, smem, bars, ptrs, cints, scale_log2, scale, HEAD_D, BLOCK_M, STAGES,
                         CAUSAL, DQ_SPLIT, DQ_VEC, DQ_TMA, S_AHEAD, AHEAD_CHUNK, KV_OPAQUE,
                         DQ_SHARE)),
            (_consumer, (1, smem, bars, ptrs, cints, scale_log2, scale, HEAD_D, BLOCK_M, STAGES,
                         CAUSAL, DQ_SPLIT, DQ_VEC, DQ_TMA, S_AHEAD, AHEAD_CHUNK, KV_OPAQUE,
                         DQ_SHARE)),
            (_producer, (descs, smem, bars, pints, BLOCK_M, STAGES, KV_BOXES)),
        ], [4, 1], [CONSUMER_REGS, 24])


# --------------------------------------------------------------------------------------
# Pre- and post-passes (plain Triton)
# --------------------------------------------------------------------------------------


@triton.jit
def _bwd_pre_kernel(o_ptr, do_ptr, lse_ptr, delta_ptr, lse2_ptr, Sq, Sq_pad,
                    D: tl.constexpr, ROWS: tl.constexpr):
    """Δ = rowsum(dO ∘ O) (fp32) and LSE·log2e into (B·Hq, Sq_pad); padding rows and rows
    with LSE = -inf get Δ = 0 and +inf (so P = 0 there)."""
    bh = tl.program_id(1)
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    c = tl.arange(0, D)
    valid = r < Sq
    base = bh.to(tl.int64) * Sq * D
    offs = base + r[:, None] * D + c[None, :]
    o = tl.load(o_ptr + offs, mask=valid[:, None], other=0.0).to(tl.float32)
    do = tl.load(do_ptr + offs, mask=valid[:, None], other=0.0).to(tl.float32)
    delta = tl.sum(o * do, axis=1)
    lse = tl.load(lse_ptr + bh.to(tl.int64) * Sq + r, mask=valid, other=float("-inf"))
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
    out = bh.to(tl.int64) * Sq_pad + r
    inb = r < Sq_pad
    tl.store(delta_ptr + out, tl.where(valid, delta, 0.0), mask=inb)
    tl.store(lse2_ptr + out, lse2, mask=inb)


@triton.jit
def _dq_post_kernel(acc_ptr, dq_ptr, Sq, Sq_pad, scale, D: tl.constexpr, ROWS: tl.constexpr):
    """dq = dq_accum[:, :Sq] · scale in dq's dtype."""
    bh = tl.program_id(1)
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    c = tl.arange(0, D)
    valid = r < Sq
    a = tl.load(acc_ptr + bh.to(tl.int64) * Sq_pad * D + r[:, None] * D + c[None, :],
                mask=valid[:, None], other=0.0)
    tl.store(dq_ptr + bh.to(tl.int64) * Sq * D + r[:, None] * D + c[None, :],
             (a * scale).to(dq_ptr.dtype.element_ty), mask=valid[:, None])


# --------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------


def resolve_config(head_dim, *, variant=None, block_m=None, stages=None, dq_split=None,
                   dq_vec=None, dq_tma=None, s_ahead=None, ahead_chunk=None, hsplit=None,
                   kv_opaque=None, dq_cols=None, dq_rows=None):
    """The kernel's constexprs for a variant name plus overrides; raises ValueError."""
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"gluon backward: head dim {head_dim} not in {HEAD_DIMS}")
    name = variant or DEFAULT_VARIANTS[head_dim]
    if name not in VARIANTS:
        raise ValueError(f"variant={variant!r} not in {sorted(VARIANTS)}")
    v = dict(VARIANTS[name])
    for key, val in (("block_m", block_m), ("stages", stages), ("dq_split", dq_split),
                     ("dq_vec", dq_vec), ("dq_tma", dq_tma), ("s_ahead", s_ahead),
                     ("ahead_chunk", ahead_chunk), ("hsplit", hsplit), ("kv_opaque", kv_opaque),
                     ("dq_cols", dq_cols), ("dq_rows", dq_rows)):
        if val is not None:  # an override; a key in v means "set", not defaulted
            v[key] = val
    hs = v.get("hsplit", 0)
    if isinstance(hs, bool) or hs not in (0, 1, 2):
        raise ValueError(f"hsplit={hs!r} (0: warpgroups split the keys, 1: the query block and "
                         "the head dim, 2: Sᵀ / dPᵀ by role and the head dim)")
    opq = v.get("kv_opaque", 0)
    if isinstance(opq, bool) or opq not in (0, 1):
        raise ValueError(f"kv_opaque={opq!r} (1: K and V's wgmma descriptors rebuilt per "
                         "iteration)")
    if hs:
        if "kv_opaque" in v:
            raise ValueError(f"kv_opaque does not apply with hsplit={hs} (it always rebuilds "
                             "them)")
        return _resolve_hsplit(head_dim, v)
    if head_dim == 256:
        raise ValueError("head dim 256 needs hsplit=1 (variant 'h64'): dK and dV of 64 keys x "
                         "256 columns exceed 240 registers a thread")
    bm = v["block_m"]
    if bm not in (64, 128):
        raise ValueError(f"block_m={bm} (64 or 128)")
    if bm == 128 and head_dim != 64:
        raise ValueError(f"block_m=128 needs head dim 64 (registers: dK, dV, Sᵀ, dPᵀ of 64 keys "
                         f"x 128 queries at d{head_dim} exceed 240 per thread)")
    dqs = v.get("dq_split") or (2 if head_dim == 128 else 1)
    if dqs not in (1, 2) or (dqs == 2 and head_dim != 128):
        raise ValueError(f"dq_split={dqs} (1, or 2 at d128 only: the K column slice must fall "
                         "on a 128-byte swizzle atom)")
    if v["stages"] < 1:
        raise ValueError(f"stages={v['stages']}")
    dqv = v.get("dq_vec", 2)
    if isinstance(dqv, bool) or dqv not in DQ_VECS:
        raise ValueError(f"dq_vec={dqv!r} not in {DQ_VECS} (fp32 per dQ atomic: 1 scalar "
                         "inline asm, 2 the wgmma layout's column pairs, 4 after an intra-warp "
                         "layout change)")
    tma_on = v.get("dq_tma", 0)
    if isinstance(tma_on, bool) or tma_on not in (0, 1):
        raise ValueError(f"dq_tma={tma_on!r} (0: dQ by atomics, 1: by a TMA bulk reduce)")
    if tma_on and "dq_vec" in v:
        raise ValueError(f"dq_tma=1 with dq_vec={dqv}: the TMA bulk reduce has no atomic "
                         "width; set one of them")
    if tma_on and _ir is None:
        raise ValueError(f"dq_tma=1: triton {triton.__version__} lacks the private API it uses")
    ahead = v.get("s_ahead", 0)
    if isinstance(ahead, bool) or ahead not in S_AHEADS:
        raise ValueError(f"s_ahead={ahead!r} not in {S_AHEADS} (the next block's products issued "
                         "before this block's dQ: 0 none, 1 Sᵀ, 2 Sᵀ and dPᵀ)")
    if ahead == 2 and head_dim != 64:
        raise ValueError(f"s_ahead=2 needs head dim 64 (registers: the next Sᵀ and dPᵀ held "
                         f"beside dK, dV and a dQ chunk at d{head_dim} spill about 1.7 KB and "
                         "ptxas serialises the wgmmas); use s_ahead=1")
    # the dQ chunk before whose wgmmas they are issued: by default the last one (d128: the
    # second of two, where the first chunk's accumulators are dead and the registers fit)
    # (-1: issued and retired before the turn, in both warpgroups -- a diagnostic placement
    # with no wgmma in the turn's if-arms but dQ's, and nothing left under the atomics;
    # -2: issued before the turn's branch, retired inside each arm)
    chunk = v.get("ahead_chunk", dqs - 1)
    if isinstance(chunk, bool) or chunk not in range(-2, dqs):
        raise ValueError(f"ahead_chunk={chunk!r} not in {tuple(range(-2, dqs))} (a dQ chunk "
                         f"index, dq_split={dqs}; -1: before the turn, retired there; -2: "
                         "issued before the turn's branch, retired in each arm)")
    if "ahead_chunk" in v and not ahead:
        raise ValueError(f"ahead_chunk={chunk} with s_ahead=0: set s_ahead=1 or 2")
    cols = v.get("dq_cols", 0)
    if isinstance(cols, bool) or cols not in (0, 1):
        raise ValueError(f"dq_cols={cols!r} (1: each warpgroup adds its column half of dQ "
                         "every block)")
    if cols and (dqs != 2 or ahead):
        raise ValueError(f"dq_cols=1 needs dq_split=2 (head dim 128: two 64-column halves) "
                         f"and s_ahead=0, got dq_split={dqs}, s_ahead={ahead}")
    rows = v.get("dq_rows", 0)
    if isinstance(rows, bool) or rows not in (0, 1):
        raise ValueError(f"dq_rows={rows!r} (1: each warpgroup adds dQ of its 64 of the "
                         "block's 128 query rows every block)")
    if rows and (bm != 128 or ahead or cols or tma_on):
        raise ValueError(f"dq_rows=1 needs block_m=128 (head dim 64: two 64-row halves), "
                         f"s_ahead=0, dq_cols=0 and dq_tma=0; got block_m={bm}, "
                         f"s_ahead={ahead}, dq_cols={cols}, dq_tma={tma_on}")
    smem = _smem_bytes(v["stages"], bm, head_dim, BLOCK_N)
    if v.get("dq_tma"):  # each consumer's fp32 staging copy of its dQ chunk
        smem += 2 * 4 * bm * (head_dim // dqs)
    if smem > 232448:
        raise ValueError(f"shared memory {smem} B > 227 KB (d{head_dim}, block_m={bm}, "
                         f"stages={v['stages']})")
    # 4 + 4 + 1 warps -> 12 (Triton rounds to warpgroups); maxnreg 168 = 504 / 3 and
    # setmaxnreg gives 240 + 240 + 24 (the producer's warpgroup).
    return dict(HEAD_D=head_dim, BLOCK_M=bm, STAGES=v["stages"], CONSUMER_REGS=240,
                DQ_SPLIT=dqs, DQ_VEC=dqv, DQ_TMA=tma_on, S_AHEAD=ahead,
                AHEAD_CHUNK=chunk if ahead else 0, HSPLIT=0, KV_OPAQUE=opq,
                DQ_SHARE=2 if rows else cols,
                num_warps=4, maxnreg=168, smem_estimate=smem)


def _smem_bytes(stages, block_m, head_dim, keys):
    """Shared memory of a build (16-bit): the Q / dO ring, K and V of the CTA's keys, the four
    BLOCK_M x 64 dS buffers, and 1 KB for barriers and alignment."""
    return 2 * (2 * stages * block_m * head_dim + 2 * keys * head_dim + 4 * block_m * 64) + 1024


def _resolve_hsplit(head_dim, v):
    """resolve_config for hsplit=1 and 2 (the products split by query half / by role): block_m
    64, each warpgroup's dQ columns (half the head dim) in 64-column chunks, or in one with
    dq_split=1; 2-wide or 4-wide atomics; the knobs of the key-split loop (dq_tma, s_ahead,
    dq_cols) are refused."""
    hs = v["hsplit"]
    if head_dim not in HSPLIT_DIMS:
        raise ValueError(f"hsplit={hs} needs head dim in {HSPLIT_DIMS} (each warpgroup's half "
                         f"of the head dim must be a multiple of 64), got {head_dim}")
    for knob in ("dq_tma", "s_ahead", "ahead_chunk", "dq_cols", "dq_rows"):
        if v.get(knob):
            raise ValueError(f"{knob}={v[knob]} does not apply with hsplit={hs} (dQ goes by "
                             "atomics, each warpgroup its head-dim half; no S_AHEAD loop)")
    chunks = (head_dim // 2) // 64
    dqs = v.get("dq_split", chunks)
    if isinstance(dqs, bool) or dqs not in (1, chunks):
        allowed = f"{chunks} (64-column chunks of each warpgroup's half) or 1 (one product)"
        raise ValueError(f"dq_split={dqs!r} with hsplit={hs} at d{head_dim}: "
                         + (allowed if chunks > 1 else "1 only (each warpgroup's half is one "
                            "64-column chunk)"))
    if v["block_m"] != 64:
        raise ValueError(f"block_m={v['block_m']} with hsplit={hs} (64 only: a 64-key CTA's "
                         "products and buffers are built for 64 query rows)")
    if v["stages"] < 1:
        raise ValueError(f"stages={v['stages']}")
    dqv = v.get("dq_vec", 2)
    if isinstance(dqv, bool) or dqv not in (2, 4):
        raise ValueError(f"dq_vec={dqv!r} with hsplit={hs} (2 or 4)")
    bm = 64
    smem = _smem_bytes(v["stages"], bm, head_dim, 64)  # dS buffers: P and dS of two parities
    if smem > 232448:
        raise ValueError(f"shared memory {smem} B > 227 KB (d{head_dim}, hsplit={hs}, "
                         f"stages={v['stages']})")
    return dict(HEAD_D=head_dim, BLOCK_M=bm, STAGES=v["stages"], CONSUMER_REGS=240,
                DQ_SPLIT=dqs, DQ_VEC=dqv, DQ_TMA=0, S_AHEAD=0, AHEAD_CHUNK=0, HSPLIT=hs,
                KV_OPAQUE=1, DQ_SHARE=0, num_warps=4, maxnreg=168, smem_estimate=smem)


#: resolve_config's entries that are the kernel's constexpr arguments (CAUSAL comes from the
#: call): one list for the launcher and compile_offline, so a new knob reaches both.
_KERNEL_CONSTEXPRS = ("HEAD_D", "BLOCK_M", "STAGES", "CONSUMER_REGS", "DQ_SPLIT", "DQ_VEC",
                      "DQ_TMA", "S_AHEAD", "AHEAD_CHUNK", "HSPLIT", "KV_OPAQUE", "DQ_SHARE",
                      "num_warps")


def _kernel_constexprs(cfg, causal):
    return dict({key: cfg[key] for key in _KERNEL_CONSTEXPRS}, CAUSAL=bool(causal))


def _check_args(q, k, v, o, do, lse):
    import torch
    for name, t in (("q", q), ("k", k), ("v", v), ("o", o), ("do", do), ("lse", lse)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    for name, t in (("q", q), ("k", k), ("v", v), ("o", o), ("do", do)):
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D (B, H, S, D), got shape {tuple(t.shape)}")
    B, Hq, Sq, D = q.shape
    Bk, Hk, Sk, Dk = k.shape
    if v.shape != k.shape:
        raise ValueError(f"v shape {tuple(v.shape)} != k shape {tuple(k.shape)}")
    if Bk != B or Dk != D:
        raise ValueError(f"k shape {tuple(k.shape)} does not match q shape {tuple(q.shape)}")
    if o.shape != q.shape:
        raise ValueError(f"o shape {tuple(o.shape)} != q shape {tuple(q.shape)}")
    if do.shape != q.shape:
        raise ValueError(f"do shape {tuple(do.shape)} != q shape {tuple(q.shape)}")
    if Hk == 0 or Hq % Hk:
        raise ValueError(f"q heads Hq={Hq} must be a multiple of k heads Hk={Hk}")
    if min(B, Hq, Sq, Sk) == 0:
        raise ValueError(f"empty problem: q {tuple(q.shape)}, k {tuple(k.shape)}")
    if q.dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"q dtype {q.dtype}: fp16 or bf16 only")
    for name, t in (("k", k), ("v", v), ("o", o), ("do", do)):
        if t.dtype != q.dtype:
            raise ValueError(f"{name} dtype {t.dtype} != q dtype {q.dtype}")
    if lse.shape != (B, Hq, Sq) or lse.dtype != torch.float32:
        raise ValueError(f"lse must be float32 (B, Hq, Sq) = {(B, Hq, Sq)}, got "
                         f"{lse.dtype} {tuple(lse.shape)}")
    for name, t in (("q", q), ("k", k), ("v", v), ("o", o), ("do", do), ("lse", lse)):
        if not t.is_contiguous():
            raise ValueError(f"{name} is not contiguous; this prototype builds 3-D TMA "
                             "descriptors over the (B*H, S, D) view only")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device}, q on {q.device}")
        if t.data_ptr() % 16:
            raise ValueError(f"{name} is not 16-byte aligned")
    return B, Hq, Sq, D, Hk, Sk


def gluon_attention_bwd(q, k, v, o, do, lse, *, causal=False, softmax_scale=None, dq=None,
                        dk=None, dv=None, variant=None, **knobs):
    """dQ, dK, dV of O = softmax(scale · Q Kᵀ) V given dO.

    q, o, do: (B, Hq, Sq, D); k, v: (B, Hk, Sk, D); contiguous, bf16 or fp16, D in
    (64, 128, 256) (d256: the HSPLIT build, variant "h64");
    lse: float32 (B, Hq, Sq), natural log, from the forward (-inf for rows that see no key:
    they get zero gradient).  causal: bottom-right aligned (row i sees key j iff
    j <= i + Sk - Sq).  GQA/MQA: Hq a multiple of Hk; dK, dV sum over each group's heads.
    dq/dk/dv: optional preallocated contiguous outputs (like q / k / v).
    variant: a key of VARIANTS (default "m64"); knobs: block_m, stages, dq_split, dq_vec
    (fp32 per dQ atomic: 1, 2 (default) or 4), dq_tma (1: dQ by a TMA bulk reduce), s_ahead
    (the next block's products issued before this block's dQ: 0 (default), 1 Sᵀ, 2 Sᵀ and
    dPᵀ), dq_cols (1, d128: each warpgroup adds its column half of dQ every block instead of
    the whole dQ every other block), dq_rows (1, block_m=128: its row half)."""
    import torch

    ok, why = gluon_available()
    if not ok:
        raise RuntimeError(f"gluon backward unavailable: {why}")
    B, Hq, Sq, D, Hk, Sk = _check_args(q, k, v, o, do, lse)
    unknown = set(knobs) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown knob(s) {sorted(unknown)} ({', '.join(KNOBS)})")
    gdt = gl_dtype(q.dtype, "gluon backward")
    cfg = resolve_config(D, variant=variant, **knobs)
    scale = float(softmax_scale) if softmax_scale is not None else 1.0 / math.sqrt(D)
    if not math.isfinite(scale) or not scale > 0.0:
        raise ValueError(f"softmax_scale must be finite and > 0, got {softmax_scale}")
    for name, t, like in (("dq", dq, q), ("dk", dk, k), ("dv", dv, v)):
        if t is not None and (t.shape != like.shape or t.dtype != like.dtype
                              or not t.is_contiguous() or t.device != like.device):
            raise ValueError(f"{name} must be a contiguous {like.dtype} tensor of shape "
                             f"{tuple(like.shape)} on {like.device}")
    dq = dq if dq is not None else torch.empty_like(q)
    dk = dk if dk is not None else torch.empty_like(k)
    dv = dv if dv is not None else torch.empty_like(v)

    bm = cfg["BLOCK_M"]
    n_mb = triton.cdiv(Sq, bm)
    sq_pad = n_mb * bm
    dev = q.device
    delta = torch.empty((B * Hq, sq_pad), device=dev, dtype=torch.float32)
    lse2 = torch.empty((B * Hq, sq_pad), device=dev, dtype=torch.float32)
    dq_acc = torch.zeros((B * Hq, sq_pad, D), device=dev, dtype=torch.float32)
    pre_rows = 64
    _bwd_pre_kernel[(triton.cdiv(sq_pad, pre_rows), B * Hq)](
        o, do, lse, delta, lse2, Sq, sq_pad, D=D, ROWS=pre_rows, num_warps=4)

    q_desc = _desc3(q, bm, D, gdt)
    do_desc = _desc3(do, bm, D, gdt)
    k_desc = _desc3(k, KW, D, gdt)
    v_desc = _desc3(v, KW, D, gdt)
    dq_desc = None  # a constexpr None in the kernel unless the bulk-reduce experiment is on
    if cfg["DQ_TMA"]:
        dq_desc = _desc3(dq_acc.view(B, Hq, sq_pad, D), bm, D // cfg["DQ_SPLIT"], gl.float32)
    grid = (triton.cdiv(Sk, 64 if cfg["HSPLIT"] else BLOCK_N), B * Hk)
    _LAST["kernel"] = _attn_bwd_kernel[grid](
        q_desc, k_desc, v_desc, do_desc, dq_desc, lse2, delta, dq_acc, dk, dv,
        Sq, Sk, sq_pad, Hq, Hq // Hk, scale * _LOG2E, 1.0 / (scale * _LOG2E), scale,
        **_kernel_constexprs(cfg, causal), maxnreg=cfg["maxnreg"])
    _dq_post_kernel[(triton.cdiv(Sq, 64), B * Hq)](dq_acc, dq, Sq, sq_pad, scale, D=D, ROWS=64,
                                                   num_warps=4)
    return dq, dk, dv


# --------------------------------------------------------------------------------------
# Offline compilation (no GPU): used by gluon_bwd_check.py --compile-only and the notes.
# --------------------------------------------------------------------------------------


def compile_offline(head_dim, dtype="bf16", causal=False, aligned=True, **knobs):
    """Compile the Gluon kernel for sm90 without a GPU; returns the CompiledKernel.

    aligned: specialise the five pointer arguments on 16-byte alignment
    (``tt.divisibility = 16``), as the JIT does at a launch whose tensors are 16-byte aligned
    (Triton 3.6's ``native_specialize_impl`` gives ('*fp32', 'D') for them, and nothing for
    the TMA descriptors; the launcher's lse2, Δ and dq_accum are fresh torch allocations).
    The dQ atomics' width depends on it: without it every atomic is scalar.  aligned=False
    is what the compile table of the first sessions measured."""
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    gdt = {"bf16": gl.bfloat16, "fp16": gl.float16}[dtype]
    cfg = resolve_config(head_dim, **knobs)
    bm = cfg["BLOCK_M"]
    ql = gl.NVMMASharedLayout.get_default_for([1, bm, head_dim], gdt)
    kl = gl.NVMMASharedLayout.get_default_for([1, KW, head_dim], gdt)
    sig = {
        "q_desc": f"tensordesc<{dtype}[1, {bm}, {head_dim}],{ql!r}>",
        "k_desc": f"tensordesc<{dtype}[1, {KW}, {head_dim}],{kl!r}>",
        "v_desc": f"tensordesc<{dtype}[1, {KW}, {head_dim}],{kl!r}>",
        "do_desc": f"tensordesc<{dtype}[1, {bm}, {head_dim}],{ql!r}>",
        "dq_desc": "constexpr",
        "lse2_ptr": "*fp32", "delta_ptr": "*fp32", "dq_ptr": "*fp32",
        "dk_ptr": f"*{dtype}", "dv_ptr": f"*{dtype}",
        "Sq": "i32", "Sk": "i32", "Sq_pad": "i32", "Hq": "i32", "GROUP": "i32",
        "scale_log2": "fp32", "inv_scale_log2": "fp32", "scale": "fp32",
    }
    constexprs = _kernel_constexprs(cfg, causal)
    if cfg["DQ_TMA"]:
        dn = head_dim // cfg["DQ_SPLIT"]
        dl = gl.NVMMASharedLayout.get_default_for([1, bm, dn], gl.float32)
        sig["dq_desc"] = f"tensordesc<fp32[1, {bm}, {dn}],{dl!r}>"
    else:
        constexprs["dq_desc"] = None
    for name in constexprs:
        sig[name] = "constexpr"
    sig = {name: sig[name] for name in _attn_bwd_kernel.arg_names}  # the kernel's order
    names = list(sig)
    attrs = {(names.index(a), ): [["tt.divisibility", 16]] for a in sig
             if aligned and sig[a].startswith("*")}
    src = GluonASTSource(fn=_attn_bwd_kernel, signature=sig, constexprs=constexprs,
                         attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": cfg["num_warps"], "maxnreg": cfg["maxnreg"]})
