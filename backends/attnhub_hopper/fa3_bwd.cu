// hopper-fa3: FlashAttention backward for sm90a, warp-specialised (attnhub).
//
// Recomputation from (q, k, v, O, LSE) as the contract says (FA2 Algorithm 2, FA3 §3 for
// the Hopper structure), no S×S buffer.  One CTA = one 128-key block of one (batch, KV
// head) (FOLD, causal: key blocks kb and n − 1 − kb, one after the other); it walks the query blocks that see those keys, for every query head of the KV
// head's group (GQA/MQA, as FA2 does), and accumulates dK, dV in registers; dQ is summed
// across CTAs in a float32 buffer by bulk reductions in L2.  384 threads:
//   warpgroup 0    producer: one thread loads K and V once, then per query block Q, dO
//                  (TMA, 128B swizzle) and that block's log2-LSE and Δ rows (bulk copies)
//                  into a STAGES-deep ring; setmaxnreg.dec frees its registers.
//   warpgroups 1,2 consumers: 64 keys each.  Per query block (BLOCK_M queries), with the
//                  products transposed so that key rows are wgmma's M ("SdP_swapAB"):
//                    Sᵀ  = K_w·Qᵀ      wgmma SS (both K-major)           64 × BLOCK_M
//                    dPᵀ = V_w·dOᵀ     wgmma SS                          64 × BLOCK_M
//                    Pᵀ  = exp2(Sᵀ·scale·log2e − LSE·log2e), causal/Sk mask
//                    dSᵀ = Pᵀ ∘ (dPᵀ − Δ)
//                    dV_w += Pᵀ·dO     wgmma RS (Pᵀ from the accumulator registers)
//                    dK_w += dSᵀ·Q     wgmma RS
//                    dS → shared memory, transposed by stmatrix.trans into a K-major
//                    (query rows, key columns) 128B-swizzled tile; both warpgroups' halves
//                    meet at a named barrier;
//                    dQ_part = dS·K    wgmma SS, K read N-major:
//                      BLOCK_M = 128: warpgroup w takes query rows 64w.., all of d;
//                      BLOCK_M = 64:  warpgroup w takes head-dim columns (d/2)w.., all rows;
//                    dQ_part → shared memory (float32) → cp.reduce.async.bulk .add.f32
//                    into dq_accum (the host converts it: cuda_bwd.dq_from_accum).
//                  After the last query block dK·scale and dV go out through the K and V
//                  tiles' shared memory and TMA stores.
// Rows past Sq need no mask: Q and dO arrive zero-filled and the host pads log2-LSE with
// +inf (P = 0) and Δ with 0; fully-masked rows (LSE = -inf) get +inf too, so their
// gradients are 0.  Keys past Sk and the causal triangle (bottom-right) are masked to P = 0.
//
// Build-time constants (-D): HEAD_DIM (64 with BLOCK_M 128, 128 or 256 with BLOCK_M 64: the
// register budget, 240 per consumer thread, holds dK, dV, Sᵀ, dPᵀ of one block; d256 splits
// the head dim between the warpgroups, SPLIT_D below), BLOCK_M, DQ_N, STAGES, CAUSAL,
// IS_BF16, DQ_ATOMIC, EARLY_DV, EARLY_RELEASE, S_AHEAD, POLY_EXP, VEC_IO, DQ_DB, RED_V4, DQ_ALT,
// FOLD, RELAY, TAIL_SPLIT, TAIL_LINEAR, BWD_TRACE, BWD_PROF.  Wrappers wgmma_ss_n<BLOCK_M>, wgmma_sst_n<DQ_N>, wgmma_rs_n<KV_N> come from
// wgmma_ptx.py, the helpers from fa3_common.cuh.
// Tensor maps over the 4-D views (D, S, H, B): q, do (boxes of BLOCK_M rows), k, v (BLOCK_N
// rows), dk, dv (64 rows; one per warpgroup, or per column half under SPLIT_D).

#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef BLOCK_M  // literal numbers: they name the wgmma wrappers
#if HEAD_DIM == 64
#define BLOCK_M 128
#else
#define BLOCK_M 64
#endif
#endif
#ifndef DQ_N  // dQ columns per consumer warpgroup
#if BLOCK_M == 128
#define DQ_N HEAD_DIM
#elif HEAD_DIM == 256
#define DQ_N 128
#else
#define DQ_N 64
#endif
#endif
#ifndef STAGES
#define STAGES 2
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif
#ifndef DQ_ATOMIC  // 1: dQ by red.global.add.v2.f32 from registers, not smem + bulk reduce
#define DQ_ATOMIC 0
#endif
#ifndef TAIL_SPLIT  // 1 (non-causal): the last wave's key blocks cut along their queries
#define TAIL_SPLIT 0  // (a 1-D grid; see the CTA's work below)
#endif
#ifndef BWD_TRACE  // 1: progress of every role into trace[] (a debugging build, see below)
#define BWD_TRACE 0
#endif
#ifndef BWD_PROF  // 1: SM cycles per phase of each consumer warpgroup into trace[] (below)
#define BWD_PROF 0
#endif
#ifndef EARLY_DV  // 1: issue dV += Pᵀ·dO before waiting for dPᵀ (more overlap, more registers)
#define EARLY_DV 0
#endif
#ifndef EARLY_RELEASE  // 1: hand the Q/dO stage back once dV, dK retire, not after dQ too
#define EARLY_RELEASE 0
#endif
#ifndef S_AHEAD  // 1: a block's dQ goes out (shared memory, barriers, bulk reduction) after
#define S_AHEAD 0  // the next block's Sᵀ is issued, so the tensor cores work under it
#endif
#ifndef POLY_EXP  // of every 4 groups of 8 query columns, how many take P's exp2 on the FMA
#define POLY_EXP 0  // pipe (exp2_poly, fa3_common.cuh) instead of MUFU
#endif
#ifndef RED_V4  // 1 (dQ by atomics): 16-byte red.global.add.v4.f32 in VEC_IO's element order,
#define RED_V4 0  // half the reduction instructions of .v2 (d256's lg_throttle stalls)
#endif
#ifndef DQ_DB  // 1: two dQ staging buffers per warpgroup, used by alternate blocks, so a
#define DQ_DB 0  // block's staging stores wait only for the reduction of two blocks back
#endif
#ifndef DQ_ALT  // 1 (d128): the warpgroups take turns, block by block, computing all of a
#define DQ_ALT 0  // block's dQ (N = 128 from both dS halves); the other goes on to the next block
#endif
#ifndef FOLD  // 1 (causal): a CTA takes key blocks kb and n - 1 - kb of its head, one after
#define FOLD 0  // the other: equal work per CTA (n + 1 query blocks), half the CTAs
#endif
#ifndef RELAY  // 1 (d256): P goes from warpgroup 0 to 1, dS back, through one buffer (below)
#define RELAY 0
#endif
#ifndef VEC_IO  // 1: 16-byte shared-memory accesses for the per-row log2-LSE / Δ reads and
#define VEC_IO 0  // the dQ staging stores (half the instructions on the MIO queue; below)
#endif

// SPLIT_D (d256): dK + dV of 64 keys would take 256 registers per thread, so both
// warpgroups own the same 64 keys and split dK, dV and dQ along the head dim (FA3's layout
// for d256).  Warpgroup 0 computes Sᵀ and P, warpgroup 1 dPᵀ; they swap P and dPᵀ through
// shared memory in register order, and both form dSᵀ.
#define SPLIT_D (HEAD_DIM == 256)
#if SPLIT_D
#define BLOCK_N 64
#define KV_N 128  // dK, dV columns per warpgroup (a literal: it names wgmma_rs_n128)
#else
#define BLOCK_N 128
#define KV_N HEAD_DIM
#endif
#define NUM_THREADS 384
#define ROW_BYTES (HEAD_DIM * 2)
#define D_CHUNKS (ROW_BYTES / 128)  // 128-byte swizzle chunks of a row
#define Q_BYTES (BLOCK_M * ROW_BYTES)
#define KV_BYTES (BLOCK_N * ROW_BYTES)
#define DS_BYTES (BLOCK_M * BLOCK_N * 2)
#define DQ_SPLIT_ROWS (BLOCK_M == 128)  // else the warpgroups split dQ's columns
#define DQ_WG_FLOATS (64 * DQ_N)  // one warpgroup's share of a query block's dQ
// log2-LSE and Δ of one query block (float32 each).  VEC_IO: the host writes each block's
// rows permuted so that a thread's 2·BLOCK_M/8 values are contiguous: row 8j + 2p + e at
// p·L_STRIDE + 2j + e (p = lane % 4, the thread's query-column pair), 4 floats of padding
// per p keeping the four 16-byte reads of a quarter-warp on distinct banks.
#define L_STRIDE (BLOCK_M / 4 + 4)
#define ROWS_PER_BLOCK (VEC_IO ? 4 * L_STRIDE : BLOCK_M)
#define ROWS_BYTES (ROWS_PER_BLOCK * 8)
#define SK_OFF 0
#define SV_OFF (SK_OFF + KV_BYTES)
#define SQ_OFF (SV_OFF + KV_BYTES)
#define SDO_OFF (SQ_OFF + STAGES * Q_BYTES)
#define SDS_OFF (SDO_OFF + STAGES * Q_BYTES)
#define SDQ_OFF (SDS_OFF + 2 * DS_BYTES)
#define SX_OFF (SDQ_OFF + (DQ_ATOMIC ? 0 : (DQ_DB || DQ_ALT ? 4 : 2) * DQ_WG_FLOATS * 4))
#define X_BYTES (64 * BLOCK_M * 4)  // SPLIT_D: P or dPᵀ of one block, float32, register order
#define SL_OFF (SX_OFF + (SPLIT_D ? (RELAY ? 1 : 2) * X_BYTES : 0))
#define BAR_OFF (SL_OFF + STAGES * ROWS_BYTES)
#define PROF_OFF (BAR_OFF + 8 * (2 + 3 * STAGES))  // BWD_PROF's slots, 2 × PROF_STRIDE u32
#define TILE_OFF (PROF_OFF + 2 * 16 * 4)  // FOLD: 8 words, the tiles' numbers (see tile_info)

