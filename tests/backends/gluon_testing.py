"""What the Gluon kernels' CPU tests share (``test_triton_gluon*.py``): the check scripts
loaded by path as on the device, whether Triton ships the ptxas that an offline sm90 build
needs, and an offline build run in a child process without ``TRITON_INTERPRET`` (the
interpreter the other kernels' CPU tests turn on would replace the compiler)."""

import importlib.util
import json
import os
import subprocess
import sys


def kernel_dir() -> str:
    """The directory of ``attnhub_triton`` (the kernels and their check scripts)."""
    import attnhub_triton
    return os.path.dirname(os.path.abspath(attnhub_triton.__file__))


def check_module(script: str = "gluon_check"):
    """A check script (``gluon_check`` / ``gluon_bwd_check``) loaded by path, as on the device."""
    spec = importlib.util.spec_from_file_location(f"attnhub_{script}",
                                                  os.path.join(kernel_dir(), f"{script}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def gluon_bwd():
    """``(module, skip mark)``: the Gluon backward module (None without Gluon / Hopper
    support) and a ``skipif`` mark that says why."""
    import pytest
    from attnhub_triton import ops
    mod, why = ops.gluon_bwd_module()
    return mod, pytest.mark.skipif(mod is None, reason=f"no Gluon Hopper module: {why}")


def check_bwd_emulation(shape, causal, dtype, seed, negative=True, **emulate_kw):
    """The Gluon backward's schedule replayed by ``gluon_bwd_check.emulate(**emulate_kw)``
    on fresh inputs of ``shape`` = (B, Hq, Hk, Sq, Sk, D): dQ, dK, dV within 2x torch's own
    low-precision error against float64 autograd, dQ = 0 on rows that see no key, and
    (``negative``) the ``no_mask`` control caught."""
    import torch
    chk = check_module("gluon_bwd_check")
    B, Hq, Hk, Sq, Sk, D = shape
    gen = torch.Generator().manual_seed(seed)
    q, do = (torch.randn(B, Hq, Sq, D, generator=gen).to(dtype) for _ in range(2))
    k, v = (torch.randn(B, Hk, Sk, D, generator=gen).to(dtype) for _ in range(2))
    scale = D ** -0.5
    o, lse = chk.forward_ref(q, k, v, causal, scale, torch.float64)
    *ref, sees = chk.grads_ref(q, k, v, do, causal, scale, torch.float64)
    low = chk.grads_ref(q, k, v, do, causal, scale, torch.float64, lowprec=True)[:3]
    tol = [2.0 * float((lo - r).abs().nan_to_num(0.0).max()) + 1e-5 for lo, r in zip(low, ref)]

    def worst(got):
        return [float((g - r).abs().nan_to_num(float("inf")).max()) for g, r in zip(got, ref)]

    got = chk.emulate(q, k, v, o, do, lse, causal, scale, **emulate_kw)
    assert all(e <= t for e, t in zip(worst(got), tol)), (worst(got), tol)
    if (~sees).any():
        assert (got[0][:, :, ~sees] == 0).all()
    if negative:
        bad = chk.emulate(q, k, v, o, do, lse, causal, scale, control="no_mask", **emulate_kw)
        assert any(e > t for e, t in zip(worst(bad), tol)), (worst(bad), tol)


def has_ptxas() -> bool:
    """Whether Triton's bundled ptxas (an offline sm90 build needs it) is there."""
    import triton
    return os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia",
                                       "bin", "ptxas"))


def run_build(script: str, specs: list, *args: str) -> list:
    """``python -c script json(specs) *args`` without TRITON_INTERPRET; the rows it prints as
    JSON on its last line, one a spec (asserted)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", script, json.dumps(specs), *args], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(rows) == len(specs)
    return rows


#: ``run_build`` script for the Gluon backward: per spec (d, causal, knobs) an offline sm90
#: bf16 build of ``_gluon_bwd`` and its SASS facts (``gluon_bwd_check.dq_sass_facts``: the
#: wgmma order, S_before_dQ, DEPBAR), HGMMA count and shapes, LDL + STL; argv[2] is the
#: check script.
BWD_BUILD = r"""
import importlib.util, json, os, re, subprocess, sys, tempfile
import triton
from attnhub_triton import _gluon_bwd as g
spec = importlib.util.spec_from_file_location("chk", sys.argv[2])
chk = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chk)
bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
out = []
for spec in json.loads(sys.argv[1]):
    c = g.compile_offline(spec["d"], "bf16", spec["causal"], **spec["knobs"])
    with tempfile.TemporaryDirectory() as td:
        path = os.path.join(td, "k.cubin")
        open(path, "wb").write(c.asm["cubin"])
        sass = subprocess.run([os.path.join(bindir, "cuobjdump"), "-sass", path],
                              capture_output=True, text=True).stdout
    facts, _ = chk.dq_sass_facts(sass)
    out.append(dict(spec, order=facts["wgmma_order"], s_before_dq=facts["S_before_dQ"],
                    depbar=facts["DEPBAR"], hgmma=sass.count("HGMMA"),
                    ldl_stl=sass.count("LDL") + sass.count("STL"),
                    shapes=sorted(set(re.findall(r"HGMMA\.(\d+x\d+x\d+)", sass)))))
print(json.dumps(out))
"""
