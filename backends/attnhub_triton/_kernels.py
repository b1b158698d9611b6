"""FlashAttention-2 kernels in Triton: the forward pass and the backward passes.

Every kernel sees one (query or key) block of one head of one sequence::

    forward    grid (cdiv(max Sq, BLOCK_M), Hq, B)   O, LSE for BLOCK_M query rows

    backward, "split" (deterministic, 7 matmuls per block pair):
    bwd dQ     grid (cdiv(max Sq, BLOCK_M), Hq, B)   Δ = rowsum(dO∘O) (or, DELTA_IN, the
                                                     Δ pre-pass's) and dQ for BLOCK_M rows
    bwd dK/dV  grid (cdiv(max Sk, BLOCK_N), Hk, B)   dK, dV for BLOCK_N keys, summed over the
                                                     query heads of the group (no atomics)

    backward, "atomic" (the FlashAttention-2 paper's: 5 matmuls, not deterministic):
    bwd Δ      grid (cdiv(max Sq, BLOCK_M), Hq, B)   Δ = rowsum(dO∘O)
    bwd dK/dV  (as above, DQ_ATOMIC)                 also dQ += dS K for each query block it
                                                     visits, added into an fp32 buffer with
                                                     atomics (TMA reduce or red.global)

Tensors are addressed through strides only (BHSD, BSHD, slices of packed QKV), dense
``(B, H, S, D)`` or varlen ``(total, H, D)`` with ``cu_seqlens`` (the host passes batch
stride 0).  Masks follow :mod:`attnhub.reference`: with ``off = Sk - Sq`` (bottom-right),
query row ``i`` may see key ``j`` when ``i + off - left <= j <= i + off + right``; causal
is ``right = 0`` (the host folds it in).  ``HAS_LEFT`` / ``HAS_RIGHT`` say which side bounds.

Each program walks its key (or query) blocks in two loops: the blocks every row of the tile
sees in full (no mask, no bounds checks: the hot loop), then the edge blocks that need the
mask.  Blocks no row can see are never visited.  Softmax runs in base 2 (scores are scaled
by log2(e) once); LSE is written as a natural log.  A row that sees no key gets O = 0 and
LSE = -inf; the backward treats LSE = -inf as +inf so its P is 0, never NaN.
"""

import triton
import triton.language as tl

_LOG2E = tl.constexpr(1.4426950408889634)  # 1 / ln 2: exp(x) = exp2(x * log2(e))
_LN2 = tl.constexpr(0.6931471805599453)  # ln 2: converts the base-2 LSE back to natural log
_TWO_LOG2E = tl.constexpr(2.8853900817779268)  # 2 / ln 2, for tanh through exp2

# Ints that change from call to call: keep them out of Triton's specialisation key so that
# (113, 203) and (1024, 1024) share one compiled kernel (the LSE strides are Sq-sized).
_RUNTIME_INTS = ["seqlen_q", "seqlen_k", "group", "win_left", "win_right", "bucket_q", "bucket_k",
                 "stride_lb", "stride_lh"]


# -- small helpers ------------------------------------------------------------------------

@triton.jit
def _tanh(x):
    """tanh(x) = 1 - 2 / (e^{2x} + 1); saturates to ±1 without NaN, runs in the interpreter."""
    return 1.0 - 2.0 / (tl.exp2(x * _TWO_LOG2E) + 1.0)


@triton.jit
def _seq_bounds(CU, b, seqlen, VARLEN: tl.constexpr):
    """(first row, length) of sequence ``b``: from ``cu_seqlens`` (varlen) or (0, seqlen)."""
    if VARLEN:
        start = tl.load(CU + b).to(tl.int64)
        length = (tl.load(CU + b + 1) - start).to(tl.int32)
    else:
        start = tl.full([], 0, tl.int64)
        length = seqlen
    return start, length


@triton.jit
def _load_tile(base, rows, cols, stride_r, stride_c, n_rows, N_COLS: tl.constexpr,
               CHECK_ROWS: tl.constexpr, CHECK_COLS: tl.constexpr):
    """Load ``base[rows, cols]``; out-of-range rows (>= n_rows) / cols (>= N_COLS) read 0."""
    ptrs = base + rows[:, None] * stride_r + cols[None, :] * stride_c
    if CHECK_ROWS:
        if CHECK_COLS:
            x = tl.load(ptrs, mask=(rows[:, None] < n_rows) & (cols[None, :] < N_COLS), other=0.0)
        else:
            x = tl.load(ptrs, mask=rows[:, None] < n_rows, other=0.0)
    else:
        if CHECK_COLS:
            x = tl.load(ptrs, mask=cols[None, :] < N_COLS, other=0.0)
        else:
            x = tl.load(ptrs)
    return x


