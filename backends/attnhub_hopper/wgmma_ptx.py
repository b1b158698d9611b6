"""The inline-PTX ``wgmma`` wrappers ``fa3_fwd.cu`` calls, generated for the tile widths in use.

Inline ``asm`` needs every accumulator register spelled out (``{%0, ..., %63}`` for an
m64n128 tile), so the wrappers are written here once rather than by hand per width:

    wgmma_ss_n<N>(float (&d)[N/2], u64 desc_a, u64 desc_b, int accumulate)   // A, B in smem
    wgmma_sst_n<N>(...)                                                      // B N-major
    wgmma_rs_n<N>(float (&d)[N/2], u32 a0..a3, u64 desc_b, int accumulate)  // A in registers

``ss`` reads both operands K-major; ``rs`` and ``sst`` read B N-major (``imm-trans-b =
1``), which is how V sits in shared memory (rows of the key block, head dim contiguous),
and K for the backward's dQ = dS·K.  ``dtype`` is
``"bf16"``, ``"f16"`` or ``"e4m3"``.  FP8 products are ``k32`` and take no transpose
flags: both operands are read K-major, so for ``rs`` V must sit in shared memory transposed
(head-dim rows, keys contiguous), and each A register holds four e4m3 values.
"""

from __future__ import annotations


def _regs(n: int, start: int = 0) -> str:
    return ", ".join(f"%{i}" for i in range(start, start + n))


_DTYPES = ("bf16", "f16", "e4m3")


def _shape(n: int, dtype: str) -> str:
    """The instruction's shape and types: k32 for FP8, k16 for the 16-bit types."""
    k = 32 if dtype == "e4m3" else 16
    return f"m64n{n}k{k}.f32.{dtype}.{dtype}"


def wrapper_ss(n: int, dtype: str, init: bool = False, trans_b: bool = False) -> str:
    """``init``: the first product of a sum (scale-d = 0), accumulators written only, so
    the compiler carries no dependency on their old values.  ``trans_b``: B read N-major
    (16-bit types only), named ``wgmma_sst_n<N>``."""
    if trans_b and dtype == "e4m3":
        raise ValueError("e4m3 wgmma reads both operands K-major (no trans_b)")
    nacc = n // 2
    flags = "1, 1" if dtype == "e4m3" else f"1, 1, 0, {int(trans_b)}"
    outs = ", ".join(f'"{"=" if init else "+"}f"(d[{i}])' for i in range(nacc))
    name = f"wgmma_ss{'t' if trans_b else ''}_n{n}" + ("_init" if init else "")
    return f"""
__device__ __forceinline__ void {name}(float (&d)[{nacc}], u64 da, u64 db, int acc) {{
  asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{nacc + 2}, 0;\\n"
               "wgmma.mma_async.sync.aligned.{_shape(n, dtype)} "
               "{{{_regs(nacc)}}}, %{nacc}, %{nacc + 1}, p, {flags};\\n}}\\n"
               : {outs}
               : "l"(da), "l"(db), "r"(acc));
}}
"""


def wrapper_rs(n: int, dtype: str) -> str:
    nacc = n // 2
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(nacc))
    a = nacc
    flags = "1, 1" if dtype == "e4m3" else "1, 1, 1"  # 16-bit: B (V) read N-major
    return f"""
__device__ __forceinline__ void wgmma_rs_n{n}(float (&d)[{nacc}], u32 a0, u32 a1, u32 a2, u32 a3, u64 db, int acc) {{
  asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{nacc + 5}, 0;\\n"
               "wgmma.mma_async.sync.aligned.{_shape(n, dtype)} "
               "{{{_regs(nacc)}}}, {{%{a}, %{a + 1}, %{a + 2}, %{a + 3}}}, %{nacc + 4}, p, {flags};\\n}}\\n"
               : {outs}
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(db), "r"(acc));
}}
"""


def header(ss_widths, rs_widths, dtype: str, sst_widths=()) -> str:
    """The wrappers for the given ``N`` of the QKᵀ (ss), PV (rs) and, for the backward,
    dS·K (sst) products."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    parts = [wrapper_ss(n, dtype, init) for n in sorted(set(ss_widths)) for init in (False, True)]
    parts += [wrapper_ss(n, dtype, init, trans_b=True) for n in sorted(set(sst_widths))
              for init in (False, True)]
    parts += [wrapper_rs(n, dtype) for n in sorted(set(rs_widths))]
    return "".join(parts)
