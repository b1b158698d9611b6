"""What auto-dispatch measures and picks on this machine's CPU, for a few shapes.

Runs ``attnhub.explain`` (which self-checks and times every candidate) with a fresh cache and
writes ``benchmarks/results/cpu_dispatch_<date>.json`` plus a table on the terminal.
"""

import datetime
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

SHAPES = [  # B, Hq, Hk, Sq, Sk, D, causal, dtype
    (1, 8, 8, 4096, 4096, 64, False, torch.float32),
    (1, 8, 8, 4096, 4096, 64, True, torch.float32),
    (2, 8, 2, 1024, 1024, 128, True, torch.float32),
    (4, 16, 16, 256, 256, 64, False, torch.float32),
    (1, 8, 8, 1, 4096, 64, False, torch.float32),
    (2, 8, 2, 1024, 1024, 64, True, torch.bfloat16),
]


def main():
    os.environ.setdefault("ATTNHUB_CACHE_DIR", tempfile.mkdtemp(prefix="attnhub-cpu-dispatch-"))
    import attnhub

    rows = []
    for B, Hq, Hk, Sq, Sk, D, causal, dtype in SHAPES:
        torch.manual_seed(0)
        q = torch.randn(B, Hq, Sq, D, dtype=dtype)
        k = torch.randn(B, Hk, Sk, D, dtype=dtype)
        v = torch.randn(B, Hk, Sk, D, dtype=dtype)
        exp = attnhub.explain(q, k, v, causal=causal)
        times = {r.name: r.seconds * 1e3 for r in exp.rows if r.seconds is not None}
        verdicts = {r.name: r.verdict for r in exp.rows if r.status == "available"}
        rows.append({"shape": [B, Hq, Hk, Sq, Sk, D], "causal": causal,
                     "dtype": str(dtype)[6:], "chosen": exp.chosen, "order": exp.order,
                     "forward_ms": times, "verdicts": verdicts})
        timing = ", ".join(f"{n} {t:.2f} ms" for n, t in sorted(times.items(), key=lambda x: x[1]))
        print(f"{B},{Hq},{Hk},{Sq},{Sk},{D} causal={causal} {str(dtype)[6:]}: "
              f"chosen {exp.chosen}  [{timing}]")
    report = {"date": datetime.date.today().isoformat(), "cpu": platform.processor()
              or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
              "attnhub": attnhub.__version__,
              "backends": {i.name: i.status for i in attnhub.list_backends()}, "rows": rows}
    out = Path(__file__).parent / "results" / f"cpu_dispatch_{report['date']}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
