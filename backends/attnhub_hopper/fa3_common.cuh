// hopper-fa3: the PTX helpers the CUDA forward (fa3_fwd.cu) and backward (fa3_bwd.cu)
// share: shared-memory addresses, mbarriers, TMA loads/stores, wgmma fences and
// waits, the 128B-swizzle wgmma descriptor, fast exp2/log2, 16-bit packing.
// cuda_fwd.source / cuda_bwd.source put it after the generated wgmma wrappers.

#ifndef IS_BF16
#define IS_BF16 1
#endif
#define NEG_INF (__int_as_float(0xff800000))
#define LN2 0.6931471805599453f
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)

struct __align__(64) TmaDesc {
  u64 v[16];
};

// ---- small PTX helpers ------------------------------------------------------------------
__device__ __forceinline__ u32 smem_addr(const void* p) {
  u64 a;
  asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
  return (u32)a;
}
__device__ __forceinline__ void mbar_init(u32 bar, u32 count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(u32 bar, u32 bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive(u32 bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity) {
  u32 done;
  do {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
__device__ __forceinline__ void tma_load_4d(u32 dst, const TmaDesc* map, u32 bar, int c0, int c1,
                                            int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6}], [%2];" ::"r"(dst),
      "l"((u64)map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}
__device__ __forceinline__ void tma_store_4d(const TmaDesc* map, u32 src, int c0, int c1, int c2,
                                             int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.global.shared::cta.tile.bulk_group [%0, {%2, %3, %4, %5}], [%1];" ::
          "l"((u64)map),
      "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}
__device__ __forceinline__ uint4 ld_shared_v4(u32 addr) {
  uint4 v;
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr)
               : "memory");
  return v;
}
__device__ __forceinline__ void st_shared_v4(u32 addr, uint4 v) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};" ::"r"(addr), "r"(v.x), "r"(v.y),
               "r"(v.z), "r"(v.w)
               : "memory");
}
__device__ __forceinline__ void st_shared_u32(u32 addr, u32 v) {
  asm volatile("st.shared.b32 [%0], %1;" ::"r"(addr), "r"(v) : "memory");
}
__device__ __forceinline__ u32 ld_shared_u32(u32 addr) {
  u32 v;
  asm volatile("ld.shared.b32 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
// a load ptxas must issue where it stands (not hoisted, not merged with another): a value
// re-read where it is used instead of held in a register through a loop
__device__ __forceinline__ u32 ld_volatile_shared_u32(u32 addr) {
  u32 v;
  asm volatile("ld.volatile.shared.b32 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
  return v;
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// Keep the compiler from moving reads/writes of registers an in-flight wgmma owns across
// the wait (the asm statements are ordered; ordinary instructions are not).
__device__ __forceinline__ void fence_reg(float& r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void fence_reg(u32& r) { asm volatile("" : "+r"(r)::"memory"); }
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float fast_log2(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ u32 pack2(float lo, float hi) {
  u32 r;
#if IS_BF16
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
  return r;
}
// wgmma shared-memory descriptor, 128-byte swizzle.  K-major operands: LBO unused (16),
// SBO = 1024 (8 rows of 128 B).  N-major (V): LBO = bytes between 64-column chunks.
__device__ __forceinline__ u64 make_desc(u32 addr, u32 lbo, u32 sbo) {
  return (u64)((addr & 0x3FFFF) >> 4) | ((u64)((lbo >> 4) & 0x3FFF) << 16) |
         ((u64)((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}
// The descriptor of the operand byte_off bytes past desc's: its start-address field (bits
// 0-13, address >> 4) plus byte_off >> 4, one 32-bit add (shared-memory addresses stay
// below 2^18, so the field never carries) instead of encoding the address again.
__device__ __forceinline__ u64 desc_add(u64 desc, u32 byte_off) {
  return (desc & 0xFFFFFFFF00000000ull) | (u32)((u32)desc + (byte_off >> 4));
}
// 2^x on the FMA/ALU pipes, for POLY_EXP in the forward and the backward (FA4's offload of
// the MUFU unit, which at d64 needs as many cycles for the softmax's exp2 as the tensor
// cores need for both products): x rounded to
// n + f, f in [-0.5, 0.5], by the 1.5 * 2^23 trick; a cubic for 2^f (max relative error
// 7.5e-5 in float32 over [-125, 8], 30x finer than P's bf16 rounding; fitted in
// cuda_fwd.POLY_COEFFS, checked by the CPU tests); n added to the exponent field.  x below
// -125 (masked scores, -inf) gives exactly 0, as ex2 does; NaN stays NaN.
__device__ __forceinline__ float exp2_poly(float x) {
  const float j = x + 12582912.f;
  const float f = x - (j - 12582912.f);
  const float p = fmaf(fmaf(fmaf(0.0551716685f, f, 0.2426111251f), f, 0.6932609677f), f,
                       0.9999280572f);
  const float y = __int_as_float(__float_as_int(p) + (__float_as_int(j) << 23));
  return x < -125.f ? 0.f : y;
}

// the OR of `pred` over the `count` threads of named barrier `id` (a barrier as well)
__device__ __forceinline__ int bar_red_or(u32 id, u32 count, int pred) {
  u32 out;
  asm volatile(
      "{\n\t.reg .pred p, q;\n\tsetp.ne.u32 p, %1, 0;\n\t"
      "bar.red.or.pred q, %2, %3, p;\n\tselp.u32 %0, 1, 0, q;\n\t}"
      : "=r"(out)
      : "r"((u32)pred), "r"(id), "r"(count)
      : "memory");
  return (int)out;
}
