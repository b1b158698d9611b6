"""torch.compile on CUDA with every GPU backend (issue 7): no graph break, no recompilation
for fixed shapes, and the same numbers as eager.

    python benchmarks/hf_compile_gpu.py               # CUDA: every available GPU backend + auto
    python benchmarks/hf_compile_gpu.py --device cpu  # CPU smoke run (naive, torch-sdpa, auto)

Part 1, per backend (``auto`` = no ``backend=``) and per shape (GQA d64, MHA d128, odd
lengths), for ``f = lambda q, k, v: attnhub.attention(q, k, v, causal=True, backend=name)``:

* ``torch._dynamo.explain(f)(q, k, v)``: one graph, zero graph breaks;
* ``torch.compile(f, fullgraph=True)`` (inductor): O and dQ/dK/dV against the float64
  reference by the tolerance rule (``max err <= 2 × the same-dtype reference's + atol``),
  and against eager ``f`` (same backend: expected equal up to kernel nondeterminism);
* a second call with fresh tensors of the same shapes under
  ``torch._dynamo.config.error_on_recompile=True``: no recompilation (also counted).

Part 2: a tiny Llama (``LlamaConfig``, 2 layers, d64, GQA) with
``attn_implementation="attnhub"``, compiled whole with ``fullgraph=True``, no padding mask:
graph breaks (``explain``), logits and a gradient against the float32 eager model by the same
rule (baseline: the bf16 eager model), and no recompilation on a second batch.

Prints one table; writes ``hf_model_compile_check_<device>_<date>.json`` into ``--out``, else
``$OUT`` when set.
Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

import torch

import attnhub
from attnhub import reference
from attnhub.testing import tolerance

SHAPES = (  # (B, Hq, Hk, Sq, Sk, D)
    (2, 8, 2, 1000, 1000, 64),
    (1, 4, 4, 333, 513, 128),
)
CPU_SHAPES = ((1, 4, 2, 70, 70, 64),)


def gpu_backends(device: torch.device) -> list[str]:
    """``auto`` plus every available backend that runs on ``device`` (not ``naive`` on CUDA)."""
    from attnhub import registry

    names = ["auto"]
    for info in attnhub.list_backends():
        if info.status != "available":
            continue
        caps = registry.get_backend(info.name).capabilities
        if device.type in caps.devices and (device.type == "cpu" or info.name != "naive"):
            names.append(info.name)
    return names


def _compile_counters() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"].get("unique_graphs", 0))


def _first_line(exc: BaseException, limit: int = 300) -> str:
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


# -- part 1: attnhub.attention -------------------------------------------------------------------

def check_function(name: str, shape: tuple, device: torch.device, dtype: torch.dtype,
                   compile_backend: str) -> dict:
    B, Hq, Hk, Sq, Sk, D = shape
    pin = None if name == "auto" else name
    rec = {"what": "attention", "backend": name, "shape": f"B{B} H{Hq}/{Hk} {Sq}x{Sk} d{D}",
           "status": "ok", "reason": ""}
    t0 = time.perf_counter()

    def f(q, k, v):
        return attnhub.attention(q, k, v, causal=True, backend=pin)

    g = torch.Generator(device=device).manual_seed(0)

    def inputs():
        q = torch.randn(B, Hq, Sq, D, generator=g, device=device).to(dtype).requires_grad_()
        k = torch.randn(B, Hk, Sk, D, generator=g, device=device).to(dtype).requires_grad_()
        v = torch.randn(B, Hk, Sk, D, generator=g, device=device).to(dtype).requires_grad_()
        do = torch.randn(B, Hq, Sq, D, generator=g, device=device).to(dtype)
        return q, k, v, do

    try:
        q, k, v, do = inputs()
        # eager first: dispatch measures and stores its choice outside any traced region
        o_e = f(q, k, v)
        g_e = torch.autograd.grad(o_e, (q, k, v), do)
        if name == "auto":
            rec["chosen"] = attnhub.explain(q, k, v, causal=True).chosen
        torch._dynamo.reset()
        ex = torch._dynamo.explain(f)(q, k, v)
        rec["graphs"], rec["graph_breaks"] = ex.graph_count, ex.graph_break_count
        rec["break_reasons"] = [str(b.reason)[:200] for b in ex.break_reasons]
        torch._dynamo.reset()
        compiled = torch.compile(f, fullgraph=True, backend=compile_backend)
        n0 = _compile_counters()
        o_c = compiled(q, k, v)
        g_c = torch.autograd.grad(o_c, (q, k, v), do)
        rec["compiles_first_call"] = _compile_counters() - n0
        rec["vs_eager_max_abs"] = max(float((a.detach().float() - b.float()).abs().max())
                                      for a, b in zip((o_c, *g_c), (o_e, *g_e)))
        rec["tolerance"] = _tolerance(q, k, v, do, o_c, g_c)
        # same shapes again, fresh tensors: no recompilation allowed
        q2, k2, v2, do2 = inputs()
        n1 = _compile_counters()
        with torch._dynamo.config.patch(error_on_recompile=True):
            o2 = compiled(q2, k2, v2)
            torch.autograd.grad(o2, (q2, k2, v2), do2)
        rec["recompiles"] = _compile_counters() - n1
        bad = [c for c in rec["tolerance"] if not c["ok"]]
        problems = []
        if rec["graph_breaks"] or rec["graphs"] != 1:
            problems.append(f"{rec['graphs']} graphs, {rec['graph_breaks']} breaks")
        if rec["recompiles"]:
            problems.append(f"{rec['recompiles']} recompiles")
        if bad:
            problems.append("tolerance: " + ", ".join(c["what"] for c in bad))
        if problems:
            rec["status"], rec["reason"] = "FAIL", "; ".join(problems)
    except NotImplementedError as exc:
        rec["status"], rec["reason"] = "skipped", _first_line(exc)
    except Exception as exc:  # noqa: BLE001 - recorded, the next case runs
        rec["status"], rec["reason"] = "error", _first_line(exc)
        rec["traceback"] = traceback.format_exc()[-3000:]
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    return rec


def _tolerance(q, k, v, do, o, grads) -> list[dict]:
    """O, dQ, dK, dV against the float64 reference (tolerance rule; baseline in q's dtype)."""
    ref_dt = torch.float64
    kw = dict(causal=True)
    qr, kr, vr, dor = (t.detach().to(ref_dt) for t in (q, k, v, do))
    ro, rl = reference.attention_dense(qr, kr, vr, compute_dtype=ref_dt, **kw)
    rg = reference.attention_backward_dense(dor, qr, kr, vr, ro, rl, compute_dtype=ref_dt, **kw)
    qd, kd, vd = (t.detach() for t in (q, k, v))
    bo, bl = reference.attention_dense(qd, kd, vd, compute_dtype=q.dtype, **kw)
    bg = reference.attention_backward_dense(do, qd, kd, vd, bo, bl, compute_dtype=q.dtype, **kw)
    out = []
    for what, got, r, b in zip(("O", "dQ", "dK", "dV"), (o, *grads), (ro, *rg), (bo, *bg)):
        c = tolerance.compare(what, got.detach(), r, b, q.dtype)
        out.append({"what": what, "max_err": c.max_err, "baseline": c.baseline_max_err,
                    "bound": c.bound, "ok": c.ok})
    return out


# -- part 2: a tiny Llama compiled whole --------------------------------------------------------

def check_llama(device: torch.device, dtype: torch.dtype, compile_backend: str,
                batch: int, seqlen: int) -> dict:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from attnhub.integrations.transformers import register

    rec = {"what": "tiny-llama", "backend": "auto (attn_implementation='attnhub')",
           "shape": f"batch {batch} x seqlen {seqlen}", "status": "ok", "reason": ""}
    t0 = time.perf_counter()
    try:
        register()
        cfg = LlamaConfig(vocab_size=1000, hidden_size=512, intermediate_size=1024,
                          num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                          max_position_embeddings=max(seqlen, 512), attention_dropout=0.0)
        torch.manual_seed(0)
        ref = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32,
                                               attn_implementation="eager").to(device).eval()
        base = copy.deepcopy(ref).to(dtype)  # same weights, low precision, eager
        model = copy.deepcopy(base)
        model.set_attn_implementation("attnhub")
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, cfg.vocab_size, (batch, seqlen), generator=g).to(device)
        ids2 = torch.randint(0, cfg.vocab_size, (batch, seqlen), generator=g).to(device)

        def run(m, x):
            m.zero_grad(set_to_none=True)
            out = m(input_ids=x, labels=x, use_cache=False)
            out.loss.backward()
            w = m.model.layers[0].self_attn.q_proj.weight
            return out.logits.detach().float(), w.grad.detach().float()

        r_logits, r_grad = run(ref, ids)
        b_logits, b_grad = run(base, ids)
        e_logits, e_grad = run(model, ids)  # eager attnhub: dispatch measures here
        torch._dynamo.reset()
        ex = torch._dynamo.explain(lambda x: model(input_ids=x, use_cache=False).logits)(ids)
        rec["graphs"], rec["graph_breaks"] = ex.graph_count, ex.graph_break_count
        rec["break_reasons"] = [str(b.reason)[:200] for b in ex.break_reasons]
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend=compile_backend)
        n0 = _compile_counters()
        c_logits, c_grad = run(compiled, ids)
        rec["compiles_first_call"] = _compile_counters() - n0
        n1 = _compile_counters()
        with torch._dynamo.config.patch(error_on_recompile=True):
            run(compiled, ids2)
        rec["recompiles"] = _compile_counters() - n1
        rec["tolerance"] = []
        for what, got, r, b in (("logits", c_logits, r_logits, b_logits),
                                ("dW_q0", c_grad, r_grad, b_grad),
                                ("logits (eager attnhub)", e_logits, r_logits, b_logits)):
            c = tolerance.compare(what, got, r, b, dtype)
            rec["tolerance"].append({"what": what, "max_err": c.max_err,
                                     "baseline": c.baseline_max_err, "bound": c.bound,
                                     "ok": c.ok})
        rec["vs_eager_max_abs"] = float((c_logits - e_logits).abs().max())
        problems = []
        if rec["graph_breaks"] or rec["graphs"] != 1:
            problems.append(f"{rec['graphs']} graphs, {rec['graph_breaks']} breaks")
        if rec["recompiles"]:
            problems.append(f"{rec['recompiles']} recompiles")
        bad = [c["what"] for c in rec["tolerance"] if not c["ok"]]
        if bad:
            problems.append("tolerance: " + ", ".join(bad))
        if problems:
            rec["status"], rec["reason"] = "FAIL", "; ".join(problems)
    except Exception as exc:  # noqa: BLE001
        rec["status"], rec["reason"] = "error", _first_line(exc)
        rec["traceback"] = traceback.format_exc()[-3000:]
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    return rec


