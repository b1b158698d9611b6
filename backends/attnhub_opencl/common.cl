/* Shared definitions for the attnhub OpenCL kernels (prepended to forward.cl / backward.cl).
 *
 * Specialisation, passed as -D options by attnhub_opencl/_runtime.py:
 *   D, DV     head dims of q/k and of v
 *   DP, DVP   D, DV rounded up to NC (padded tile rows, zero-filled)
 *   VW        SIMD width: one work-item holds MV vectors of VW rows (1 on GPUs, where the
 *             work-group supplies the parallelism; 8/16 on CPUs, where PoCL runs one
 *             work-item per core and the vectors are the parallelism)
 *   MV        row vectors per work-item (ROWS = MV * VW rows per work-item)
 *   NR        keys per register block in the score GEMM (NR * MV accumulators)
 *   NC        head-dim columns per register block in the P·V-style GEMMs
 *   BN        keys (or queries, in the dK/dV kernel) per tile held in local memory
 *   WG        work-items per work-group
 *   HALF      1: tensors are float16 (read with vload_half, accumulate in float32)
 *
 * Scores are kept in base 2: the kernels fold log2(e) into the Q scale and use exp2.
 */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

#define ROWS (MV * VW)
#define BM (WG * ROWS)

#if VW == 1
typedef float vec_t;
typedef int ivec_t;
#define VLOAD(p) (*(p))
#define VSTORE(x, p) (*(p) = (x))
#define AS_IVEC(x) as_int(x)
#define AS_VEC(x) as_float(x)
#define IOTA 0
#define ALL_TRUE (-1)
#define TRUE_IF(c) ((c) ? -1 : 0)
#else
typedef CAT(float, VW) vec_t;
typedef CAT(int, VW) ivec_t;
#define VLOAD(p) CAT(vload, VW)(0, (p))
#define VSTORE(x, p) CAT(vstore, VW)((x), 0, (p))
#define AS_IVEC(x) CAT(as_int, VW)(x)
#define AS_VEC(x) CAT(as_float, VW)(x)
#define TRUE_IF(c) ((ivec_t)((c) ? -1 : 0))
#if VW == 2
#define IOTA ((ivec_t)(0, 1))
#elif VW == 4
#define IOTA ((ivec_t)(0, 1, 2, 3))
#elif VW == 8
#define IOTA ((ivec_t)(0, 1, 2, 3, 4, 5, 6, 7))
#elif VW == 16
#define IOTA ((ivec_t)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#else
#error "VW must be 1, 2, 4, 8 or 16"
#endif
#endif

/* Loops whose trip count is a compile-time constant are unrolled on GPUs when GPU_UNROLL is
 * 1 (the forward), so per-work-item arrays indexed by them stay in registers; CPUs keep them
 * rolled (code size).  The backward's per-work-item arrays exceed any register file anyway,
 * and fully unrolling its four GEMMs made NVIDIA's compiler take minutes (NOTES.md), so it
 * builds with GPU_UNROLL 0: those arrays live in (cached) private memory, one load per NR or
 * NC FMAs. */
#ifndef GPU_UNROLL
#define GPU_UNROLL 1
#endif
#if VW == 1 && GPU_UNROLL
#define UNROLL_GPU _Pragma("unroll")
#else
#define UNROLL_GPU
#endif

/* Varlen: sequence b's first row and length, from its cu_seqlens offsets (dense problems
 * keep offset 0 and the length passed in). */
#define SEQ_BOUNDS(cu, b, start, len) \
    do { (start) = (cu)[(b)]; (len) = (cu)[(b) + 1] - (start); } while (0)

/* Rows of a tile the GEMMs run over: the valid rows rounded up to NR on CPUs; the whole
 * (zero-padded, masked) tile on GPUs, so the loops above have constant trip counts. */
#if VW == 1
#define TILE_TRIP(nvalid) BN
#else
#define TILE_TRIP(nvalid) (((nvalid) + NR - 1) / NR * NR)
#endif

#if HALF
typedef half T;
#define LD(p, i) vload_half((i), (p))
#define ST(x, p, i) vstore_half_rte((x), (i), (p))
#else
typedef float T;
#define LD(p, i) ((p)[i])
#define ST(x, p, i) ((p)[i] = (x))
#endif

