"""FlashAttention forward for Hopper (sm90) in Gluon -- a prototype (GLUON_NOTES.md).

What plain Triton cannot say and this kernel does (FlashAttention-3's structure):

* a producer partition (1 warp, 24 registers after ``setmaxnreg``) that issues TMA loads of
  Q once and of K and V into a ``STAGES``-deep shared-memory ring, with a ready/empty
  mbarrier pair per slot and per tensor (K and V separate, so S = Q Kᵀ may start before V
  has landed);
* consumer partitions doing async ``warpgroup_mma`` (wgmma): S = Q Kᵀ from shared memory,
  O += P V with P in registers (the accumulator of S, rounded to 16 bits and converted to
  the A-operand layout), the online softmax in base 2 on the accumulator registers;
* ``OVERLAP``: FA3's intra-warpgroup overlap -- S_j and P_{j-1} V_{j-1} are issued
  back to back, softmax(S_j) runs while P_{j-1} V_{j-1} is in flight;
* ``CONSUMERS=2``: two consumer warpgroups (the default partition and a 4-warp worker,
  240 registers each), each owning 64 rows of a 128-row query tile and sharing the K/V
  ring; ``PINGPONG`` makes them take turns issuing their products (two mbarriers used
  as a token), so one warpgroup's softmax runs under the other's wgmmas;
* ``CONSUMERS=3`` (``pp3``): a 192-row tile, three such warpgroups (160 registers each),
  the turn passed round robin;
* ``PERSISTENT`` (``pp-persistent``): one CTA per SM walking the tiles, the ring position
  and ping-pong parity carried across tiles, Q double-buffered where it fits, so the
  producer loads the next tile while the consumers finish this one;
* ``DYNAMIC`` (``pp-dynamic``): the persistent grid's tiles after the first wave drawn from
  an atomic counter by the producer and handed to the consumers with their Q, so unequal
  causal tiles balance themselves (the counter left at zero by each launch's last CTA).

Scope: dense (B, H, S, D) q/k/v, contiguous or with the heads of a position adjacent
((B, S, H, D) memory, packed QKV), fp16/bf16, D in {64, 128} (256 with
block_n=64 and two stages, see notes), non-causal or causal aligned bottom-right (row i sees
key j when j <= i + Sk - Sq), GQA (Hq a multiple of Hk).  Outputs O (q's dtype) and LSE
(float32, natural log); a row that sees no key gets O = 0 and LSE = -inf.

Tails: every descriptor is 3-D with a box of (1, rows, D), over the (B*H, S, D) view of a
contiguous tensor or the (B, S, H*D) view of one whose heads are adjacent (a head's rows
start at [b, 0, h*D]; ``_gluon_common.row_mode``), so the hardware bounds-checks S per
(batch, head) either way: rows past S are zero-filled on loads and dropped on stores, a
block never reads the next head's rows, and O rows past Sq are never written.
Keys past Sk (zeros after the fill) are still masked to -inf in the last block.

The module imports without torch or a GPU (the kernel compiles offline, see
``compile_offline``); the host launcher needs both.
"""

from __future__ import annotations

import functools
import math

import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from ._gluon_common import IMPORT_ERROR as _IMPORT_ERROR  # noqa: F401  (ops reads it)
from ._gluon_common import LOG2E as _LOG2E
from ._gluon_common import (  # noqa: F401  (gluon_available, row_mode: this module's API)
    fence_async_shared,
    gl_dtype,
    gluon_available,
    mbarrier,
    row_desc,
    row_mode,
    tma,
    tma_load as _tma_load,
    tma_store as _tma_store,
    thread_barrier as _thread_barrier,
    warpgroup_mma,
    warpgroup_mma_wait,
)

_LN2 = 0.6931471805599453
_LAST = {}  # the last launched CompiledKernel (gluon_check.py reads n_regs / n_spills)


# --------------------------------------------------------------------------------------
# Variants: the kernel's knobs, by name (gluon_check.py --variants takes these names).
# --------------------------------------------------------------------------------------

VARIANTS = {
    # one consumer partition of 8 warps (two warpgroups in lock step, 128 rows), no overlap:
    # the simplest pipeline, the fallback.
    "simple": dict(consumers=1, consumer_warps=8, overlap=False, pingpong=False),
    # the same with FA3's intra-warpgroup overlap (S_j issued with P_{j-1} V_{j-1}).
    "overlap": dict(consumers=1, consumer_warps=8, overlap=True, pingpong=False),
    # two consumer partitions (64 rows each, 240 regs each), intra-WG overlap, no ping-pong.
    "ws2": dict(consumers=2, consumer_warps=4, overlap=True, pingpong=False),
    # the same with ping-pong turns between the two consumers (FA3's schedule).
    "pp": dict(consumers=2, consumer_warps=4, overlap=True, pingpong=True),
    # three consumer partitions of 64 rows (a 192-row tile, 160 regs each), turns passed
    # round robin: more softmax to hide each GEMM under (hopper-fa3's m192 tile at d64).
    "pp3": dict(consumers=3, consumer_warps=4, overlap=True, pingpong=True),
    # pp on a persistent grid (one CTA per SM walking the tiles; the producer loads the next
    # tile's Q and K/V while the consumers finish this one): for short sequences.
    "pp-persistent": dict(consumers=2, consumer_warps=4, overlap=True, pingpong=True,
                          persistent=True),
    "pp3-persistent": dict(consumers=3, consumer_warps=4, overlap=True, pingpong=True,
                           persistent=True),
    # pp-persistent taking its tiles from an atomic counter (the first wave static): a CTA
    # that finishes early takes the next tile, so unequal causal tiles balance themselves
    # (the static round robin lost 2-6 % causal, 27 % at d128 causal 16k; s36).
    "pp-dynamic": dict(consumers=2, consumer_warps=4, overlap=True, pingpong=True,
                       persistent=True, dynamic=True),
    # pp-dynamic with three consumers (a 192-row tile, 160 + 168 registers): FA3's d64 shape
    # (kBlockM 192, three MMA warpgroups) on the dynamic grid.  The one-CTA-a-tile pp3 spills
    # 140-224 B at d64; this build 0 (causal) / 20 B (non-causal).  GLUON_NOTES.md, "Fortieth
    # session"
    "pp3-dynamic": dict(consumers=3, consumer_warps=4, overlap=True, pingpong=True,
                        persistent=True, dynamic=True),
}
DEFAULT_VARIANT = "pp"


def parse_spec(spec):
    """``"pp3:block_n=64"`` -> ``("pp3", {"block_n": 64})``: a variant name and integer
    knobs for ``gluon_attention_fwd`` (ValueError names what is wrong)."""
    name, *parts = str(spec).strip().split(":")
    if name not in VARIANTS:
        raise ValueError(f"gluon variant {spec!r}: the name must be one of {sorted(VARIANTS)}")
    knobs = {}
    for part in parts:
        key, eq, val = part.partition("=")
        if not eq or key in ("variant", "out", "lse_out") or not val.lstrip("-").isdigit():
            raise ValueError(f"gluon variant {spec!r}: knobs are key=integer, got {part!r}")
        knobs[key] = int(val)
    return name, knobs


# --------------------------------------------------------------------------------------
# Device code
# --------------------------------------------------------------------------------------


@gluon.jit
def _mask_block(s, j, n_full, row0, Sq, Sk, CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr,
                ROWS: gl.constexpr, s_layout: gl.constexpr):
    """S block j with the keys a row may not see at -inf (blocks j >= n_full only): key col
    is kept when col <= limit(row), limit = min(row + Sk - Sq, Sk - 1) if causal, Sk - 1
    otherwise."""
    if j >= n_full:
        cols = j * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        rows = row0 + gl.arange(0, ROWS, layout=gl.SliceLayout(1, s_layout))
        if CAUSAL:
            limit = gl.minimum(rows + (Sk - Sq), Sk - 1)
        else:
            limit = gl.full([ROWS], 0, gl.int32, gl.SliceLayout(1, s_layout)) + (Sk - 1)
        keep = gl.expand_dims(cols, 0) <= gl.expand_dims(limit, 1)
        s = gl.where(keep, s, -float("inf"))
    return s