@triton.jit
def _load_block(desc, base, row0, n_rows, stride_r, stride_c,
                BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, N_COLS: tl.constexpr,
                CHECK_ROWS: tl.constexpr, USE_TMA: tl.constexpr):
    """Rows [row0, row0 + BLOCK_R) of a (n_rows, N_COLS) matrix, zero-padded to BLOCK_C
    columns: through the TMA descriptor ``desc`` (bounds in hardware) or pointer loads."""
    if USE_TMA:
        x = desc.load([row0, 0])
    else:
        rows = row0 + tl.arange(0, BLOCK_R)
        cols = tl.arange(0, BLOCK_C)
        x = _load_tile(base, rows, cols, stride_r, stride_c, n_rows, N_COLS,
                       CHECK_ROWS, BLOCK_C != N_COLS)
    return x


@triton.jit
def _make_desc(base, n_rows, stride_r, N_COLS: tl.constexpr, BLOCK_R: tl.constexpr,
               BLOCK_C: tl.constexpr, USE_TMA: tl.constexpr):
    """A TMA descriptor over one head's (n_rows, N_COLS) matrix, or ``base`` itself."""
    if USE_TMA:
        desc = tl.make_tensor_descriptor(base, shape=[tl.maximum(n_rows, 1), N_COLS],
                                         strides=[stride_r, 1], block_shape=[BLOCK_R, BLOCK_C])
    else:
        desc = base
    return desc


@triton.jit
def _allowed(qi, kj, off, k_len, win_left, win_right,
             HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr):
    """Mask of allowed (query qi, key kj) pairs; qi, kj are broadcastable index tensors."""
    ok = kj < k_len
    if HAS_RIGHT:
        ok = ok & (kj <= qi + off + win_right)
    if HAS_LEFT:
        ok = ok & (kj >= qi + off - win_left)
    return ok