#define WGMMA_S CAT(wgmma_ss_n, BLOCK_M)
#define WGMMA_S_INIT CAT(CAT(wgmma_ss_n, BLOCK_M), _init)
#define WGMMA_KV CAT(wgmma_rs_n, KV_N)
#define WGMMA_DQ CAT(wgmma_sst_n, DQ_N)
#define WGMMA_DQ_INIT CAT(CAT(wgmma_sst_n, DQ_N), _init)

static_assert((HEAD_DIM == 64 && BLOCK_M == 128) || (HEAD_DIM == 128 && BLOCK_M == 64) ||
                  (HEAD_DIM == 256 && BLOCK_M == 64),
              "supported: d64 with 128-query blocks, d128 and d256 with 64-query blocks");
static_assert(!SPLIT_D || (DQ_ATOMIC && !EARLY_DV && !EARLY_RELEASE && !S_AHEAD),
              "d256: dQ by red.global.add (no room for a staging buffer), no early dV, "
              "the stage released before dQ already, Sᵀ by warpgroup 0 alone");
static_assert(DQ_N == (DQ_SPLIT_ROWS ? HEAD_DIM : HEAD_DIM / 2), "DQ_N: the warpgroups split "
              "dQ's rows (128-query blocks) or its columns (64-query blocks)");
static_assert(!VEC_IO || !DQ_ATOMIC, "VEC_IO: the dQ staging buffer's 16-byte stores");
static_assert(!DQ_DB || !DQ_ATOMIC, "DQ_DB: double-buffers the dQ staging buffer");
static_assert(!RED_V4 || DQ_ATOMIC, "RED_V4: the atomic dQ path's vector width");
static_assert(!RELAY || (SPLIT_D && !VEC_IO), "RELAY: d256's P / dS hand-over");
static_assert(DQ_N % 64 == 0, "a warpgroup's dQ columns are whole 128-byte chunks of K");
static_assert(!(BWD_PROF && BWD_TRACE), "BWD_PROF and BWD_TRACE share the trace pointer");
#ifndef OPAQUE_BASES  // FOLD: keep ptxas from holding tile-invariant values through both
#define OPAQUE_BASES (FOLD && HEAD_DIM != 256)  // tiles' loops (see tile_info)
#endif
static_assert(!FOLD || CAUSAL, "FOLD pairs the long and short key blocks of a causal mask");
static_assert(!TAIL_SPLIT || !CAUSAL, "TAIL_SPLIT: every key block has the same queries "
              "(non-causal), so equal query ranges are equal work");
#ifndef TAIL_LINEAR  // 1: the consumers' block index as blk0 + i (see consumer_block); d256's
#define TAIL_LINEAR (TAIL_SPLIT && HEAD_DIM != 256)  // tail build is the default as measured
#endif
static_assert(!TAIL_LINEAR || (TAIL_SPLIT && !CAUSAL && !FOLD),
              "TAIL_LINEAR: a non-causal key block's pairs are consecutive query blocks");
static_assert(!DQ_ALT || (HEAD_DIM == 128 && !DQ_ATOMIC && !DQ_DB && !VEC_IO && !S_AHEAD &&
                          !EARLY_DV && !EARLY_RELEASE),
              "DQ_ALT: d128, staged dQ (32 KB per warpgroup), plain schedule (it releases the "
              "stage once dV and dK retire, as EARLY_RELEASE does)");
// DQ_ALT: the whole block's dQ (64 queries x 128 columns) by one warpgroup
#define WGMMA_DQ_ALL wgmma_sst_n128
#define WGMMA_DQ_ALL_INIT wgmma_sst_n128_init

// ---- helpers only the backward uses --------------------------------------------------------
__device__ __forceinline__ float2 ld_shared_f2(u32 addr) {
  float2 v;
  asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(addr) : "memory");
  return v;
}
__device__ __forceinline__ void st_shared_f4(u32 addr, float a, float b, float c, float d) {
  asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};" ::"r"(addr), "f"(a), "f"(b), "f"(c),
               "f"(d)
               : "memory");
}
__device__ __forceinline__ float4 ld_shared_f4(u32 addr) {
  float4 v;
  asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "r"(addr)
               : "memory");
  return v;
}
__device__ __forceinline__ void st_shared_f2(u32 addr, float a, float b) {
  asm volatile("st.shared.v2.f32 [%0], {%1, %2};" ::"r"(addr), "f"(a), "f"(b) : "memory");
}
// Four 8×8 16-bit matrices from the accumulator fragment layout (thread t: row t/4,
// columns 2(t%4), +1 in each register), each stored transposed: thread t names the
// address of row t%8 of matrix t/8.
__device__ __forceinline__ void stmatrix_x4_trans(u32 addr, u32 r0, u32 r1, u32 r2, u32 r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(
                   addr),
               "r"(r0), "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}
__device__ __forceinline__ void bulk_load(u32 dst, const void* src, u32 bytes, u32 bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
          "r"(dst),
      "l"((u64)src), "r"(bytes), "r"(bar)
      : "memory");
}
// x, as a value the compiler cannot see through: a per-iteration copy of a loop-invariant
// base keeps the addresses and wgmma descriptors derived from it inside the loop instead of
// hoisted (and, with no registers to spare, spilled; OPAQUE_BASES)
__device__ __forceinline__ u32 opaque_u32(u32 x) {
  u32 y;
  asm volatile("mov.b32 %0, %1;" : "=r"(y) : "r"(x));
  return y;
}
// x + 0 as an instruction ptxas keeps (exact but for -0 → +0): a copy of an accumulator
// value that no wgmma defines (a plain mov is coalesced away)
__device__ __forceinline__ float copy_f32(float x) {
  float y;
  asm volatile("add.f32 %0, %1, 0f00000000;" : "=f"(y) : "f"(x));
  return y;
}
// the SM's cycle counter (BWD_PROF); volatile + memory: not moved across the waits it brackets
__device__ __forceinline__ u32 clock32() {
  u32 t;
  asm volatile("mov.u32 %0, %%clock;" : "=r"(t)::"memory");
  return t;
}
__device__ __forceinline__ void red_add_f2(float* dst, float a, float b) {
  asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" ::"l"((u64)dst), "f"(a), "f"(b)
               : "memory");
}
__device__ __forceinline__ void red_add_f4(float* dst, float a, float b, float c, float d) {
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"((u64)dst), "f"(a), "f"(b),
               "f"(c), "f"(d)
               : "memory");
}
__device__ __forceinline__ void bulk_reduce_add_f32(float* dst, u32 src, u32 bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;" ::"l"(
                   (u64)dst),
               "r"(src), "r"(bytes)
               : "memory");
}