@gluon.jit
def _softmax_block(s, m_i, l_i, j, n_full, row0, Sq, Sk, qk_scale,
                   CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr, ROWS: gl.constexpr,
                   s_layout: gl.constexpr, EXP_POLY: gl.constexpr = 0,
                   MAX_TREE: gl.constexpr = False):
    """Online-softmax step on one S block (fp32, wgmma accumulator layout).

    Returns p = exp2(s * qk_scale - m_new) (fp32, same layout), the new row max and sum,
    and alpha = exp2(m_old - m_new) for rescaling O.  Blocks j >= n_full are masked
    (``_mask_block``).  Fully masked rows keep m = -inf; the subtraction then uses 0 so
    p = alpha = 0 and no NaN appears (exp2(-inf - -inf))."""
    s = _mask_block(s, j, n_full, row0, Sq, Sk, CAUSAL, BLOCK_N, ROWS, s_layout)
    if MAX_TREE:
        m_blk = gl.convert_layout(_row_max_tree(s, BLOCK_N), gl.SliceLayout(1, s_layout))
        m_new = gl.maximum(m_i, m_blk * qk_scale)
    else:
        m_new = gl.maximum(m_i, gl.max(s, axis=1) * qk_scale)
    p, l_new, alpha = _exp_block(s, m_i, m_new, l_i, qk_scale, EXP_POLY)
    return p, m_new, l_new, alpha


# 2^f on f in [-1/2, 1/2], degree 3, fitted for the least largest relative error (7.5e-5:
# a fiftieth of bf16's and a sixth of fp16's rounding of P); float32 bit patterns for PTX.
EXP2_POLY = (0.9999281, 0.69326097, 0.24261014, 0.05517115)
_EXP2_POLY_BITS = ("0f3F7FFB4A", "0f3F31798D", "0f3E786ECB", "0f3D61FB25")


def exp2_mix_ptx(n):
    """PTX for ``_exp2_mix`` (``gluon_check.run_exp2_mix_ptx`` executes it on the CPU):
    outputs $0..$n-1, inputs $n..$2n-1; the first n - 1 by ``ex2.approx.ftz`` (MUFU.EX2, as
    ``gl.exp2``), the last by the polynomial on the FMA pipe: t = x + 1.5·2^23 rounds x to
    the integer j in t's low bits, f = x - j, 2^f by Horner, j added to the exponent field
    (two's complement: j < 0 borrows correctly).  x < -126 (-inf: masked keys, fully masked
    rows) gives exactly 0, NaN stays NaN (max.NaN)."""
    n = int(n)
    c0, c1, c2, c3 = _EXP2_POLY_BITS
    lines = [f"ex2.approx.ftz.f32 ${i}, ${n + i};" for i in range(n - 1)]
    x, o = f"${2 * n - 1}", f"${n - 1}"
    lines.append(
        "{ .reg .b32 t, j, f, p, z; .reg .pred q; "
        f"add.rn.f32 t, {x}, 0f4B400000; sub.rn.f32 j, t, 0f4B400000; "
        f"sub.rn.f32 f, {x}, j; fma.rn.f32 p, f, {c3}, {c2}; fma.rn.f32 p, p, f, {c1}; "
        f"fma.rn.f32 p, p, f, {c0}; shl.b32 t, t, 23; add.s32 p, p, t; "
        f"setp.ge.f32 q, {x}, 0fC2FC0000; max.NaN.f32 z, {x}, 0f00000000; "
        f"selp.b32 {o}, p, z, q; }}")
    return " ".join(lines)


_exp2_mix_asm = gluon.constexpr_function(exp2_mix_ptx)


@gluon.constexpr_function
def _exp2_mix_constraints(n):
    """n 32-bit outputs, then n 32-bit inputs."""
    return ",".join(["=r"] * int(n) + ["r"] * int(n))


@gluon.jit
def _exp2_mix(x, N: gl.constexpr):
    """exp2(x) for x <= 0 (fp32, any layout whose per-thread count N divides): in every group
    of N of a thread's elements, N - 1 on MUFU.EX2 and one on the FMA pipe (FlashAttention-4's
    split).  At d64 the softmax's MUFU.EX2 (16 a clock an SM) takes as long as its block's
    wgmmas; the polynomial's 10 FMA-pipe instructions move 1/N of that work off it.  Relative
    error <= 7.5e-5 on the polynomial's elements.  Measured on the H100 (GLUON_NOTES,
    thirty-ninth session): no gain at N = 8 or 16, so no shipped variant uses it."""
    return gl.inline_asm_elementwise(_exp2_mix_asm(N), _exp2_mix_constraints(N), [x],
                                     dtype=gl.float32, is_pure=True, pack=N)


