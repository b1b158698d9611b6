"""A real model end to end (issue 7): a ~1.1B-parameter Llama-style model built from a
``LlamaConfig`` with random weights, one training step (forward + backward) and a forward
pass, timed with ``attn_implementation`` = ``attnhub`` / ``sdpa`` / ``eager`` in one process
on the same weights.

    python benchmarks/hf_model.py                   # CUDA: 1.1B Llama, bf16, seqlen 4096, batch 1
    python benchmarks/hf_model.py --tiny            # CPU smoke test (tiny config, seqlen 128)
    python benchmarks/hf_model.py --seqlen 8192 --steps 20 --out /tmp/res
    python benchmarks/hf_model.py --pin triton-fa2 hopper-fa3   # also attnhub pinned to these

Per implementation, in this order (eager first: it is the reference of the check):
1. **Check + warm-up.** One training step on fixed tokens (seed 0): loss, logits and two
   gradients (``embed_tokens``, layer 0's ``q_proj``) are compared with eager's by relative L2
   error.  The rule: an implementation's error may be at most ``2 × sdpa's error + floor``
   (bf16 floor 5e-3).  attnhub's dispatch self-checks and times its candidates here, outside
   the timed region; which backend it chose is read back (``attnhub.explain``, dispatch
   plans, ``dispatch.STATS``).
2. **Training step:** ``zero_grad(set_to_none)``, forward with ``labels`` (cross-entropy on
   random tokens), ``backward()``; no optimizer.  ``--warmup`` untimed steps, then
   ``--steps`` steps timed one by one with CUDA events (host clock on a CPU); median.
3. **Forward only** (``torch.no_grad()``, logits), timed the same way.
4. Peak memory (``torch.cuda.max_memory_allocated``, weights included) per phase.  An
   out-of-memory error is recorded for that implementation and the run goes on.

tokens/s = batch × seqlen / median step time.  Model TFLOP/s counts ``6 N`` per token for
training (``2 N`` forward; N = parameters without the embedding table) plus causal attention
``6 · layers · seqlen · hidden`` (``2 ·`` forward), as in the PaLM/Megatron MFU papers.

Writes ``<out>/hf_model_<device>_<date>.json`` and ``.png`` (default out:
``benchmarks/results``).  Needs transformers >= 5 and matplotlib.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import gc
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import torch

import attnhub
from attnhub import dispatch
from attnhub.bench import device_tag, environment

RESULTS = Path(__file__).resolve().parent / "results"
IMPLS = ("attnhub", "sdpa", "eager")
# Relative-L2 floor of the check rule, per dtype.
_FLOOR = {torch.bfloat16: 5e-3, torch.float16: 2e-3, torch.float32: 1e-5}


@dataclasses.dataclass
class Shape:
    """The model and the batch."""

    vocab: int = 32000
    hidden: int = 2048
    layers: int = 16
    heads: int = 32
    kv_heads: int = 8
    intermediate: int = 8192
    batch: int = 1
    seqlen: int = 4096

    @classmethod
    def tiny(cls) -> "Shape":
        return cls(vocab=512, hidden=128, layers=2, heads=4, kv_heads=2, intermediate=256,
                   batch=1, seqlen=128)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


# -- model ------------------------------------------------------------------------------------

def build_model(shape: Shape, device: torch.device, dtype: torch.dtype, seed: int = 0):
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden,
                      intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
                      num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                      max_position_embeddings=max(shape.seqlen, 2048),
                      attention_dropout=0.0, tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the device: seconds, not minutes, for 1B
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="eager")
    model.to(device).train()
    return model, cfg


def count_params(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight.numel()
    return {"total": total, "non_embedding": total - embed}


def model_flops_per_token(params_non_embedding: int, shape: Shape) -> dict:
    """Training and forward FLOPs per token (causal attention: half of 12·L·S·h)."""
    attn = 6 * shape.layers * shape.seqlen * shape.hidden
    return {"train": 6 * params_non_embedding + attn,
            "forward": 2 * params_non_embedding + attn // 3}


def _tokens(shape: Shape, device: torch.device, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, shape.vocab, (shape.batch, shape.seqlen), generator=g).to(device)


def _train_step(model, ids) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    return loss


def _forward(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


# -- implementations ---------------------------------------------------------------------------

def implementations(base: list[str], pins: list[str]) -> list[tuple[str, str, Optional[str]]]:
    """``(label, attn_implementation, pinned backend)``; eager first (the check reference)."""
    from attnhub.integrations.transformers import register

    out = []
    for name in sorted(base, key=lambda n: (n != "eager", n != "sdpa")):
        if name == "attnhub":
            register()
        out.append((name, name, None))
    for i, backend in enumerate(pins):
        # Not f"attnhub-{backend}": transformers reads any name containing "flash" as a
        # flash-attention request and looks for a hub kernel (seen with torch-sdpa-flash).
        out.append((f"attnhub[{backend}]", register(f"attnhub-pin{i}", backend=backend),
                    backend))
    return out


def default_pins(device: torch.device) -> list[str]:
    """Every available attnhub backend that can run on ``device``, except the reference."""
    pins = []
    for info in attnhub.list_backends():
        if info.status != "available" or info.name == "naive":
            continue
        from attnhub import registry

        if device.type in registry.get_backend(info.name).capabilities.devices:
            pins.append(info.name)
    return pins


# -- timing -----------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(fn: Callable[[], object], device: torch.device, steps: int) -> list[float]:
    """Milliseconds of each of ``steps`` calls (CUDA events; host clock on a CPU)."""
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def _free(model, device: torch.device) -> None:
    model.zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


# -- check ------------------------------------------------------------------------------------

def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    got, ref = got.float(), ref.float()
    return float((got - ref).norm() / ref.norm().clamp_min(1e-30))


def _check_outputs(model, ids) -> dict[str, torch.Tensor]:
    """One training step on fixed tokens; the outputs compared across implementations."""
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids, use_cache=False)
    out.loss.backward()
    attn0 = model.model.layers[0].self_attn.q_proj.weight
    return {"loss": out.loss.detach().float(), "logits": out.logits.detach(),
            "grad_embed": model.get_input_embeddings().weight.grad.detach().clone(),
            "grad_q_proj0": attn0.grad.detach().clone()}


def _errors(got: dict, ref: dict) -> dict[str, float]:
    errs = {"loss_abs": abs(float(got["loss"]) - float(ref["loss"]))}
    for key in ("logits", "grad_embed", "grad_q_proj0"):
        errs[key] = _rel(got[key], ref[key])
    return errs


def judge(results: list[dict], dtype: torch.dtype) -> None:
    """Mark each result's check ``ok`` against the rule ``err <= 2 × sdpa's err + floor``."""
    sdpa = next((r for r in results if r["impl"] == "sdpa" and r.get("errors")), None)
    floor = _FLOOR.get(dtype, 5e-3)
    for r in results:
        if not r.get("errors"):
            continue
        bounds = {k: 2 * (sdpa["errors"][k] if sdpa else 0.0) + floor
                  for k in ("logits", "grad_embed", "grad_q_proj0")}
        bad = [f"{k} {r['errors'][k]:.2e} > {b:.2e}" for k, b in bounds.items()
               if not r["errors"][k] <= b]
        r["check_bounds"] = bounds
        r["check"] = "ok" if not bad else "FAIL: " + "; ".join(bad)


# -- attnhub's choice ---------------------------------------------------------------------------

def attnhub_choice(shape: Shape, device: torch.device, dtype: torch.dtype, scale: float,
                   backend: Optional[str]) -> dict:
    """What dispatch picks for the model's attention problem (q/k/v as transformers passes them:
    BHSD views of BSHD projections), for training (+grad) and forward-only."""
    B, S, H, Hk, D = shape.batch, shape.seqlen, shape.heads, shape.kv_heads, shape.head_dim
    out = {}
    for mode, grad in (("train", True), ("forward", False)):
        q = torch.empty(B, S, H, D, device=device, dtype=dtype).transpose(1, 2)
        k = torch.empty(B, S, Hk, D, device=device, dtype=dtype).transpose(1, 2)
        v = torch.empty(B, S, Hk, D, device=device, dtype=dtype).transpose(1, 2)
        for t in (q, k, v):
            t.normal_().requires_grad_(grad)
        try:
            ex = attnhub.explain(q, k, v, causal=True, scale=scale, backend=backend)
            out[mode] = {"chosen": ex.chosen, "order": ex.order, "problem": ex.to_dict()["problem"],
                         "forward_ms": {r.name: (None if r.seconds is None else r.seconds * 1e3)
                                        for r in ex.rows if r.seconds is not None},
                         "verdicts": {r.name: r.verdict for r in ex.rows}}
        except Exception as exc:  # noqa: BLE001 - a report, not a failure of the run
            out[mode] = {"error": _first_line(exc)}
    return out


def _plans_snapshot(before: set) -> dict[str, list[str]]:
    """Dispatch's in-process plans made since ``before`` (hot key -> backends, first used)."""
    return {repr(key): [b.name for b in plan.backends]
            for key, plan in dispatch._plans.items() if key not in before}


