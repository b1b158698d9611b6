"""The lean FlashAttention-2 kernels: the common case only, in as few registers as possible.

    forward    grid (cdiv(Sq, BLOCK_M), Hq, B)   O, LSE for BLOCK_M query rows
    bwd dK/dV  grid (cdiv(Sk, BLOCK_N), Hk, B)   dK, dV for BLOCK_N keys, summed over the
                                                 query heads of the group (the split
                                                 backward's second kernel; Δ comes from
                                                 the general dQ kernel, which runs first)

The general forward (``_kernels._attn_fwd``) carries windows, softcap, varlen, padded and
unequal head dims and a pointer-load fallback in one function; at head dim 128 it needs
8 warps to stay out of local memory (NOTES.md), which leaves one program per SM.  This
kernel handles what most calls are:

* dense ``(B, H, S, D)`` tensors with any strides whose rows suit TMA (BHSD, BSHD, ...),
  one descriptor per (sequence, head) for Q, K, V and O: the hardware checks the bounds,
  zero-fills rows past the end on loads and drops them on stores;
* D == Dv, a power of two (the host decides: 64, 128 or 256 forward, 64 or 128 backward),
  16-bit inputs, ``sm_scale > 0``;
* no mask, or causal aligned bottom-right (``off = Sk - Sq``: query row ``i`` sees key
  ``j`` when ``j <= i + off``); GQA/MQA by ``hq // group``.

The point is occupancy: one warpgroup (4 warps) per program and few enough registers and
shared memory that two programs share an SM, so one program's softmax (or dS arithmetic)
overlaps the other's matmuls -- what FlashAttention-3 gets from ping-pong scheduling,
here left to the warp schedulers.

Key blocks come in two loops: those every row sees in full (no mask), then the masked
ones -- the causal diagonal and a partial last block.  Softmax in base 2 with the scale
folded into the exponent (``exp2(qk * scale * log2e - m)``, one FMA per score); LSE is
stored as a natural log.  A row that sees no key gets O = 0 and LSE = -inf.
"""

import triton
import triton.language as tl

from ._kernels import _make_desc, _query_rows

_LOG2E = tl.constexpr(1.4426950408889634)  # 1 / ln 2: exp(x) = exp2(x * log2(e))
_LN2 = tl.constexpr(0.6931471805599453)  # ln 2: the base-2 LSE back to natural log

# Per-call ints kept out of Triton's specialisation key: (113, 203) and (1024, 1024)
# share one compiled kernel.
_RUNTIME_INTS = ["seqlen_q", "seqlen_k", "group", "bucket_q", "bucket_k", "stride_lb",
                 "stride_lh", "sched_window"]


@triton.jit
def _lpt_order(pid_m, hq, b, n_m, n_h, n_b, sched_window):
    """(query block, head, batch) of the program launched as (pid_m, hq, b), longest causal
    block first.  sched_window = 0: within each head, in the grid's head order.  W > 0 (the
    hopper-fa3 kernels' Tile.lpt order, NOTES.md): programs in launch order walk windows of
    W (batch, head) pairs one block rank at a time, so each window's longest blocks start
    together and the last wave is not the tail of the last heads; W pairs' K and V stay
    within a third of L2 (the host picks W)."""
    if sched_window > 0:
        n_bh = n_h * n_b
        lin = pid_m + n_m * (hq + n_h * b)
        w0 = lin // (sched_window * n_m) * sched_window  # first pair of the window
        wc = tl.minimum(sched_window, n_bh - w0)  # pairs in this window
        r = lin - w0 * n_m
        bh = w0 + r % wc
        pid_m = r // wc
        hq = bh % n_h
        b = bh // n_h
    return n_m - 1 - pid_m, hq, b


