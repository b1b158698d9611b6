/* FlashAttention-2 backward by recomputation: no S x S buffer is ever stored.
 *
 *   attn_bwd_prep   Delta_i = sum_c dO[i][c] O[i][c] and LSE in base 2 (+inf for empty rows,
 *                   so exp2(s - lse2) = 0 there), one work-item per query row
 *   attn_bwd_dkdv   a work-group owns BM keys of one (batch, kv head); it streams the queries
 *                   of every q head of the group that can see those keys through local
 *                   memory (Q, dO, lse2, Delta tiles of BN rows) and accumulates
 *                   dV^T += P^T dO  and  dK^T += dS^T Q  in private memory
 *   attn_bwd_dq     a work-group owns BM query rows; it streams the visible K/V tiles and
 *                   accumulates  dQ^T += K^T dS^T
 *
 * with P = exp2(s - lse2), dP = dO V^T, dS = P (dP - Delta) [(1 - tanh^2) with softcap], and
 * the score scale applied once to dK and dQ at the end.  The same tiling mask as the forward
 * pass skips blocks that causal/window masking empties.
 */

__kernel void attn_bwd_prep(__global const T *o, const long o_off, const long o_sb,
                            const long o_sh, const long o_ss,
                            __global const T *dout, const long d_off, const long d_sb,
                            const long d_sh, const long d_ss,
                            __global const float *lse, const long l_sb, const long l_sh,
                            __global float *delta, __global float *lse2,
                            __global const int *cu_q, const int varlen, int sq)
{
    const int i = get_global_id(0), h = get_group_id(1), b = get_group_id(2);
    int q0 = 0;
    if (varlen)
        SEQ_BOUNDS(cu_q, b, q0, sq);
    if (i >= sq)
        return;
    __global const T *orow = o + o_off + b * o_sb + h * o_sh + (q0 + i) * o_ss;
    __global const T *drow = dout + d_off + b * d_sb + h * d_sh + (q0 + i) * d_ss;
    float acc = 0.0f;
    for (int c = 0; c < DV; ++c) acc = fma(LD(orow, c), LD(drow, c), acc);
    const long at = b * l_sb + h * l_sh + q0 + i;
    const float l = lse[at];
    delta[at] = acc;
    lse2[at] = l == NEG_INF ? INFINITY : l * LOG2E;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attn_bwd_dkdv(__global const T *q, const long q_off, const long q_sb, const long q_sh,
                   const long q_ss,
                   __global const T *k, const long k_off, const long k_sb, const long k_sh,
                   const long k_ss,
                   __global const T *v, const long v_off, const long v_sb, const long v_sh,
                   const long v_ss,
                   __global const T *dout, const long d_off, const long d_sb, const long d_sh,
                   const long d_ss,
                   __global const float *lse2, __global const float *delta,
                   const long l_sb, const long l_sh,
                   __global T *dk, const long dk_sb, const long dk_sh, const long dk_ss,
                   __global T *dv, const long dv_sb, const long dv_sh, const long dv_ss,
                   __global const int *cu_q, __global const int *cu_k, const int varlen,
                   int sq, int sk, const int group, const float qk_mul, const float cap,
                   const float scale, const int left, const int right)
{
    const int hk = get_group_id(1), b = get_group_id(2);
    const int lid = get_local_id(0);
    int q0 = 0, k0 = 0;
    if (varlen) {
        SEQ_BOUNDS(cu_q, b, q0, sq);
        SEQ_BOUNDS(cu_k, b, k0, sk);
    }
    const int j_grp = get_group_id(0) * BM;
    if (j_grp >= sk)
        return;
    const int j_me = j_grp + lid * ROWS;
    __global const T *kb = k + k_off + b * k_sb + hk * k_sh + k0 * k_ss;
    __global const T *vb = v + v_off + b * v_sb + hk * v_sh + k0 * v_ss;

    /* queries that may see any key of this block: llim <= j - i <= rlim */
    const int off = sk - sq;
    const int rlim = window_rlim(off, right), llim = window_llim(off, left);
    const int j_last = min(j_grp + BM, sk) - 1;  /* keys past sk: computed, never stored */
    const int qlo = right < 0 ? 0 : max(0, j_grp - rlim);
    const int qhi = left < 0 ? sq : min(sq, j_last - llim + 1);

    __local float ql[BN * DP];
    __local float dol[BN * DVP];
    __local float ll[BN], dl[BN];
    vec_t kt[D][MV], vt[DV][MV];      /* K^T (pre-scaled), V^T of my keys */
    vec_t dkt[DP][MV], dvt[DVP][MV];  /* accumulators */
    vec_t st[BN][MV], dpt[BN][MV];    /* P^T, then dP^T and dS^T */
    vec_t gt[BN][MV];                 /* softcap derivative 1 - tanh^2 */

    LOAD_T(kt, kb, k_ss, j_me, sk, D, D, qk_mul);
    LOAD_T(vt, vb, v_ss, j_me, sk, DV, DV, 1.0f);
    for (int m = 0; m < MV; ++m) {
        UNROLL_GPU
        for (int c = 0; c < DP; ++c) dkt[c][m] = 0.0f;
        UNROLL_GPU
        for (int c = 0; c < DVP; ++c) dvt[c][m] = 0.0f;
    }

    for (int g = 0; g < group; ++g) {
        const int h = hk * group + g;
        __global const T *qb = q + q_off + b * q_sb + h * q_sh + q0 * q_ss;
        __global const T *db = dout + d_off + b * d_sb + h * d_sh + q0 * d_ss;
        __global const float *lb = lse2 + b * l_sb + h * l_sh + q0;
        __global const float *deb = delta + b * l_sb + h * l_sh + q0;
        for (int i0 = qlo; i0 < qhi; i0 += BN) {
            const int nvalid = min(BN, qhi - i0);
            const int ni = TILE_TRIP(nvalid);
            barrier(CLK_LOCAL_MEM_FENCE);
            load_tile(ql, BN, DP, qb + i0 * q_ss, q_ss, D, nvalid, lid);
            load_tile(dol, BN, DVP, db + i0 * d_ss, d_ss, DV, nvalid, lid);
            for (int x = lid; x < BN; x += WG) {
                ll[x] = x < nvalid ? lb[i0 + x] : INFINITY;
                dl[x] = x < nvalid ? deb[i0 + x] : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            /* S = Q K^T for my keys, then P = exp2(S - lse2) */
            MM_VT(st, kt, ql, DP, ni, D);
            const bool whole = i0 + BN <= qhi && j_last - i0 <= rlim
                               && j_grp - (i0 + BN - 1) >= llim;
            UNROLL_GPU
            for (int i = 0; i < ni; ++i)
#pragma unroll
                for (int m = 0; m < MV; ++m) {
                    vec_t s = st[i][m];
                    if (cap != 0.0f) {
                        const vec_t t = tanh(s);
                        s = cap * t;
                        gt[i][m] = 1.0f - t * t;
                    }
                    if (!whole) {
                        const ivec_t dj = (IOTA + (j_me + m * VW)) - (ivec_t)(i0 + i);
                        const ivec_t ok = (dj <= rlim) & (dj >= llim) & TRUE_IF(i < nvalid);
                        s = select((vec_t)(NEG_INF), s, ok);
                    }
                    st[i][m] = exp2_neg(s - ll[i]);
                }

            /* dV^T += P^T dO */
            MM_VN(dvt, st, dol, DVP, DVP, ni);

            /* dP = dO V^T, dS = P (dP - Delta) [(1 - tanh^2)] */
            MM_VT(dpt, vt, dol, DVP, ni, DV);
            UNROLL_GPU
            for (int i = 0; i < ni; ++i)
#pragma unroll
                for (int m = 0; m < MV; ++m) {
                    vec_t ds = st[i][m] * (dpt[i][m] - dl[i]);
                    if (cap != 0.0f)
                        ds *= gt[i][m];
                    dpt[i][m] = ds;
                }

            /* dK^T += dS^T Q */
            MM_VN(dkt, dpt, ql, DP, DP, ni);
        }
    }

    __global T *dkb = dk + b * dk_sb + hk * dk_sh + k0 * dk_ss;
    __global T *dvb = dv + b * dv_sb + hk * dv_sh + k0 * dv_ss;
    STORE_T(dkt, dkb, dk_ss, j_me, sk, D, scale);
    STORE_T(dvt, dvb, dv_ss, j_me, sk, DV, 1.0f);
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attn_bwd_dq(__global const T *q, const long q_off, const long q_sb, const long q_sh,
                 const long q_ss,
                 __global const T *k, const long k_off, const long k_sb, const long k_sh,
                 const long k_ss,
                 __global const T *v, const long v_off, const long v_sb, const long v_sh,
                 const long v_ss,
                 __global const T *dout, const long d_off, const long d_sb, const long d_sh,
                 const long d_ss,
                 __global const float *lse2, __global const float *delta,
                 const long l_sb, const long l_sh,
                 __global T *dq, const long dq_sb, const long dq_sh, const long dq_ss,
                 __global const int *cu_q, __global const int *cu_k, const int varlen,
                 int sq, int sk, const int group, const float qk_mul, const float cap,
                 const float scale, const int left, const int right)
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
        return;
    const int i_me = i_grp + lid * ROWS;
    const int i_last = min(i_grp + BM, sq) - 1;
    const int hk = h / group;
    __global const T *qb = q + q_off + b * q_sb + h * q_sh + q0 * q_ss;
    __global const T *kb = k + k_off + b * k_sb + hk * k_sh + k0 * k_ss;
    __global const T *vb = v + v_off + b * v_sb + hk * v_sh + k0 * v_ss;
    __global const T *db = dout + d_off + b * d_sb + h * d_sh + q0 * d_ss;
    __global const float *lb = lse2 + b * l_sb + h * l_sh + q0;
    __global const float *deb = delta + b * l_sb + h * l_sh + q0;

    const int off = sk - sq;
    const int rlim = window_rlim(off, right), llim = window_llim(off, left);
    const int lo = left < 0 ? 0 : max(0, i_grp + off - left);
    const int hi = right < 0 ? sk : min(sk, i_last + off + right + 1);

    __local float kl[BN * DP];
    __local float vl[BN * DVP];
    vec_t qt[D][MV], dot[DV][MV];  /* Q^T (pre-scaled), dO^T of my rows */
    vec_t dqt[DP][MV];             /* accumulator */
    vec_t st[BN][MV], dpt[BN][MV], gt[BN][MV];
    vec_t l2[MV], dlt[MV];

    LOAD_T(qt, qb, q_ss, i_me, sq, D, D, qk_mul);
    LOAD_T(dot, db, d_ss, i_me, sq, DV, DV, 1.0f);
    for (int m = 0; m < MV; ++m) {
        float a_[VW], b_[VW];
        for (int x = 0; x < VW; ++x) {
            const int i = i_me + m * VW + x;
            a_[x] = i < sq ? lb[i] : INFINITY;
            b_[x] = i < sq ? deb[i] : 0.0f;
        }
        l2[m] = VLOAD(a_);
        dlt[m] = VLOAD(b_);
        UNROLL_GPU
        for (int c = 0; c < DP; ++c) dqt[c][m] = 0.0f;
    }

    for (int j0 = lo; j0 < hi; j0 += BN) {
        const int nvalid = min(BN, hi - j0);
        const int nj = TILE_TRIP(nvalid);
        barrier(CLK_LOCAL_MEM_FENCE);
        load_tile(kl, BN, DP, kb + j0 * k_ss, k_ss, D, nvalid, lid);
        load_tile(vl, BN, DVP, vb + j0 * v_ss, v_ss, DV, nvalid, lid);
        barrier(CLK_LOCAL_MEM_FENCE);

        /* S^T = K Q^T, P^T = exp2(S^T - lse2) */
        MM_VT(st, qt, kl, DP, nj, D);
        const bool whole = j0 + BN <= hi && j0 + BN - 1 - i_grp <= rlim
                           && j0 - i_last >= llim;
        UNROLL_GPU
        for (int j = 0; j < nj; ++j)
#pragma unroll
            for (int m = 0; m < MV; ++m) {
                vec_t s = st[j][m];
                if (cap != 0.0f) {
                    const vec_t t = tanh(s);
                    s = cap * t;
                    gt[j][m] = 1.0f - t * t;
                }
                if (!whole) {
                    const ivec_t dj = (ivec_t)(j0 + j) - (IOTA + (i_me + m * VW));
                    const ivec_t ok = (dj <= rlim) & (dj >= llim) & TRUE_IF(j < nvalid);
                    s = select((vec_t)(NEG_INF), s, ok);
                }
                st[j][m] = exp2_neg(s - l2[m]);
            }

        /* dP^T = V dO^T, dS^T = P^T (dP^T - Delta) [(1 - tanh^2)] */
        MM_VT(dpt, dot, vl, DVP, nj, DV);
        UNROLL_GPU
        for (int j = 0; j < nj; ++j)
#pragma unroll
            for (int m = 0; m < MV; ++m) {
                vec_t ds = st[j][m] * (dpt[j][m] - dlt[m]);
                if (cap != 0.0f)
                    ds *= gt[j][m];
                st[j][m] = ds;
            }

        /* dQ^T += K^T dS^T */
        MM_VN(dqt, st, kl, DP, DP, nj);
    }

    __global T *dqb = dq + b * dq_sb + h * dq_sh + q0 * dq_ss;
    STORE_T(dqt, dqb, dq_ss, i_me, sq, D, scale);
}