# -- report -----------------------------------------------------------------------------------

def print_table(records: list[dict]) -> None:
    head = (f"{'what':<12}{'backend':<22}{'shape':<26}{'graphs':>7}{'breaks':>7}{'recomp':>7}"
            f"{'worst: max err / bound':>32}{'vs eager':>10}  status")
    print(head + "\n" + "-" * len(head))
    for r in records:
        worst = ""
        if r.get("tolerance"):
            c = max(r["tolerance"], key=lambda c: c["max_err"] / max(c["bound"], 1e-30))
            worst = f"{c['what']} {c['max_err']:.1e}/{c['bound']:.1e}"
        backend = r["backend"] + (f"→{r['chosen']}" if r.get("chosen") else "")
        vs = f"{r['vs_eager_max_abs']:.1e}" if "vs_eager_max_abs" in r else "-"
        print(f"{r['what']:<12}{backend[:21]:<22}{r['shape']:<26}{r.get('graphs', '-'):>7}"
              f"{r.get('graph_breaks', '-'):>7}{r.get('recompiles', '-'):>7}{worst:>32}"
              f"{vs:>10}  {r['status']}{': ' + r['reason'] if r['reason'] else ''}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                   help="default bf16 on CUDA, fp32 on the CPU")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--backends", nargs="*", default=None, help="default: auto + every one "
                   "available for the device")
    p.add_argument("--no-llama", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    names = args.backends if args.backends else gpu_backends(device)
    shapes = SHAPES if device.type == "cuda" else CPU_SHAPES
    print(f"torch {torch.__version__}, attnhub {attnhub.__version__}, device "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"{str(dtype)[6:]}, compile backend {args.compile_backend}; backends {names}",
          flush=True)
    records = []
    for name in names:
        for shape in shapes:
            rec = check_function(name, shape, device, dtype, args.compile_backend)
            print(f"  {name} {rec['shape']}: {rec['status']} {rec['reason']} "
                  f"({rec['wall_s']} s)", flush=True)
            records.append(rec)
    if not args.no_llama:
        for batch in (2, 1):  # batch 1 passes position_ids that the adapter inspects
            rec = check_llama(device, dtype, args.compile_backend, batch,
                              256 if device.type == "cuda" else 32)
            print(f"  tiny-llama {rec['shape']}: {rec['status']} {rec['reason']} "
                  f"({rec['wall_s']} s)", flush=True)
            records.append(rec)
    print_table(records)
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        import transformers

        data = {"schema": "attnhub-compile-check/1", "torch": torch.__version__,
                "triton": _version("triton"), "transformers": transformers.__version__,
                "attnhub": attnhub.__version__, "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
                else "cpu", "dtype": str(dtype)[6:], "compile_backend": args.compile_backend,
                "date": time.strftime("%Y-%m-%d"), "records": records}
        from attnhub.bench import device_tag, environment

        tag = device_tag(environment(device))
        path = out / f"hf_model_compile_check_{tag}_{data['date']}.json"
        path.write_text(json.dumps(data, indent=1, default=str))
        print(f"wrote {path}")
    failed = [r for r in records if r["status"] in ("FAIL", "error")]
    return 1 if failed else 0


def _version(dist: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