@gluon.jit
def _half_max(x, W: gl.constexpr):
    """x (ROWS, W) -> (ROWS, W / 2): the upper half of the columns against the lower."""
    lo, hi = gl.split(gl.permute(gl.reshape(x, [x.shape[0], 2, W // 2]), (0, 2, 1)))
    return gl.maximum(lo, hi)


@gluon.jit
def _row_max_tree(x, COLS: gl.constexpr):
    """max over axis 1 of x (ROWS, COLS), a wgmma accumulator, as a tree: halves against
    halves while a thread holds both (column bit 0 and bits 3.. are registers, bits 1-2
    lanes), then ``gl.max`` over the last 8 columns.  ``gl.max`` alone folds a thread's 32
    columns of a row in one chain of 31 dependent FMNMX under Triton 3.6 (a tree itself
    under 3.9); this tree is 4 levels deep.  Measured on the H100 under 3.6 (GLUON_NOTES,
    thirty-ninth session): 1-11 % slower than the chain at d64, so no shipped variant uses it."""
    if COLS >= 128:
        x = _half_max(x, 128)
    if COLS >= 64:
        x = _half_max(x, 64)
    if COLS >= 32:
        x = _half_max(x, 32)
    if COLS >= 16:
        x = _half_max(x, 16)
    return gl.max(x, axis=1)


@gluon.jit
def _exp_block(s, m_i, m_new, l_i, qk_scale, EXP_POLY: gl.constexpr = 0):
    """p = exp2(s * qk_scale - m_new), the new row sum and alpha = exp2(m_old - m_new); a row
    whose max is still -inf subtracts 0 (p = alpha = 0, no NaN).  EXP_POLY = n > 0: one
    element in n of p by the FMA-pipe polynomial (``_exp2_mix``)."""
    m_use = gl.where(m_new == -float("inf"), 0.0, m_new)
    x = s * qk_scale - gl.expand_dims(m_use, 1)
    if EXP_POLY > 0:
        p = _exp2_mix(x, EXP_POLY)
    else:
        p = gl.exp2(x)
    alpha = gl.exp2(m_i - m_use)
    return p, l_i * alpha + gl.sum(p, axis=1), alpha


@gluon.jit
def _softmax_block_lazy(s, m_i, l_i, j, n_full, row0, Sq, Sk, qk_scale,
                        CAUSAL: gl.constexpr, BLOCK_N: gl.constexpr, ROWS: gl.constexpr,
                        s_layout: gl.constexpr, LAZY: gl.constexpr,
                        EXP_POLY: gl.constexpr = 0):
    """``_softmax_block`` that moves the row maxima only when one of the partition's rows
    grew by more than LAZY (base-2 units): returns ``grow`` too, a scalar the same for every
    thread of the partition (a reduction over its ROWS rows), and when it is 0 the caller
    skips O's rescale (alpha is 1 for every row).  Exact: p = exp2(s·c − m) with a stale m
    is at most 2^LAZY (no overflow in fp32, nor in P's 16 bits), and O and l carry the same
    stale m, which the final O / l and LSE = m + log2 l cancel (FlashAttention-4's
    conditional rescale)."""
    s = _mask_block(s, j, n_full, row0, Sq, Sk, CAUSAL, BLOCK_N, ROWS, s_layout)
    m_cand = gl.maximum(m_i, gl.max(s, axis=1) * qk_scale)
    # -inf + LAZY is -inf: a row's first finite block always counts as growth
    grow = gl.max((m_cand > m_i + LAZY).to(gl.int32), axis=0)
    m_new = gl.where(grow > 0, m_cand, m_i)
    p, l_new, alpha = _exp_block(s, m_i, m_new, l_i, qk_scale, EXP_POLY)
    return p, m_new, l_new, alpha, grow


@gluon.jit
def _slot(j, STAGES: gl.constexpr):
    """Ring slot of key block j and the parity its barriers are at."""
    return j % STAGES, (j // STAGES) & 1


@gluon.jit
def _take_turn(pp_mine, pp_phase, PINGPONG: gl.constexpr):
    """Ping-pong: wait for this warpgroup's turn to issue; the next turn's parity."""
    if PINGPONG:
        mbarrier.wait(pp_mine, pp_phase)
        pp_phase = pp_phase ^ 1
    return pp_phase


@gluon.jit
def _pass_turn(pp_other, PINGPONG: gl.constexpr):
    """Ping-pong: the other warpgroup's turn."""
    if PINGPONG:
        mbarrier.arrive(pp_other)


@gluon.jit
def _tile_geom(pid_m, bh, Sq, Sk, Hq, GROUP, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
               CAUSAL: gl.constexpr):
    """A query tile's first row, its K/V (batch, head), and the key blocks it visits:
    [0, n_blocks), of which blocks < n_full need no mask."""
    m0 = pid_m * BLOCK_M
    b = bh // Hq
    hq = bh % Hq
    kv_bh = b * (Hq // GROUP) + hq // GROUP
    if CAUSAL:
        kv_end = gl.minimum(Sk, gl.minimum(m0 + BLOCK_M, Sq) + (Sk - Sq))
        kv_end = gl.maximum(kv_end, 0)
        n_full = gl.minimum(gl.maximum(m0 + (Sk - Sq) + 1, 0) // BLOCK_N, Sk // BLOCK_N)
    else:
        kv_end = Sk
        n_full = Sk // BLOCK_N
    n_blocks = (kv_end + BLOCK_N - 1) // BLOCK_N
    return m0, kv_bh, n_blocks, n_full


@gluon.jit
def _persistent_tile(t, n_m, REVERSE_M: gl.constexpr):
    """Tile t of the persistent schedule: query tiles of one (batch, head) are consecutive
    (CTAs running at the same time share K/V in L2), longest first when causal."""
    pid_m = t % n_m
    if REVERSE_M:
        pid_m = n_m - 1 - pid_m
    return pid_m, t // n_m


@gluon.jit
def _publish_tile(tiles, q_bar, q_empty, qi, qph, t, WITH_Q: gl.constexpr):
    """DYNAMIC, producer: tile index t into Q buffer qi's slot once its consumer released the
    buffer; WITH_Q: Q's barrier arrival (its expect) publishes it, else (t past the last tile:
    the consumers' stop) a plain arrival does.  Every lane stores the same t and the warp
    syncs before the one lane's arrival (a release), so the consumer's wait sees it."""
    one: gl.constexpr = gl.BlockedLayout([1], [32], [1], [0])
    mbarrier.wait(q_empty.index(qi), qph ^ 1)
    tiles.index(qi).store(gl.full([1], t, gl.int32, one))
    _thread_barrier()
    if not WITH_Q:
        mbarrier.arrive(q_bar.index(qi))


@gluon.jit
def _take_tile(tiles, q_bar, qi, qph, NW: gl.constexpr):
    """DYNAMIC, consumer: the tile index the producer published in Q buffer qi's slot (its
    Q barrier's phase qph waited for: Q is in, or the index says stop)."""
    one: gl.constexpr = gl.BlockedLayout([1], [32], [NW], [0])
    mbarrier.wait(q_bar.index(qi), qph)
    return gl.max(tiles.index(qi).load(one), axis=0)


@gluon.jit
def _head_at(bh, H, HEAD_D: gl.constexpr, BS: gl.constexpr):
    """The first and last TMA coordinates of (batch, head) bh's rows (the middle one is the
    row): [bh, row, 0] over the (B*H, S, D) view, or (BS) [b, row, h*D] over (B, S, H*D)
    (``_gluon_common.row_mode``)."""
    if BS:
        x0 = bh // H
        x2 = (bh % H) * HEAD_D
    else:
        x0 = bh
        x2 = bh * 0
    return x0, x2


@gluon.jit
def _consumer_tile(WG: gl.constexpr, q_buf3, q_bar, q_phase, k_smem, v_smem, bars, o_desc,
                   lse_ptr, bh, o_x, row0, Sq, Sk, n_blocks, n_full, g, pp_phase, qk_scale,
                   HEAD_D: gl.constexpr, BLOCK_N: gl.constexpr, ROWS: gl.constexpr,
                   STAGES: gl.constexpr, NW: gl.constexpr, CAUSAL: gl.constexpr,
                   OVERLAP: gl.constexpr, PINGPONG: gl.constexpr, SPLIT_WAIT: gl.constexpr,
                   CONSUMERS: gl.constexpr, LAZY: gl.constexpr,
                   EXP_POLY: gl.constexpr, MAX_TREE: gl.constexpr):
    """One consumer partition's work on one query tile: ROWS query rows from row0, Q in
    q_buf3 once q_bar reaches q_phase, key blocks at ring positions g, g + 1, ...  O leaves
    through q_buf3 (TMA store at [o_x[0], row, o_x[1]], its reads of q_buf3 waited for).
    Returns the ping-pong parity for the next turn."""
    k_ready, k_empty, v_ready, v_empty, pp_bars = bars
    dtype: gl.constexpr = q_buf3.dtype

    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[NW, 1], instr_shape=[16, BLOCK_N, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[NW, 1], instr_shape=[16, HEAD_D, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    srow: gl.constexpr = gl.SliceLayout(1, s_layout)
    orow: gl.constexpr = gl.SliceLayout(1, o_layout)

    q = q_buf3.reshape([ROWS, HEAD_D])

    m_i = gl.full([ROWS], -float("inf"), gl.float32, srow)
    l_i = gl.full([ROWS], 0.0, gl.float32, srow)
    acc = gl.zeros([ROWS, HEAD_D], gl.float32, o_layout)
    s_zero = gl.zeros([ROWS, BLOCK_N], gl.float32, s_layout)
    pp_mine = pp_bars.index(WG)
    pp_other = pp_bars.index((WG + 1) % CONSUMERS)

    mbarrier.wait(q_bar, q_phase)
    if n_blocks > 0:
        if OVERLAP:
            # ---- prologue: S_0 and its softmax -------------------------------------
            fst, fph = _slot(g, STAGES)
            mbarrier.wait(k_ready.index(fst), fph)
            pp_phase = _take_turn(pp_mine, pp_phase, PINGPONG)
            s_tok = warpgroup_mma(q, k_smem.index(fst).reshape([BLOCK_N, HEAD_D]).permute((1, 0)),
                                  s_zero, use_acc=False, is_async=True)
            _pass_turn(pp_other, PINGPONG)
            s = warpgroup_mma_wait(0, deps=(s_tok, ))
            mbarrier.arrive(k_empty.index(fst))
            p, m_i, l_i, alpha = _softmax_block(s, m_i, l_i, 0, n_full, row0, Sq, Sk, qk_scale,
                                                CAUSAL, BLOCK_N, ROWS, s_layout, EXP_POLY,
                                                MAX_TREE)
            p16 = gl.convert_layout(p.to(dtype), p_layout)
            # ---- steady state: S_j with P_{j-1} V_{j-1} in flight ------------------
            for j in range(1, n_blocks):
                st, ph = _slot(g + j, STAGES)
                pst, pph = _slot(g + j - 1, STAGES)
                mbarrier.wait(k_ready.index(st), ph)
                pp_phase = _take_turn(pp_mine, pp_phase, PINGPONG)
                s_tok = warpgroup_mma(q, k_smem.index(st).reshape([BLOCK_N, HEAD_D]).permute((1, 0)),
                                      s_zero, use_acc=False, is_async=True)
                mbarrier.wait(v_ready.index(pst), pph)
                o_tok = warpgroup_mma(p16, v_smem.index(pst).reshape([BLOCK_N, HEAD_D]), acc,
                                      is_async=True)
                _pass_turn(pp_other, PINGPONG)
                s = warpgroup_mma_wait(1, deps=(s_tok, ))
                mbarrier.arrive(k_empty.index(st))
                if LAZY > 0:
                    p, m_i, l_i, alpha, grow = _softmax_block_lazy(
                        s, m_i, l_i, j, n_full, row0, Sq, Sk, qk_scale, CAUSAL, BLOCK_N, ROWS,
                        s_layout, LAZY, EXP_POLY)
                    if grow > 0:
                        acc, p16 = warpgroup_mma_wait(0, deps=(o_tok, p16))
                        acc = acc * gl.expand_dims(gl.convert_layout(alpha, orow), 1)
                    else:  # no row moved its max: O stays as it is
                        acc, p16, p = warpgroup_mma_wait(0, deps=(o_tok, p16, p))
                else:
                    p, m_i, l_i, alpha = _softmax_block(s, m_i, l_i, j, n_full, row0, Sq, Sk,
                                                        qk_scale, CAUSAL, BLOCK_N, ROWS, s_layout,
                                                        EXP_POLY, MAX_TREE)
                    if SPLIT_WAIT:
                        # ptxas hoists a lone wait_group 0 above the exps (GLUON_NOTES.md); a
                        # branch boundary pins it.  The host rejects scale <= 0, so the else arm
                        # never runs; it would be exact for qk_scale == 0 (every alpha is 1).
                        if qk_scale != 0.0:
                            acc, p16 = warpgroup_mma_wait(0, deps=(o_tok, p16))
                            acc = acc * gl.expand_dims(gl.convert_layout(alpha, orow), 1)
                        else:
                            # a different dep list, so LLVM does not merge the two waits and
                            # hoist them above the branch
                            acc, p16, p = warpgroup_mma_wait(0, deps=(o_tok, p16, p))
                    else:
                        acc, p16 = warpgroup_mma_wait(0, deps=(o_tok, p16))
                        acc = acc * gl.expand_dims(gl.convert_layout(alpha, orow), 1)
                mbarrier.arrive(v_empty.index(pst))
                p16 = gl.convert_layout(p.to(dtype), p_layout)
            # ---- epilogue: the last P V --------------------------------------------
            lst, lph = _slot(g + n_blocks - 1, STAGES)
            mbarrier.wait(v_ready.index(lst), lph)
            pp_phase = _take_turn(pp_mine, pp_phase, PINGPONG)
            o_tok = warpgroup_mma(p16, v_smem.index(lst).reshape([BLOCK_N, HEAD_D]), acc,
                                  is_async=True)
            _pass_turn(pp_other, PINGPONG)
            acc, p16 = warpgroup_mma_wait(0, deps=(o_tok, p16))
            mbarrier.arrive(v_empty.index(lst))
        else:
            # ---- simple: S, softmax, P V, each product waited for before the next ----
            for j in range(n_blocks):
                st, ph = _slot(g + j, STAGES)
                mbarrier.wait(k_ready.index(st), ph)
                pp_phase = _take_turn(pp_mine, pp_phase, PINGPONG)
                s_tok = warpgroup_mma(q, k_smem.index(st).reshape([BLOCK_N, HEAD_D]).permute((1, 0)),
                                      s_zero, use_acc=False, is_async=True)
                _pass_turn(pp_other, PINGPONG)
                s = warpgroup_mma_wait(0, deps=(s_tok, ))
                mbarrier.arrive(k_empty.index(st))
                p, m_i, l_i, alpha = _softmax_block(s, m_i, l_i, j, n_full, row0, Sq, Sk, qk_scale,
                                                    CAUSAL, BLOCK_N, ROWS, s_layout, EXP_POLY,
                                                    MAX_TREE)
                acc = acc * gl.expand_dims(gl.convert_layout(alpha, orow), 1)
                p16 = gl.convert_layout(p.to(dtype), p_layout)
                mbarrier.wait(v_ready.index(st), ph)
                o_tok = warpgroup_mma(p16, v_smem.index(st).reshape([BLOCK_N, HEAD_D]), acc,
                                      is_async=True)
                acc, p16 = warpgroup_mma_wait(0, deps=(o_tok, p16))
                mbarrier.arrive(v_empty.index(st))

    # ---- epilogue: normalise, LSE (natural log), O through the Q buffer + TMA store ----
    empty = l_i == 0.0
    l_safe = gl.where(empty, 1.0, l_i)
    lse = gl.where(empty, -float("inf"), (m_i + gl.log2(l_safe)) * 0.6931471805599453)
    rows = row0 + gl.arange(0, ROWS, layout=srow)
    gl.store(lse_ptr + bh.to(gl.int64) * Sq + rows, lse, mask=rows < Sq)
    o = acc * gl.expand_dims(gl.convert_layout(1.0 / l_safe, orow), 1)
    q.store(o.to(dtype))  # all wgmma reads of Q retired (waited above)
    fence_async_shared()
    _tma_store(o_desc, [o_x[0], row0, o_x[1]], q_buf3)
    tma.store_wait(0)
    return pp_phase


@gluon.jit
def _consumer(WG: gl.constexpr, smem, bars, o_desc, lse_ptr, ints, qk_scale,
              HEAD_D: gl.constexpr, BLOCK_N: gl.constexpr, ROWS: gl.constexpr,
              STAGES: gl.constexpr, NW: gl.constexpr, CAUSAL: gl.constexpr,
              OVERLAP: gl.constexpr, PINGPONG: gl.constexpr, SPLIT_WAIT: gl.constexpr,
              CONSUMERS: gl.constexpr, PERSISTENT: gl.constexpr, Q_BUFS: gl.constexpr,
              REVERSE_M: gl.constexpr, O_BS: gl.constexpr, LAZY: gl.constexpr,
              EXP_POLY: gl.constexpr, MAX_TREE: gl.constexpr, DYNAMIC: gl.constexpr):
    """One consumer partition: ROWS query rows (ROWS = 16 * NW), rows WG*ROWS.. of each
    tile: the CTA's one tile, or (PERSISTENT) tiles pid, pid + grid, ... -- or (DYNAMIC)
    the tiles the producer publishes with their Q -- with the K/V ring position and the
    ping-pong parity carried from tile to tile, and Q in Q_BUFS buffers (q_ready / q_empty
    per buffer and consumer) so the producer loads the next tile's Q while this one runs."""
    q_smem, k_smem, v_smem, tiles = smem
    q_bar, q_empty, k_ready, k_empty, v_ready, v_empty, pp_bars = bars
    Sq, Sk, Hq, GROUP, n_m, n_tiles = ints
    ring = (k_ready, k_empty, v_ready, v_empty, pp_bars)
    BLOCK_M: gl.constexpr = ROWS * CONSUMERS
    # ping-pong token, passed round robin WG0 -> WG1 (-> WG2) -> WG0: WG0 goes first (a
    # fresh mbarrier passes a wait on parity 1), the others wait for their first pass.
    pp_phase = 1 if WG == 0 else 0
    if PERSISTENT:
        g = 0
        it = 0
        if DYNAMIC:
            t = _take_tile(tiles, q_bar, WG, 0, NW)
        else:
            t = gl.program_id(0)
        while t < n_tiles:
            pid_m, bh = _persistent_tile(t, n_m, REVERSE_M)
            m0, kv_bh, n_blocks, n_full = _tile_geom(pid_m, bh, Sq, Sk, Hq, GROUP, BLOCK_M,
                                                     BLOCK_N, CAUSAL)
            qi = (it % Q_BUFS) * CONSUMERS + WG
            o_x = _head_at(bh, Hq, HEAD_D, O_BS)
            pp_phase = _consumer_tile(WG, q_smem.index(qi), q_bar.index(qi),
                                      (it // Q_BUFS) & 1, k_smem, v_smem, ring, o_desc,
                                      lse_ptr, bh, o_x, m0 + WG * ROWS, Sq, Sk, n_blocks, n_full,
                                      g, pp_phase, qk_scale, HEAD_D, BLOCK_N, ROWS, STAGES,
                                      NW, CAUSAL, OVERLAP, PINGPONG, SPLIT_WAIT, CONSUMERS,
                                      LAZY, EXP_POLY, MAX_TREE)
            mbarrier.arrive(q_empty.index(qi))  # O's TMA store has read the buffer
            g += n_blocks
            it += 1
            if DYNAMIC:
                t = _take_tile(tiles, q_bar, (it % Q_BUFS) * CONSUMERS + WG,
                               (it // Q_BUFS) & 1, NW)
            else:
                t += gl.num_programs(0)
    else:
        pid_m = gl.program_id(0)
        bh = gl.program_id(1)
        if REVERSE_M:  # causal: the longest tiles first
            pid_m = gl.num_programs(0) - 1 - pid_m
        m0, kv_bh, n_blocks, n_full = _tile_geom(pid_m, bh, Sq, Sk, Hq, GROUP, BLOCK_M,
                                                 BLOCK_N, CAUSAL)
        o_x = _head_at(bh, Hq, HEAD_D, O_BS)
        _consumer_tile(WG, q_smem.index(WG), q_bar.index(0), 0, k_smem, v_smem, ring, o_desc,
                       lse_ptr, bh, o_x, m0 + WG * ROWS, Sq, Sk, n_blocks, n_full, 0, pp_phase,
                       qk_scale, HEAD_D, BLOCK_N, ROWS, STAGES, NW, CAUSAL, OVERLAP, PINGPONG,
                       SPLIT_WAIT, CONSUMERS, LAZY, EXP_POLY, MAX_TREE)


@gluon.jit
def _produce_kv(k_desc, v_desc, k_smem, v_smem, k_ready, k_empty, v_ready, v_empty, kv_bh,
                Hk, n_blocks, g, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
                HEAD_D: gl.constexpr, K_BS: gl.constexpr, V_BS: gl.constexpr):
    """K_j and V_j of one tile into ring positions g + j, each slot once its consumers
    released it (a fresh mbarrier passes a wait on parity 1: the first STAGES are free)."""
    k0, k2 = _head_at(kv_bh, Hk, HEAD_D, K_BS)
    v0, v2 = _head_at(kv_bh, Hk, HEAD_D, V_BS)
    for j in range(n_blocks):
        st, ph = _slot(g + j, STAGES)
        mbarrier.wait(k_empty.index(st), ph ^ 1)
        mbarrier.expect(k_ready.index(st), k_desc.block_type.nbytes)
        _tma_load(k_desc, [k0, j * BLOCK_N, k2], k_ready.index(st), k_smem.index(st))
        mbarrier.wait(v_empty.index(st), ph ^ 1)
        mbarrier.expect(v_ready.index(st), v_desc.block_type.nbytes)
        _tma_load(v_desc, [v0, j * BLOCK_N, v2], v_ready.index(st), v_smem.index(st))


@gluon.jit
def _producer(descs, smem, bars, ints, tile_ctr,
              BLOCK_N: gl.constexpr, ROWS: gl.constexpr, STAGES: gl.constexpr,
              CONSUMERS: gl.constexpr, CAUSAL: gl.constexpr, PERSISTENT: gl.constexpr,
              Q_BUFS: gl.constexpr, REVERSE_M: gl.constexpr, HEAD_D: gl.constexpr,
              Q_BS: gl.constexpr, K_BS: gl.constexpr, V_BS: gl.constexpr,
              DYNAMIC: gl.constexpr):
    """1 warp: each tile's Q, then its K_j and V_j into the ring, in the consumers' order.
    DYNAMIC: after the first tile (pid), tile grid + atomic_add(tile_ctr, 1), its index
    published with its Q; an index past the last tile, published alone, stops the consumers.
    The n_tiles draws of a launch leave tile_ctr[0] at n_tiles, tile_ctr[1] counts the CTAs
    done drawing, and the last of them puts both back to 0."""
    q_desc, k_desc, v_desc = descs
    q_smem, k_smem, v_smem, tiles = smem
    q_bar, q_empty, k_ready, k_empty, v_ready, v_empty, pp_bars = bars
    Sq, Sk, Hq, GROUP, n_m, n_tiles = ints
    BLOCK_M: gl.constexpr = ROWS * CONSUMERS
    if PERSISTENT:
        g = 0
        it = 0
        t = gl.program_id(0)
        while t < n_tiles:
            pid_m, bh = _persistent_tile(t, n_m, REVERSE_M)
            m0, kv_bh, n_blocks, n_full = _tile_geom(pid_m, bh, Sq, Sk, Hq, GROUP, BLOCK_M,
                                                     BLOCK_N, CAUSAL)
            qph = (it // Q_BUFS) & 1
            q0, q2 = _head_at(bh, Hq, HEAD_D, Q_BS)
            for c in gl.static_range(CONSUMERS):
                qi = (it % Q_BUFS) * CONSUMERS + c
                if DYNAMIC:
                    _publish_tile(tiles, q_bar, q_empty, qi, qph, t, True)
                else:
                    mbarrier.wait(q_empty.index(qi), qph ^ 1)
                mbarrier.expect(q_bar.index(qi), q_desc.block_type.nbytes)
                _tma_load(q_desc, [q0, m0 + c * ROWS, q2], q_bar.index(qi), q_smem.index(qi))
            _produce_kv(k_desc, v_desc, k_smem, v_smem, k_ready, k_empty, v_ready, v_empty,
                        kv_bh, Hq // GROUP, n_blocks, g, BLOCK_N, STAGES, HEAD_D, K_BS, V_BS)
            g += n_blocks
            it += 1
            if DYNAMIC:
                t = gl.num_programs(0) + gl.atomic_add(tile_ctr, 1, sem="relaxed")
            else:
                t += gl.num_programs(0)
        if DYNAMIC:
            for c in gl.static_range(CONSUMERS):
                _publish_tile(tiles, q_bar, q_empty, (it % Q_BUFS) * CONSUMERS + c,
                              (it // Q_BUFS) & 1, t, False)
            # Every CTA draws exactly one index past the last tile; the last to finish
            # drawing (tile_ctr[1], acq_rel: after every CTA's draws) zeroes both counts
            # for the next launch on this stream, so the launcher needs no memset.
            done = gl.atomic_add(tile_ctr + 1, 1, sem="acq_rel")
            if done == gl.num_programs(0) - 1:
                gl.atomic_xchg(tile_ctr, 0, sem="relaxed")
                gl.atomic_xchg(tile_ctr + 1, 0, sem="relaxed")
    else:
        pid_m = gl.program_id(0)
        bh = gl.program_id(1)
        if REVERSE_M:
            pid_m = gl.num_programs(0) - 1 - pid_m
        m0, kv_bh, n_blocks, n_full = _tile_geom(pid_m, bh, Sq, Sk, Hq, GROUP, BLOCK_M,
                                                 BLOCK_N, CAUSAL)
        mbarrier.expect(q_bar.index(0), CONSUMERS * q_desc.block_type.nbytes)
        q0, q2 = _head_at(bh, Hq, HEAD_D, Q_BS)
        for c in gl.static_range(CONSUMERS):
            _tma_load(q_desc, [q0, m0 + c * ROWS, q2], q_bar.index(0), q_smem.index(c))
        _produce_kv(k_desc, v_desc, k_smem, v_smem, k_ready, k_empty, v_ready, v_empty,
                    kv_bh, Hq // GROUP, n_blocks, 0, BLOCK_N, STAGES, HEAD_D, K_BS, V_BS)


@gluon.jit(do_not_specialize=["Sq", "Sk", "Hq", "GROUP", "n_m", "n_tiles"])  # one build per (D, causal, dtype, knobs)
def _attn_fwd_kernel(q_desc, k_desc, v_desc, o_desc, lse_ptr, tile_ctr,
                     Sq, Sk, Hq, GROUP, n_m, n_tiles, qk_scale,
                     HEAD_D: gl.constexpr, BLOCK_N: gl.constexpr, ROWS: gl.constexpr,
                     CONSUMERS: gl.constexpr, STAGES: gl.constexpr, CAUSAL: gl.constexpr,
                     OVERLAP: gl.constexpr, PINGPONG: gl.constexpr, REVERSE_M: gl.constexpr,
                     CONSUMER_REGS: gl.constexpr, SPLIT_WAIT: gl.constexpr,
                     PERSISTENT: gl.constexpr, Q_BUFS: gl.constexpr,
                     Q_BS: gl.constexpr, K_BS: gl.constexpr, V_BS: gl.constexpr,
                     O_BS: gl.constexpr, LAZY: gl.constexpr, EXP_POLY: gl.constexpr,
                     MAX_TREE: gl.constexpr, DYNAMIC: gl.constexpr,
                     num_warps: gl.constexpr):
    """Grid (n_m query tiles, B*Hq), or (PERSISTENT) (min(n_tiles, SMs),) walking the
    n_tiles = n_m * B * Hq tiles.  X_BS: tensor X's descriptor is over the (B, S, H*D)
    view (``_gluon_common.row_mode`` "bs"), else over (B*H, S, D).  LAZY > 0: O is rescaled
    only when a row's max grew by more than LAZY (``_softmax_block_lazy``).  DYNAMIC
    (PERSISTENT only): tiles after the first wave come from the int32 counts tile_ctr[0:2]
    (zero at launch, zero again at exit; None otherwise); their indices pass through
    ``tiles``."""
    dtype: gl.constexpr = q_desc.dtype
    # Q buffers: one per consumer, and Q_BUFS sets of them when persistent; their barriers
    # (q_bar: loaded, q_empty: O stored from it) one per buffer, or one q_bar for all when not.
    QN: gl.constexpr = Q_BUFS * CONSUMERS if PERSISTENT else CONSUMERS
    QB: gl.constexpr = QN if PERSISTENT else 1
    q_smem = gl.allocate_shared_memory(dtype, [QN, 1, ROWS, HEAD_D], q_desc.layout)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, 1, BLOCK_N, HEAD_D], k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES, 1, BLOCK_N, HEAD_D], v_desc.layout)
    q_bar = gl.allocate_shared_memory(gl.int64, [QB, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [QB, 1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    PP_N: gl.constexpr = 3 if CONSUMERS == 3 else 2
    pp_bars = gl.allocate_shared_memory(gl.int64, [PP_N, 1], mbarrier.MBarrierLayout())
    if DYNAMIC:  # one tile index per Q buffer, published with its Q
        tiles = gl.allocate_shared_memory(gl.int32, [QN, 1],
                                          gl.SwizzledSharedLayout(1, 1, 1, order=[0]))
    else:
        tiles = q_bar  # not read
    for i in gl.static_range(QB):
        mbarrier.init(q_bar.index(i), count=1)
        if PERSISTENT:
            mbarrier.init(q_empty.index(i), count=1)  # its consumer's arrive
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)  # the producer's arrive.expect_tx
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(k_empty.index(i), count=CONSUMERS)  # one arrive per consumer partition
        mbarrier.init(v_empty.index(i), count=CONSUMERS)
    for i in gl.static_range(PP_N):
        mbarrier.init(pp_bars.index(i), count=1)

    smem = (q_smem, k_smem, v_smem, tiles)
    bars = (q_bar, q_empty, k_ready, k_empty, v_ready, v_empty, pp_bars)
    ints = (Sq, Sk, Hq, GROUP, n_m, n_tiles)
    descs = (q_desc, k_desc, v_desc)
    if CONSUMERS == 3:
        gl.warp_specialize([
            (_consumer, (0, smem, bars, o_desc, lse_ptr, ints, qk_scale, HEAD_D, BLOCK_N, ROWS,
                         STAGES, num_warps, CAUSAL, OVERLAP, PINGPONG, SPLIT_WAIT, CONSUMERS,
                         PERSISTENT, Q_BUFS, REVERSE_M, O_BS, LAZY, EXP_POLY, MAX_TREE,
                         DYNAMIC)),
            (_consumer, (1, smem, bars, o_desc, lse_ptr, ints, qk_scale, HEAD_D, BLOCK_N, ROWS,
                         STAGES, 4, CAUSAL, OVERLAP, PINGPONG, SPLIT_WAIT, CONSUMERS,
                         PERSISTENT, Q_BUFS, REVERSE_M, O_BS, LAZY, EXP_POLY, MAX_TREE,
                         DYNAMIC)),
            (_consumer, (2, smem, bars, o_desc, lse_ptr, ints, qk_scale, HEAD_D, BLOCK_N, ROWS,
                         STAGES, 4, CAUSAL, OVERLAP, PINGPONG, SPLIT_WAIT, CONSUMERS,
                         PERSISTENT, Q_BUFS, REVERSE_M, O_BS, LAZY, EXP_POLY, MAX_TREE,
                         DYNAMIC)),
            (_producer, (descs, smem, bars, ints, tile_ctr, BLOCK_N, ROWS, STAGES, CONSUMERS,
                         CAUSAL, PERSISTENT, Q_BUFS, REVERSE_M, HEAD_D, Q_BS, K_BS, V_BS,
                         DYNAMIC)),
        ], [4, 4, 1], [CONSUMER_REGS, CONSUMER_REGS, 24])
    elif CONSUMERS == 2:
        gl.warp_specialize([
            (_consumer, (0, smem, bars, o_desc, lse_ptr, ints, qk_scale, HEAD_D, BLOCK_N, ROWS,
                         STAGES, num_warps, CAUSAL, OVERLAP, PINGPONG, SPLIT_WAIT, CONSUMERS,
                         PERSISTENT, Q_BUFS, REVERSE_M, O_BS, LAZY, EXP_POLY, MAX_TREE,
                         DYNAMIC)),
            (_consumer, (1, smem, bars, o_desc, lse_ptr, ints, qk_scale, HEAD_D, BLOCK_N, ROWS,
                         STAGES, 4, CAUSAL, OVERLAP, PINGPONG, SPLIT_WAIT, CONSUMERS,
                         PERSISTENT, Q_BUFS, REVERSE_M, O_BS, LAZY, EXP_POLY, MAX_TREE,
                         DYNAMIC)),
            (_producer, (descs, smem, bars, ints, tile_ctr, BLOCK_N, ROWS, STAGES, CONSUMERS,
                         CAUSAL, PERSISTENT, Q_BUFS, REVERSE_M, HEAD_D, Q_BS, K_BS, V_BS,
                         DYNAMIC)),
        ], [4, 1], [CONSUMER_REGS, 24])
    else:
        gl.warp_specialize([
            (_consumer, (0, smem, bars, o_desc, lse_ptr, ints, qk_scale, HEAD_D, BLOCK_N, ROWS,
                         STAGES, num_warps, CAUSAL, OVERLAP, False, SPLIT_WAIT, CONSUMERS,
                         PERSISTENT, Q_BUFS, REVERSE_M, O_BS, LAZY, EXP_POLY, MAX_TREE,
                         DYNAMIC)),
            (_producer, (descs, smem, bars, ints, tile_ctr, BLOCK_N, ROWS, STAGES, CONSUMERS,
                         CAUSAL, PERSISTENT, Q_BUFS, REVERSE_M, HEAD_D, Q_BS, K_BS, V_BS,
                         DYNAMIC)),
        ], [1], [24])


# --------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------


def resolve_config(head_dim, *, variant=None, block_n=None, stages=None, consumers=None,
                   consumer_warps=None, overlap=None, pingpong=None, split_wait=None,
                   block_m=None, persistent=None, q_bufs=None, lazy=None, bshd=None,
                   dynamic=None, exp_poly=None, max_tree=None):
    """The kernel's constexprs for a variant name plus overrides; raises ValueError.
    ``bshd`` is a layout, not a knob (``compile_offline`` and gluon_check.py take it in a
    variant spec; the launcher reads the layout off the tensors): accepted and ignored."""
    if (variant or DEFAULT_VARIANT) not in VARIANTS:
        raise ValueError(f"variant {variant!r}: one of {sorted(VARIANTS)}")
    v = dict(VARIANTS[variant or DEFAULT_VARIANT])
    for key, val in (("consumers", consumers), ("consumer_warps", consumer_warps),
                     ("overlap", overlap), ("pingpong", pingpong), ("split_wait", split_wait),
                     ("persistent", persistent), ("dynamic", dynamic)):
        if val is not None:
            v[key] = val
    if head_dim not in (64, 128, 256):
        raise ValueError(f"gluon forward: head dim {head_dim} not in (64, 128, 256)")
    if block_n is None:
        block_n = 64 if head_dim == 256 else 128
    if stages is None:
        stages = 2
    if v["consumers"] not in (1, 2, 3):
        raise ValueError(f"consumers={v['consumers']} (1, 2 or 3 partitions)")
    if v["consumers"] >= 2:
        v["consumer_warps"] = 4
    if v["consumers"] == 1 and v["pingpong"]:
        raise ValueError("ping-pong needs two consumer partitions")
    if v["consumers"] == 3 and head_dim == 256:
        # O alone is 64 x 256 fp32 = 128 registers a thread: ptxas stops with C7602 ("try a
        # register target of 158 or higher") under the 128 a 16-warp kernel starts with
        raise ValueError("consumers=3 at head dim 256: O (64 x 256 fp32) does not fit three "
                         "consumers' registers; use two (pp, pp-dynamic)")
    rows = 16 * v["consumer_warps"]
    bm = rows * v["consumers"]
    if block_m is not None and block_m != bm:
        raise ValueError(f"block_m={block_m} but variant {variant!r} gives {bm} "
                         f"({v['consumers']} consumer(s) x {rows} rows)")
    if block_n not in (32, 64, 128):
        raise ValueError(f"block_n={block_n} (32, 64 or 128: a power of two, S in registers)")
    if stages < 1:
        raise ValueError(f"stages={stages}")
    lazy = int(v.get("lazy", 0) if lazy is None else lazy)
    if lazy and not (v["overlap"] and 1 <= lazy <= 16):
        raise ValueError(f"lazy={lazy}: the rescale threshold in base-2 units, 1..16 (8 is "
                         "FlashAttention-4's), on the overlapped schedule only; 0 turns it off")
    exp_poly = int(v.get("exp_poly", 0) if exp_poly is None else exp_poly)
    if exp_poly not in (0, 2, 4, 8, 16):
        raise ValueError(f"exp_poly={exp_poly}: expected 2, 4, 8 or 16 (one score in that many "
                         "takes exp2 from the FMA pipe's polynomial instead of MUFU.EX2) or 0 "
                         "(off)")
    pers = bool(v.get("persistent", False))
    dyn = bool(v.get("dynamic", False))
    if dyn and not pers:
        raise ValueError("dynamic=1 schedules a persistent grid's tiles: it needs persistent=1")

    def smem_for(nq):
        return 2 * head_dim * (bm * nq + 2 * stages * block_n) + 1024

    if not pers:
        q_bufs = 1
    elif q_bufs is None:  # a second Q buffer where it fits: the next tile's Q loads early
        q_bufs = 2 if smem_for(2) <= 232448 else 1
    elif q_bufs not in (1, 2):
        raise ValueError(f"q_bufs={q_bufs} (1 or 2)")
    smem = smem_for(q_bufs)
    if smem > 232448:
        raise ValueError(f"shared memory {smem} B > 227 KB (d{head_dim}, block_n={block_n}, "
                         f"stages={stages}, q_bufs={q_bufs})")
    total_warps = v["consumer_warps"] * v["consumers"] + 1
    total_warps = (total_warps + 3) // 4 * 4
    maxnreg = min(256, 65536 // (total_warps * 32)) // 8 * 8
    # setmaxnreg budget: (consumers x consumer regs + 24 for the producer's warpgroup) x 128
    # threads within 64K registers: 240 for two consumers, 160 for three.
    consumer_regs = {1: 0, 2: 240, 3: 160}[v["consumers"]]
    return dict(HEAD_D=head_dim, BLOCK_N=block_n, ROWS=rows, CONSUMERS=v["consumers"],
                STAGES=stages, OVERLAP=bool(v["overlap"]), PINGPONG=bool(v["pingpong"]),
                CONSUMER_REGS=consumer_regs, SPLIT_WAIT=bool(v.get("split_wait", True)),
                PERSISTENT=pers, Q_BUFS=q_bufs, LAZY=lazy, EXP_POLY=exp_poly,
                MAX_TREE=bool(v.get("max_tree", False) if max_tree is None else max_tree),
                DYNAMIC=dyn,
                num_warps=v["consumer_warps"], maxnreg=maxnreg,
                smem_estimate=smem)


def gluon_attention_fwd(q, k, v, *, causal=False, softmax_scale=None, block_m=None, block_n=None,
                        stages=None, variant=None, consumers=None, consumer_warps=None,
                        overlap=None, pingpong=None, split_wait=None, persistent=None,
                        q_bufs=None, lazy=None, dynamic=None, exp_poly=None, max_tree=None,
                        out=None, lse_out=None):
    """O, LSE of softmax(scale · Q Kᵀ) V.  q (B, Hq, Sq, D), k/v (B, Hk, Sk, D), each either
    contiguous or with the heads of a position adjacent (flash-attn's (B, S, H, D) seen
    through ``.transpose(1, 2)``, or sliced out of a packed QKV tensor; ``row_mode``).

    variant: a key of VARIANTS (default "pp"); block_m must match it if given (128 for all
    shipped variants).  out / lse_out: optional preallocated outputs (the check script
    passes NaN-poisoned ones).  Returns (o, lse) with lse float32 (B, Hq, Sq), natural log."""
    import torch

    ok, why = gluon_available()
    if not ok:
        raise RuntimeError(f"gluon forward unavailable: {why}")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k, v must be 4-D (B, H, S, D)")
    B, Hq, Sq, D = q.shape
    Bk, Hk, Sk, Dk = k.shape
    if v.shape != k.shape or Bk != B or Dk != D:
        raise ValueError(f"shape mismatch q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}")
    if Hq % Hk:
        raise ValueError(f"Hq={Hq} is not a multiple of Hk={Hk}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError("q, k, v must share a dtype")
    modes = {name: _check_rows(name, t) for name, t in (("q", q), ("k", k), ("v", v))}
    if Sq == 0 or Sk == 0 or B == 0 or Hq == 0:
        raise ValueError("empty problem")
    gdt = gl_dtype(q.dtype, "gluon forward")
    cfg = resolve_config(D, variant=variant, block_n=block_n, stages=stages, consumers=consumers,
                         consumer_warps=consumer_warps, overlap=overlap, pingpong=pingpong,
                         split_wait=split_wait, block_m=block_m, persistent=persistent,
                         q_bufs=q_bufs, lazy=lazy, dynamic=dynamic, exp_poly=exp_poly,
                         max_tree=max_tree)
    scale = float(softmax_scale) if softmax_scale is not None else 1.0 / math.sqrt(D)
    if not scale > 0.0 or not math.isfinite(scale):
        # the row max is taken as max(s) * scale and masked scores are -inf * scale
        raise ValueError(f"softmax_scale must be finite and > 0, got {scale}")

    o = out if out is not None else torch.empty_like(q)
    lse = lse_out if lse_out is not None else torch.empty((B, Hq, Sq), device=q.device,
                                                           dtype=torch.float32)
    if o.shape != q.shape or o.dtype != q.dtype:
        raise ValueError(f"out must have q's shape and dtype, got {tuple(o.shape)} {o.dtype}")
    modes["o"] = _check_rows("out", o)
    if lse.shape != (B, Hq, Sq) or lse.dtype != torch.float32 or not lse.is_contiguous():
        raise ValueError("lse_out must be contiguous float32 (B, Hq, Sq)")

    rows, bn = cfg["ROWS"], cfg["BLOCK_N"]
    q_desc = row_desc(q, rows, D, gdt, modes["q"])
    o_desc = row_desc(o, rows, D, gdt, modes["o"])
    k_desc = row_desc(k, bn, D, gdt, modes["k"])
    v_desc = row_desc(v, bn, D, gdt, modes["v"])
    block_m_eff = rows * cfg["CONSUMERS"]
    n_m = triton.cdiv(Sq, block_m_eff)
    n_tiles = n_m * B * Hq
    if cfg["PERSISTENT"]:
        grid = (min(n_tiles, _sm_count(q.device.index)), )
    else:
        grid = (n_m, B * Hq)
    tile_ctr = _tile_counter(q.device) if cfg["DYNAMIC"] else None
    _LAST["kernel"] = _attn_fwd_kernel[grid](
        q_desc, k_desc, v_desc, o_desc, lse, tile_ctr,
        Sq, Sk, Hq, Hq // Hk, n_m, n_tiles, scale * _LOG2E,
        **_kernel_constexprs(cfg, causal, (modes[x] == "bs" for x in "qkvo")),
        maxnreg=cfg["maxnreg"])
    return o, lse


#: resolve_config's entries that are the kernel's constexpr arguments (CAUSAL, REVERSE_M and
#: the four layouts come from the call): one list for the launcher and compile_offline.
_KERNEL_CONSTEXPRS = ("HEAD_D", "BLOCK_N", "ROWS", "CONSUMERS", "STAGES", "OVERLAP", "PINGPONG",
                      "CONSUMER_REGS", "SPLIT_WAIT", "PERSISTENT", "Q_BUFS", "LAZY", "EXP_POLY",
                      "MAX_TREE", "DYNAMIC", "num_warps")


def _kernel_constexprs(cfg, causal, bs):
    """The kernel's constexpr arguments; bs: whether Q, K, V, O are (B, S, H*D) views."""
    q_bs, k_bs, v_bs, o_bs = (bool(b) for b in bs)
    return dict({key: cfg[key] for key in _KERNEL_CONSTEXPRS}, CAUSAL=bool(causal),
                REVERSE_M=bool(causal), Q_BS=q_bs, K_BS=k_bs, V_BS=v_bs, O_BS=o_bs)


_COUNTERS = {}  # (device index, stream) -> the dynamic grid's two int32 counts


def _tile_counter(device):
    """The DYNAMIC grid's counts (tile draws, CTAs done drawing) for launches on the current
    stream of ``device``: zeroed once, then left at zero by every launch (the kernel's last
    CTA resets them), so launches on one stream share them without a memset each.  One pair
    per stream: launches on two streams may overlap.  Under CUDA-graph capture a fresh zeroed
    pair, its memset captured with the kernel: a replay starts from zero whatever ran before."""
    import torch

    if torch.cuda.is_current_stream_capturing():
        return torch.zeros(2, dtype=torch.int32, device=device)
    key = (device.index, torch.cuda.current_stream(device).cuda_stream)
    ctr = _COUNTERS.get(key)
    if ctr is None:
        ctr = _COUNTERS[key] = torch.zeros(2, dtype=torch.int32, device=device)
    return ctr


def _check_rows(name, t):
    """``row_mode(t)``; ValueError where it cannot address ``t``'s rows (saying how to fix)."""
    if t.data_ptr() % 16:
        raise ValueError(f"{name} is not 16-byte aligned")
    mode = row_mode(t)
    if mode is None:
        raise ValueError(
            f"{name} has strides {tuple(t.stride())} for shape {tuple(t.shape)}: the Gluon "
            "forward reads (B, H, S, D) tensors that are contiguous, or whose heads are "
            "adjacent (head stride D, unit last stride, batch and sequence strides multiples "
            "of 8 elements), such as (B, S, H, D).transpose(1, 2); pass .contiguous()")
    return mode


@functools.lru_cache(maxsize=None)
def _sm_count(index):
    """Streaming multiprocessors of device ``index`` (the persistent grid's size)."""
    import torch

    return torch.cuda.get_device_properties(index).multi_processor_count


# --------------------------------------------------------------------------------------
# Offline compilation (no GPU): used by gluon_check.py --compile-only and the notes.
# --------------------------------------------------------------------------------------


def compile_offline(head_dim, dtype="bf16", causal=False, bshd=False, **knobs):
    """Compile for sm90 without a GPU; returns the CompiledKernel (asm: ttgir/ptx/cubin).
    bshd: every descriptor over the (B, S, H*D) view (``row_mode`` "bs")."""
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    gdt = {"bf16": gl.bfloat16, "fp16": gl.float16}[dtype]
    cfg = resolve_config(head_dim, **knobs)
    rows, bn = cfg["ROWS"], cfg["BLOCK_N"]
    ql = gl.NVMMASharedLayout.get_default_for([1, rows, head_dim], gdt)
    kl = gl.NVMMASharedLayout.get_default_for([1, bn, head_dim], gdt)
    sig = {
        "q_desc": f"tensordesc<{dtype}[1, {rows}, {head_dim}],{ql!r}>",
        "k_desc": f"tensordesc<{dtype}[1, {bn}, {head_dim}],{kl!r}>",
        "v_desc": f"tensordesc<{dtype}[1, {bn}, {head_dim}],{kl!r}>",
        "o_desc": f"tensordesc<{dtype}[1, {rows}, {head_dim}],{ql!r}>",
        "lse_ptr": "*fp32", "tile_ctr": "*i32" if cfg["DYNAMIC"] else "constexpr",
        "Sq": "i32", "Sk": "i32", "Hq": "i32", "GROUP": "i32",
        "n_m": "i32", "n_tiles": "i32", "qk_scale": "fp32",
    }
    constexprs = _kernel_constexprs(cfg, causal, (bool(bshd), ) * 4)
    if not cfg["DYNAMIC"]:
        constexprs["tile_ctr"] = None
    for name in constexprs:
        sig[name] = "constexpr"
    src = GluonASTSource(fn=_attn_fwd_kernel, signature=sig, constexprs=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": cfg["num_warps"], "maxnreg": cfg["maxnreg"]})
