"""Markdown tables of an FA-grid JSON: every attnhub backend's TFLOP/s with its ratio to cuDNN
and SDPA-flash measured in the same run, and what auto-dispatch chose.

    python benchmarks/grid_summary.py benchmarks/results/fa_grid_h100_2026-11-23_run2.json \\
        > benchmarks/results/fa_grid_h100_2026-11-23_run2_summary.md
"""

from __future__ import annotations

import argparse
import json

PEERS = ("sdpa-cudnn", "sdpa-flash")


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.0f}"


def summary(data: dict, methods: list[str], min_seqlen: int) -> str:
    rows = {}
    for r in data["results"]:
        key = (r["dtype"], r["direction"], r["head_dim"], r["seqlen"], r["causal"])
        rows.setdefault(key, {})[r["method"]] = r
    env = data.get("env", {})
    rounds = data.get("config", {}).get("rounds", 1)
    out = [f"# FA grid on {env.get('device_name', env.get('device', '?'))}, {data.get('date', '')} "
           "(one run; TFLOP/s, ratios to peers of the same run"
           + (f"; medians of {rounds} timing rounds per point" if rounds > 1 else "") + ")", ""]
    ceiling = data.get("ceiling")  # grids from the twenty-fifth session on
    if ceiling:
        out += [f"Matmul ceiling timed in the same run (n = {ceiling['n']}, TFLOP/s, before / "
                "after the grid): " + ", ".join(
                    f"{d} {_fmt(ceiling['start'].get(d))} / {_fmt(ceiling['end'].get(d))}"
                    for d in ceiling["start"]), ""]
    for dtype in sorted({k[0] for k in rows}):
        for direction in ("fwd", "bwd"):
            keys = sorted(k for k in rows if k[0] == dtype and k[1] == direction
                          and k[3] >= min_seqlen)
            if not keys:
                continue
            out += [f"## {dtype} {direction}", "",
                    "| d | S | causal | cuDNN | flash | " + " | ".join(
                        f"{m} (×cuDNN, ×flash)" for m in methods) + " | auto (×cuDNN) → chosen |",
                    "|---" * (6 + len(methods)) + "|"]
            for k in keys:
                point = rows[k]
                peer = {p: (point.get(p) or {}).get("tflops") for p in PEERS}
                cells = []
                for m in methods:
                    t = (point.get(m) or {}).get("tflops")
                    if t is None:
                        cells.append("—")
                        continue
                    ratios = ", ".join("—" if not peer[p] else f"{t / peer[p]:.2f}" for p in PEERS)
                    cells.append(f"{t:.0f} ({ratios})")
                auto = point.get("auto") or {}
                a = auto.get("tflops")
                auto_cell = "—" if a is None else (
                    f"{a:.0f} ({a / peer['sdpa-cudnn']:.2f}) → {auto.get('chosen', '?')}"
                    if peer["sdpa-cudnn"] else f"{a:.0f} → {auto.get('chosen', '?')}")
                out.append(f"| {k[2]} | {k[3]} | {'yes' if k[4] else 'no'} | "
                           f"{_fmt(peer['sdpa-cudnn'])} | {_fmt(peer['sdpa-flash'])} | "
                           + " | ".join(cells) + f" | {auto_cell} |")
            out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json")
    ap.add_argument("--methods", nargs="+", default=["hopper-fa3", "triton-fa2"])
    ap.add_argument("--min-seqlen", type=int, default=0)
    args = ap.parse_args()
    with open(args.json) as f:
        print(summary(json.load(f), args.methods, args.min_seqlen))


if __name__ == "__main__":
    main()