@triton.jit
def _lean_blocks(acc, l_i, m_i, q, k_desc, v_desc, lo, hi, offs_m, off, k_len, qk_scale,
                 BLOCK_N: tl.constexpr, MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr,
                 WARP_SPEC: tl.constexpr):
    """Online softmax over the key blocks starting in [lo, hi): acc, l_i, m_i updated
    (base 2, m_i in scaled units), no final rescale."""
    for n0 in tl.range(lo, hi, BLOCK_N, warp_specialize=WARP_SPEC):
        k = k_desc.load([n0, 0])
        qk = tl.dot(q, tl.trans(k))
        if MASKED:  # the causal diagonal and keys past the end (zero-filled by TMA)
            offs_n = n0 + tl.arange(0, BLOCK_N)
            ok = offs_n[None, :] < k_len
            if IS_CAUSAL:
                ok = ok & (offs_n[None, :] <= offs_m[:, None] + off)
            qk = tl.where(ok, qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            # A row with no allowed key so far keeps m = -inf: subtract 0 instead (no NaN).
            m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)  # scale > 0: max commutes
            m_ref = m_new
        p = tl.exp2(qk * qk_scale - m_ref[:, None])
        alpha = tl.exp2(m_i - m_ref)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = v_desc.load([n0, 0])
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _attn_fwd_lean(
    Q, K, V, O, LSE,
    stride_qb, stride_qh, stride_qs,
    stride_kb, stride_kh, stride_ks,
    stride_vb, stride_vh, stride_vs,
    stride_ob, stride_oh, stride_os,
    stride_lb, stride_lh,
    seqlen_q, seqlen_k, group, sm_scale,
    bucket_q, bucket_k,  # autotuning key only
    sched_window,  # causal: > 0 launches longest first across windows of (batch, head) pairs
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WARP_SPEC: tl.constexpr,
):
    tl.static_assert(HEAD_DIM >= 16 and (HEAD_DIM & (HEAD_DIM - 1)) == 0)
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0)
    pid_m = tl.program_id(0)
    hq = tl.program_id(1)
    b = tl.program_id(2)
    if IS_CAUSAL:  # start the blocks with the most keys first
        pid_m, hq, b = _lpt_order(pid_m, hq, b, tl.num_programs(0), tl.num_programs(1),
                                  tl.num_programs(2), sched_window)
    b = b.to(tl.int64)
    m0 = pid_m * BLOCK_M
    hk = (hq // group).to(tl.int64)
    hq = hq.to(tl.int64)
    q_desc = _make_desc(Q + b * stride_qb + hq * stride_qh, seqlen_q, stride_qs, HEAD_DIM,
                        BLOCK_M, HEAD_DIM, True)
    k_desc = _make_desc(K + b * stride_kb + hk * stride_kh, seqlen_k, stride_ks, HEAD_DIM,
                        BLOCK_N, HEAD_DIM, True)
    v_desc = _make_desc(V + b * stride_vb + hk * stride_vh, seqlen_k, stride_vs, HEAD_DIM,
                        BLOCK_N, HEAD_DIM, True)
    o_desc = _make_desc(O + b * stride_ob + hq * stride_oh, seqlen_q, stride_os, HEAD_DIM,
                        BLOCK_M, HEAD_DIM, True)
    q = q_desc.load([m0, 0])
    qk_scale = sm_scale * _LOG2E
    offs_m = m0 + tl.arange(0, BLOCK_M)

    # Key blocks [0, full_hi): seen in full by every row of the tile; [full_hi, hi): masked.
    off = seqlen_k - seqlen_q
    full_hi = seqlen_k // BLOCK_N * BLOCK_N
    hi = seqlen_k
    if IS_CAUSAL:
        m_last = tl.minimum(m0 + BLOCK_M, seqlen_q) - 1
        # row m0 sees keys <= m0 + off; clamp before dividing (Triton's // truncates)
        full_hi = tl.minimum(full_hi, tl.maximum(m0 + off + 1, 0) // BLOCK_N * BLOCK_N)
        hi = tl.maximum(tl.minimum(m_last + off + 1, seqlen_k), full_hi)

    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc, l_i, m_i = _lean_blocks(acc, l_i, m_i, q, k_desc, v_desc, 0, full_hi, offs_m, off,
                                 seqlen_k, qk_scale, BLOCK_N, False, IS_CAUSAL, WARP_SPEC)
    acc, l_i, m_i = _lean_blocks(acc, l_i, m_i, q, k_desc, v_desc, full_hi, hi, offs_m, off,
                                 seqlen_k, qk_scale, BLOCK_N, True, IS_CAUSAL, False)

    # Epilogue: the one rescale; rows that saw no key get O = 0, LSE = -inf.
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    o_desc.store([m0, 0], (acc / l_safe[:, None]).to(O.dtype.element_ty))
    lse = tl.where(empty, float("-inf"), (m_i + tl.log2(l_safe)) * _LN2)
    tl.store(LSE + b * stride_lb + hq * stride_lh + offs_m, lse, mask=offs_m < seqlen_q)


# -- backward: dK and dV ---------------------------------------------------------------------

@triton.jit
def _lean_dkdv_blocks(dk, dv, k, v, q_desc, do_desc, LSEb, DELTAb, lo, hi, offs_n, off,
                      q_len, k_len, s_mul,
                      BLOCK_M: tl.constexpr, MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr):
    """dV += Pᵀ dO and dK (unscaled) += dSᵀ Q over the query blocks starting in [lo, hi),
    in transposed form (key rows are the matmuls' M: dK and dV stay in the accumulators)."""
    for m0 in tl.range(lo, hi, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        q = q_desc.load([m0, 0])
        lse2, delta = _query_rows(LSEb, DELTAb, offs_m, q_len, MASKED)
        qk_t = tl.dot(k, tl.trans(q))  # (BLOCK_N, BLOCK_M)
        if MASKED:
            ok = offs_n[:, None] < k_len
            if IS_CAUSAL:
                ok = ok & (offs_n[:, None] <= offs_m[None, :] + off)
            p_t = tl.where(ok, tl.exp2(qk_t * s_mul - lse2[None, :]), 0.0)
        else:
            p_t = tl.exp2(qk_t * s_mul - lse2[None, :])
        do = do_desc.load([m0, 0])
        dv = tl.dot(p_t.to(do.dtype), do, dv)
        dp_t = tl.dot(v, tl.trans(do))
        ds_t = (p_t * (dp_t - delta[None, :])).to(q.dtype)
        dk = tl.dot(ds_t, q, dk)
    return dk, dv


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _attn_bwd_dkdv_lean(
    Q, K, V, DO, LSE, DELTA, DK, DV,
    stride_qb, stride_qh, stride_qs,
    stride_kb, stride_kh, stride_ks,
    stride_vb, stride_vh, stride_vs,
    stride_dob, stride_doh, stride_dos,
    stride_dkb, stride_dkh, stride_dks,
    stride_dvb, stride_dvh, stride_dvs,
    stride_lb, stride_lh,  # LSE and DELTA share a layout
    seqlen_q, seqlen_k, group, sm_scale,
    bucket_q, bucket_k,  # autotuning key only
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """The lean forward's case, backward: Q, K, V, dO, dK, dV through descriptors.

    Key rows past Sk (a partial last block) hold zeros from TMA; whatever their dK/dV
    rows accumulate stays in those rows (every product is row-wise in the keys) and the
    descriptor store drops them, so only query rows need masks."""
    tl.static_assert(HEAD_DIM >= 16 and (HEAD_DIM & (HEAD_DIM - 1)) == 0)
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0)
    pid_n = tl.program_id(0)
    hk = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    n0 = pid_n * BLOCK_N
    k_desc = _make_desc(K + b * stride_kb + hk * stride_kh, seqlen_k, stride_ks, HEAD_DIM,
                        BLOCK_N, HEAD_DIM, True)
    v_desc = _make_desc(V + b * stride_vb + hk * stride_vh, seqlen_k, stride_vs, HEAD_DIM,
                        BLOCK_N, HEAD_DIM, True)
    dk_desc = _make_desc(DK + b * stride_dkb + hk * stride_dkh, seqlen_k, stride_dks,
                         HEAD_DIM, BLOCK_N, HEAD_DIM, True)
    dv_desc = _make_desc(DV + b * stride_dvb + hk * stride_dvh, seqlen_k, stride_dvs,
                         HEAD_DIM, BLOCK_N, HEAD_DIM, True)
    k = k_desc.load([n0, 0])
    v = v_desc.load([n0, 0])
    s_mul = sm_scale * _LOG2E
    offs_n = n0 + tl.arange(0, BLOCK_N)

    # Query blocks: [full_lo, full_hi) see every key of this block (no mask), [lo, full_lo)
    # and [full_hi, seqlen_q) are masked.  Causal, bottom-right: row i sees key j when
    # j <= i + off, so rows >= n0 - off see some of these keys, rows >= n_last - off all.
    off = seqlen_k - seqlen_q
    lo = 0
    full_lo = 0
    full_hi = seqlen_q // BLOCK_M * BLOCK_M
    if IS_CAUSAL:
        n_last = tl.minimum(n0 + BLOCK_N, seqlen_k) - 1
        # clamp before dividing (Triton's // truncates)
        lo = tl.minimum(tl.maximum(n0 - off, 0) // BLOCK_M * BLOCK_M, seqlen_q)
        full_lo = tl.minimum((tl.maximum(n_last - off, 0) + BLOCK_M - 1) // BLOCK_M * BLOCK_M,
                             seqlen_q)
        full_hi = tl.maximum(full_hi, full_lo)

    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    # GQA: this program owns kv head hk and sums over its query heads (no races on dK/dV).
    for g in range(0, group):
        hq = hk * group + g
        q_desc = _make_desc(Q + b * stride_qb + hq * stride_qh, seqlen_q, stride_qs,
                            HEAD_DIM, BLOCK_M, HEAD_DIM, True)
        do_desc = _make_desc(DO + b * stride_dob + hq * stride_doh, seqlen_q, stride_dos,
                             HEAD_DIM, BLOCK_M, HEAD_DIM, True)
        LSEb = LSE + b * stride_lb + hq * stride_lh
        DELTAb = DELTA + b * stride_lb + hq * stride_lh
        dk, dv = _lean_dkdv_blocks(dk, dv, k, v, q_desc, do_desc, LSEb, DELTAb,
                                   full_lo, full_hi, offs_n, off, seqlen_q, seqlen_k, s_mul,
                                   BLOCK_M, False, IS_CAUSAL)
        dk, dv = _lean_dkdv_blocks(dk, dv, k, v, q_desc, do_desc, LSEb, DELTAb,
                                   lo, full_lo, offs_n, off, seqlen_q, seqlen_k, s_mul,
                                   BLOCK_M, True, IS_CAUSAL)
        dk, dv = _lean_dkdv_blocks(dk, dv, k, v, q_desc, do_desc, LSEb, DELTAb,
                                   full_hi, seqlen_q, offs_n, off, seqlen_q, seqlen_k, s_mul,
                                   BLOCK_M, True, IS_CAUSAL)
    dk_desc.store([n0, 0], (dk * sm_scale).to(DK.dtype.element_ty))
    dv_desc.store([n0, 0], dv.to(DV.dtype.element_ty))