#define LOG2E 1.44269504088896341f  /* 1/ln 2 */
#define LN2 0.69314718055994531f
#define NEG_INF (-INFINITY)

/* 2^x for softmax arguments (x <= 0 up to rounding, or -inf): round-to-nearest split x = n + f with the
 * 1.5*2^23 trick, a degree-6 polynomial for 2^f on [-0.5, 0.5] (Cephes exp2f, relative error
 * ~2e-7), and 2^n built in the exponent field.  x < -127 (and -inf) gives exactly 0.    About 13
 * vector instructions, half of the generic exp2. */
inline vec_t exp2_neg(vec_t x)
{
    const vec_t xc = clamp(x, (vec_t)(-127.0f), (vec_t)(127.0f));
    const vec_t t = xc + 12582912.0f;                 /* 1.5 * 2^23 */
    const vec_t f = xc - (t - 12582912.0f);
    vec_t p = 1.535336188319500e-4f;
    p = fma(p, f, 1.339887440266574e-3f);
    p = fma(p, f, 9.618437357674640e-3f);
    p = fma(p, f, 5.550332471162809e-2f);
    p = fma(p, f, 2.402264791363012e-1f);
    p = fma(p, f, 6.931472028550421e-1f);
    p = fma(p, f, 1.0f);
    /* as_int(t) = as_int(1.5 * 2^23) + n; the biased exponent n + 127 is in [0, 254] */
    const ivec_t e = (AS_IVEC(t) - 0x4B400000 + 127) << 23;
    return p * AS_VEC(e);
}

/* The mask for key j and query row i of one sequence (off = Sk - Sq, bottom-right aligned):
 *   allowed  <=>  llim <= j - i <= rlim  and  j < kend
 * with rlim = off + right (causal folded in as right = 0), llim = off - left, +-infinity for
 * an unbounded side. */
inline int window_rlim(int off, int right) { return right < 0 ? INT_MAX : off + right; }
inline int window_llim(int off, int left) { return left < 0 ? INT_MIN + 1 : off - left; }

/* The two register-blocked GEMM shapes every kernel is made of.  Operands named "vec" are
 * per-work-item arrays of vec_t [k][MV] (a vector of rows per entry); "tile" is a row-major
 * local-memory tile whose scalars are broadcast.
 *
 * MM_VT(out, vec, tile, ld, nx, kd):   out[x][m] = sum_{t<kd} vec[t][m] * tile[x*ld + t]
 *     for x < nx (a multiple of NR), in blocks of NR x MV accumulators.
 * MM_VN(acc, vec, tile, ld, nc, nk):   acc[c][m] += sum_{t<nk} vec[t][m] * tile[t*ld + c]
 *     for c < nc (a multiple of NC), in blocks of NC x MV accumulators. */
#define MM_VT(out, vec, tile, ld, nx, kd)                                                  \
    UNROLL_GPU                                                                            \
    for (int x0_ = 0; x0_ < (nx); x0_ += NR) {                                            \
        vec_t a_[NR][MV];                                                                 \
        _Pragma("unroll") for (int r_ = 0; r_ < NR; ++r_)                                 \
            _Pragma("unroll") for (int m_ = 0; m_ < MV; ++m_) a_[r_][m_] = 0.0f;          \
        UNROLL_GPU                                                                        \
        for (int t_ = 0; t_ < (kd); ++t_) {                                               \
            vec_t u_[MV];                                                                 \
            _Pragma("unroll") for (int m_ = 0; m_ < MV; ++m_) u_[m_] = (vec)[t_][m_];     \
            _Pragma("unroll") for (int r_ = 0; r_ < NR; ++r_) {                           \
                const vec_t w_ = (vec_t)((tile)[(x0_ + r_) * (ld) + t_]);                 \
                _Pragma("unroll") for (int m_ = 0; m_ < MV; ++m_)                         \
                    a_[r_][m_] = fma(u_[m_], w_, a_[r_][m_]);                             \
            }                                                                             \
        }                                                                                 \
        _Pragma("unroll") for (int r_ = 0; r_ < NR; ++r_)                                 \
            _Pragma("unroll") for (int m_ = 0; m_ < MV; ++m_) (out)[x0_ + r_][m_] = a_[r_][m_]; \
    }

