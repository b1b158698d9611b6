"""Triton kernel of ``hopper-fa3``: the FlashAttention forward, written for sm90.

One program computes one ``BLOCK_M`` tile of query rows of one (batch, head) against all
the keys it may see.  Hopper-specific pieces:

* Q/K/V/O move through tensor descriptors (TMA, ``cp.async.bulk.tensor``) when
  ``USE_TMA``; dense tensors get 4-D descriptors over (B, H, S, D), so a tile never
  crosses into the next head and tails are zero-filled by the copy engine (no masks on
  loads).  Without ``USE_TMA`` (interpreter, unaligned strides, varlen outputs) the same
  code runs on pointer loads with masks.
* ``WARP_SPEC`` turns on Triton's automatic warp specialisation of the key loop
  (producer warps issue TMA copies, consumer warpgroups run wgmma + softmax).
* The key range of a tile is split in three loops: left-window blocks (masked), blocks
  every row may see (no mask code at all), and right-edge blocks (causal diagonal,
  window right edge, the ragged tail of Sk; masked).  Blocks no row may see are skipped.
* ``PIPE_QK``: the next block's S = Q K^T is issued before this block's softmax (FA3's
  intra-warpgroup softmax/GEMM overlap, written as software pipelining).
* Softmax in base 2 with the scale folded into one FMA (``qk * qk_scale - m``).
* FP8 (e4m3): ``tl.dot`` on fp8 operands (QGMMA); the QK descales fold into
  ``qk_scale``, P is rounded to e4m3 for the PV product and V's descale is applied once
  at the end.  V must be stored sequence-major (``v.stride(-2) == 1``, i.e. a transposed
  buffer) because fp8 wgmma needs both operands K-major.

Semantics (masks, softcap, fully masked rows -> O = 0, LSE = -inf) are those of
:mod:`attnhub.reference`; LSE is returned in natural log.
"""

import triton
import triton.language as tl

LOG2E = 1.4426950408889634  # 1 / ln 2: exp(x) = exp2(x * LOG2E)
LN2 = 0.6931471805599453  # ln 2: ln(x) = log2(x) * LN2


@triton.jit
def _load_rows(DESC, PTR, coord_b, coord_h, row0, n_rows, stride_row, stride_d,
               BLOCK: tl.constexpr, D: tl.constexpr, D_ACT: tl.constexpr,
               USE_TMA: tl.constexpr, VARLEN: tl.constexpr):
    """A (BLOCK, D) tile of rows ``row0..row0+BLOCK`` of one head; rows >= n_rows and
    columns >= D_ACT read as zero.  PTR is already offset to the (batch, head)."""
    if USE_TMA:
        if VARLEN:
            t = DESC.load([row0, coord_h, 0])
        else:
            t = DESC.load([coord_b, coord_h, row0, 0])
        t = t.reshape(BLOCK, D)
    else:
        rows = row0 + tl.arange(0, BLOCK)
        cols = tl.arange(0, D)
        mask = (rows[:, None] < n_rows) & (cols[None, :] < D_ACT)
        t = tl.load(PTR + rows[:, None] * stride_row + cols[None, :] * stride_d, mask=mask,
                    other=0.0)
    return t


@triton.jit
def _load_cols(DESC, PTR, coord_b, coord_h, col0, n_cols, stride_row, stride_d,
               BLOCK: tl.constexpr, D: tl.constexpr, D_ACT: tl.constexpr,
               USE_TMA: tl.constexpr):
    """A (D, BLOCK) tile of a sequence-major (transposed) V: columns are key positions."""
    if USE_TMA:
        t = DESC.load([coord_b, coord_h, 0, col0]).reshape(D, BLOCK)
    else:
        cols = col0 + tl.arange(0, BLOCK)
        rows = tl.arange(0, D)
        mask = (rows[:, None] < D_ACT) & (cols[None, :] < n_cols)
        t = tl.load(PTR + cols[None, :] * stride_row + rows[:, None] * stride_d, mask=mask,
                    other=0.0)
    return t


