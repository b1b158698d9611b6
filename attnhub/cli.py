"""The ``attnhub`` console script.

    attnhub list-backends [--json]
    attnhub probe [--json]
    attnhub explain --shape B,Hq,Hk,Sq,Sk,D [--dtype bfloat16] [--device cpu] [--causal]
                    [--window L R] [--softcap C] [--scale S] [--training] [--json]
    attnhub check NAME [--device cpu] [--quick] [--json]
    attnhub bench [...]          (the FlashAttention grid; see benchmarks/README.md)
    attnhub demo                 (list backends, run one dispatched attention, explain it)

Exit codes: 0 success, 2 usage errors (bad arguments), 1 a failed ``check``.  Broken plugins
are shown, never fatal.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _console():
    from rich.console import Console

    return Console(width=200)


def _caps_cells(caps) -> tuple[str, str, str, str]:
    if caps is None:
        return "-", "-", "-", "-"
    dtypes = ",".join(str(d).replace("torch.", "") for d in caps.dtypes)
    devices = ",".join(caps.devices)
    if caps.min_compute_capability:
        devices += " (sm%d%d+)" % tuple(caps.min_compute_capability)
    return devices, dtypes, caps.head_dim_text(), ",".join(caps.features())


def _info_dict(info) -> dict:
    devices, dtypes, head_dims, features = _caps_cells(info.capabilities)
    return {"name": info.name, "version": info.version, "origin": info.origin,
            "status": info.status, "reason": info.reason, "entry_point": info.entry_point,
            "devices": devices, "dtypes": dtypes, "head_dims": head_dims,
            "features": features,
            "priority": info.capabilities.priority if info.capabilities else None,
            "extra": {k: str(v) for k, v in info.extra.items()}}


def cmd_list(args) -> int:
    from . import list_backends

    infos = list_backends()
    if args.json:
        print(json.dumps([_info_dict(i) for i in infos], indent=2))
        return 0
    from rich.table import Table

    table = Table(title="attnhub backends")
    for col in ("name", "version", "origin", "status", "reason", "devices", "dtypes",
                "head dims", "features"):
        table.add_column(col, overflow="fold")
    for info in infos:
        d = _info_dict(info)
        style = {"available": "green", "unavailable": "yellow"}.get(info.status, "red")
        table.add_row(d["name"], d["version"], d["origin"], f"[{style}]{d['status']}[/]",
                      d["reason"], d["devices"], d["dtypes"], d["head_dims"], d["features"])
    _console().print(table)
    return 0


def cmd_probe(args) -> int:
    from ._probe import probe

    info = probe()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    from rich.pretty import Pretty

    _console().print(Pretty(info))
    return 0


def _parse_shape(text: str):
    try:
        dims = [int(x) for x in text.split(",")]
    except ValueError:
        dims = []
    if len(dims) not in (6, 7) or any(d < 0 for d in dims):
        raise argparse.ArgumentTypeError(
            f"--shape {text!r}: expected B,Hq,Hk,Sq,Sk,D (or B,Hq,Hk,Sq,Sk,D,Dv) as "
            "non-negative integers, e.g. 2,16,4,1024,1024,128")
    return dims


def cmd_explain(args) -> int:
    import torch

    from . import explain

    B, Hq, Hk, Sq, Sk, D, *rest = args.shape
    Dv = rest[0] if rest else D
    dtype = getattr(torch, args.dtype)
    try:
        device = torch.device(args.device)
        gen = dict(dtype=dtype, device=device)
        grad = dict(requires_grad=args.training)
        q = torch.randn(B, Hq, Sq, D, **gen, **grad)
        k = torch.randn(B, Hk, Sk, D, **gen, **grad)
        v = torch.randn(B, Hk, Sk, Dv, **gen, **grad)
    except (RuntimeError, AssertionError) as exc:
        print(f"attnhub explain: cannot make tensors on --device {args.device}: {exc}",
              file=sys.stderr)
        return 2
    window = tuple(args.window) if args.window else None
    try:
        exp = explain(q, k, v, causal=args.causal, window=window, softcap=args.softcap,
                      scale=args.scale)
    except (ValueError, TypeError) as exc:
        print(f"attnhub explain: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(exp.to_dict(), indent=2, default=str))
    else:
        print(exp)
    return 0


def cmd_check(args) -> int:
    from .testing import run_checks

    try:
        import torch

        dtype = getattr(torch, args.dtype) if args.dtype else None
        report = run_checks(args.name, device=args.device, quick=args.quick,
                            select=args.select or None, dtype=dtype)
    except ValueError as exc:  # unknown backend name
        print(f"attnhub check: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str)
              if not isinstance(report.to_json(), str) else report.to_json())
    else:
        print(report.render())
    return 0 if report.ok else 1


def cmd_bench(argv: Sequence[str]) -> int:
    from .bench import main as bench_main

    return bench_main(list(argv))


def cmd_demo(args) -> int:
    """The README's main job: list backends, run one dispatched attention, explain it."""
    import torch

    from . import attention, explain

    cmd_list(argparse.Namespace(json=False))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    q = torch.randn(2, 8, 512, 64, device=device, dtype=dtype)
    k = torch.randn(2, 2, 512, 64, device=device, dtype=dtype)
    v = torch.randn(2, 2, 512, 64, device=device, dtype=dtype)
    o, lse = attention(q, k, v, causal=True, return_lse=True)
    print(f"attention(q {tuple(q.shape)}, k {tuple(k.shape)}, causal=True) -> O "
          f"{tuple(o.shape)} {o.dtype}, LSE {tuple(lse.shape)}; "
          f"finite={bool(torch.isfinite(o).all())}")
    print(explain(q, k, v, causal=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnhub", description="attnhub: attention backends, "
                                     "dispatch and conformance from the terminal")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list-backends", help="every backend, its status and capabilities")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("probe", help="what this machine has (devices, GPUs, packages, OpenCL)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_probe)
    p = sub.add_parser("explain", help="which backend dispatch picks for a shape, and why")
    p.add_argument("--shape", required=True, type=_parse_shape, metavar="B,Hq,Hk,Sq,Sk,D")
    p.add_argument("--dtype", default="float32", choices=_DTYPES)
    p.add_argument("--device", default="cpu")
    p.add_argument("--causal", action="store_true")
    p.add_argument("--window", type=int, nargs=2, metavar=("LEFT", "RIGHT"))
    p.add_argument("--softcap", type=float)
    p.add_argument("--scale", type=float, help="softmax scale (default 1/sqrt(D))")
    p.add_argument("--training", action="store_true",
                   help="inputs that require grad: the choice covers forward + backward")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)
    p = sub.add_parser("check", help="run a backend through the conformance kit")
    p.add_argument("name")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--dtype", default=None, choices=_DTYPES,
                   help="dtype of the feature checks (default: the backend's first)")
    p.add_argument("--select", nargs="+", metavar="GLOB",
                   help="only checks matching these glob patterns, e.g. 'causal-*'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)
    sub.add_parser("bench", help="the FlashAttention benchmark grid (see --help)",
                   add_help=False)
    p = sub.add_parser("demo", help="list backends, run one dispatched attention, explain it")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
