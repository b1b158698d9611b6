"""Registers, spills and shared memory of the triton-fa2 kernels for sm90, without a GPU.

    python -m attnhub_triton.sm90_report [--json]        the shipped fixed configs + lean dK/dV
    sm90_report.compile_sm90(fn, constexprs, num_warps, num_stages) -> Resources

Triton compiles for ``GPUTarget("cuda", 90, 32)`` with its bundled ptxas, and its bundled
cuobjdump reads the cubin's resource usage.  Programs per SM follow from 65,536 registers
(allocated per warp in units of 256) and 227 KB of shared memory (plus 1 KB per program
reserved by the driver).  This is what NOTES.md's register tables come from; the GPU's own
numbers (device_check.py's ``_resources``) differ where the device's Triton version does:
to see the device's, put its version first on the path (``pip install --target
/tmp/t36site triton==3.6.0`` and ``PYTHONPATH=/tmp/t36site``); with 3.6 this reproduces
the device's record of the lean forward (255 registers, 40/56 B of stack at d128).

Run it with ``TRITON_INTERPRET`` unset: under the interpreter ``@triton.jit`` makes
functions the compiler cannot take (:func:`report_subprocess` takes care of that).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass

_REGS = 65536
_SMEM = 227 * 1024


@dataclass(frozen=True)
class Resources:
    kernel: str
    config: str
    regs: int
    spill_bytes: int  # ptxas stack frame: local memory the kernel spills into
    smem: int
    num_warps: int
    # local-memory loads/stores (LDL/STL) between the first and the last HGMMA in the SASS:
    # roughly the main loops' spills (the prologue's and epilogue's run once per program)
    loop_ldl: int = 0
    loop_stl: int = 0

    @property
    def programs_per_sm(self) -> int:
        per_warp = -(-self.regs * 32 // 256) * 256
        by_regs = _REGS // (per_warp * self.num_warps)
        by_smem = _SMEM // (self.smem + 1024)
        return min(by_regs, by_smem)


def _signature(fn, constexprs: dict) -> tuple[dict, dict]:
    sig, consts = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            sig[name] = "constexpr"
            consts[(i,)] = constexprs[name]
        elif name in ("LSE", "DELTA", "DQ", "LSE2"):
            sig[name] = "*fp32"
        elif name.startswith("CU_"):
            sig[name] = "*i32"
        elif name.isupper():
            sig[name] = "*bf16"
        elif name in ("sm_scale", "softcap", "scale"):
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig, consts


def compile_sm90(fn, constexprs: dict, num_warps: int, num_stages: int,
                 types: dict | None = None) -> Resources:
    """Compile ``fn`` (a ``@triton.jit`` function) for sm90 with bf16 tensors; ``types``
    overrides the argument types guessed from their names (``{"H": "i32"}``).  It also
    catches what Triton's interpreter lets through (e.g. a non-constexpr global read in a
    kernel)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if not isinstance(fn, triton.runtime.jit.JITFunction):
        raise RuntimeError(f"{fn!r} is not a JITFunction: unset TRITON_INTERPRET")
    sig, consts = _signature(fn, constexprs)
    sig.update({k: v for k, v in (types or {}).items() if k in sig and k not in constexprs})
    kernel = triton.compile(ASTSource(fn, sig, constexprs=consts),
                            target=GPUTarget("cuda", 90, 32),
                            options=dict(num_warps=num_warps, num_stages=num_stages))
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                        "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        usage = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True,
                               text=True, check=True).stdout
        sass = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True,
                              check=True).stdout
    code = [line for line in sass.splitlines() if re.match(r"\s*/\*[0-9a-f]{4,}\*/", line)]
    mma = [i for i, line in enumerate(code) if "HGMMA" in line]
    body = code[mma[0]:mma[-1] + 1] if mma else []
    regs = int(re.search(r"REG:(\d+)", usage).group(1))
    stack = int(re.search(r"STACK:(\d+)", usage).group(1))
    config = " ".join(f"{k}={v}" for k, v in constexprs.items() if k.startswith("BLOCK_")
                      or k in ("IS_CAUSAL", "HAS_RIGHT") or (k == "PART" and v))
    return Resources(fn.__name__, f"{config} w{num_warps} s{num_stages}", regs, stack,
                     int(kernel.metadata.shared), num_warps,
                     sum(" LDL" in line for line in body), sum(" STL" in line for line in body))


_GENERAL = dict(HAS_LEFT=False, SOFTCAP=False, VARLEN=False, USE_TMA=True,
                DOT_PRECISION="tf32", DQ_ATOMIC=False, DQ_TMA=False, DELTA_IN=False)


_PARTS = {"dv_part": 1, "dk_part": 2}  # the two-part dK/dV pass: _attn_bwd_dkdv's PART


def jobs(head_dims=(64, 128), kinds=("dq", "dkdv", "lean_dkdv")) -> list:
    """(kind, constexprs, num_warps, num_stages) of the fixed configs (``ops._DEFAULTS``)
    for bf16, causal or not, plus the lean dK/dV candidates."""
    from . import ops

    out = []
    for d in head_dims:
        for causal in (False, True):
            for kind in kinds:
                configs = [ops._DEFAULTS[kind][d]]
                if kind == "lean_dkdv":
                    configs += [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps,
                                 c.num_stages) for c in ops._LEAN_DKDV_CONFIGS]
                for bm, bn, w, s in dict.fromkeys(configs):
                    if kind == "lean_dkdv":
                        consts = dict(HEAD_DIM=d, IS_CAUSAL=causal, BLOCK_M=bm, BLOCK_N=bn)
                    else:
                        consts = dict(_GENERAL, HEAD_DIM=d, HEAD_DIM_V=d, BLOCK_D=d,
                                      BLOCK_DV=d, HAS_RIGHT=causal, BLOCK_M=bm, BLOCK_N=bn,
                                      PART=_PARTS.get(kind, 0))
                    out.append((kind, consts, w, s))
    return out


def run(job_list) -> list[Resources]:
    from . import ops

    out = []
    for kind, consts, w, s in job_list:
        fn = ops._KERNELS[kind][0]
        names = set(fn.arg_names)
        out.append(compile_sm90(fn, {k: v for k, v in consts.items() if k in names}, w, s))
    return out


def report_subprocess(job_list, timeout: float = 600) -> list[dict]:
    """:func:`run` in a child process with ``TRITON_INTERPRET`` unset (for the tests, which
    run under the interpreter): a list of ``Resources`` dicts with ``programs_per_sm``."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-m", "attnhub_triton.sm90_report", "--json",
                          "--jobs", json.dumps(job_list)], env=env, capture_output=True,
                         text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"sm90_report failed (rc {res.returncode}): {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON list on the last line")
    ap.add_argument("--jobs", help="JSON list of [kind, constexprs, num_warps, num_stages]")
    args = ap.parse_args(argv)
    results = run(json.loads(args.jobs) if args.jobs else jobs())
    rows = [dict(asdict(r), programs_per_sm=r.programs_per_sm) for r in results]
    if args.json:
        print(json.dumps(rows))
        return
    import triton
    print(f"Triton {triton.__version__} ({os.path.dirname(triton.__file__)}), sm90, bf16")
    for r in rows:
        print(f"{r['kernel']:<22} {r['config']:<58} regs {r['regs']:>3}  spill {r['spill_bytes']:>4} B"
              f" (loop LDL/STL {r['loop_ldl']}/{r['loop_stl']})  smem {r['smem'] // 1024:>3} KB"
              f"  programs/SM {r['programs_per_sm']}")


if __name__ == "__main__":
    main()