@triton.jit
def _qk(q, K_DESC, k_ptr, coord_b, coord_hk, k_row, seq_k, stride_kn, stride_kd,
        BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, D_ACT: tl.constexpr,
        USE_TMA: tl.constexpr, VARLEN: tl.constexpr, DOT_UPCAST: tl.constexpr):
    """S = Q K^T for one key block (wgmma; K is K-major as loaded, the transpose is free)."""
    k = _load_rows(K_DESC, k_ptr, coord_b, coord_hk, k_row, seq_k, stride_kn, stride_kd,
                   BLOCK_N, HEAD_DIM, D_ACT, USE_TMA, VARLEN)
    if DOT_UPCAST:  # interpreter: its bf16/fp8 dot is wrong, compute it in fp32
        qk = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)))
    else:
        qk = tl.dot(q, tl.trans(k))
    return qk


@triton.jit
def _update(acc, l_i, m_i, qk, V_DESC, v_ptr, coord_b, coord_hk, k_base, start_n, seq_k,
            q_rows, off, win_left, win_right, qk_scale, softcap_in, softcap_out,
            stride_vn, stride_vd,
            BLOCK_N: tl.constexpr, HEAD_DIM_V: tl.constexpr, DV_ACT: tl.constexpr,
            MASKED: tl.constexpr, MASK_LEFT: tl.constexpr, MASK_RIGHT: tl.constexpr,
            SOFTCAP: tl.constexpr, V_SEQ_MAJOR: tl.constexpr, USE_TMA: tl.constexpr,
            VARLEN: tl.constexpr, DOT_UPCAST: tl.constexpr, P_BIAS: tl.constexpr,
            NEG_SCALE: tl.constexpr):
    """Online softmax of one score block S and O += P V: the updated (acc, l_i, m_i)."""
    # -- scale (and softcap) in base 2 -------------------------------------------------
    if SOFTCAP:
        # c * tanh(s / c) with s = scale * q.k; tanh(x) = 1 - 2 / (exp(2x) + 1)
        t = qk * softcap_in  # = scale * q.k / c (descales folded in)
        e = tl.math.exp2(t * (2.0 * 1.4426950408889634))
        qk = (1.0 - 2.0 / (e + 1.0)) * softcap_out  # c * tanh(...) * log2(e)
        scale = 1.0
    else:
        scale = qk_scale
    if MASKED:
        cols = start_n + tl.arange(0, BLOCK_N)
        ok = cols[None, :] < seq_k
        if MASK_RIGHT:
            ok = ok & (cols[None, :] <= q_rows[:, None] + off + win_right)
        if MASK_LEFT:
            ok = ok & (cols[None, :] >= q_rows[:, None] + off - win_left)
        qk = tl.where(ok, qk * scale, float("-inf"))
        m_ij = tl.maximum(m_i, tl.max(qk, 1))
        # rows with nothing allowed so far keep m = -inf; subtract 0 instead (no NaN)
        m_use = tl.where(m_ij == float("-inf"), 0.0, m_ij)
        qk = qk - (m_use - P_BIAS)[:, None]
    else:
        # the largest scaled score: scale * max(qk), or scale * min(qk) when the scale is
        # negative (scale * max would be the smallest: P = exp2(s - m) then overflows, to
        # inf in fp16 and past e4m3's 448 under FP8's bias)
        if NEG_SCALE:
            m_ij = tl.maximum(m_i, tl.min(qk, 1) * scale)
        else:
            m_ij = tl.maximum(m_i, tl.max(qk, 1) * scale)
        m_use = m_ij
        qk = qk * scale - (m_use - P_BIAS)[:, None]  # one FMA per score
    p = tl.math.exp2(qk)
    alpha = tl.math.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    # -- O += P V ----------------------------------------------------------------------
    if V_SEQ_MAJOR:
        vt = _load_cols(V_DESC, v_ptr, coord_b, coord_hk, k_base + start_n, seq_k, stride_vn,
                        stride_vd, BLOCK_N, HEAD_DIM_V, DV_ACT, USE_TMA)
        v = tl.trans(vt)
    else:
        v = _load_rows(V_DESC, v_ptr, coord_b, coord_hk, k_base + start_n, seq_k, stride_vn,
                       stride_vd, BLOCK_N, HEAD_DIM_V, DV_ACT, USE_TMA, VARLEN)
    if DOT_UPCAST:
        if not V_SEQ_MAJOR:  # (FP8 keeps P in fp32 here: the interpreter's fp32->e4m3
            p = p.to(v.dtype).to(tl.float32)  # cast halves values that round up a binade)
        acc = tl.dot(p, v.to(tl.float32), acc)
    else:
        acc = tl.dot(p.to(v.dtype), v, acc)  # bf16/fp16, or e4m3 for FP8 (QGMMA)
    return acc, l_i, m_ij