// BWD_TRACE=1: each role writes its progress to trace[4 * cta + slot] (slot 0 producer, 1-2
// the consumer warpgroups) as 16 * iteration + phase, with a system-scope fence, so a host
// polling pinned memory sees where a hung launch stopped (cuda_bwd_check.run_traced).
// Producer: 14 K/V issued, 16 i + 1 stage free for block i, 16 n + 2 done.  Consumers:
// 15 K/V landed, then per block i: 1 Q landed, 2 dO landed, 3 Sᵀ done, 4 dS stored,
// 5 past the dS barrier, 6 products retired; 16 n + 7 before the epilogue barrier, + 8 past
// it, + 9 stores issued.
//
// BWD_PROF=1 (a profiling build; its own time is not the kernel's): at the same points
// thread 0 of each consumer warpgroup reads %clock and adds the cycles since the previous
// point to a slot in shared memory (PROF_OFF): slot = phase (15 → 0; slot 7 also after each
// block's dQ hand-off).  At the end it writes its slots to
// trace[(cta * 2 + warpgroup) * PROF_STRIDE + slot] (cta: the hardware block index) and
// the number of blocks to slot PROF_SLOTS.  Slots (non-SPLIT_D): 0 K/V landing, 1 Q wait,
// 2 Sᵀ issue (+ S_AHEAD's dQ hand-off) + dO wait, 3 dPᵀ issue + Sᵀ wait, 4 P, dPᵀ wait,
// dS, dV/dK issue, dS store, 5 the dS barrier, 6 the dQ product and the stage release,
// 7 dQ hand-off, 8 the epilogue barrier, 9 dK/dV stores, 10 (staged dQ, non-S_AHEAD) the
// hand-off's wait for its staging buffer and that barrier, taken out of 7
// (cuda_bwd.PROF_PHASES names them).
#define PROF_SLOTS 11
#define PROF_STRIDE 16
#if BWD_TRACE
#define TRACE(slot, v)                                                                       \
  do {                                                                                       \
    if (trace) {                                                                             \
      *(volatile int*)(trace + 4 * (blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y *       \
                                                                         blockIdx.z)) +     \
                       (slot)) = (v);                                                        \
      __threadfence_system();                                                                \
    }                                                                                        \
  } while (0)
#else
#define TRACE(slot, v) \
  do {                 \
  } while (0)
#endif

template <int N>
struct IntC {  // a compile-time int that converts to one
  __device__ constexpr operator int() const { return N; }
};

