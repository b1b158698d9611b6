// hopper-fa3: V for the FP8 forward, one pass over V at about copy bandwidth (attnhub).
//
// The FP8 P·V product reads V K-major (keys contiguous) and, to take P straight from the
// S accumulator registers, with the keys of every 16-key chunk in the order the
// accumulator holds them (cuda_fwd.key_order): position 4q + 2a + e holds key 8a + 2q + e.
// In 4-byte words: output word q of a chunk takes bytes (2q % 4, +1) of input words q/2
// and 2 + q/2.  (fa3_fwd.cu with V_SMEM_PERMUTE does the same in shared memory instead.)
//
// in:  V as bytes, element (b, h, d, k) at b*s_b + h*s_h + d*s_d + k*s_k (any layout).
// out: (B, H, D, Skp) contiguous, Skp = Sk rounded up to 32, keys >= Sk zero.
// One thread per 32 keys of one (b, h, d) row; 16-byte loads when the 32 keys are whole,
// contiguous and aligned, byte loads otherwise.

typedef unsigned int u32;
typedef unsigned long long u64;

extern "C" __global__ void attnhub_fp8_v_layout(const unsigned char* __restrict__ in,
                                                unsigned char* __restrict__ out, long long s_b,
                                                long long s_h, long long s_d, long long s_k,
                                                int H, int D, int Sk, int Skp, long long rows) {
  const int groups = Skp / 32;
  const long long gid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const long long row = gid / groups;
  if (row >= rows) return;
  const int g = (int)(gid % groups);
  const int d = (int)(row % D);
  const long long bh = row / D;
  const int h = (int)(bh % H);
  const long long b = bh / H;
  const unsigned char* src = in + b * s_b + h * s_h + d * s_d + (long long)g * 32 * s_k;
  u32 w[8];
  if (s_k == 1 && g * 32 + 32 <= Sk && ((u64)src & 15) == 0) {
    const uint4 x = reinterpret_cast<const uint4*>(src)[0];
    const uint4 y = reinterpret_cast<const uint4*>(src)[1];
    w[0] = x.x, w[1] = x.y, w[2] = x.z, w[3] = x.w;
    w[4] = y.x, w[5] = y.y, w[6] = y.z, w[7] = y.w;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      u32 v = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int k = g * 32 + 4 * i + j;
        if (k < Sk) v |= (u32)src[(long long)(4 * i + j) * s_k] << (8 * j);
      }
      w[i] = v;
    }
  }
  u32 o[8];
#pragma unroll
  for (int c = 0; c < 2; ++c)  // the two 16-key chunks
#pragma unroll
    for (int q = 0; q < 4; ++q)
      o[4 * c + q] = __byte_perm(w[4 * c + q / 2], w[4 * c + 2 + q / 2],
                                 (q % 2) ? 0x7632 : 0x5410);
  uint4* dst = reinterpret_cast<uint4*>(out + row * Skp + g * 32);
  dst[0] = make_uint4(o[0], o[1], o[2], o[3]);
  dst[1] = make_uint4(o[4], o[5], o[6], o[7]);
}