@triton.jit
def _visible_range(first, last, off, length, win_lo, win_hi,
                   LO_BOUND: tl.constexpr, HI_BOUND: tl.constexpr, BLOCK: tl.constexpr):
    """Blocks of the other side seen by rows [first, last] of this side.

    For query rows (keys on the other side): ``off = Sk - Sq``, ``win_lo = left``,
    ``win_hi = right``.  For key rows: ``off = Sq - Sk``, ``win_lo = right``, ``win_hi =
    left``.  Returns ``lo <= full_lo <= full_hi <= hi``: visit [lo, hi); blocks in
    [full_lo, full_hi) are seen in full by every row and lie inside ``length``.
    Divisions only see non-negative numbers (Triton's ``//`` truncates, numpy's floors).
    """
    lo = length * 0
    hi = length
    full_lo = lo
    full_hi = length // BLOCK * BLOCK
    if LO_BOUND:
        lo = tl.maximum(first + off - win_lo, 0) // BLOCK * BLOCK
        full_lo = (tl.maximum(last + off - win_lo, 0) + BLOCK - 1) // BLOCK * BLOCK
    if HI_BOUND:
        hi = tl.minimum(last + off + win_hi + 1, length)
        full_hi = tl.minimum(full_hi, tl.maximum(first + off + win_hi + 1, 0) // BLOCK * BLOCK)
    hi = tl.maximum(hi, lo)
    full_lo = tl.minimum(tl.maximum(full_lo, lo), hi)
    full_hi = tl.minimum(tl.maximum(full_hi, full_lo), hi)
    return lo, hi, full_lo, full_hi


@triton.jit
def _block_start(it, start1, n1, start2, BLOCK: tl.constexpr, TWO_RUNS: tl.constexpr):
    """Start of the ``it``-th visited block: ``n1`` blocks from ``start1``, then from ``start2``."""
    if TWO_RUNS:
        start = tl.where(it < n1, start1 + it * BLOCK, start2 + (it - n1) * BLOCK)
    else:
        start = start1 + it * BLOCK
    return start


# -- forward ------------------------------------------------------------------------------

@triton.jit
def _fwd_blocks(acc, l_i, m_i, q, k_desc, v_desc, Kb, Vb,
                stride_ks, stride_kd, stride_vs, stride_vd,
                start1, n1, start2, n_blocks, offs_m, off, k_len,
                s_mul, s_out, win_left, win_right,
                HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
                BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_N: tl.constexpr,
                HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, SOFTCAP: tl.constexpr,
                USE_TMA: tl.constexpr, DOT_PRECISION: tl.constexpr,
                MASKED: tl.constexpr, WARP_SPEC: tl.constexpr):
    """Online softmax over key blocks (base 2): acc, l_i, m_i updated, no final rescale."""
    for it in tl.range(0, n_blocks, warp_specialize=WARP_SPEC):
        n0 = _block_start(it, start1, n1, start2, BLOCK_N, MASKED)
        k = _load_block(k_desc, Kb, n0, k_len, stride_ks, stride_kd,
                        BLOCK_N, BLOCK_D, HEAD_DIM, MASKED, USE_TMA)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
        if SOFTCAP:  # s = softcap * tanh(scale * qk / softcap), then to base 2
            s = _tanh(qk * s_mul) * s_out
        else:
            s = qk * s_mul
        if MASKED:
            offs_n = n0 + tl.arange(0, BLOCK_N)
            ok = _allowed(offs_m[:, None], offs_n[None, :], off, k_len, win_left, win_right,
                          HAS_LEFT, HAS_RIGHT)
            s = tl.where(ok, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            # A row with no allowed key so far keeps m = -inf: subtract 0 instead (no NaN).
            m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_ref = m_new
        p = tl.exp2(s - m_ref[:, None])
        alpha = tl.exp2(m_i - m_ref)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = _load_block(v_desc, Vb, n0, k_len, stride_vs, stride_vd,
                        BLOCK_N, BLOCK_DV, HEAD_DIM_V, MASKED, USE_TMA)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _attn_fwd(
    Q, K, V, O, LSE, CU_Q, CU_K,
    stride_qb, stride_qh, stride_qs, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_ob, stride_oh, stride_os, stride_od,
    stride_lb, stride_lh,
    seqlen_q, seqlen_k, group,
    sm_scale, softcap, win_left, win_right,
    bucket_q, bucket_k,  # autotuning key only
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, SOFTCAP: tl.constexpr,
    VARLEN: tl.constexpr, USE_TMA: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WARP_SPEC: tl.constexpr,
):
    tl.static_assert(BLOCK_D >= HEAD_DIM and BLOCK_DV >= HEAD_DIM_V)
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0)
    pid_m = tl.program_id(0)
    hq = tl.program_id(1)
    b = tl.program_id(2)
    if HAS_RIGHT:
        if not VARLEN:  # causal-like: start the blocks with the most keys first
            pid_m = tl.num_programs(0) - 1 - pid_m
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, VARLEN)
    k_start, k_len = _seq_bounds(CU_K, b, seqlen_k, VARLEN)
    m0 = pid_m * BLOCK_M
    if VARLEN:
        if m0 >= q_len:
            return
    bb = b.to(tl.int64)
    hk = (hq // group).to(tl.int64)
    Qb = Q + bb * stride_qb + hq.to(tl.int64) * stride_qh + q_start * stride_qs
    Kb = K + bb * stride_kb + hk * stride_kh + k_start * stride_ks
    Vb = V + bb * stride_vb + hk * stride_vh + k_start * stride_vs
    Ob = O + bb * stride_ob + hq.to(tl.int64) * stride_oh + q_start * stride_os
    LSEb = LSE + bb * stride_lb + hq.to(tl.int64) * stride_lh + q_start

    offs_m = m0 + tl.arange(0, BLOCK_M)
    q = _load_tile(Qb, offs_m, tl.arange(0, BLOCK_D), stride_qs, stride_qd, q_len, HEAD_DIM,
                   True, BLOCK_D != HEAD_DIM)
    k_desc = _make_desc(Kb, k_len, stride_ks, HEAD_DIM, BLOCK_N, BLOCK_D, USE_TMA)
    v_desc = _make_desc(Vb, k_len, stride_vs, HEAD_DIM_V, BLOCK_N, BLOCK_DV, USE_TMA)

    if SOFTCAP:
        s_mul = sm_scale / softcap  # inside tanh
        s_out = softcap * _LOG2E  # after tanh, to base 2
    else:
        s_mul = sm_scale * _LOG2E
        s_out = 1.0
    off = k_len - q_len
    m_last = tl.minimum(m0 + BLOCK_M, q_len) - 1
    lo, hi, full_lo, full_hi = _visible_range(m0, m_last, off, k_len, win_left, win_right,
                                              HAS_LEFT, HAS_RIGHT, BLOCK_N)

    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    # Phase 1: key blocks every row sees in full -- no mask, no bounds checks.
    n_full = (full_hi - full_lo) // BLOCK_N
    acc, l_i, m_i = _fwd_blocks(
        acc, l_i, m_i, q, k_desc, v_desc, Kb, Vb, stride_ks, stride_kd, stride_vs, stride_vd,
        full_lo, n_full, full_lo, n_full, offs_m, off, k_len, s_mul, s_out, win_left, win_right,
        HEAD_DIM, HEAD_DIM_V, BLOCK_D, BLOCK_DV, BLOCK_N, HAS_LEFT, HAS_RIGHT, SOFTCAP,
        USE_TMA, DOT_PRECISION, False, WARP_SPEC)
    # Phase 2: edge blocks [lo, full_lo) and [full_hi, hi) -- masked.
    n_before = tl.cdiv(full_lo - lo, BLOCK_N)
    n_edge = n_before + tl.cdiv(hi - full_hi, BLOCK_N)
    acc, l_i, m_i = _fwd_blocks(
        acc, l_i, m_i, q, k_desc, v_desc, Kb, Vb, stride_ks, stride_kd, stride_vs, stride_vd,
        lo, n_before, full_hi, n_edge, offs_m, off, k_len, s_mul, s_out, win_left, win_right,
        HEAD_DIM, HEAD_DIM_V, BLOCK_D, BLOCK_DV, BLOCK_N, HAS_LEFT, HAS_RIGHT, SOFTCAP,
        USE_TMA, DOT_PRECISION, True, False)

    # Epilogue: the one rescale; rows that saw no key get O = 0, LSE = -inf.
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    o = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.log2(l_safe)) * _LN2)
    offs_dv = tl.arange(0, BLOCK_DV)
    o_ptrs = Ob + offs_m[:, None] * stride_os + offs_dv[None, :] * stride_od
    tl.store(o_ptrs, o.to(O.dtype.element_ty),
             mask=(offs_m[:, None] < q_len) & (offs_dv[None, :] < HEAD_DIM_V))
    tl.store(LSEb + offs_m, lse, mask=offs_m < q_len)