// ---- the kernel ---------------------------------------------------------------------------
// Grid (key blocks, KV heads, batch); query head hq reads KV head hq / group.
// lse2, delta: (B, Hq, n_mblocks * BLOCK_M) float32, contiguous (log2-LSE, +inf where a row
// has no keys or is padding; Δ = rowsum(dO∘O), 0 on padding).  dq_accum: (B, Hq, n_mblocks,
// 2, DQ_WG_FLOATS) float32, zeroed.
extern "C" __global__ void __launch_bounds__(NUM_THREADS, 1)
    attnhub_fa3_bwd(const __grid_constant__ TmaDesc tm_q, const __grid_constant__ TmaDesc tm_k,
                    const __grid_constant__ TmaDesc tm_v, const __grid_constant__ TmaDesc tm_do,
                    const __grid_constant__ TmaDesc tm_dk, const __grid_constant__ TmaDesc tm_dv,
                    const float* __restrict__ lse2, const float* __restrict__ delta,
                    float* __restrict__ dq_accum, int group, int seqlen_q, int seqlen_k,
                    float scale_log2, float scale, int n_mblocks, int sched_window,
                    int* __restrict__ trace, int n_whole, int tail_parts, int n_kvh,
                    float* __restrict__ tail_ws, int* __restrict__ tail_cnt) {
  extern __shared__ unsigned char smem_raw[];
  const u32 base = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const u32 sK = base + SK_OFF, sV = base + SV_OFF, sQ = base + SQ_OFF, sDO = base + SDO_OFF;
  const u32 sDS = base + SDS_OFF, sDQ = base + SDQ_OFF, sL = base + SL_OFF;
  const u32 sX = base + SX_OFF;  // SPLIT_D's P / dPᵀ swap
  (void)sX;
  const u32 bars = base + BAR_OFF;
#define BAR_KV (bars)
#define BAR_QF(s) (bars + 8u * (1u + (s)))               // Q and log2-LSE of stage s landed
#define BAR_DF(s) (bars + 8u * (1u + STAGES + (s)))      // dO and Δ landed
#define BAR_E(s) (bars + 8u * (1u + 2u * STAGES + (s)))  // stage s free again
#define BAR_KVE (bars + 8u * (1u + 3u * STAGES))  // FOLD: dK/dV of a tile out of sK/sV

  const int tid = threadIdx.x;
  const int wg = tid / 128;
  // Which (key block, KV head, batch) this CTA takes.  sched_window = 0: the grid's own
  // order (all key blocks of one head, then the next head: that head's Q/dO stays in L2).
  // sched_window = W > 0 (causal: a key block's work falls with its index): CTAs in launch
  // order walk windows of W (batch, head) pairs key block by key block, so every window's
  // longest CTAs start first and the last wave is not a few long CTAs (NOTES.md); the host
  // keeps W pairs' Q/dO within a third of L2.
  int kb = blockIdx.x, kv_head = blockIdx.y, batch = blockIdx.z;
  // TAIL_SPLIT: a 1-D grid of n_whole whole key blocks in the 3-D grid's order (key blocks
  // of one head, then the next head, then the next batch), then tail_parts pieces of each
  // remaining key block: piece p takes the (query head, query block) pairs
  // [p·n / parts, (p + 1)·n / parts) of its block's n.  Each piece's warpgroups write
  // their dK/dV partial to tail_ws and count themselves on tail_cnt; the last to arrive
  // sums every piece of its block in piece order (the same sums whoever is last) and
  // stores dK/dV as a whole block does.  Nothing waits on another CTA.
#if TAIL_SPLIT
  int piece = -1, cut = 0;  // this CTA's piece of key block n_whole + cut (-1: whole)
  {
    const int n_kb = (seqlen_k + BLOCK_N - 1) / BLOCK_N;
    int lin = blockIdx.x;
    if (lin >= n_whole) {
      piece = (lin - n_whole) % tail_parts;
      cut = (lin - n_whole) / tail_parts;
      lin = n_whole + cut;
    }
    kb = lin % n_kb;
    kv_head = (lin / n_kb) % n_kvh;
    batch = lin / (n_kb * n_kvh);
  }
#define N_KVH n_kvh
#else
#define N_KVH gridDim.y
  (void)n_whole;
  (void)tail_parts;
  (void)n_kvh;
  (void)tail_ws;
  (void)tail_cnt;
#endif
  if (sched_window > 0) {
    const int n_kb = gridDim.x, n_bh = gridDim.y * gridDim.z;
    const int lin = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int w0 = lin / (sched_window * n_kb) * sched_window;  // first pair of the window
    const int wc = min(sched_window, n_bh - w0);                // pairs in this window
    const int r = lin - w0 * n_kb;
    const int bh = w0 + r % wc;
    kb = r / wc;
    kv_head = bh % gridDim.y;
    batch = bh / gridDim.y;
  }
  const int offset = seqlen_k - seqlen_q;  // bottom-right alignment of the causal mask
  (void)offset;
  (void)trace;
  // FOLD: this CTA's tiles are key blocks kb and n_kb - 1 - kb (the grid covers half of
  // them, rounded up; the middle one of an odd count alone), in that order.
  // Tile t: its first key n0, and the query blocks that see it: all, or (causal) from the
  // first query whose last visible key reaches n0; n_iter (query head, query block) pairs.
#if FOLD
  // Each tile's body is its own instantiation (IntC<t>) and the tiles' numbers live in
  // shared memory (TILE_OFF, written by thread 0 below): word 0 the tile count, 1 tile 1's
  // n0, 2 tile 1's first ring position, 4 + 2t / 5 + 2t tile t's m_first / n_mb, the last
  // two read (volatile) wherever a block index is formed (OPAQUE_BASES).  Held in registers
  // through both tiles' loops they, and every k-step's wgmma descriptor hoisted out of both
  // loops, were spilled at d64 and d128: the consumers' 240 registers have no slack.
  const u32 tile_info = (smem_addr(smem_raw) + 1023u & ~1023u) + TILE_OFF;
  int n0 = 0, n_iter = 0;
  auto first_block = [&](int n0_) { return max(0, n0_ - offset) / BLOCK_M; };
#if OPAQUE_BASES
  auto set_tile = [&](int t) {
    n0 = t == 0 ? kb * BLOCK_N : (int)ld_shared_u32(tile_info + 4);
    n_iter = (int)ld_shared_u32(tile_info + 20 + 8 * t) * group;
  };
  auto tile_m_first = [&](int t) { return (int)ld_volatile_shared_u32(tile_info + 16 + 8 * t); };
  auto tile_n_mb = [&](int t) { return (int)ld_volatile_shared_u32(tile_info + 20 + 8 * t); };
#else  // d256: in registers (the build fits either way; this one was measured)
  int m_first = 0, n_mb = 0;
  auto set_tile = [&](int t) {
    n0 = t == 0 ? kb * BLOCK_N : (int)ld_shared_u32(tile_info + 4);
    m_first = first_block(n0);
    n_mb = max(0, n_mblocks - m_first);
    n_iter = n_mb * group;
  };
  auto tile_m_first = [&](int) { return m_first; };
  auto tile_n_mb = [&](int) { return n_mb; };
#endif
  // the ring position of tile t's block i
  auto ring_pos = [&](int t, int i) { return t == 0 ? i : (int)ld_shared_u32(tile_info + 8) + i; };
#else  // one tile, its numbers constant (the register budget has no slack at d128)
  constexpr int n_tiles = 1;
  const int n0 = kb * BLOCK_N;
  int m_first = 0;
#if CAUSAL
  m_first = max(0, n0 - offset) / BLOCK_M;
#endif
  const int n_mb = max(0, n_mblocks - m_first);
#if TAIL_SPLIT  // a piece: its share of the block's (query head, query block) pairs
  const int it0 = piece < 0 ? 0 : piece * (n_mb * group) / tail_parts;
  const int n_iter = piece < 0 ? n_mb * group : (piece + 1) * (n_mb * group) / tail_parts - it0;
#else
  constexpr int it0 = 0;
  const int n_iter = n_mb * group;
#endif
  auto set_tile = [](int) {};
  auto ring_pos = [](int, int i) { return i; };
  auto tile_m_first = [&](int) { return m_first; };
  auto tile_n_mb = [&](int) { return n_mb; };
#endif
  // tile t's pair it (of the whole key block): query head kv_head * group + it / n_mb, query
  // block m_first + it % n_mb; returns the block's index in lse2 / delta / dq_accum (in
  // BLOCK_M rows)
  auto pair_block = [&](int t, int it, int& hq, int& mb) {
    const int nmb = tile_n_mb(t);
    hq = kv_head * group + it / nmb;
    mb = tile_m_first(t) + it % nmb;
    return ((long long)batch * N_KVH * group + hq) * n_mblocks + mb;
  };
  // tile t's iteration it: pair_block of the CTA's pair it (the producer's)
  auto row_block = [&](int t, int it, int& hq, int& mb) {
#if !FOLD
    it += it0;  // TAIL_SPLIT: a piece's first pair (0 otherwise)
#endif
    return pair_block(t, it, hq, mb);
  };
  // The consumers' block index of iteration i (they use no hq, and mb only for the causal
  // mask).  TAIL_LINEAR (the tail builds but d256's): non-causal, so m_first = 0 and n_mb =
  // n_mblocks, a key block's pairs are consecutive blocks of lse2 / delta / dq_accum, and
  // pair it0 + i is block blk0 + i: no division and no 64-bit products in the loop.  Through
  // row_block (as built until the thirty-sixth session) ptxas put that division at the top of
  // the d64 loop, in front of Sᵀ's issue, and rescheduled the rest (NOTES.md, thirty-sixth
  // session: the cost the tail build measured with no block cut).
#if TAIL_LINEAR
  int hq0_, mb0_;
  const long long blk0 = pair_block(0, 0, hq0_, mb0_) + it0;  // the CTA's first pair
  auto consumer_block = [&](int, int i, int& hq, int& mb) {
    hq = mb = 0;  // unused: no causal mask
    return blk0 + i;
  };
#else
  auto consumer_block = row_block;
#endif

  if (tid == 0) {
    mbar_init(BAR_KV, 1);
    mbar_init(BAR_KVE, 2);  // one arrival per consumer warpgroup
#if FOLD
    {
      const int n_kb = (seqlen_k + BLOCK_N - 1) / BLOCK_N;
      const int n0s[2] = {kb * BLOCK_N, (n_kb - 1 - kb) * BLOCK_N};
      st_shared_u32(tile_info, 2 * kb + 1 < n_kb ? 2u : 1u);
      st_shared_u32(tile_info + 4, (u32)n0s[1]);
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        const int mf = first_block(n0s[t]);
        st_shared_u32(tile_info + 16 + 8 * t, (u32)mf);
        st_shared_u32(tile_info + 20 + 8 * t, (u32)max(0, n_mblocks - mf));
      }
      st_shared_u32(tile_info + 8, (u32)(max(0, n_mblocks - first_block(n0s[0])) * group));
    }
#endif
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(BAR_QF(s), 1);
      mbar_init(BAR_DF(s), 1);
      mbar_init(BAR_E(s), 8);  // one arrival per consumer warp
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"((u64)&tm_q) : "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"((u64)&tm_k) : "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"((u64)&tm_v) : "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"((u64)&tm_do) : "memory");
  }
  __syncthreads();

  if (wg == 0) {
    // ---------------- producer ----------------
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
    if (tid == 0) {
      // K and V of tile t: after tile t - 1's dK/dV left their shared memory (FOLD), and
      // after the first STAGES Q/dO loads of tile t, whose stages free up before that
      auto load_kv = [&](int t) {
        if (t > 0) mbar_wait(BAR_KVE, (t - 1) & 1);
        mbar_expect_tx(BAR_KV, 2 * KV_BYTES);
#pragma unroll
        for (int ch = 0; ch < D_CHUNKS; ++ch) {
          tma_load_4d(sK + ch * (BLOCK_N * 128), &tm_k, BAR_KV, ch * 64, n0, kv_head, batch);
          tma_load_4d(sV + ch * (BLOCK_N * 128), &tm_v, BAR_KV, ch * 64, n0, kv_head, batch);
        }
        TRACE(0, 14);
      };
      auto run_tile = [&](auto t_) {
      constexpr int t = decltype(t_){};
      set_tile(t);
      // tile 0: K/V first; tile 1 (FOLD): after its first STAGES Q/dO loads
      if (t == 0) load_kv(0);
      const int kv_at = t == 0 ? 0 : min(STAGES, n_iter);
      for (int i = 0; i < n_iter; ++i) {
        if (t > 0 && i == kv_at) load_kv(t);
        int hq, mb;
        const long long rows = row_block(t, i, hq, mb) * ROWS_PER_BLOCK;
        const int g = ring_pos(t, i);
        const u32 s = g % STAGES;
        const u32 ph = ((g / STAGES) & 1) ^ 1;
        mbar_wait(BAR_E(s), ph);
        TRACE(0, 16 * i + 1);
        mbar_expect_tx(BAR_QF(s), Q_BYTES + ROWS_PER_BLOCK * 4);
#pragma unroll
        for (int ch = 0; ch < D_CHUNKS; ++ch)
          tma_load_4d(sQ + s * Q_BYTES + ch * (BLOCK_M * 128), &tm_q, BAR_QF(s), ch * 64,
                      mb * BLOCK_M, hq, batch);
        bulk_load(sL + s * ROWS_BYTES, lse2 + rows, ROWS_PER_BLOCK * 4, BAR_QF(s));
        mbar_expect_tx(BAR_DF(s), Q_BYTES + ROWS_PER_BLOCK * 4);
#pragma unroll
        for (int ch = 0; ch < D_CHUNKS; ++ch)
          tma_load_4d(sDO + s * Q_BYTES + ch * (BLOCK_M * 128), &tm_do, BAR_DF(s), ch * 64,
                      mb * BLOCK_M, hq, batch);
        bulk_load(sL + s * ROWS_BYTES + ROWS_PER_BLOCK * 4, delta + rows, ROWS_PER_BLOCK * 4,
                  BAR_DF(s));
      }
      if (t > 0 && kv_at == n_iter) load_kv(t);  // fewer than STAGES blocks
      TRACE(0, 16 * n_iter + 2);
      };
      run_tile(IntC<0>{});
#if FOLD
      if (ld_shared_u32(tile_info) > 1) run_tile(IntC<1>{});
#endif
    }
    return;
  }

  // ---------------- consumers ----------------
  asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n" ::: "memory");
  // The consumer body, instantiated per warpgroup under SPLIT_D (its two roles differ: with
  // the index a run-time value ptxas cannot prove the wgmma issue warpgroup-uniform and
  // serialises every product, C7512) and called with the run-time index otherwise.
  auto consumer = [&](auto cw_) {
    const int cw = cw_;  // consumer warpgroup 0/1: keys n0 + 64 cw .. (SPLIT_D: head-dim
                         // columns KV_N cw .. of dK, dV, dQ)
    const int ctid = tid - 128 * wg;  // 0..127
    const int warp = ctid / 32, lane = ctid % 32;
    const int r_loc = warp * 16 + lane / 4;  // this thread's key rows: r_loc and r_loc + 8
    const int qc = 2 * (lane % 4);           // and query columns 8j + qc + {0, 1}
    // The log2-LSE (or Δ) values of query columns 8j + qc, +1 from a block's rows at sl:
    // VEC_IO reads those of j and j + 1 (j even) in one 16-byte access, (x, y) and (z, w).
#if VEC_IO
    auto row_quad = [&](u32 sl, int j) {
      return ld_shared_f4(sl + ((qc / 2) * L_STRIDE + 2 * j) * 4);
    };
#define ROW_PAIR(sl, j, q4) \
  ((j) % 2 ? make_float2((q4).z, (q4).w) : make_float2((q4).x, (q4).y))
#else
#define ROW_PAIR(sl, j, q4) ld_shared_f2((sl) + (8 * (j) + qc) * 4)
#endif
    const u32 row_off = SPLIT_D ? 0 : cw * (64 * 128);  // this warpgroup's key rows
    const u32 sKw = sK + row_off, sVw = sV + row_off;
    // byte offset of this warpgroup's dK/dV columns in a Q / dO tile (SPLIT_D: chunks 2cw..)
    const u32 kv_col = SPLIT_D ? cw * (KV_N / 64) * (BLOCK_M * 128) : 0;
    // this warpgroup's dQ staging buffer (DQ_DB: two, alternating by block; dq_n counts the
    // blocks handed off)
    const u32 sDQw0 = sDQ + (DQ_DB || DQ_ALT ? 2 * cw : cw) * (DQ_WG_FLOATS * 4);
    int dq_n = 0;
    (void)sDQw0;
    (void)dq_n;

    float dv[KV_N / 2], dk[KV_N / 2];
    float s_acc[BLOCK_M / 2], dp_acc[BLOCK_M / 2], dq[DQ_N / 2];
    u32 pp[BLOCK_M / 4], pd[BLOCK_M / 4];
#if RELAY  // warpgroup 1's share of a block under RELAY (the loop below): the same steps as
          // the inline code of the other builds, which keeps its own copy untouched
    // dSᵀ = Pᵀ ∘ (dPᵀ − Δ[query]) into dp_acc
    auto form_ds = [&](u32 sl) {
#pragma unroll
      for (int j = 0; j < BLOCK_M / 8; ++j) {
        const float2 dl = ld_shared_f2(sl + ROWS_PER_BLOCK * 4 + (8 * j + qc) * 4);
        dp_acc[4 * j] = s_acc[4 * j] * (dp_acc[4 * j] - dl.x);
        dp_acc[4 * j + 1] = s_acc[4 * j + 1] * (dp_acc[4 * j + 1] - dl.y);
        dp_acc[4 * j + 2] = s_acc[4 * j + 2] * (dp_acc[4 * j + 2] - dl.x);
        dp_acc[4 * j + 3] = s_acc[4 * j + 3] * (dp_acc[4 * j + 3] - dl.y);
      }
    };
    // the 16-bit dSᵀ (pd) → the (query rows, key columns) K-major tile dQ's product reads
    auto store_ds = [&](u32 sds) {
      const int mi = lane / 8, rr = lane % 8;
      const u32 unit = 2 * warp + (mi % 2);
#pragma unroll
      for (int jj = 0; jj < BLOCK_M / 16; ++jj) {
        const u32 query = 16 * jj + 8 * (mi / 2) + rr;
        stmatrix_x4_trans(sds + query * 128 + ((unit ^ rr) << 4), pd[4 * jj], pd[4 * jj + 1],
                          pd[4 * jj + 2], pd[4 * jj + 3]);
      }
    };
#endif

    // Sᵀ or dPᵀ of one query block: A = 64 rows of K (or V), B = the Q (or dO) tile.
    auto issue_sdp = [&](float(&acc)[BLOCK_M / 2], u32 sa, u32 sb) {
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < ROW_BYTES / 32; ++kk) {  // one k-step = 32 bytes of the row
        const u64 da = make_desc(sa + (kk / 4) * (BLOCK_N * 128) + (kk % 4) * 32, 16, 1024);
        const u64 db = make_desc(sb + (kk / 4) * (BLOCK_M * 128) + (kk % 4) * 32, 16, 1024);
        if (kk == 0)
          WGMMA_S_INIT(acc, da, db, 0);
        else
          WGMMA_S(acc, da, db, 1);
      }
      wgmma_commit();
    };
    // acc (64 keys × KV_N) += a (the accumulator layout of a 64 × BLOCK_M product, as
    // 16-bit pairs) · the tile at sb (BLOCK_M rows, read N-major)
    auto issue_kv = [&](float(&acc)[KV_N / 2], const u32(&a)[BLOCK_M / 4], u32 sb) {
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BLOCK_M / 16; ++kk) {
        const u64 db = make_desc(sb + kk * (16 * 128), BLOCK_M * 128, 1024);
        WGMMA_KV(acc, a[4 * kk], a[4 * kk + 1], a[4 * kk + 2], a[4 * kk + 3], db, 1);
      }
      wgmma_commit();
    };

    // After the wait that retires the dV and dK products: keep their accumulators and A
    // registers (written by the wgmma, read by it until now) ordered after the wait, then
    // hand stage s (Q, dO, the LSE/Δ rows) back to the producer.
    auto retire_kv = [&](u32 s) {
#pragma unroll
      for (int r = 0; r < KV_N / 2; ++r) {
        fence_reg(dv[r]);
        fence_reg(dk[r]);
      }
#pragma unroll
      for (int r = 0; r < BLOCK_M / 4; ++r) {
        fence_reg(pp[r]);
        fence_reg(pd[r]);
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(BAR_E(s));
    };

#if BWD_PROF  // thread 0 of the warpgroup counts, all in shared memory: no live registers
  // (the last clock reading in slot PROF_STRIDE - 1; the address from bars, live anyway)
#define PROF_ADDR(k) (bars + (PROF_OFF - BAR_OFF) + cw * (PROF_STRIDE * 4u) + 4u * (k))
    if (ctid == 0) {
#pragma unroll
      for (int k = 0; k < PROF_SLOTS; ++k) st_shared_u32(PROF_ADDR(k), 0u);
      st_shared_u32(PROF_ADDR(PROF_STRIDE - 1), clock32());
    }
#define PROF(k)                                                        \
  do {                                                                 \
    if (ctid == 0) {                                                   \
      const u32 t_ = clock32();                                        \
      const u32 dt_ = t_ - ld_shared_u32(PROF_ADDR(PROF_STRIDE - 1));  \
      st_shared_u32(PROF_ADDR(k), ld_shared_u32(PROF_ADDR(k)) + dt_);  \
      st_shared_u32(PROF_ADDR(PROF_STRIDE - 1), t_);                   \
    }                                                                  \
  } while (0)
#else
#define PROF(k) \
  do {          \
  } while (0)
#endif
    // dQ_part of query block blk (in dq) → dq_accum, in the threads' register order:
    // element (j, h, e) of thread ctid at ((2j + h) * 128 + ctid) * 2 + e of this
    // warpgroup's share.
    auto dq_out = [&](long long blk, const float(&dq)[DQ_N / 2]) {
#if DQ_ATOMIC && RED_V4
      // straight from registers, 16-byte vector reductions, element (j, h, e) at
      // (j * 128 + ctid) * 4 + 2h + e (a warp's are 512 contiguous bytes)
      {
        float* g = dq_accum + (blk * 2 + cw) * DQ_WG_FLOATS + 4 * ctid;
#pragma unroll
        for (int j = 0; j < DQ_N / 8; ++j)
          red_add_f4(g + j * 512, dq[4 * j], dq[4 * j + 1], dq[4 * j + 2], dq[4 * j + 3]);
      }
#elif DQ_ATOMIC
      // straight from registers, 8-byte vector reductions (coalesced: a warp's 32 pairs are
      // 256 contiguous bytes)
      {
        float* g = dq_accum + (blk * 2 + cw) * DQ_WG_FLOATS + 2 * ctid;
#pragma unroll
        for (int j = 0; j < DQ_N / 8; ++j) {
          red_add_f2(g + (2 * j) * 256, dq[4 * j], dq[4 * j + 1]);
          red_add_f2(g + (2 * j + 1) * 256, dq[4 * j + 2], dq[4 * j + 3]);
        }
      }
#else
      // through this warpgroup's shared buffer (conflict-free) and one bulk L2 reduction
      const u32 sDQw = sDQw0 + (DQ_DB ? (dq_n & 1) * (DQ_WG_FLOATS * 4) : 0);
      ++dq_n;
#if DQ_DB  // the reduction of the previous block (other buffer) may still be reading
      if (ctid == 0) asm volatile("cp.async.bulk.wait_group.read 1;" ::: "memory");
#else
      if (ctid == 0) asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
#endif
      asm volatile("bar.sync %0, 128;" ::"r"(2 + cw) : "memory");  // that reduction read it
      PROF(10);
#if VEC_IO  // element (j, h, e) at (j * 128 + ctid) * 4 + 2h + e
#pragma unroll
      for (int j = 0; j < DQ_N / 8; ++j)
        st_shared_f4(sDQw + (j * 128 + ctid) * 16, dq[4 * j], dq[4 * j + 1], dq[4 * j + 2],
                     dq[4 * j + 3]);
#else
#pragma unroll
      for (int j = 0; j < DQ_N / 8; ++j) {
        st_shared_f2(sDQw + ((2 * j) * 128 + ctid) * 8, dq[4 * j], dq[4 * j + 1]);
        st_shared_f2(sDQw + ((2 * j + 1) * 128 + ctid) * 8, dq[4 * j + 2], dq[4 * j + 3]);
      }
#endif
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      asm volatile("bar.sync %0, 128;" ::"r"(2 + cw) : "memory");
      if (ctid == 0) {
        bulk_reduce_add_f32(dq_accum + (blk * 2 + cw) * DQ_WG_FLOATS, sDQw, DQ_WG_FLOATS * 4);
        asm volatile("cp.async.bulk.commit_group;" ::: "memory");
      }
#endif
    };
#if DQ_ALT
    // All of block blk's dQ (dq_all: the m64n128 accumulator, whose column groups j < 8
    // and j >= 8 are laid out as warpgroup 0's and 1's 64-column shares) → dq_accum through
    // this warpgroup's 32 KB staging buffer, one bulk reduction per half: the same layout
    // as the two warpgroups' shares (the host's decoding does not change).
    auto dq_out_all = [&](long long blk, const float(&dq_all)[DQ_N]) {
      if (ctid == 0) asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
      asm volatile("bar.sync %0, 128;" ::"r"(2 + cw) : "memory");  // that reduction read it
      PROF(10);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int j = 0; j < DQ_N / 8; ++j) {
          const int jj = j + h * (DQ_N / 8);
          const u32 buf = sDQw0 + h * (DQ_WG_FLOATS * 4);
          st_shared_f2(buf + ((2 * j) * 128 + ctid) * 8, dq_all[4 * jj], dq_all[4 * jj + 1]);
          st_shared_f2(buf + ((2 * j + 1) * 128 + ctid) * 8, dq_all[4 * jj + 2],
                       dq_all[4 * jj + 3]);
        }
      }
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      asm volatile("bar.sync %0, 128;" ::"r"(2 + cw) : "memory");
      if (ctid == 0) {
#pragma unroll
        for (int h = 0; h < 2; ++h)
          bulk_reduce_add_f32(dq_accum + (blk * 2 + h) * DQ_WG_FLOATS,
                              sDQw0 + h * (DQ_WG_FLOATS * 4), DQ_WG_FLOATS * 4);
        asm volatile("cp.async.bulk.commit_group;" ::: "memory");
      }
    };