#define MM_VN(acc, vec, tile, ld, nc, nk)                                                  \
    UNROLL_GPU                                                                            \
    for (int c0_ = 0; c0_ < (nc); c0_ += NC) {                                            \
        vec_t a_[NC][MV];                                                                 \
        _Pragma("unroll") for (int c_ = 0; c_ < NC; ++c_)                                 \
            _Pragma("unroll") for (int m_ = 0; m_ < MV; ++m_) a_[c_][m_] = (acc)[c0_ + c_][m_]; \
        UNROLL_GPU                                                                        \
        for (int t_ = 0; t_ < (nk); ++t_) {                                               \
            vec_t u_[MV];                                                                 \
            _Pragma("unroll") for (int m_ = 0; m_ < MV; ++m_) u_[m_] = (vec)[t_][m_];     \
            _Pragma("unroll") for (int c_ = 0; c_ < NC; ++c_) {                           \
                const vec_t w_ = (vec_t)((tile)[t_ * (ld) + c0_ + c_]);                   \
                _Pragma("unroll") for (int m_ = 0; m_ < MV; ++m_)                         \
                    a_[c_][m_] = fma(u_[m_], w_, a_[c_][m_]);                             \
            }                                                                             \
        }                                                                                 \
        _Pragma("unroll") for (int c_ = 0; c_ < NC; ++c_)                                 \
            _Pragma("unroll") for (int m_ = 0; m_ < MV; ++m_) (acc)[c0_ + c_][m_] = a_[c_][m_]; \
    }

/* rows [0, nvalid) of a global matrix (row stride lsrc, cols columns) -> local tile of
 * nrows x ldst floats, zero-filled elsewhere; all WG work-items cooperate. */
inline void load_tile(__local float *dst, const int nrows, const int ldst,
                      __global const T *src, const long lsrc, const int cols,
                      const int nvalid, const int lid)
{
#if WG == 1
    for (int x = 0; x < nrows; ++x) {
        if (x < nvalid)
            for (int c = 0; c < cols; ++c) dst[x * ldst + c] = LD(src, x * lsrc + c);
        else
            for (int c = 0; c < cols; ++c) dst[x * ldst + c] = 0.0f;
        for (int c = cols; c < ldst; ++c) dst[x * ldst + c] = 0.0f;
    }
#else
    for (int e = lid; e < nrows * ldst; e += WG) {
        const int x = e / ldst, c = e - x * ldst;
        dst[e] = (x < nvalid && c < cols) ? LD(src, x * lsrc + c) : 0.0f;
    }
#endif
}

/* rows [row0, row0 + ROWS) of a global matrix, transposed into vec[c][m] (times mul),
 * zero past nrows and for c >= cols up to ncols */
#define LOAD_T(vec, src, lsrc, row0, nrows, cols, ncols, mul)                             \
    for (int m_ = 0; m_ < MV; ++m_) {                                                     \
        float l_[VW];                                                                     \
        UNROLL_GPU                                                                        \
        for (int c_ = 0; c_ < (ncols); ++c_) {                                            \
            for (int x_ = 0; x_ < VW; ++x_) {                                             \
                const int i_ = (row0) + m_ * VW + x_;                                     \
                l_[x_] = (i_ < (nrows) && c_ < (cols)) ? LD(src, i_ * (lsrc) + c_) * (mul) : 0.0f; \
            }                                                                             \
            (vec)[c_][m_] = VLOAD(l_);                                                    \
        }                                                                                 \
    }

/* vec[c][m] * mul -> rows [row0, row0 + ROWS) of a global matrix, rows < nrows only */
#define STORE_T(vec, dst, ldst, row0, nrows, cols, mul)                                   \
    for (int m_ = 0; m_ < MV; ++m_) {                                                     \
        float l_[VW];                                                                     \
        UNROLL_GPU                                                                        \
        for (int c_ = 0; c_ < (cols); ++c_) {                                             \
            VSTORE((vec)[c_][m_] * (mul), l_);                                            \
            for (int x_ = 0; x_ < VW; ++x_) {                                             \
                const int i_ = (row0) + m_ * VW + x_;                                     \
                if (i_ < (nrows))                                                         \
                    ST(l_[x_], dst, i_ * (ldst) + c_);                                    \
            }                                                                             \
        }                                                                                 \
    }