# -- backward: Δ and dQ -------------------------------------------------------------------

@triton.jit
def _dq_blocks(dq, q, do, lse2, delta, k_desc, v_desc, Kb, Vb,
               stride_ks, stride_kd, stride_vs, stride_vd,
               start1, n1, start2, n_blocks, offs_m, off, k_len,
               s_mul, s_out, win_left, win_right,
               HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
               BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_N: tl.constexpr,
               HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, SOFTCAP: tl.constexpr,
               USE_TMA: tl.constexpr, DOT_PRECISION: tl.constexpr, MASKED: tl.constexpr):
    """dQ (unscaled) += dS K over key blocks, P recomputed from the saved LSE."""
    for it in tl.range(0, n_blocks):
        n0 = _block_start(it, start1, n1, start2, BLOCK_N, MASKED)
        k = _load_block(k_desc, Kb, n0, k_len, stride_ks, stride_kd,
                        BLOCK_N, BLOCK_D, HEAD_DIM, MASKED, USE_TMA)
        v = _load_block(v_desc, Vb, n0, k_len, stride_vs, stride_vd,
                        BLOCK_N, BLOCK_DV, HEAD_DIM_V, MASKED, USE_TMA)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
        if SOFTCAP:
            t = _tanh(qk * s_mul)
            s = t * s_out
        else:
            s = qk * s_mul
        if MASKED:
            offs_n = n0 + tl.arange(0, BLOCK_N)
            ok = _allowed(offs_m[:, None], offs_n[None, :], off, k_len, win_left, win_right,
                          HAS_LEFT, HAS_RIGHT)
            s = tl.where(ok, s, float("-inf"))
        p = tl.exp2(s - lse2[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        if SOFTCAP:  # d/dx [c tanh(x / c)] = 1 - tanh^2
            ds = ds * (1.0 - t * t)
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PRECISION)
    return dq


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _attn_bwd_dq(
    Q, K, V, O, DO, LSE, DELTA, DQ, CU_Q, CU_K,
    stride_qb, stride_qh, stride_qs, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_ob, stride_oh, stride_os, stride_od,
    stride_dob, stride_doh, stride_dos, stride_dod,
    stride_dqb, stride_dqh, stride_dqs, stride_dqd,
    stride_lb, stride_lh,  # LSE and DELTA share a layout
    seqlen_q, seqlen_k, group,
    sm_scale, softcap, win_left, win_right,
    bucket_q, bucket_k,
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, SOFTCAP: tl.constexpr,
    VARLEN: tl.constexpr, USE_TMA: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DELTA_IN: tl.constexpr,
):
    tl.static_assert(BLOCK_D >= HEAD_DIM and BLOCK_DV >= HEAD_DIM_V)
    pid_m = tl.program_id(0)
    hq = tl.program_id(1)
    b = tl.program_id(2)
    if HAS_RIGHT:
        if not VARLEN:
            pid_m = tl.num_programs(0) - 1 - pid_m
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, VARLEN)
    k_start, k_len = _seq_bounds(CU_K, b, seqlen_k, VARLEN)
    m0 = pid_m * BLOCK_M
    if VARLEN:
        if m0 >= q_len:
            return
    bb = b.to(tl.int64)
    hq64 = hq.to(tl.int64)
    hk = (hq // group).to(tl.int64)
    Qb = Q + bb * stride_qb + hq64 * stride_qh + q_start * stride_qs
    Ob = O + bb * stride_ob + hq64 * stride_oh + q_start * stride_os
    DOb = DO + bb * stride_dob + hq64 * stride_doh + q_start * stride_dos
    DQb = DQ + bb * stride_dqb + hq64 * stride_dqh + q_start * stride_dqs
    Kb = K + bb * stride_kb + hk * stride_kh + k_start * stride_ks
    Vb = V + bb * stride_vb + hk * stride_vh + k_start * stride_vs
    row = bb * stride_lb + hq64 * stride_lh + q_start

    # Δ = rowsum(dO ∘ O), stored for the dK/dV kernel (or, DELTA_IN, read: the pre-pass
    # wrote it; its computation here costs the prologue 0.8k-4.7k SASS instructions and,
    # at D = 256, ~1000 spill loads/stores: sm90_report).
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q = _load_tile(Qb, offs_m, offs_d, stride_qs, stride_qd, q_len, HEAD_DIM,
                   True, BLOCK_D != HEAD_DIM)
    do = _load_tile(DOb, offs_m, offs_dv, stride_dos, stride_dod, q_len, HEAD_DIM_V,
                    True, BLOCK_DV != HEAD_DIM_V)
    if DELTA_IN:  # written by the _attn_bwd_delta pre-pass
        delta = tl.load(DELTA + row + offs_m, mask=offs_m < q_len, other=0.0)
    else:
        o = _load_tile(Ob, offs_m, offs_dv, stride_os, stride_od, q_len, HEAD_DIM_V,
                       True, BLOCK_DV != HEAD_DIM_V)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)
        tl.store(DELTA + row + offs_m, delta, mask=offs_m < q_len)
    lse = tl.load(LSE + row + offs_m, mask=offs_m < q_len, other=float("inf"))
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * _LOG2E)  # empty rows: P = 0

    k_desc = _make_desc(Kb, k_len, stride_ks, HEAD_DIM, BLOCK_N, BLOCK_D, USE_TMA)
    v_desc = _make_desc(Vb, k_len, stride_vs, HEAD_DIM_V, BLOCK_N, BLOCK_DV, USE_TMA)
    if SOFTCAP:
        s_mul = sm_scale / softcap
        s_out = softcap * _LOG2E
    else:
        s_mul = sm_scale * _LOG2E
        s_out = 1.0
    off = k_len - q_len
    m_last = tl.minimum(m0 + BLOCK_M, q_len) - 1
    lo, hi, full_lo, full_hi = _visible_range(m0, m_last, off, k_len, win_left, win_right,
                                              HAS_LEFT, HAS_RIGHT, BLOCK_N)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    n_full = (full_hi - full_lo) // BLOCK_N
    dq = _dq_blocks(dq, q, do, lse2, delta, k_desc, v_desc, Kb, Vb,
                    stride_ks, stride_kd, stride_vs, stride_vd,
                    full_lo, n_full, full_lo, n_full, offs_m, off, k_len,
                    s_mul, s_out, win_left, win_right,
                    HEAD_DIM, HEAD_DIM_V, BLOCK_D, BLOCK_DV, BLOCK_N,
                    HAS_LEFT, HAS_RIGHT, SOFTCAP, USE_TMA, DOT_PRECISION, False)
    n_before = tl.cdiv(full_lo - lo, BLOCK_N)
    n_edge = n_before + tl.cdiv(hi - full_hi, BLOCK_N)
    dq = _dq_blocks(dq, q, do, lse2, delta, k_desc, v_desc, Kb, Vb,
                    stride_ks, stride_kd, stride_vs, stride_vd,
                    lo, n_before, full_hi, n_edge, offs_m, off, k_len,
                    s_mul, s_out, win_left, win_right,
                    HEAD_DIM, HEAD_DIM_V, BLOCK_D, BLOCK_DV, BLOCK_N,
                    HAS_LEFT, HAS_RIGHT, SOFTCAP, USE_TMA, DOT_PRECISION, True)
    dq = dq * sm_scale
    tl.store(DQb + offs_m[:, None] * stride_dqs + offs_d[None, :] * stride_dqd,
             dq.to(DQ.dtype.element_ty),
             mask=(offs_m[:, None] < q_len) & (offs_d[None, :] < HEAD_DIM))