#endif
    long long blk_prev = 0;  // S_AHEAD: the block whose dQ waits in dq_prev
    float dq_prev[S_AHEAD ? DQ_N / 2 : 1];
    (void)blk_prev;
    (void)dq_prev;

    // One key block (FOLD: tile t of two); each tile its own instantiation (see set_tile).
    auto run_tile = [&](auto t_) {
    constexpr int t = decltype(t_){};
    set_tile(t);
    const int key0 = n0 + (SPLIT_D ? 0 : cw * 64) + r_loc;
#pragma unroll
    for (int i = 0; i < KV_N / 2; ++i) dv[i] = dk[i] = 0.f;
    mbar_wait(BAR_KV, t & 1);  // also when no query block sees these keys: the epilogue reuses it
    const bool tr = BWD_TRACE && ctid == 0;  // one thread per consumer warpgroup traces
    (void)tr;
#define CTRACE(it, ph)                    \
  do {                                    \
    if (tr) TRACE(1 + cw, 16 * (it) + (ph)); \
    PROF((ph) == 15 ? 0 : (ph));          \
  } while (0)
    CTRACE(0, 15);
    for (int i = 0; i < n_iter; ++i) {
      int hq, mb;
      const long long blk = consumer_block(t, i, hq, mb);
      (void)hq;
      const int m0 = mb * BLOCK_M;
      (void)m0;  // the causal mask's
      const int g = ring_pos(t, i);  // the ring's position (FOLD: carried over from tile 0)
      const u32 s = g % STAGES, ph = (g / STAGES) & 1;
      const u32 sQs = sQ + s * Q_BYTES, sDOs = sDO + s * Q_BYTES;
      const u32 sLs = sL + s * ROWS_BYTES;
      const u32 sDSb = sDS + (g & 1) * DS_BYTES;  // double-buffered: one barrier per block
#if OPAQUE_BASES
      const u32 sKi = opaque_u32(sKw), sVi = opaque_u32(sVw), sKa = opaque_u32(sK);
#else
      const u32 sKi = sKw, sVi = sVw, sKa = sK;
#endif

      mbar_wait(BAR_QF(s), ph);
      CTRACE(i, 1);
#if SPLIT_D  // warpgroup 0: Sᵀ; warpgroup 1: dPᵀ
      if (cw == 0) issue_sdp(s_acc, sKi, sQs);
      mbar_wait(BAR_DF(s), ph);
      CTRACE(i, 2);
      if (cw == 1) issue_sdp(dp_acc, sVi, sDOs);
      wgmma_wait<0>();
      CTRACE(i, 3);
      if (cw == 0) {
#pragma unroll
        for (int r = 0; r < BLOCK_M / 2; ++r) fence_reg(s_acc[r]);
      } else {
#pragma unroll
        for (int r = 0; r < BLOCK_M / 2; ++r) fence_reg(dp_acc[r]);
      }
#else
      issue_sdp(s_acc, sKi, sQs);
#if S_AHEAD  // the previous block's dQ goes out under this block's Sᵀ
      if (i > 0) dq_out(blk_prev, dq_prev);
#endif
      mbar_wait(BAR_DF(s), ph);
      CTRACE(i, 2);
      issue_sdp(dp_acc, sVi, sDOs);
      wgmma_wait<1>();  // Sᵀ done
      CTRACE(i, 3);
#pragma unroll
      for (int r = 0; r < BLOCK_M / 2; ++r) fence_reg(s_acc[r]);
#endif

      // Pᵀ = exp2(S·scale·log2e − log2-LSE[query]), 0 where masked (SPLIT_D: warpgroup 0)
      if (!SPLIT_D || cw == 0) {
        bool need = n0 + BLOCK_N > seqlen_k;
#if CAUSAL
        need = need || (n0 + BLOCK_N - 1 > m0 + offset);
#endif
        float4 l4;  // VEC_IO: the values of j, j + 1, read at even j
        (void)l4;
#pragma unroll
        for (int j = 0; j < BLOCK_M / 8; ++j) {
#if VEC_IO
          if (j % 2 == 0) l4 = row_quad(sLs, j);
#endif
          const float2 l = ROW_PAIR(sLs, j, l4);
#define BWD_EXP2(x) ((j % 4) < POLY_EXP ? exp2_poly(x) : fast_exp2(x))
          s_acc[4 * j] = BWD_EXP2(fmaf(s_acc[4 * j], scale_log2, -l.x));
          s_acc[4 * j + 1] = BWD_EXP2(fmaf(s_acc[4 * j + 1], scale_log2, -l.y));
          s_acc[4 * j + 2] = BWD_EXP2(fmaf(s_acc[4 * j + 2], scale_log2, -l.x));
          s_acc[4 * j + 3] = BWD_EXP2(fmaf(s_acc[4 * j + 3], scale_log2, -l.y));
#undef BWD_EXP2
        }
        if (need) {
          // key row kr is kept for query column 8j + e when kr < Sk and (causal)
          // kr <= m0 + 8j + qc + e + offset, i.e. 8j + e >= lim.
#if CAUSAL
          const int lim0 = key0 - m0 - qc - offset, lim1 = lim0 + 8;
#else
          const int lim0 = -BLOCK_M, lim1 = -BLOCK_M;
#endif
          const bool dead0 = key0 >= seqlen_k, dead1 = key0 + 8 >= seqlen_k;
#pragma unroll
          for (int j = 0; j < BLOCK_M / 8; ++j) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              if (dead0 || 8 * j + e < lim0) s_acc[4 * j + e] = 0.f;
              if (dead1 || 8 * j + e < lim1) s_acc[4 * j + 2 + e] = 0.f;
            }
          }
        }
      }
