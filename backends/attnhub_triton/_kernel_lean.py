"""The lean FlashAttention-2 forward: the common case only, in as few registers as possible.

    forward    grid (cdiv(Sq, BLOCK_M), Hq, B)   O, LSE for BLOCK_M query rows

The general forward (``_kernels._attn_fwd``) carries windows, softcap, varlen, padded and
unequal head dims and a pointer-load fallback in one function; at head dim 128 it needs
8 warps to stay out of local memory (NOTES.md), which leaves one program per SM.  This
kernel handles what most calls are:

* dense ``(B, H, S, D)`` tensors with any strides whose rows suit TMA (BHSD, BSHD, ...),
  one descriptor per (sequence, head) for Q, K, V and O: the hardware checks the bounds,
  zero-fills rows past the end on loads and drops them on stores;
* D == Dv, a power of two (64 or 128: the host decides), 16-bit inputs, ``sm_scale > 0``;
* no mask, or causal aligned bottom-right (``off = Sk - Sq``: query row ``i`` sees key
  ``j`` when ``j <= i + off``); GQA/MQA by ``hq // group``.

Key blocks come in two loops: those every row sees in full (no mask), then the masked
ones -- the causal diagonal and a partial last block.  Softmax in base 2 with the scale
folded into the exponent (``exp2(qk * scale * log2e - m)``, one FMA per score); LSE is
stored as a natural log.  A row that sees no key gets O = 0 and LSE = -inf.
"""

import triton
import triton.language as tl

from ._kernels import _make_desc

_LOG2E = tl.constexpr(1.4426950408889634)  # 1 / ln 2: exp(x) = exp2(x * log2(e))
_LN2 = tl.constexpr(0.6931471805599453)  # ln 2: the base-2 LSE back to natural log

# Per-call ints kept out of Triton's specialisation key: (113, 203) and (1024, 1024)
# share one compiled kernel.
_RUNTIME_INTS = ["seqlen_q", "seqlen_k", "group", "bucket_q", "bucket_k", "stride_lb",
                 "stride_lh"]


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
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WARP_SPEC: tl.constexpr,
):
    tl.static_assert(HEAD_DIM >= 16 and (HEAD_DIM & (HEAD_DIM - 1)) == 0)
    tl.static_assert(BLOCK_M % 16 == 0 and BLOCK_N % 16 == 0)
    pid_m = tl.program_id(0)
    hq = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    if IS_CAUSAL:  # start the blocks with the most keys first
        pid_m = tl.num_programs(0) - 1 - pid_m
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
