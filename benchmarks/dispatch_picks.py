"""Does auto-dispatch pick the fastest backend?  At FA-grid points (forward, or forward and
backward: what dispatch times for a problem that needs gradients), the dispatcher's own
timing (``dispatch._time_candidates``, the function a first call in a new shape bucket runs)
is run ``--picks`` times with each setting of ``ATTNHUB_DISPATCH_CLOSE`` given (``1``: one
candidate after another and nothing more; ``1.10``: close calls timed again in interleaved
rounds), the settings alternating; then every candidate is timed in ``--rounds`` interleaved
rounds (``do_bench`` medians of 100 ms, rotating order), the reference ranking.  A pick's loss
is the reference time of the pick over the reference time of the fastest.

    python benchmarks/dispatch_picks.py --out $OUT --head-dims 128 256 --seqs 2048 8192

Candidates: every available backend that supports the point, except ``naive`` (over 3x slower
at every grid point, and seconds a step at 16k).  JSON (every pick and every round) and a
table on stdout; GPU only.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time


def plot(json_path: str, png_path: str) -> None:
    """Every pick's loss (% over the reference-fastest) per point, one marker per setting of
    ATTNHUB_DISPATCH_CLOSE, the points in the run's order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path) as f:
        data = json.load(f)
    rows, closes = data["rows"], data["meta"]["closes"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.38 * len(rows)), 3.8))
    for j, (c, marker) in enumerate(zip(closes, "ox^s")):
        xs, ys = [], []
        for i, r in enumerate(rows):
            for loss in r["loss"][c]:
                xs.append(i + (j - (len(closes) - 1) / 2) * 0.2)
                ys.append(100 * (loss - 1))
        label = "one after another" if float(c) == 1.0 else f"close call within {c}x"
        ax.scatter(xs, ys, marker=marker, s=22, label=f"ATTNHUB_DISPATCH_CLOSE={c} ({label})")
    ax.set_xticks(range(len(rows)), [
        f"d{r['D']} {r['S'] // 1024}k {'c' if r['causal'] else 'n'} "
        f"{'f+b' if r['direction'] == 'fwd+bwd' else 'f'}" for r in rows],
        rotation=70, fontsize=7)
    ax.set_ylabel("pick's time over the fastest's (%)")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.legend(fontsize=7)
    ax.set_title(f"auto-dispatch's picks against {data['meta']['rounds']} interleaved reference "
                 f"rounds; {data['meta']['device']}, {data['meta']['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head-dims", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--seqs", type=int, nargs="+", default=[2048, 8192, 16384])
    ap.add_argument("--directions", nargs="+", default=["fwd", "fwd+bwd"],
                    choices=["fwd", "fwd+bwd"])
    ap.add_argument("--closes", nargs="+", default=["1", "1.10"],
                    help="ATTNHUB_DISPATCH_CLOSE settings, alternated")
    ap.add_argument("--picks", type=int, default=2, help="dispatch timings per setting")
    ap.add_argument("--rounds", type=int, default=6, help="reference rounds")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--name", default="dispatch_picks")
    ap.add_argument("--plot-from", metavar="JSON", help="only draw the PNG of a results JSON")
    args = ap.parse_args()
    if args.plot_from:
        png = os.path.splitext(args.plot_from)[0] + ".png"
        plot(args.plot_from, png)
        print(f"wrote {png}")
        return

    import torch
    from triton.testing import do_bench

    from attnhub import dispatch, registry
    from attnhub.bench import gpu_state
    from attnhub_hopper.device_check import fa_point

    os.environ.pop("ATTNHUB_DISPATCH_ROUNDS", None)
    rows = []
    meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                date=time.strftime("%Y-%m-%d %H:%M"), closes=args.closes, picks=args.picks,
                rounds=args.rounds, gpu_start=gpu_state(torch.device("cuda")))

    def write():
        with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)

    print(f"{meta['device']} torch {meta['torch']} {meta['date']}", flush=True)
    for D in args.head_dims:
        for S in args.seqs:
            for causal in (False, True):
                for direction in args.directions:
                    p, q, k, v = fa_point(D, S, causal)
                    p = dataclasses.replace(p, requires_grad=direction == "fwd+bwd")
                    cands = [b for b in registry.available_backends()
                             if b.name != "naive" and not dispatch.reasons(b, p)]
                    picks = {c: [] for c in args.closes}
                    for i in range(args.picks):
                        for close in (args.closes if i % 2 == 0 else args.closes[::-1]):
                            os.environ["ATTNHUB_DISPATCH_CLOSE"] = close
                            times = dispatch._time_candidates(list(cands), q, k, v, p)
                            pick = min(times, key=times.get)
                            picks[close].append(dict(pick=pick, times=times))
                    os.environ.pop("ATTNHUB_DISPATCH_CLOSE", None)
                    steps = {b.name: dispatch._step(b, q, k, v, p) for b in cands}
                    ref = {name: [] for name in steps}
                    names = list(steps)
                    for r in range(args.rounds):
                        for name in names[r % len(names):] + names[:r % len(names)]:
                            ref[name].append(do_bench(steps[name], warmup=25 if r == 0 else 5,
                                                      rep=100, return_mode="median") / 1e3)
                    med = {name: statistics.median(ts) for name, ts in ref.items()}
                    fastest = min(med, key=med.get)
                    row = dict(D=D, S=S, causal=causal, direction=direction, ref=ref,
                               fastest=fastest, picks=picks,
                               loss={c: [med[x["pick"]] / med[fastest] for x in picks[c]]
                                     for c in args.closes})
                    rows.append(row)
                    runner = sorted(med.values())[1] if len(med) > 1 else med[fastest]
                    print(f"d{D} s{S:>5} {'causal' if causal else 'full  '} {direction:7} "
                          f"fastest {fastest} (runner-up +{100 * (runner / med[fastest] - 1):.1f} %)"
                          + "".join(f" | close={c}: " + ", ".join(
                              f"{x['pick']} {100 * (med[x['pick']] / med[fastest] - 1):+.1f}%"
                              for x in picks[c]) for c in args.closes), flush=True)
                    del q, k, v, steps
                    torch.cuda.empty_cache()
                    write()
    meta["gpu_end"] = gpu_state(torch.device("cuda"))
    write()
    plot(os.path.join(args.out, f"{args.name}.json"),
         os.path.join(args.out, f"{args.name}.png"))
    for c in args.closes:
        losses = [x for r in rows for x in r["loss"][c]]
        if losses:
            print(f"close={c}: {len(losses)} picks, fastest at {sum(x == 1.0 for x in losses)}, "
                  f"mean loss {100 * (statistics.mean(losses) - 1):.2f} %, "
                  f"worst {100 * (max(losses) - 1):.1f} %, "
                  f"over 3 % at {sum(x > 1.03 for x in losses)}")


if __name__ == "__main__":
    main()