#if RELAY
      // RELAY (d256): warpgroup 0 hands Pᵀ (float32, register order) to warpgroup 1 and
      // issues dV; warpgroup 1 alone forms dSᵀ, stores it for dQ and hands its 16-bit
      // registers back through the same slots (each thread rewrites only the slots it has
      // read), so one 16 KB buffer does what SPLIT_D's two swap buffers do, with a quarter
      // less swap traffic (48 KB a block, not 64); the 16 KB freed make room for a 2-deep
      // Q/dO ring.
      // Bar 5: Pᵀ written (arrive 0, sync 1); bar 6: dSᵀ written (arrive 1, sync 0).  The
      // slots are rewritten for the next block only after bar 1, when both are done.
      {
        const u32 slot = sX + ctid * 16;
        if (cw == 0) {
#pragma unroll
          for (int r = 0; r < BLOCK_M / 2; r += 4)
            st_shared_f4(slot + r * 512, s_acc[r], s_acc[r + 1], s_acc[r + 2], s_acc[r + 3]);
          asm volatile("bar.arrive 5, 256;" ::: "memory");
#pragma unroll
          for (int r = 0; r < BLOCK_M / 4; ++r) pp[r] = pack2(s_acc[2 * r], s_acc[2 * r + 1]);
          issue_kv(dv, pp, sDOs + kv_col);  // dV += Pᵀ·dO, under warpgroup 1's dSᵀ
          asm volatile("bar.sync 6, 256;" ::: "memory");
#pragma unroll
          for (int r = 0; r < BLOCK_M / 4; r += 4) {
            const float4 x = ld_shared_f4(slot + r * 512);
            pd[r] = __float_as_uint(x.x), pd[r + 1] = __float_as_uint(x.y);
            pd[r + 2] = __float_as_uint(x.z), pd[r + 3] = __float_as_uint(x.w);
          }
        } else {
          asm volatile("bar.sync 5, 256;" ::: "memory");
#pragma unroll
          for (int r = 0; r < BLOCK_M / 2; r += 4) {
            const float4 x = ld_shared_f4(slot + r * 512);
            s_acc[r] = x.x, s_acc[r + 1] = x.y, s_acc[r + 2] = x.z, s_acc[r + 3] = x.w;
          }
          form_ds(sLs);
#pragma unroll
          for (int r = 0; r < BLOCK_M / 4; ++r) {
            pp[r] = pack2(s_acc[2 * r], s_acc[2 * r + 1]);
            pd[r] = pack2(dp_acc[2 * r], dp_acc[2 * r + 1]);
          }
#pragma unroll
          for (int r = 0; r < BLOCK_M / 4; r += 4)
            st_shared_f4(slot + r * 512, __uint_as_float(pd[r]), __uint_as_float(pd[r + 1]),
                         __uint_as_float(pd[r + 2]), __uint_as_float(pd[r + 3]));
          asm volatile("bar.arrive 6, 256;" ::: "memory");
          issue_kv(dv, pp, sDOs + kv_col);  // dV += Pᵀ·dO
          store_ds(sDSb);
        }
      }
      issue_kv(dk, pd, sQs + kv_col);  // dK += dSᵀ·Q
      wgmma_wait<0>();  // dV, dK retired: stage s is free (see SPLIT_D below)
      retire_kv(s);
