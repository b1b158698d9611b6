"""Triton kernels around the CUDA backward (``fa3_bwd.cu``): the pre-pass and the dQ
conversion, one memory pass each.

- ``_prep``: per query block, Δ = rowsum(dO∘O) in float32 and log2-LSE (``+inf`` where LSE
  is ``-inf`` and on the padding past Sq), written to the contiguous padded buffers the
  kernel's bulk copies read.
- ``_dq_convert``: one consumer warpgroup's 64 × dq_n float32 share of a query block, stored
  by the kernel in its threads' register order, gathered back to (row, column), scaled and
  written into dQ in q's dtype and strides.

``cuda_bwd.prepare`` / ``cuda_bwd.dq_from_accum`` call these on CUDA tensors and keep a
torch formulation for everything else; the CPU tests run both under ``TRITON_INTERPRET=1``
and compare them.  (The torch versions cost ≈ 0.4 ms of a 10 ms d128/16k backward: float32
copies of O and dO, a permuting copy of the accumulator.)
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)  # a global a @jit function reads must be constexpr


@triton.jit
def _prep(O, DO, LSE, LSE2, DELTA,
          so_b, so_h, so_s, so_d, sd_b, sd_h, sd_s, sd_d, sl_b, sl_h, sl_s,
          H, seqlen_q, rows_pad, head_dim,
          HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, VEC: tl.constexpr = False):
    # HEAD_DIM: head_dim's next power of two (tl.arange's rule); the columns past it masked
    # grid (query blocks, H, B): B * H may pass the 65535 limit of a grid's y dimension
    pid_m = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    bh = b * H + h
    rows = pid_m * BLOCK + tl.arange(0, BLOCK)
    live = rows < seqlen_q
    rows64 = rows.to(tl.int64)  # rows * stride passes 2**31 on long BSHD sequences
    cols = tl.arange(0, HEAD_DIM)
    mask = live[:, None] & (cols[None, :] < head_dim)
    o = tl.load(O + b * so_b + h * so_h + rows64[:, None] * so_s + cols[None, :] * so_d,
                mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + b * sd_b + h * sd_h + rows64[:, None] * sd_s + cols[None, :] * sd_d,
                 mask=mask, other=0.0).to(tl.float32)
    delta = tl.sum(o * do, axis=1)
    lse = tl.load(LSE + b * sl_b + h * sl_h + rows64 * sl_s, mask=live, other=float("-inf"))
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * LOG2E)
    if VEC:  # fa3_bwd.cu's VEC_IO layout: row 8j + 2p + e at p·(BLOCK/4 + 4) + 2j + e
        r = tl.arange(0, BLOCK)
        pos = ((r % 8) // 2) * (BLOCK // 4 + 4) + (r // 8) * 2 + r % 2
        out = bh * rows_pad + pid_m * (BLOCK + 16) + pos
    else:
        out = bh * rows_pad + rows64
    tl.store(LSE2 + out, lse2)
    tl.store(DELTA + out, tl.where(live, delta, 0.0))


@triton.jit
def _dq_convert(ACC, DQ, sq_b, sq_h, sq_s, sq_d, H, seqlen_q, head_dim, scale,
                BLOCK_M: tl.constexpr, DQ_N: tl.constexpr, SPLIT_ROWS: tl.constexpr,
                VEC: tl.constexpr = False, COLS: tl.constexpr = 0):
    # program (w-tile · column chunk, h, b): tile t = mb * 2 + w of query block mb, columns
    # c * COLS .. of its DQ_N (COLS = 0: all of them)
    CHUNK: tl.constexpr = DQ_N if COLS == 0 else COLS
    N_CHUNKS: tl.constexpr = DQ_N // CHUNK
    pid = tl.program_id(0)
    t = pid // N_CHUNKS
    c = pid % N_CHUNKS
    h = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    bh = b * H + h
    mb = t // 2
    w = t % 2
    n_tiles = tl.num_programs(0) // N_CHUNKS
    row = tl.arange(0, 64)[:, None]
    col = c * CHUNK + tl.arange(0, CHUNK)[None, :]
    # the kernel's store order: thread 32 warp + lane holds rows 16 warp + lane/4 (+8 h),
    # columns 8 j + 2 (lane % 4) + e, at float ((2 j + h) * 128 + thread) * 2 + e
    warp = row // 16
    hh = (row % 16) // 8
    lane = (row % 8) * 4 + (col % 8) // 2
    if VEC:  # fa3_bwd.cu's VEC_IO staging order: (j * 128 + thread) * 4 + 2 h + e
        idx = ((col // 8) * 128 + warp * 32 + lane) * 4 + hh * 2 + col % 2
    else:
        idx = ((2 * (col // 8) + hh) * 128 + warp * 32 + lane) * 2 + col % 2
    base = (bh * n_tiles + t) * (64 * DQ_N)
    acc = tl.load(ACC + base + idx)
    if SPLIT_ROWS:  # warpgroup w: rows 64 w .. of the block, every column
        q_row = mb * BLOCK_M + w * 64 + row
        q_col = col
    else:  # warpgroup w: columns DQ_N w .., every row
        q_row = mb * BLOCK_M + row
        q_col = w * DQ_N + col
    ptr = DQ + b * sq_b + h * sq_h + q_row.to(tl.int64) * sq_s + q_col * sq_d
    # columns past head_dim: a padded problem's (the kernel's head dim is the next one up)
    tl.store(ptr, (acc * scale).to(DQ.dtype.element_ty),
             mask=(q_row < seqlen_q) & (q_col < head_dim))
