/* FlashAttention-2 forward: O = softmax(mask(softcap(scale * Q K^T))) V and LSE, by tiles.
 *
 * Grid: (query blocks * WG, Hq, B) with work-groups of WG work-items; a work-group owns
 * BM = WG * ROWS query rows of one (batch, head) and streams the allowed key range through
 * local memory, BN keys (a K tile and a V tile) at a time.  Each work-item keeps its ROWS
 * rows of Q^T, the score tile S^T and the O^T accumulator in private memory as MV vectors
 * of VW rows, so every inner loop is "vector of rows  x  broadcast scalar from the tile":
 *
 *   phase 1   S^T[j][rows]  = sum_d  Q^T[d][rows] * K[j][d]       (NR keys x MV vectors)
 *   softmax   m, l, P^T = exp2(S^T - m) per row, online (FlashAttention-2)
 *   phase 2   O^T[c][rows] = alpha * O^T[c][rows] + sum_j P^T[j][rows] * V[j][c]
 *
 * Tiling mask: the key loop runs over [lo, hi), the union of the rows' allowed ranges, so
 * tiles that causal/window masking empties for the whole block are never loaded; only
 * tiles that cross a mask boundary (or the end of the keys) pay for element masking.
 * Rows with no allowed key get O = 0 and LSE = -inf.
 */

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attn_fwd(__global const T *q, const long q_off, const long q_sb, const long q_sh,
              const long q_ss,
              __global const T *k, const long k_off, const long k_sb, const long k_sh,
              const long k_ss,
              __global const T *v, const long v_off, const long v_sb, const long v_sh,
              const long v_ss,
              __global T *o, const long o_off, const long o_sb, const long o_sh, const long o_ss,
              __global float *lse, const long l_sb, const long l_sh,
              __global const int *cu_q, __global const int *cu_k, const int varlen,
              int sq, int sk, const int group,
              const float qk_mul,  /* scale * log2(e), or scale / softcap with softcap */
              const float cap,     /* 0, or softcap * log2(e) */
              const int left, const int right)
{
    const int h = get_group_id(1), b = get_group_id(2);
    const int lid = get_local_id(0);
    int q0 = 0, k0 = 0;
    if (varlen) {
        SEQ_BOUNDS(cu_q, b, q0, sq);
        SEQ_BOUNDS(cu_k, b, k0, sk);
    }
    const int i_grp = get_group_id(0) * BM;
    if (i_grp >= sq)
        return;  /* whole work-group: varlen sequences shorter than the grid */
    const int i_me = i_grp + lid * ROWS;
    const int i_last = min(i_grp + BM, sq) - 1;
    const int hk = h / group;
    __global const T *qb = q + q_off + b * q_sb + h * q_sh + q0 * q_ss;
    __global const T *kb = k + k_off + b * k_sb + hk * k_sh + k0 * k_ss;
    __global const T *vb = v + v_off + b * v_sb + hk * v_sh + k0 * v_ss;
    __global T *ob = o + o_off + b * o_sb + h * o_sh + q0 * o_ss;
    __global float *lb = lse + b * l_sb + h * l_sh + q0;

    /* keys any row of this block may see */
    const int off = sk - sq;
    const int rlim = window_rlim(off, right), llim = window_llim(off, left);
    const int lo = left < 0 ? 0 : max(0, i_grp + off - left);
    const int hi = right < 0 ? sk : min(sk, i_last + off + right + 1);

    __local float kl[BN * DP];
    __local float vl[BN * DVP];
    vec_t qt[D][MV];    /* Q^T, pre-scaled */
    vec_t st[BN][MV];   /* S^T, then P^T */
    vec_t ot[DVP][MV];  /* O^T accumulator */
    vec_t mrow[MV], lrow[MV];
    LOAD_T(qt, qb, q_ss, i_me, sq, D, D, qk_mul);
    for (int m = 0; m < MV; ++m) {
        UNROLL_GPU
        for (int c = 0; c < DVP; ++c) ot[c][m] = 0.0f;
        mrow[m] = NEG_INF;
        lrow[m] = 0.0f;
    }

    for (int j0 = lo; j0 < hi; j0 += BN) {
        const int nvalid = min(BN, hi - j0);
        const int nj = TILE_TRIP(nvalid);
        barrier(CLK_LOCAL_MEM_FENCE);
        load_tile(kl, BN, DP, kb + j0 * k_ss, k_ss, D, nvalid, lid);
        load_tile(vl, BN, DVP, vb + j0 * v_ss, v_ss, DV, nvalid, lid);
        barrier(CLK_LOCAL_MEM_FENCE);

        /* phase 1: S^T = K Q^T, register blocks of NR keys x MV row vectors */
        vec_t mt[MV];
        for (int m = 0; m < MV; ++m) mt[m] = NEG_INF;
        UNROLL_GPU
        for (int jg = 0; jg < nj; jg += NR) {
            vec_t acc[NR][MV];
#pragma unroll
            for (int r = 0; r < NR; ++r)
#pragma unroll
                for (int m = 0; m < MV; ++m) acc[r][m] = 0.0f;
            UNROLL_GPU
            for (int d = 0; d < D; ++d) {
                vec_t a[MV];
#pragma unroll
                for (int m = 0; m < MV; ++m) a[m] = qt[d][m];
#pragma unroll
                for (int r = 0; r < NR; ++r) {
                    const vec_t bk = (vec_t)(kl[(jg + r) * DP + d]);
#pragma unroll
                    for (int m = 0; m < MV; ++m) acc[r][m] = fma(a[m], bk, acc[r][m]);
                }
            }
#pragma unroll
            for (int r = 0; r < NR; ++r)
#pragma unroll
                for (int m = 0; m < MV; ++m) {
                    st[jg + r][m] = acc[r][m];
                    mt[m] = max(mt[m], acc[r][m]);
                }
        }

        /* softcap and element mask, only where needed (block-uniform branches) */
        const bool whole = j0 + BN <= hi && j0 + BN - 1 - i_grp <= rlim
                           && j0 - i_last >= llim;
        if (cap != 0.0f || !whole) {
            for (int m = 0; m < MV; ++m) mt[m] = NEG_INF;
            UNROLL_GPU
            for (int j = 0; j < nj; ++j)
#pragma unroll
                for (int m = 0; m < MV; ++m) {
                    vec_t s = st[j][m];
                    if (cap != 0.0f)
                        s = cap * tanh(s);
                    if (!whole) {
                        const ivec_t dj = (ivec_t)(j0 + j) - (IOTA + (i_me + m * VW));
                        const ivec_t ok = (dj <= rlim) & (dj >= llim) & TRUE_IF(j < nvalid);
                        s = select((vec_t)(NEG_INF), s, ok);
                    }
                    st[j][m] = s;
                    mt[m] = max(mt[m], s);
                }
        }

        /* online softmax: rescale factor alpha, P^T = exp2(S^T - m), row sums */
        vec_t alpha[MV], mref[MV], lt[MV];
#pragma unroll
        for (int m = 0; m < MV; ++m) {
            const vec_t mn = max(mrow[m], mt[m]);
            mref[m] = select(mn, (vec_t)(0.0f), mn == (vec_t)(NEG_INF));  /* all masked */
            alpha[m] = exp2_neg(mrow[m] - mref[m]);
            mrow[m] = mn;
            lt[m] = 0.0f;
        }
        UNROLL_GPU
        for (int j = 0; j < nj; ++j)
#pragma unroll
            for (int m = 0; m < MV; ++m) {
                const vec_t p = exp2_neg(st[j][m] - mref[m]);
                lt[m] += p;
                st[j][m] = p;
            }
#pragma unroll
        for (int m = 0; m < MV; ++m) lrow[m] = fma(lrow[m], alpha[m], lt[m]);

        /* phase 2: O^T = alpha O^T + V^T P^T, register blocks of NC columns x MV vectors */
        UNROLL_GPU
        for (int c = 0; c < DVP; ++c)
#pragma unroll
            for (int m = 0; m < MV; ++m) ot[c][m] *= alpha[m];
        MM_VN(ot, st, vl, DVP, DVP, nj);
    }

    /* epilogue: O = O^T / l, LSE = ln 2 * (m + log2 l); empty rows: O = 0, LSE = -inf */
    vec_t inv[MV];
    for (int m = 0; m < MV; ++m) {
        const ivec_t live = lrow[m] > (vec_t)(0.0f);
        float l_[VW];
        inv[m] = select((vec_t)(0.0f), 1.0f / lrow[m], live);
        VSTORE(select((vec_t)(NEG_INF), (mrow[m] + log2(lrow[m])) * LN2, live), l_);
        for (int x = 0; x < VW; ++x)
            if (i_me + m * VW + x < sq)
                lb[i_me + m * VW + x] = l_[x];
    }
    STORE_T(ot, ob, o_ss, i_me, sq, DV, inv[m_]);
}