#else
#if SPLIT_D
      {  // swap through shared memory, in register order (conflict-free 16-byte accesses)
        const u32 mine = sX + cw * X_BYTES + ctid * 16;
        const u32 theirs = sX + (1 - cw) * X_BYTES + ctid * 16;
        if (cw == 0) {
#pragma unroll
          for (int r = 0; r < BLOCK_M / 2; r += 4)
            st_shared_f4(mine + r * 512, s_acc[r], s_acc[r + 1], s_acc[r + 2], s_acc[r + 3]);
        } else {
#pragma unroll
          for (int r = 0; r < BLOCK_M / 2; r += 4)
            st_shared_f4(mine + r * 512, dp_acc[r], dp_acc[r + 1], dp_acc[r + 2], dp_acc[r + 3]);
        }
        asm volatile("bar.sync 5, 256;" ::: "memory");
        if (cw == 0) {
#pragma unroll
          for (int r = 0; r < BLOCK_M / 2; r += 4) {
            const float4 x = ld_shared_f4(theirs + r * 512);
            dp_acc[r] = x.x, dp_acc[r + 1] = x.y, dp_acc[r + 2] = x.z, dp_acc[r + 3] = x.w;
          }
        } else {
#pragma unroll
          for (int r = 0; r < BLOCK_M / 2; r += 4) {
            const float4 x = ld_shared_f4(theirs + r * 512);
            s_acc[r] = x.x, s_acc[r + 1] = x.y, s_acc[r + 2] = x.z, s_acc[r + 3] = x.w;
          }
        }
      }
#elif EARLY_DV  // dV's product runs while this thread waits for dPᵀ and computes dS
#pragma unroll
      for (int r = 0; r < BLOCK_M / 4; ++r) pp[r] = pack2(s_acc[2 * r], s_acc[2 * r + 1]);
      issue_kv(dv, pp, sDOs + kv_col);  // dV += Pᵀ·dO
      wgmma_wait<1>();  // dPᵀ done (groups retire in order); dV may still run
#else
      wgmma_wait<0>();  // dPᵀ done
#endif
#pragma unroll
      for (int r = 0; r < BLOCK_M / 2; ++r) fence_reg(dp_acc[r]);
      // dSᵀ = Pᵀ ∘ (dPᵀ − Δ[query])
      float4 d4;  // VEC_IO: as l4 above
      (void)d4;
#pragma unroll
      for (int j = 0; j < BLOCK_M / 8; ++j) {
#if VEC_IO
        if (j % 2 == 0) d4 = row_quad(sLs + ROWS_PER_BLOCK * 4, j);
#endif
        const float2 dl = ROW_PAIR(sLs + ROWS_PER_BLOCK * 4, j, d4);
        dp_acc[4 * j] = s_acc[4 * j] * (dp_acc[4 * j] - dl.x);
        dp_acc[4 * j + 1] = s_acc[4 * j + 1] * (dp_acc[4 * j + 1] - dl.y);
        dp_acc[4 * j + 2] = s_acc[4 * j + 2] * (dp_acc[4 * j + 2] - dl.x);
        dp_acc[4 * j + 3] = s_acc[4 * j + 3] * (dp_acc[4 * j + 3] - dl.y);
      }
#if EARLY_DV
#pragma unroll
      for (int r = 0; r < BLOCK_M / 4; ++r) pd[r] = pack2(dp_acc[2 * r], dp_acc[2 * r + 1]);
#else
#pragma unroll
      for (int r = 0; r < BLOCK_M / 4; ++r) {
        pp[r] = pack2(s_acc[2 * r], s_acc[2 * r + 1]);
        pd[r] = pack2(dp_acc[2 * r], dp_acc[2 * r + 1]);
      }
      issue_kv(dv, pp, sDOs + kv_col);  // dV += Pᵀ·dO
#endif

      // dS (query rows, key columns; this warpgroup's 64 keys = one 128-byte chunk) for dQ,
      // stored before dK's product, which takes pd as its A operand, is issued: an in-flight
      // wgmma's A registers may not be touched, read or written, before its wait_group.
      // Matrix t/8 of an x4 store: queries 16jj + 8(t/16) .., keys 16 warp + 8((t/8) % 2) ..
      // (SPLIT_D: both warpgroups hold the same dS; warpgroup 0 stores it)
      if (!SPLIT_D || cw == 0) {
        const int mi = lane / 8, rr = lane % 8;
        const u32 unit = 2 * warp + (mi % 2);  // 16-byte unit of keys within the row
#pragma unroll
        for (int jj = 0; jj < BLOCK_M / 16; ++jj) {
          const u32 query = 16 * jj + 8 * (mi / 2) + rr;
          stmatrix_x4_trans(sDSb + (SPLIT_D ? 0 : cw * (BLOCK_M * 128)) + query * 128 +
                                ((unit ^ rr) << 4),
                            pd[4 * jj], pd[4 * jj + 1], pd[4 * jj + 2], pd[4 * jj + 3]);
        }
      }
      issue_kv(dk, pd, sQs + kv_col);  // dK += dSᵀ·Q
#if SPLIT_D
      // dV, dK retired: stage s (Q, dO, rows) is free, so its next load overlaps the dQ product
      wgmma_wait<0>();
      retire_kv(s);
#endif
#endif  // RELAY
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // for the wgmma reads
      CTRACE(i, 4);
      asm volatile("bar.sync 1, 256;" ::: "memory");                  // both halves written
      CTRACE(i, 5);