# -- backward: Δ alone (for the atomic variant) ----------------------------------------------

@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _attn_bwd_delta(
    O, DO, DELTA, CU_Q,
    stride_ob, stride_oh, stride_os, stride_od,
    stride_dob, stride_doh, stride_dos, stride_dod,
    stride_lb, stride_lh,
    seqlen_q,
    HEAD_DIM_V: tl.constexpr, BLOCK_DV: tl.constexpr, VARLEN: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Δ = rowsum(dO ∘ O) for BLOCK_M query rows (float32)."""
    pid_m = tl.program_id(0)
    hq = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2)
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, VARLEN)
    m0 = pid_m * BLOCK_M
    if m0 >= q_len:
        return
    bb = b.to(tl.int64)
    Ob = O + bb * stride_ob + hq * stride_oh + q_start * stride_os
    DOb = DO + bb * stride_dob + hq * stride_doh + q_start * stride_dos
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_dv = tl.arange(0, BLOCK_DV)
    do = _load_tile(DOb, offs_m, offs_dv, stride_dos, stride_dod, q_len, HEAD_DIM_V,
                    True, BLOCK_DV != HEAD_DIM_V)
    o = _load_tile(Ob, offs_m, offs_dv, stride_os, stride_od, q_len, HEAD_DIM_V,
                   True, BLOCK_DV != HEAD_DIM_V)
    delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)
    tl.store(DELTA + bb * stride_lb + hq * stride_lh + q_start + offs_m, delta, mask=offs_m < q_len)


# -- backward: dK and dV (and dQ by atomics) ------------------------------------------------------

@triton.jit
def _add_dq(dq_desc, DQb, dq, m0, offs_m, q_len, stride_dqs, stride_dqd,
            HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CHECK_ROWS: tl.constexpr,
            DQ_TMA: tl.constexpr):
    """DQ[m0 : m0 + BLOCK_M] += dq (float32, (BLOCK_M, BLOCK_D)): one TMA bulk reduction
    (bounds in hardware), or relaxed element atomics (``red.global.add.f32``) masked to
    the sequence and to D.  Rows past the sequence carry exact zeros (P = 0 there); the
    row mask keeps them inside the buffer."""
    if DQ_TMA:
        dq_desc.atomic_add([m0, 0], dq)
    else:
        offs_d = tl.arange(0, BLOCK_D)
        ptrs = DQb + offs_m[:, None] * stride_dqs + offs_d[None, :] * stride_dqd
        if CHECK_ROWS:
            tl.atomic_add(ptrs, dq, mask=(offs_m[:, None] < q_len) & (offs_d[None, :] < HEAD_DIM),
                          sem="relaxed")
        elif BLOCK_D != HEAD_DIM:
            tl.atomic_add(ptrs, dq, mask=offs_d[None, :] < HEAD_DIM, sem="relaxed")
        else:
            tl.atomic_add(ptrs, dq, sem="relaxed")


@triton.jit
def _query_rows(LSEb, DELTAb, offs_m, q_len, MASKED: tl.constexpr):
    """The dK/dV loops' per-query-row inputs: log2-domain LSE (``+inf`` for a row that saw
    no key, and past the end, so its P is exactly 0) and Δ (0 past the end)."""
    if MASKED:
        lse = tl.load(LSEb + offs_m, mask=offs_m < q_len, other=float("inf"))
        delta = tl.load(DELTAb + offs_m, mask=offs_m < q_len, other=0.0)
    else:
        lse = tl.load(LSEb + offs_m)
        delta = tl.load(DELTAb + offs_m)
    return tl.where(lse == float("-inf"), float("inf"), lse * _LOG2E), delta


@triton.jit
def _dkdv_blocks(dk, dv, k, v, q_desc, do_desc, dq_desc, Qb, DOb, DQb, LSEb, DELTAb,
                 stride_qs, stride_qd, stride_dos, stride_dod, stride_dqs, stride_dqd,
                 start1, n1, start2, n_blocks, offs_n, off, q_len, k_len,
                 s_mul, s_out, win_left, win_right,
                 HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
                 BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_M: tl.constexpr,
                 HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, SOFTCAP: tl.constexpr,
                 USE_TMA: tl.constexpr, DOT_PRECISION: tl.constexpr, MASKED: tl.constexpr,
                 DQ_ATOMIC: tl.constexpr, DQ_TMA: tl.constexpr, PART: tl.constexpr):
    """dV += Pᵀ dO and dK (unscaled) += dSᵀ Q over query blocks, in transposed form;
    with DQ_ATOMIC also DQ (unscaled) += dS K, added into memory per query block.
    PART 1: dV only (Sᵀ, dV); PART 2: dK only (Sᵀ, dPᵀ, dK); 0: both."""
    for it in tl.range(0, n_blocks):
        m0 = _block_start(it, start1, n1, start2, BLOCK_M, MASKED)
        offs_m = m0 + tl.arange(0, BLOCK_M)
        q = _load_block(q_desc, Qb, m0, q_len, stride_qs, stride_qd,
                        BLOCK_M, BLOCK_D, HEAD_DIM, MASKED, USE_TMA)
        lse2, delta = _query_rows(LSEb, DELTAb, offs_m, q_len, MASKED)
        qk_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
        if SOFTCAP:
            t = _tanh(qk_t * s_mul)
            s = t * s_out
        else:
            s = qk_t * s_mul
        if MASKED:
            ok = _allowed(offs_m[None, :], offs_n[:, None], off, k_len, win_left, win_right,
                          HAS_LEFT, HAS_RIGHT)
            s = tl.where(ok, s, float("-inf"))
        p_t = tl.exp2(s - lse2[None, :])
        do = _load_block(do_desc, DOb, m0, q_len, stride_dos, stride_dod,
                         BLOCK_M, BLOCK_DV, HEAD_DIM_V, MASKED, USE_TMA)
        if PART != 2:
            dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=DOT_PRECISION)
        if PART != 1:
            dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
            ds_t = p_t * (dp_t - delta[None, :])
            if SOFTCAP:
                ds_t = ds_t * (1.0 - t * t)
            ds_t = ds_t.to(q.dtype)
            dk = tl.dot(ds_t, q, dk, input_precision=DOT_PRECISION)
            if DQ_ATOMIC:  # the fifth matmul: this key block's share of dQ for these rows
                dq = tl.dot(tl.trans(ds_t), k, input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_D)
                _add_dq(dq_desc, DQb, dq, m0, offs_m, q_len, stride_dqs, stride_dqd,
                        HEAD_DIM, BLOCK_D, MASKED, DQ_TMA)
    return dk, dv


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _attn_bwd_dkdv(
    Q, K, V, DO, LSE, DELTA, DK, DV, DQ, CU_Q, CU_K,
    stride_qb, stride_qh, stride_qs, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_dob, stride_doh, stride_dos, stride_dod,
    stride_dkb, stride_dkh, stride_dks, stride_dkd,
    stride_dvb, stride_dvh, stride_dvs, stride_dvd,
    stride_dqb, stride_dqh, stride_dqs, stride_dqd,  # DQ: float32, used with DQ_ATOMIC only
    stride_lb, stride_lh,
    seqlen_q, seqlen_k, group,
    sm_scale, softcap, win_left, win_right,
    bucket_q, bucket_k,
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, SOFTCAP: tl.constexpr,
    VARLEN: tl.constexpr, USE_TMA: tl.constexpr, DOT_PRECISION: tl.constexpr,
    DQ_ATOMIC: tl.constexpr, DQ_TMA: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PART: tl.constexpr = 0,
):
    """dK and dV for one key block (and, with DQ_ATOMIC, its share of dQ).  PART splits the
    work in two launches of one accumulator each: 1 writes dV only (Sᵀ, dV: K is the only
    register operand), 2 writes dK only (Sᵀ, dPᵀ, dK).  One more Sᵀ product than PART 0,
    but half the accumulator registers, which lets d256 take 64-query steps.  Measured
    slower on the H100 (d256 −2..−11 %, d128 −20..−23 %, NOTES.md): off by default."""
    tl.static_assert(BLOCK_D >= HEAD_DIM and BLOCK_DV >= HEAD_DIM_V)
    tl.static_assert(PART == 0 or not DQ_ATOMIC)
    pid_n = tl.program_id(0)
    hk = tl.program_id(1)
    b = tl.program_id(2)
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, VARLEN)
    k_start, k_len = _seq_bounds(CU_K, b, seqlen_k, VARLEN)
    n0 = pid_n * BLOCK_N
    if VARLEN:
        if n0 >= k_len:
            return
    bb = b.to(tl.int64)
    hk64 = hk.to(tl.int64)
    Kb = K + bb * stride_kb + hk64 * stride_kh + k_start * stride_ks
    Vb = V + bb * stride_vb + hk64 * stride_vh + k_start * stride_vs
    DKb = DK + bb * stride_dkb + hk64 * stride_dkh + k_start * stride_dks
    DVb = DV + bb * stride_dvb + hk64 * stride_dvh + k_start * stride_dvs

    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    k = _load_tile(Kb, offs_n, offs_d, stride_ks, stride_kd, k_len, HEAD_DIM,
                   True, BLOCK_D != HEAD_DIM)
    if PART != 1:
        v = _load_tile(Vb, offs_n, offs_dv, stride_vs, stride_vd, k_len, HEAD_DIM_V,
                       True, BLOCK_DV != HEAD_DIM_V)
    else:  # the dV part never reads V
        v = k
    if SOFTCAP:
        s_mul = sm_scale / softcap
        s_out = softcap * _LOG2E
    else:
        s_mul = sm_scale * _LOG2E
        s_out = 1.0
    # Query rows that see keys [n0, n_last]: the mirror image of the forward's key range.
    off = k_len - q_len
    n_last = tl.minimum(n0 + BLOCK_N, k_len) - 1
    lo, hi, full_lo, full_hi = _visible_range(n0, n_last, -off, q_len, win_right, win_left,
                                              HAS_RIGHT, HAS_LEFT, BLOCK_M)
    n_full = (full_hi - full_lo) // BLOCK_M
    n_before = tl.cdiv(full_lo - lo, BLOCK_M)
    n_edge = n_before + tl.cdiv(hi - full_hi, BLOCK_M)

    # the accumulator a part does not write stays a one-element placeholder
    if PART != 1:
        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    else:
        dk = tl.zeros([1, 1], dtype=tl.float32)
    if PART != 2:
        dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    else:
        dv = tl.zeros([1, 1], dtype=tl.float32)
    # GQA: this program owns kv head hk and sums over its query heads -- no races on dK/dV
    # (dQ rows of one query head get added by every key block: atomics, with DQ_ATOMIC).
    for g in range(0, group):
        hq = (hk * group + g).to(tl.int64)
        Qb = Q + bb * stride_qb + hq * stride_qh + q_start * stride_qs
        DOb = DO + bb * stride_dob + hq * stride_doh + q_start * stride_dos
        DQb = DQ + bb * stride_dqb + hq * stride_dqh + q_start * stride_dqs
        row = bb * stride_lb + hq * stride_lh + q_start
        q_desc = _make_desc(Qb, q_len, stride_qs, HEAD_DIM, BLOCK_M, BLOCK_D, USE_TMA)
        do_desc = _make_desc(DOb, q_len, stride_dos, HEAD_DIM_V, BLOCK_M, BLOCK_DV, USE_TMA)
        dq_desc = _make_desc(DQb, q_len, stride_dqs, HEAD_DIM, BLOCK_M, BLOCK_D, DQ_TMA)
        dk, dv = _dkdv_blocks(dk, dv, k, v, q_desc, do_desc, dq_desc, Qb, DOb, DQb,
                              LSE + row, DELTA + row,
                              stride_qs, stride_qd, stride_dos, stride_dod, stride_dqs, stride_dqd,
                              full_lo, n_full, full_lo, n_full, offs_n, off, q_len, k_len,
                              s_mul, s_out, win_left, win_right,
                              HEAD_DIM, HEAD_DIM_V, BLOCK_D, BLOCK_DV, BLOCK_M,
                              HAS_LEFT, HAS_RIGHT, SOFTCAP, USE_TMA, DOT_PRECISION, False,
                              DQ_ATOMIC, DQ_TMA, PART)
        dk, dv = _dkdv_blocks(dk, dv, k, v, q_desc, do_desc, dq_desc, Qb, DOb, DQb,
                              LSE + row, DELTA + row,
                              stride_qs, stride_qd, stride_dos, stride_dod, stride_dqs, stride_dqd,
                              lo, n_before, full_hi, n_edge, offs_n, off, q_len, k_len,
                              s_mul, s_out, win_left, win_right,
                              HEAD_DIM, HEAD_DIM_V, BLOCK_D, BLOCK_DV, BLOCK_M,
                              HAS_LEFT, HAS_RIGHT, SOFTCAP, USE_TMA, DOT_PRECISION, True,
                              DQ_ATOMIC, DQ_TMA, PART)
    n_ok = offs_n[:, None] < k_len
    if PART != 1:
        dk = dk * sm_scale
        tl.store(DKb + offs_n[:, None] * stride_dks + offs_d[None, :] * stride_dkd,
                 dk.to(DK.dtype.element_ty), mask=n_ok & (offs_d[None, :] < HEAD_DIM))
    if PART != 2:
        tl.store(DVb + offs_n[:, None] * stride_dvs + offs_dv[None, :] * stride_dvd,
                 dv.to(DV.dtype.element_ty), mask=n_ok & (offs_dv[None, :] < HEAD_DIM_V))