# -- one implementation ---------------------------------------------------------------------------

def run_impl(model, label: str, impl: str, backend: Optional[str], ref: Optional[dict],
             shape: Shape, device: torch.device, dtype: torch.dtype, args) -> tuple[dict, dict]:
    rec: dict = {"impl": label, "attn_implementation": impl, "backend_pin": backend,
                 "status": "ok", "reason": ""}
    outputs: dict = {}
    t_start = time.perf_counter()
    try:
        model.set_attn_implementation(impl)
        if model.config._attn_implementation != impl:
            raise RuntimeError(f"set_attn_implementation({impl!r}) left "
                               f"{model.config._attn_implementation!r}")
        ids_check = _tokens(shape, device, seed=0)
        ids = _tokens(shape, device, seed=1)
        stats0, plans0 = dict(dispatch.STATS), set(dispatch._plans)
        # 1. check + first warm-up (attnhub's dispatch measures here)
        outputs = _check_outputs(model, ids_check)
        rec["loss"] = float(outputs["loss"])
        if ref is not None:
            rec["errors"] = _errors(outputs, ref)
        _free(model, device)
        for _ in range(args.warmup):
            _train_step(model, ids)
        for _ in range(max(1, args.warmup // 2)):
            _forward(model, ids)
        _sync(device)
        rec["warmup_s"] = round(time.perf_counter() - t_start, 2)
        if impl.startswith("attnhub"):
            rec["dispatch_stats"] = {k: dispatch.STATS[k] - stats0.get(k, 0)
                                     for k in dispatch.STATS}
            rec["dispatch_plans"] = _plans_snapshot(plans0)
            scale = shape.head_dim ** -0.5
            rec["attnhub_choice"] = attnhub_choice(shape, device, dtype, scale, backend)
        # 2. training step
        _free(model, device)
        _reset_peak(device)
        ms = time_steps(lambda: _train_step(model, ids), device, args.steps)
        rec["train"] = _summary(ms, shape, _peak_gib(device))
        # 3. forward only
        _free(model, device)
        _reset_peak(device)
        ms = time_steps(lambda: _forward(model, ids), device, args.steps)
        rec["forward"] = _summary(ms, shape, _peak_gib(device))
    except Exception as exc:  # noqa: BLE001 - record it, go on with the next implementation
        rec["status"] = ("oom" if _is_oom(exc) else
                         "skipped" if isinstance(exc, NotImplementedError) else "error")
        rec["reason"] = _first_line(exc)
        if rec["status"] == "error":
            rec["traceback"] = traceback.format_exc()[-3000:]
        outputs = {} if rec["status"] == "oom" else outputs
    finally:
        _free(model, device)
    rec["wall_s"] = round(time.perf_counter() - t_start, 2)
    return rec, outputs


def _summary(ms: list[float], shape: Shape, peak: Optional[float]) -> dict:
    med = statistics.median(ms)
    return {"ms_median": round(med, 3), "ms_min": round(min(ms), 3),
            "ms_max": round(max(ms), 3), "steps": len(ms),
            "tokens_per_s": round(shape.batch * shape.seqlen / (med / 1e3), 1),
            "peak_gib": peak}


def add_derived(results: list[dict], flops: dict) -> None:
    """Model TFLOP/s, and each implementation's speed relative to sdpa and eager."""
    by = {r["impl"]: r for r in results if r["status"] == "ok"}
    for r in results:
        for phase in ("train", "forward"):
            if phase not in r:
                continue
            p = r[phase]
            p["model_tflops"] = round(p["tokens_per_s"] * flops[phase] / 1e12, 1)
            for peer in ("sdpa", "eager"):
                if peer in by and peer != r["impl"] and phase in by[peer]:
                    p[f"vs_{peer}"] = round(p["tokens_per_s"] / by[peer][phase]["tokens_per_s"], 3)


# -- output -----------------------------------------------------------------------------------

def print_table(data: dict) -> None:
    print(f"\n{data['env']['device_name']} — {data['config']['model']} "
          f"({data['config']['params']['total'] / 1e9:.2f}B params), {data['config']['dtype']}, "
          f"batch {data['config']['batch']} × seqlen {data['config']['seqlen']}")
    head = (f"{'implementation':<28}{'train tok/s':>12}{'vs sdpa':>8}{'vs eager':>9}"
            f"{'TFLOP/s':>8}{'peak GiB':>9}{'fwd tok/s':>11}{'vs sdpa':>8}{'peak':>7}"
            f"  check / chosen")
    print(head + "\n" + "-" * len(head))
    for r in data["results"]:
        if r["status"] != "ok":
            print(f"{r['impl']:<28}{r['status'].upper()}: {r['reason']}")
            continue
        t, f = r["train"], r["forward"]
        chosen = r.get("attnhub_choice", {})
        pick = ""
        if chosen:
            pick = " → " + "/".join(str(chosen.get(m, {}).get("chosen")) for m in ("train",
                                                                                    "forward"))
        print(f"{r['impl']:<28}{t['tokens_per_s']:>12,.0f}{_ratio(t, 'vs_sdpa'):>8}"
              f"{_ratio(t, 'vs_eager'):>9}{t['model_tflops']:>8.1f}{_gib(t):>9}"
              f"{f['tokens_per_s']:>11,.0f}{_ratio(f, 'vs_sdpa'):>8}{_gib(f):>7}"
              f"  {r.get('check', '-')}{pick}")


def _ratio(p: dict, key: str) -> str:
    return f"{p[key]:.2f}" if key in p else "-"


def _gib(p: dict) -> str:
    return "-" if p.get("peak_gib") is None else f"{p['peak_gib']:.1f}"


def plot(data: dict, path: Path) -> Optional[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no PNG")
        return None
    rows = data["results"]
    labels = [r["impl"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(3 * (1.5 + 0.55 * len(rows)), 5.2))
    panels = (("train", "tokens_per_s", "training step (fwd+bwd), tokens/s"),
              ("forward", "tokens_per_s", "forward only, tokens/s"),
              ("train", "peak_gib", "peak memory, training (GiB)"))
    for ax, (phase, key, title) in zip(axes, panels):
        vals = [(r.get(phase) or {}).get(key) or 0.0 for r in rows]
        colors = ["tab:blue" if lab.startswith("attnhub") else "tab:gray" for lab in labels]
        bars = ax.bar(range(len(rows)), vals, color=colors)
        for bar, r, val in zip(bars, rows, vals):
            text = r["status"].upper() if r["status"] != "ok" else (
                f"{val:,.0f}" if key == "tokens_per_s" else f"{val:.1f}")
            if key == "tokens_per_s" and r["status"] == "ok" and "vs_sdpa" in r[phase]:
                text += f"\n×{r[phase]['vs_sdpa']:.2f} sdpa"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, val), ha="center",
                        va="bottom", fontsize=7)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)
    cfg, env = data["config"], data["env"]
    fig.suptitle(f"{cfg['model']} ({cfg['params']['total'] / 1e9:.2f}B, {cfg['dtype']}), batch "
                 f"{cfg['batch']} × seqlen {cfg['seqlen']} — {env['device_name']}, torch "
                 f"{env['torch']}, transformers {cfg['transformers']}, {data['date']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- main -------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny config on the CPU (smoke test)")
    p.add_argument("--device", default=None, help="default: cuda if available (cpu with --tiny)")
    p.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                   help="default bf16 (fp32 with --tiny)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seqlen", type=int, default=None)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 10, tiny 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 3, tiny 1)")
    p.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    p.add_argument("--pin", nargs="*", default=None,
                   help="also run attnhub pinned to these backends (default: every available "
                        "backend for the device on CUDA, none on the CPU; --pin alone: none)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--tag", default=None, help="file-name tag instead of the device's")
    p.add_argument("--from-json", type=Path, default=None,
                   help="only print the table and redraw the PNG of an earlier run's JSON")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        data = json.loads(args.from_json.read_text())
        print_table(data)
        png = plot(data, args.from_json.with_suffix(".png"))
        print(f"wrote {png}")
        return 0
    import transformers

    shape = Shape.tiny() if args.tiny else Shape()
    for name in ("batch", "seqlen", "layers"):
        if getattr(args, name) is not None:
            setattr(shape, name, getattr(args, name))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny
                                          else "cpu"))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        args.dtype or ("fp32" if args.tiny else "bf16")]
    args.steps = args.steps or (3 if args.tiny else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    pins = args.pin if args.pin is not None else (
        default_pins(device) if device.type == "cuda" else [])

    t0 = time.perf_counter()
    model, cfg = build_model(shape, device, dtype)
    params = count_params(model)
    flops = model_flops_per_token(params["non_embedding"], shape)
    print(f"model: Llama {shape.layers} layers, hidden {shape.hidden}, heads {shape.heads}/"
          f"{shape.kv_heads} (d{shape.head_dim}), ffn {shape.intermediate}, vocab {shape.vocab}: "
          f"{params['total']:,} parameters ({params['non_embedding']:,} without the embedding); "
          f"built in {time.perf_counter() - t0:.1f} s on {device}", flush=True)

    impls = implementations(args.impls, pins)
    results, ref = [], None
    for label, impl, backend in impls:
        rec, outputs = run_impl(model, label, impl, backend, ref, shape, device, dtype, args)
        if ref is None and impl in ("eager", "sdpa") and rec["status"] == "ok":
            ref, rec["check"] = outputs, "reference"
        del outputs
        results.append(rec)
        line = (f"{label}: train {rec['train']['tokens_per_s']:,.0f} tok/s, forward "
                f"{rec['forward']['tokens_per_s']:,.0f} tok/s" if rec["status"] == "ok"
                else f"{label}: {rec['status']}: {rec['reason']}")
        print(f"  {line} (wall {rec['wall_s']} s)", flush=True)
    judge(results, dtype)
    add_derived(results, flops)

    env = environment(device)
    now = _dt.datetime.now(_dt.timezone.utc)
    data = {
        "schema": "attnhub-hf-model/1", "suite": "hf_model", "date": now.date().isoformat(),
        "timestamp": now.isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - t0, 1), "env": env,
        "config": {"model": "LlamaForCausalLM (random init)", "llama_config": cfg.to_dict(),
                   "params": params, "flops_per_token": flops, "dtype": str(dtype)[6:],
                   "batch": shape.batch, "seqlen": shape.seqlen, "steps": args.steps,
                   "warmup": args.warmup, "transformers": transformers.__version__,
                   "timer": "CUDA events per step, median" if device.type == "cuda"
                   else "host clock per step, median",
                   "check_rule": f"rel-L2 vs eager <= 2 x sdpa's + {_FLOOR.get(dtype, 5e-3)}",
                   "check_reference": next((r["impl"] for r in results
                                            if r.get("check") == "reference"), None),
                   "env_knobs": {k: v for k, v in os.environ.items()
                                 if k.startswith(("ATTNHUB_", "TRITON_", "TORCHINDUCTOR_"))}},
        "results": results,
    }
    print_table(data)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or device_tag(env) + ("_tiny" if args.tiny else "")
    stem = args.out / f"hf_model_{tag}_{data['date']}"
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    png = plot(data, stem.with_suffix(".png"))
    print(f"wrote {stem.with_suffix('.json')}" + (f" and {png}" if png else ""))
    failed = [r["impl"] for r in results if r["status"] == "error"
              or str(r.get("check", "")).startswith("FAIL")]
    if failed:
        print(f"errors or failed checks: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
