"""The floor: the smallest FlashAttention-2 forward Triton compiles (non-causal, dense BHSD,
16-bit, S a multiple of the blocks, no LSE, no masking), written to measure how far
triton-fa2's forward sits from what plain Triton reaches on the same machine
(``triton_floor.py``).  ../shared/DEVICE_NOTES.md reports such a kernel at 440 TFLOP/s
(d64/2k) and 520-554 with warp specialisation (d128) on the lent H100, where triton-fa2's
lean forward read 377-381 and 452-515 in the grids.  Not a backend: it returns no LSE and
checks nothing about its input.

``floor_fwd_host`` is the same loop on descriptors the host builds once per call (2-D over
all (batch, head) rows, as Triton's tutorial does), against ``floor_fwd``'s in-kernel
descriptors, which every program writes and fences for itself."""

import triton
import triton.language as tl


@triton.jit
def _scores(q, k, acc, l_i, m_i, qk_scale):
    """One key block of the online softmax: P (base 2, unnormalised) and the running state
    moved to the new row max (inlined by Triton: the same code as written in the loop)."""
    qk = tl.dot(q, tl.trans(k))
    m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    p = tl.math.exp2(qk * qk_scale - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    return p, acc * alpha[:, None], l_i * alpha + tl.sum(p, 1), m_new


@triton.jit
def floor_fwd(Q, K, V, O, seqlen, qk_scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
              BLOCK_N: tl.constexpr, USE_TMA: tl.constexpr, WARP_SPEC: tl.constexpr):
    pid_m = tl.program_id(0)
    base = tl.program_id(1).to(tl.int64) * seqlen * HEAD_DIM  # (batch, head) of dense BHSD
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    if USE_TMA:
        q_d = tl.make_tensor_descriptor(Q + base, shape=[seqlen, HEAD_DIM],
                                        strides=[HEAD_DIM, 1], block_shape=[BLOCK_M, HEAD_DIM])
        k_d = tl.make_tensor_descriptor(K + base, shape=[seqlen, HEAD_DIM],
                                        strides=[HEAD_DIM, 1], block_shape=[BLOCK_N, HEAD_DIM])
        v_d = tl.make_tensor_descriptor(V + base, shape=[seqlen, HEAD_DIM],
                                        strides=[HEAD_DIM, 1], block_shape=[BLOCK_N, HEAD_DIM])
        q = q_d.load([m0, 0])
    else:
        q = tl.load(Q + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :])
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for n0 in tl.range(0, seqlen, BLOCK_N, warp_specialize=WARP_SPEC):
        if USE_TMA:
            k = k_d.load([n0, 0])
        else:
            k = tl.load(K + base + (n0 + offs_n)[:, None] * HEAD_DIM + offs_d[None, :])
        p, acc, l_i, m_new = _scores(q, k, acc, l_i, m_i, qk_scale)
        if USE_TMA:
            v = v_d.load([n0, 0])
        else:
            v = tl.load(V + base + (n0 + offs_n)[:, None] * HEAD_DIM + offs_d[None, :])
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
    o = (acc / l_i[:, None]).to(O.dtype.element_ty)
    tl.store(O + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :], o)


@triton.jit
def floor_fwd_host(q_d, k_d, v_d, O, seqlen, qk_scale, HEAD_DIM: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``floor_fwd`` with host-built descriptors over the (B*H*S, D) rows: a head's rows
    start at bh * seqlen, and S must be a multiple of both blocks (no per-head bounds)."""
    pid_m = tl.program_id(0)
    row0 = tl.program_id(1) * seqlen
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = q_d.load([row0 + m0, 0])
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for n0 in tl.range(0, seqlen, BLOCK_N):
        k = k_d.load([row0 + n0, 0])
        p, acc, l_i, m_new = _scores(q, k, acc, l_i, m_i, qk_scale)
        v = v_d.load([row0 + n0, 0])
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
    o = (acc / l_i[:, None]).to(O.dtype.element_ty)
    base = tl.program_id(1).to(tl.int64) * seqlen * HEAD_DIM
    tl.store(O + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :], o)
