"""Per-call overhead of attnhub's dispatch on this machine (CPU timer, tiny problems).

Compares, on one repeated shape: the chosen backend's ``forward`` called directly, a pinned
``attnhub.attention(..., backend=name)``, and auto-dispatch ``attnhub.attention(...)``.
Writes ``benchmarks/results/dispatch_overhead_<host>_<date>.json``.
"""

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import attnhub
from attnhub import registry
from attnhub._validate import make_problem


def per_call_us(fn, n=2000, repeats=7):
    for _ in range(200):
        fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    q, k, v = (torch.randn(1, 1, 4, 16) for _ in range(3))
    chosen = attnhub.explain(q, k, v).chosen
    backend = registry.get_backend(chosen)
    problem, qb, kb, vb = make_problem(q, k, v)
    rows = {
        "direct backend.forward": per_call_us(lambda: backend.forward(qb, kb, vb, problem)),
        "attnhub.attention(backend=...)": per_call_us(
            lambda: attnhub.attention(q, k, v, backend=chosen)),
        "attnhub.attention (auto)": per_call_us(lambda: attnhub.attention(q, k, v)),
    }
    direct = rows["direct backend.forward"]
    report = {
        "date": datetime.date.today().isoformat(), "host": platform.node(),
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "attnhub": attnhub.__version__, "chosen": chosen, "shape": [1, 1, 4, 16],
        "microseconds_per_call": rows,
        "auto_minus_pinned_us": rows["attnhub.attention (auto)"]
        - rows["attnhub.attention(backend=...)"],
        "auto_minus_direct_us": rows["attnhub.attention (auto)"] - direct,
    }
    for name, us in rows.items():
        print(f"{name:34s} {us:8.2f} us/call")
    print(f"auto - pinned: {report['auto_minus_pinned_us']:.2f} us; "
          f"auto - direct: {report['auto_minus_direct_us']:.2f} us (validation + lookup)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"dispatch_overhead_cpu_{report['date']}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