#if DQ_ALT
      // Warpgroup i % 2 computes the whole block's dQ (N = 128: dS and K read once, 6 KB of
      // shared memory per 131k MACs instead of 8 KB for both warpgroups' N = 64 halves); the
      // other hands its stage back and goes on to the next block, whose products then run
      // under this dQ and its hand-off.  dQ waits until dV and dK retire (their A
      // registers, pp and pd, die first: 64 more accumulators fit).
      wgmma_wait<0>();
      retire_kv(s);
      if ((g & 1) == cw) {
        float dq_all[DQ_N];
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
          const u64 da = make_desc(sDSb + (kk / 4) * (BLOCK_M * 128) + (kk % 4) * 32, 16, 1024);
          const u64 db = make_desc(sKa + kk * (16 * 128), BLOCK_N * 128, 1024);
          if (kk == 0)
            WGMMA_DQ_ALL_INIT(dq_all, da, db, 0);
          else
            WGMMA_DQ_ALL(dq_all, da, db, 1);
        }
        wgmma_commit();
        wgmma_wait<0>();
#pragma unroll
        for (int r = 0; r < DQ_N; ++r) fence_reg(dq_all[r]);
        CTRACE(i, 6);
        int hq_, mb_;  // the block index again: not held live across the product
        dq_out_all(consumer_block(t, i, hq_, mb_), dq_all);
      } else {
        CTRACE(i, 6);
      }
      PROF(7);
      continue;
#endif
      // dQ_part = dS·K over the BLOCK_N keys
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
        const u64 da = make_desc(sDSb + (kk / 4) * (BLOCK_M * 128) +
                                     (DQ_SPLIT_ROWS ? cw * (64 * 128) : 0) + (kk % 4) * 32,
                                 16, 1024);
        const u64 db = make_desc(sKa + (DQ_SPLIT_ROWS ? 0 : cw * (DQ_N / 64) * (BLOCK_N * 128)) +
                                     kk * (16 * 128),
                                 BLOCK_N * 128, 1024);
        if (kk == 0)
          WGMMA_DQ_INIT(dq, da, db, 0);
        else
          WGMMA_DQ(dq, da, db, 1);
      }
      wgmma_commit();
#if EARLY_RELEASE  // groups retire in order: dV and dK are done, dQ may still run
      wgmma_wait<1>();
      retire_kv(s);
#endif
      wgmma_wait<0>();
#pragma unroll
      for (int r = 0; r < DQ_N / 2; ++r) fence_reg(dq[r]);
#if !SPLIT_D && !EARLY_RELEASE
      retire_kv(s);
#endif
      CTRACE(i, 6);

#if S_AHEAD
      // copied into registers no wgmma defines: read under the next block's Sᵀ, dq itself
      // makes ptxas wait for that Sᵀ (it cannot tell, across the loop, that its wgmma retired)
      blk_prev = blk;
#pragma unroll
      for (int r = 0; r < DQ_N / 2; ++r) dq_prev[r] = copy_f32(dq[r]);
#else
      dq_out(blk, dq);
#endif
      PROF(7);
    }

#if S_AHEAD
    if (n_iter > 0) dq_out(blk_prev, dq_prev);
#endif

    // ---------------- epilogue: dK·scale, dV through the K, V tiles ----------------
    // Both warpgroups' products that read K (the dQ product reads all its rows) are done.
    // A warpgroup's dK/dV tile: its 64 key rows (SPLIT_D: all 64 rows, its KV_N columns =
    // chunks cw·KV_N/64 ..) of the K / V tile.
    CTRACE(n_iter, 7);
    asm volatile("bar.sync 4, 256;" ::: "memory");
    CTRACE(n_iter, 8);
#if TAIL_SPLIT
    if (piece >= 0) {
      // (after the barrier above: the other warpgroup may read K until then, and the last
      // piece's warpgroup overwrites it with dK below; both warpgroups reach it)
      // this warpgroup's partial, thread-major per register (coalesced), then the count;
      // the warpgroup that arrives last for its half of the block sums every piece's
      const size_t slot = (size_t)KV_N * 128;  // floats of one warpgroup's partial: dK, dV
      float* mine = tail_ws + ((size_t)(cut * tail_parts + piece) * 2 + cw) * slot + ctid;
#pragma unroll
      for (int r = 0; r < KV_N / 2; ++r) {
        __stcg(mine + r * 128, dk[r]);
        __stcg(mine + (KV_N / 2 + r) * 128, dv[r]);
      }
      __threadfence();
      asm volatile("bar.sync %0, 128;" ::"r"(2 + cw) : "memory");
      int last = 0;
      if (ctid == 0) last = atomicAdd(tail_cnt + 2 * cut + cw, 1) == tail_parts - 1;
      if (!bar_red_or(2 + cw, 128, last)) {  // another piece's warpgroup stores
        // the last dQ hand-off's bulk reduction may still read this CTA's shared memory
        if (ctid == 0) asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
        return;
      }
      __threadfence();
#pragma unroll
      for (int r = 0; r < KV_N / 2; ++r) dk[r] = dv[r] = 0.f;
      for (int pc = 0; pc < tail_parts; ++pc) {
        const float* th = tail_ws + ((size_t)(cut * tail_parts + pc) * 2 + cw) * slot + ctid;
#pragma unroll
        for (int r = 0; r < KV_N / 2; ++r) {
          dk[r] += __ldcg(th + r * 128);
          dv[r] += __ldcg(th + (KV_N / 2 + r) * 128);
        }
      }
    }
#endif
    const int ch0 = SPLIT_D ? cw * (KV_N / 64) : 0;  // first 64-column chunk of this tile
    const u32 sKe = sKw + ch0 * (BLOCK_N * 128), sVe = sVw + ch0 * (BLOCK_N * 128);
    const int row0 = n0 + (SPLIT_D ? 0 : cw * 64);
#if OPAQUE_BASES  // else both tiles' epilogues share these addresses, held (or spilled)
                  // through tile 1's loop
    const int rl = (int)opaque_u32((u32)r_loc), ln = (int)opaque_u32((u32)lane);
#else
    const int rl = r_loc, ln = lane;
#endif
    const u32 sw = (u32)(rl % 8);
#pragma unroll
    for (int j = 0; j < KV_N / 8; ++j) {
      const u32 off = (j / 8) * (BLOCK_N * 128) + ((((u32)(j % 8)) ^ sw) * 16) + 4 * (ln % 4);
      st_shared_u32(sKe + off + rl * 128, pack2(dk[4 * j] * scale, dk[4 * j + 1] * scale));
      st_shared_u32(sKe + off + (rl + 8) * 128,
                    pack2(dk[4 * j + 2] * scale, dk[4 * j + 3] * scale));
      st_shared_u32(sVe + off + rl * 128, pack2(dv[4 * j], dv[4 * j + 1]));
      st_shared_u32(sVe + off + (rl + 8) * 128, pack2(dv[4 * j + 2], dv[4 * j + 3]));
    }
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    asm volatile("bar.sync %0, 128;" ::"r"(2 + cw) : "memory");
    if (ctid == 0) {
#pragma unroll
      for (int ch = 0; ch < KV_N / 64; ++ch) {
        tma_store_4d(&tm_dk, sKe + ch * (BLOCK_N * 128), (ch0 + ch) * 64, row0, kv_head, batch);
        tma_store_4d(&tm_dv, sVe + ch * (BLOCK_N * 128), (ch0 + ch) * 64, row0, kv_head, batch);
      }
      asm volatile("cp.async.bulk.commit_group;" ::: "memory");
      asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
#if FOLD  // sK, sV free for the next tile's K and V
      mbar_arrive(BAR_KVE);
#endif
    }
    CTRACE(n_iter, 9);
    };  // run_tile
    run_tile(IntC<0>{});
#if FOLD
    if (ld_shared_u32(tile_info) > 1) run_tile(IntC<1>{});
#endif
#if BWD_PROF
    if (ctid == 0 && trace) {
      const int cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
      int* out = trace + (2 * cta + cw) * PROF_STRIDE;
#pragma unroll
      for (int k = 0; k < PROF_SLOTS; ++k) out[k] = (int)ld_shared_u32(PROF_ADDR(k));
      set_tile(0);
      int blocks = n_iter;
#if FOLD
      if (ld_shared_u32(tile_info) > 1) {
        set_tile(1);
        blocks += n_iter;
      }
#endif
      out[PROF_SLOTS] = blocks;
    }
#endif
  };
#if SPLIT_D || DQ_ALT  // the roles differ per warpgroup: a compile-time index (see above)
  if (wg == 1)
    consumer(IntC<0>{});
  else
    consumer(IntC<1>{});
#else
  consumer(wg - 1);
#endif
}