@triton.jit
def _attn_fwd(
    Q, K, V, O,  # tensor descriptors (USE_TMA) or tensors
    LSE, Q_DESCALE, K_DESCALE, V_DESCALE, CU_Q, CU_K,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_lb, stride_lh, stride_lm,
    stride_dsb, stride_dsh,
    H, GROUP, SQ, SK,
    qk_scale, softcap_in, softcap_out, win_left, win_right,
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,  # padded to powers of two
    D_ACT: tl.constexpr, DV_ACT: tl.constexpr,  # the real head dims
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    MASK_LEFT: tl.constexpr, MASK_RIGHT: tl.constexpr, SOFTCAP: tl.constexpr,
    IS_FP8: tl.constexpr, V_SEQ_MAJOR: tl.constexpr, VARLEN: tl.constexpr,
    USE_TMA: tl.constexpr, TMA_STORE: tl.constexpr, WARP_SPEC: tl.constexpr,
    REVERSE_M: tl.constexpr, PIPE_QK: tl.constexpr, DOT_UPCAST: tl.constexpr,
    P_BIAS: tl.constexpr,  # FP8: 8.0, see below; else 0.0
    NEG_SCALE: tl.constexpr,  # qk_scale < 0 (no softcap): the block max is scale * min(qk)
):
    # FP8: P = exp2(s - m + 8) lies in (0, 256], inside e4m3's normal range (2^-6..448), so
    # small probabilities keep 3 mantissa bits instead of flushing to subnormals; the
    # factor 2^8 cancels in O = acc / l and is taken out of the LSE.
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0)
    # -- which tile ------------------------------------------------------------------
    pid_m = tl.program_id(0)
    if REVERSE_M:  # causal: the longest rows first, so the tail of the grid is short work
        pid_m = tl.num_programs(0) - 1 - pid_m
    # (m, head, batch): the launch order of the former (m, batch * H + head) grid, without
    # its 65535 limit on batch * H (grid y); batch and heads are each <= 65535 (reasons)
    h = tl.program_id(1)
    b = tl.program_id(2)
    hk = h // GROUP
    m0 = pid_m * BLOCK_M
    # pointers are offset to this (batch, head); descriptors carry their own addressing
    q_ptr = Q
    k_ptr = K
    v_ptr = V
    o_ptr = O
    if VARLEN:
        q_row0 = tl.load(CU_Q + b)
        seq_q = tl.load(CU_Q + b + 1) - q_row0
        k_row0 = tl.load(CU_K + b)
        seq_k = tl.load(CU_K + b + 1) - k_row0
        if m0 >= seq_q:
            return
        lse_ptr = LSE + h * stride_lh + q_row0 * stride_lm
        if not USE_TMA:
            q_ptr = Q + q_row0.to(tl.int64) * stride_qm + h * stride_qh
            k_ptr = K + k_row0.to(tl.int64) * stride_kn + hk * stride_kh
            v_ptr = V + k_row0.to(tl.int64) * stride_vn + hk * stride_vh
        if not TMA_STORE:
            o_ptr = O + q_row0.to(tl.int64) * stride_om + h * stride_oh
        desc_row0 = q_row0
    else:
        seq_q = SQ
        seq_k = SK
        k_row0 = 0
        desc_row0 = 0
        lse_ptr = LSE + b.to(tl.int64) * stride_lb + h * stride_lh
        if not USE_TMA:
            q_ptr = Q + b.to(tl.int64) * stride_qb + h * stride_qh
            k_ptr = K + b.to(tl.int64) * stride_kb + hk * stride_kh
            v_ptr = V + b.to(tl.int64) * stride_vb + hk * stride_vh
        if not TMA_STORE:
            o_ptr = O + b.to(tl.int64) * stride_ob + h * stride_oh
    off = seq_k - seq_q  # bottom-right alignment: row i sees keys j <= i + off (causal)

    # -- key range: [lo, hi) may be seen by some row, [full_lo, full_hi) by all rows ----
    lo = 0
    hi = seq_k
    full_lo = 0
    full_hi = (seq_k // BLOCK_N) * BLOCK_N
    if MASK_RIGHT:
        hi = tl.minimum(seq_k, tl.maximum(m0 + BLOCK_M + off + win_right, 0))
        full_hi = tl.minimum(full_hi, (tl.maximum(m0 + off + win_right + 1, 0) // BLOCK_N)
                             * BLOCK_N)
    if MASK_LEFT:
        lo = (tl.maximum(m0 + off - win_left, 0) // BLOCK_N) * BLOCK_N
        full_lo = tl.cdiv(tl.maximum(m0 + BLOCK_M - 1 + off - win_left, 0), BLOCK_N) * BLOCK_N
    full_lo = tl.minimum(tl.maximum(full_lo, lo), hi)
    full_hi = tl.maximum(tl.minimum(full_hi, hi), full_lo)

    # -- Q tile, state ---------------------------------------------------------------
    # descriptors address rows of the packed tensor, pointers are already offset to them
    q_base = desc_row0 if USE_TMA else 0
    k_base = k_row0 if USE_TMA else 0
    q = _load_rows(Q, q_ptr, b, h, q_base + m0, seq_q, stride_qm, stride_qd,
                   BLOCK_M, HEAD_DIM, D_ACT, USE_TMA, VARLEN)
    if IS_FP8:
        ds = b * stride_dsb + hk * stride_dsh
        qk_scale = qk_scale * tl.load(Q_DESCALE + ds) * tl.load(K_DESCALE + ds)
        softcap_in = softcap_in * tl.load(Q_DESCALE + ds) * tl.load(K_DESCALE + ds)
    q_rows = m0 + tl.arange(0, BLOCK_M)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM_V], tl.float32)

    # -- phase 1: left edge of a window (masked) ---------------------------------------
    if MASK_LEFT:
        for start_n in tl.range(lo, full_lo, BLOCK_N, warp_specialize=WARP_SPEC):
            qk = _qk(q, K, k_ptr, b, hk, k_base + start_n, seq_k, stride_kn, stride_kd,
                     BLOCK_N, HEAD_DIM, D_ACT, USE_TMA, VARLEN, DOT_UPCAST)
            acc, l_i, m_i = _update(
                acc, l_i, m_i, qk, V, v_ptr, b, hk, k_base, start_n, seq_k, q_rows, off,
                win_left, win_right, qk_scale, softcap_in, softcap_out, stride_vn, stride_vd,
                BLOCK_N, HEAD_DIM_V, DV_ACT, True, MASK_LEFT, MASK_RIGHT, SOFTCAP, V_SEQ_MAJOR,
                USE_TMA, VARLEN, DOT_UPCAST, P_BIAS, NEG_SCALE)
    # -- phase 2: blocks every row sees (no mask arithmetic) -----------------------------
    if PIPE_QK:
        # FA3's intra-warpgroup overlap, by hand: S_{j+1} = Q K_{j+1}^T is issued before
        # the softmax of S_j, so the tensor cores work while the softmax runs.
        if full_hi > full_lo:
            qk = _qk(q, K, k_ptr, b, hk, k_base + full_lo, seq_k, stride_kn, stride_kd,
                     BLOCK_N, HEAD_DIM, D_ACT, USE_TMA, VARLEN, DOT_UPCAST)
            for start_n in tl.range(full_lo, full_hi - BLOCK_N, BLOCK_N,
                                    warp_specialize=WARP_SPEC):
                qk_next = _qk(q, K, k_ptr, b, hk, k_base + start_n + BLOCK_N, seq_k,
                              stride_kn, stride_kd, BLOCK_N, HEAD_DIM, D_ACT, USE_TMA, VARLEN,
                              DOT_UPCAST)
                acc, l_i, m_i = _update(
                    acc, l_i, m_i, qk, V, v_ptr, b, hk, k_base, start_n, seq_k, q_rows, off,
                    win_left, win_right, qk_scale, softcap_in, softcap_out, stride_vn,
                    stride_vd, BLOCK_N, HEAD_DIM_V, DV_ACT, False, MASK_LEFT, MASK_RIGHT,
                    SOFTCAP, V_SEQ_MAJOR, USE_TMA, VARLEN, DOT_UPCAST, P_BIAS, NEG_SCALE)
                qk = qk_next
            acc, l_i, m_i = _update(
                acc, l_i, m_i, qk, V, v_ptr, b, hk, k_base, full_hi - BLOCK_N, seq_k, q_rows,
                off, win_left, win_right, qk_scale, softcap_in, softcap_out, stride_vn,
                stride_vd, BLOCK_N, HEAD_DIM_V, DV_ACT, False, MASK_LEFT, MASK_RIGHT, SOFTCAP,
                V_SEQ_MAJOR, USE_TMA, VARLEN, DOT_UPCAST, P_BIAS, NEG_SCALE)
    else:
        for start_n in tl.range(full_lo, full_hi, BLOCK_N, warp_specialize=WARP_SPEC):
            qk = _qk(q, K, k_ptr, b, hk, k_base + start_n, seq_k, stride_kn, stride_kd,
                     BLOCK_N, HEAD_DIM, D_ACT, USE_TMA, VARLEN, DOT_UPCAST)
            acc, l_i, m_i = _update(
                acc, l_i, m_i, qk, V, v_ptr, b, hk, k_base, start_n, seq_k, q_rows, off,
                win_left, win_right, qk_scale, softcap_in, softcap_out, stride_vn, stride_vd,
                BLOCK_N, HEAD_DIM_V, DV_ACT, False, MASK_LEFT, MASK_RIGHT, SOFTCAP, V_SEQ_MAJOR,
                USE_TMA, VARLEN, DOT_UPCAST, P_BIAS, NEG_SCALE)
    # -- phase 3: causal diagonal / window right edge / ragged tail (masked) ------------
    for start_n in tl.range(full_hi, hi, BLOCK_N, warp_specialize=WARP_SPEC):
        qk = _qk(q, K, k_ptr, b, hk, k_base + start_n, seq_k, stride_kn, stride_kd,
                 BLOCK_N, HEAD_DIM, D_ACT, USE_TMA, VARLEN, DOT_UPCAST)
        acc, l_i, m_i = _update(
            acc, l_i, m_i, qk, V, v_ptr, b, hk, k_base, start_n, seq_k, q_rows, off,
            win_left, win_right, qk_scale, softcap_in, softcap_out, stride_vn, stride_vd,
            BLOCK_N, HEAD_DIM_V, DV_ACT, True, MASK_LEFT, MASK_RIGHT, SOFTCAP, V_SEQ_MAJOR,
            USE_TMA, VARLEN, DOT_UPCAST, P_BIAS, NEG_SCALE)

    # -- epilogue: O = acc / l, LSE = ln(sum exp) ----------------------------------------
    empty = l_i == 0.0  # no allowed key: O = 0, LSE = -inf
    acc = acc / tl.where(empty, 1.0, l_i)[:, None]
    if IS_FP8:
        acc = acc * tl.load(V_DESCALE + b * stride_dsb + hk * stride_dsh)
    log2_l = tl.math.log2(tl.where(empty, 1.0, l_i))
    lse = tl.where(empty, float("-inf"), (m_i - P_BIAS + log2_l) * 0.6931471805599453)  # ln 2
    tl.store(lse_ptr + q_rows * stride_lm, lse, mask=q_rows < seq_q)
    if TMA_STORE:
        O.store([b, h, m0, 0], acc.to(O.dtype).reshape(1, 1, BLOCK_M, HEAD_DIM_V))
    else:
        out = acc.to(o_ptr.dtype.element_ty)
        cols = tl.arange(0, HEAD_DIM_V)
        mask = (q_rows[:, None] < seq_q) & (cols[None, :] < DV_ACT)
        tl.store(o_ptr + q_rows[:, None] * stride_om + cols[None, :] * stride_od, out, mask=mask)
