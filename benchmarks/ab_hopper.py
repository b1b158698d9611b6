"""Interleaved A/B timing of hopper-fa3 CUDA variants whose effect is smaller than the
run-to-run noise of one grid (±5 % per point, NOTES.md): every pair is timed in alternating
rounds (A B A B ...) on the same inputs, with cuDNN in every round, and the JSON keeps every
round so the spread is visible.  Correctness of the variants is checked by
``device_cuda_fwd.sh`` / ``device_cuda_bwd.sh`` (run them first); this only times, and
refuses a pair whose outputs differ from each other by more than bf16 rounding.

    python benchmarks/ab_hopper.py --rounds 5 --out $OUT \
        --pair fwd:128:causal:default,default-lpt --pair bwd:64:full:s2,s2-poly1

A pair is ``direction:head_dim:causal|full:A,B``.  Tile names: forward ``default`` (the
shipped tile at that point), ``default-lpt`` / ``default-plain`` (it with / without Tile.lpt),
or a variant of ``cuda_check.VARIANTS`` (``n80s2-pp``); backward ``default`` (the shipped
tile) or any name ``cuda_bwd.tiles_for`` knows (``s2-release-lpt`` ...); ``tri`` /
``trib`` (triton-fa2's forward / backward, from hopper-fa3's O and LSE): a name of
TRI_VARIANTS, the kernel switches each sets (``default``: none; ``notma``: pointer loads;
``gluon`` / ``nogluon``: the Gluon forward at every length / never; ``gluon_dyn``: it with
the dynamic persistent grid (``pp-dynamic``);
``tma8``: the general forward on TMA at 128x64 w8 s3; ``lean_bwd`` / ``general_bwd`` /
``atomic`` / ``gluon_bwd``: the backward's kernels).
A forward name may end in ``-ones`` / ``-lazy`` / ``-eager`` / ``-noskip`` / ``-nopp`` /
``-poly1`` / ``-poly2`` / ``-tree`` / ``-chain`` / ``-halves`` / ``-whole`` / ``-persist`` /
``-split`` (Tile.ones_sum / Tile.lazy on / off, Tile.skip 0, no ping-pong, Tile.poly,
Tile.max_tree on / off: the shipped 16-bit tiles have it on, Tile.halves on / off: shipped on
at d64 causal up to 2048 keys, Tile.persistent, Tile.split: the last wave cut along the keys,
persistent non-causal only), e.g. ``default-ones``, ``default-halves``,
``default-persist-split`` or ``n128s2-pp-persistent-lpt-m192-ones``.
Sequence lengths: --seqs; inputs bf16, or --dtype fp16.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time


#: forward name suffixes and the Tile fields each one sets
_FWD_SUFFIXES = {"ones": dict(ones_sum=True), "lazy": dict(lazy=True), "eager": dict(lazy=False),
                 "noskip": dict(skip=0), "nopp": dict(pingpong=False),
                 "poly1": dict(poly=1), "poly2": dict(poly=2), "tree": dict(max_tree=True),
                 "chain": dict(max_tree=False), "halves": dict(halves=True),
                 "whole": dict(halves=False), "persist": dict(persistent=True),
                 "split": dict(split=True)}


def _fwd_tile(name: str, D: int, causal: bool, S: int):
    from attnhub_hopper import cuda_fwd
    from attnhub_hopper.cuda_check import VARIANTS

    # a suffix after any name below sets one Tile field (the shipped 16-bit tiles are lazy,
    # and the causal ones skip at level 1)
    parts = name.split("-")
    if len(parts) > 1 and parts[-1] in _FWD_SUFFIXES:
        return _fwd_tile("-".join(parts[:-1]), D, causal, S)._replace(**_FWD_SUFFIXES[parts[-1]])
    tile = cuda_fwd.default_tile(D, causal, S)
    if name == "default":
        return tile
    if name in ("default-lpt", "default-plain"):
        return tile._replace(lpt=name == "default-lpt")
    # a variant cuda_check.py checks (run it first), or its twin in the other causal launch
    # order (Tile.lpt: the same binary), e.g. n128s2-pp-lpt-m192
    known = {str(t): t for v in VARIANTS.get(D, ())
             for t in (cuda_fwd.Tile(*v), cuda_fwd.Tile(*v)._replace(lpt=causal))}
    if name in known:
        return known[name]
    raise ValueError(f"forward tile {name!r}: use 'default', 'default-lpt', 'default-plain' "
                     f"or one of cuda_check.VARIANTS at d{D} (causal: also with -lpt): "
                     f"{sorted(known)}")


#: triton-fa2 forward variants for ``tri`` pairs: the kernel switches each one sets while it
#: runs (ops reads them per call).
TRI_VARIANTS = {"default": {}, "plain": {"ATTNHUB_TRITON_LPT": "0"},
                "lpt": {"ATTNHUB_TRITON_LPT": "1"},
                "lean": {"ATTNHUB_TRITON_LEAN": "1"}, "general": {"ATTNHUB_TRITON_LEAN": "0"},
                "ptr": {"ATTNHUB_TRITON_PTR_FWD": "1"}, "noptr": {"ATTNHUB_TRITON_PTR_FWD": "0"},
                "notma": {"ATTNHUB_TRITON_TMA": "0"},
                # the Gluon forward (sm90, d64 / d128 dense): on at every length, or off
                "gluon": {"ATTNHUB_TRITON_GLUON": "1"}, "nogluon": {"ATTNHUB_TRITON_GLUON": "0"},
                # the Gluon forward's dynamic persistent grid at every length (pp-dynamic)
                "gluon_dyn": {"ATTNHUB_TRITON_GLUON": "1",
                              "ATTNHUB_TRITON_GLUON_VARIANT": "pp-dynamic"},
                # the backward's (``trib`` pairs)
                "lean_bwd": {"ATTNHUB_TRITON_LEAN_BWD": "1"},
                "general_bwd": {"ATTNHUB_TRITON_LEAN_BWD": "0"},
                "atomic": {"ATTNHUB_TRITON_BWD": "atomic"},
                # the Gluon backward (sm90, d64 / d128 dense), opt-in
                "gluon_bwd": {"ATTNHUB_TRITON_GLUON_BWD": "1"},
                # the general forward with TMA K/V pinned to 128x64, 8 warps, 3 stages (107-127
                # registers at d64: two programs per SM; NOTES.md of triton-fa2)
                "tma8": {"ATTNHUB_TRITON_LEAN": "0", "ATTNHUB_TRITON_PTR_FWD": "0",
                         "FORCED": ("fwd", ({"BLOCK_M": 128, "BLOCK_N": 64}, 8, 3))}}


def _tri_forward(name: str, q, k, v, p):
    from attnhub_triton.ops import flash_forward

    return _with_switches(name, lambda: flash_forward(q, k, v, p))


def _tri_backward(name: str, do, q, k, v, o, lse, p):
    """triton-fa2's backward (the default variant) under ``name``'s switches."""
    from attnhub_triton.ops import flash_backward

    return _with_switches(name, lambda: flash_backward(do, q, k, v, o, lse, p))


def _with_switches(name: str, call):
    """``call`` under the variant's kernel switches (and pinned config), set and restored
    around each call only (``ops.pinned``): mock.patch.dict(os.environ) copies and rewrites
    the whole environment each call; the 2026-12-06 tri rounds with it read 33 TFLOP/s at
    d64/512 causal where the grid had 109 (host-bound)."""
    if name not in TRI_VARIANTS:
        raise ValueError(f"triton-fa2 variant {name!r}: use one of {sorted(TRI_VARIANTS)}")
    from attnhub_triton.ops import pinned

    switches = dict(TRI_VARIANTS[name])
    kind, config = switches.pop("FORCED", (None, None))  # pinned in ops.FORCED_CONFIGS

    def run():
        with pinned(kind, config, **switches):
            return call()
    return run


def _bwd_tile(name: str, D: int, causal: bool, S: int):
    from attnhub_hopper import cuda_bwd

    if name == "default":  # the shipped tile at this point
        return cuda_bwd.default_tile(D, causal, S)
    for t in cuda_bwd.tiles_for(D):
        if str(t) == name:
            return t
    raise ValueError(f"backward tile {name!r} is not 'default' or one of "
                     f"{[str(t) for t in cuda_bwd.tiles_for(D)]} at d{D}")


def parse_pair(text: str) -> tuple:
    try:
        direction, d, mode, names = text.split(":")
        a, b = names.split(",")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--pair {text!r}: expected direction:head_dim:causal|full:A,B") from None
    if direction not in ("fwd", "bwd", "tri", "trib") or mode not in ("causal", "full"):
        raise argparse.ArgumentTypeError(
            f"--pair {text!r}: direction fwd|bwd|tri|trib (triton-fa2 forward / backward), "
            f"mode causal|full")
    return direction, int(d), mode == "causal", a, b


def plot(json_path: str, png_path: str) -> None:
    """B ÷ A per pair against seqlen: every round's ratio as a dot, the median of the rounds as
    a line (the number a decision rests on), 1.0 dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path) as f:
        data = json.load(f)
    pairs = []
    for r in data["rows"]:
        key = (r["direction"], r["D"], r["causal"], r["a"], r["b"])
        if key not in pairs:
            pairs.append(key)
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.6 * len(pairs), 3.4), squeeze=False)
    for ax, key in zip(axes[0], pairs):
        sel = sorted((r for r in data["rows"] if (r["direction"], r["D"], r["causal"], r["a"],
                                                   r["b"]) == key), key=lambda r: r["S"])
        xs = [r["S"] for r in sel]
        for r in sel:
            ratios = [b / a for a, b in zip(r["a_tflops"], r["b_tflops"])]
            ax.scatter([r["S"]] * len(ratios), ratios, s=10, color="grey")
        med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
        ax.plot(xs, [med(r["b_tflops"]) / med(r["a_tflops"]) for r in sel], marker="o")
        ax.axhline(1.0, linestyle="--", color="black", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x // 1024}k" for x in xs])
        direction, D, causal, a, b = key
        ax.set_title(f"{direction} d{D} {'causal' if causal else 'full'}\n{b} ÷ {a}", fontsize=9)
        ax.set_xlabel("seqlen")
    axes[0][0].set_ylabel("B ÷ A (median of rounds; dots: rounds)")
    fig.suptitle(f"{data['meta']['device']}, {data['meta']['date']}, interleaved rounds",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def placements(json_path: str) -> list[dict]:
    """Each point's hopper-fa3 ÷ cuDNN from a results JSON: the A and B medians over the
    rounds (``a_x_cudnn`` / ``b_x_cudnn``) and every round's own A ÷ cuDNN, B ÷ cuDNN (both
    timed in that round, so they share its clocks)."""
    with open(json_path) as f:
        data = json.load(f)
    out = []
    for r in data["rows"]:
        rounds = [x / c for x, c in zip(r["a_tflops"], r["cudnn_tflops"])]
        rounds += [x / c for x, c in zip(r["b_tflops"], r["cudnn_tflops"])]
        out.append(dict(direction=r["direction"], D=r["D"], S=r["S"], causal=r["causal"],
                        a=r["a_x_cudnn"], b=r["b_x_cudnn"], rounds=rounds))
    return out


def plot_place(json_path: str, png_path: str, target: float | None = None) -> None:
    """Placement of a ``default,default`` run: hopper-fa3 ÷ cuDNN against seqlen, one panel
    per (direction, head dim), causal and not as two lines (the mean of the A and B medians),
    every round's ratio as a dot; 1.0 dashed, ``target`` dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = placements(json_path)
    with open(json_path) as f:
        meta = json.load(f)["meta"]
    panels = sorted({(r["direction"], r["D"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.3), squeeze=False)
    for ax, (direction, D) in zip(axes[0], panels):
        for causal, color in ((False, "tab:blue"), (True, "tab:orange")):
            sel = sorted((r for r in rows if (r["direction"], r["D"], r["causal"])
                          == (direction, D, causal)), key=lambda r: r["S"])
            if not sel:
                continue
            for r in sel:
                ax.scatter([r["S"]] * len(r["rounds"]), r["rounds"], s=6, color=color, alpha=0.4)
            ax.plot([r["S"] for r in sel], [(r["a"] + r["b"]) / 2 for r in sel], marker="o",
                    color=color, label="causal" if causal else "non-causal")
        ax.axhline(1.0, linestyle="--", color="black", linewidth=0.8)
        if target:
            ax.axhline(target, linestyle=":", color="black", linewidth=0.8)
        xs = sorted({r["S"] for r in rows})
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x // 1024}k" for x in xs])
        ax.set_title(f"{direction} d{D}", fontsize=9)
        ax.set_xlabel("seqlen")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("hopper-fa3 ÷ cuDNN")
    fig.suptitle(f"{meta['device']}, {meta['date']}, {meta['dtype']}, {meta['rounds']} "
                 "interleaved rounds, cuDNN in every round", fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", type=parse_pair, action="append")
    ap.add_argument("--plot-from", metavar="JSON", help="only draw the PNG of a results JSON")
    ap.add_argument("--place-from", metavar="JSON",
                    help="only draw a default,default run's placement against cuDNN "
                         "(<stem>_place.png) and print its table")
    ap.add_argument("--target", type=float, default=None,
                    help="with --place-from: a dotted line at this ratio")
    ap.add_argument("--seqs", default="1024,2048,4096,8192,16384")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--name", default="ab_hopper")
    ap.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    args = ap.parse_args()
    if args.plot_from:
        png = os.path.splitext(args.plot_from)[0] + ".png"
        plot(args.plot_from, png)
        print(f"wrote {png}")
        return
    if args.place_from:
        png = os.path.splitext(args.place_from)[0] + "_place.png"
        plot_place(args.place_from, png, args.target)
        print("| direction | d | S | causal | A x cuDNN | B x cuDNN | rounds' range |")
        print("|---|---|---|---|---|---|---|")
        for r in placements(args.place_from):
            print(f"| {r['direction']} | {r['D']} | {r['S']} | {'yes' if r['causal'] else 'no'} "
                  f"| {r['a']:.3f} | {r['b']:.3f} | {min(r['rounds']):.3f}-"
                  f"{max(r['rounds']):.3f} |")
        print(f"wrote {png}")
        return
    if not args.pair:
        ap.error("--pair is required (or --plot-from / --place-from)")

    import torch
    import triton
    from attnhub_hopper import cuda_bwd, cuda_fwd
    from attnhub_hopper.cuda_bwd_check import sdpa_bwd_fn
    from attnhub_hopper.device_check import _bench as bench
    from attnhub.bench import DTYPES, gpu_state
    from attnhub_hopper.device_check import _sdpa, fa_point

    log_lines = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    log(f"{torch.cuda.get_device_name()} torch {torch.__version__} "
        f"{time.strftime('%Y-%m-%d %H:%M')}")
    rows = []
    meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                triton=triton.__version__, date=time.strftime("%Y-%m-%d %H:%M"),
                rounds=args.rounds, dtype=args.dtype,
                method="interleaved rounds, do_bench median rep=100",
                gpu_start=gpu_state(torch.device("cuda")))

    def write():
        with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
        with open(os.path.join(args.out, f"{args.name}_log.txt"), "w") as f:
            f.write("\n".join(log_lines) + "\n")

    for direction, D, causal, a_name, b_name in args.pair:
        for S in (int(s) for s in args.seqs.split(",")):
            p, q, k, v = fa_point(D, S, causal, DTYPES[args.dtype])
            B, H = q.shape[:2]
            fl = 4 * B * H * S * S * D / (2 if causal else 1)
            if direction in ("bwd", "trib"):
                fl *= 2.5
                o, lse = cuda_fwd.forward(q, k, v, p)
                do = torch.randn_like(o)
                if direction == "trib":  # triton-fa2's backward, each name an environment
                    fa, fb = (_tri_backward(n, do, q, k, v, o, lse, p) for n in (a_name, b_name))
                else:
                    ta, tb = _bwd_tile(a_name, D, causal, S), _bwd_tile(b_name, D, causal, S)
                    fa = lambda t=ta: cuda_bwd.backward(do, q, k, v, o, lse, p, t)  # noqa: E731
                    fb = lambda t=tb: cuda_bwd.backward(do, q, k, v, o, lse, p, t)  # noqa: E731
                fc, grad_to_none = sdpa_bwd_fn("CUDNN_ATTENTION", q, k, v, do, causal)
            else:
                if direction == "tri":  # triton-fa2's forward, each name an environment
                    fa, fb = (_tri_forward(n, q, k, v, p) for n in (a_name, b_name))
                else:
                    ta, tb = (_fwd_tile(n, D, causal, S) for n in (a_name, b_name))
                    fa = lambda t=ta: cuda_fwd.forward(q, k, v, p, tile=t)  # noqa: E731
                    fb = lambda t=tb: cuda_fwd.forward(q, k, v, p, tile=t)  # noqa: E731
                sd = _sdpa("CUDNN_ATTENTION")
                fc = lambda: sd(q, k, v, causal)  # noqa: E731
                grad_to_none = None
            outs = (fa()[0], fb()[0])  # O, or dQ, of each
            diff = (outs[0].float() - outs[1].float()).abs().max().item()
            scale_ = outs[0].float().abs().max().item()
            if not math.isfinite(diff) or diff > 0.02 * max(scale_, 1e-3):
                log(f"{direction} d{D} s{S} causal={causal}: {a_name} and {b_name} differ by "
                    f"{diff:.3g} (max |x| {scale_:.3g}); not timed")
                continue
            ra, rb, rc = [], [], []
            # one discarded round first, and A/B order alternating: the first timing after
            # the compile ran low (2026-12-06: A's minimum 381 against a median of 433), and
            # with A always first it biased the geometric-mean B/A upwards
            bench(fa), bench(fb), bench(fc, grad_to_none)
            for i in range(args.rounds):
                for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                    f, out = ((fa, ra), (fb, rb))[which]
                    out.append(fl / bench(f) / 1e9)
                rc.append(fl / bench(fc, grad_to_none) / 1e9)
            med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
            ratio = math.exp(sum(math.log(y / x) for x, y in zip(ra, rb)) / len(ra))
            row = dict(direction=direction, D=D, S=S, causal=causal, a=a_name, b=b_name,
                       a_tflops=ra, b_tflops=rb, cudnn_tflops=rc, b_over_a=ratio,
                       a_x_cudnn=med(ra) / med(rc), b_x_cudnn=med(rb) / med(rc))
            rows.append(row)
            log(f"{direction} d{D} s{S:>5} {'causal' if causal else 'full  '} "
                f"{a_name} {med(ra):.0f} [{min(ra):.0f}-{max(ra):.0f}] "
                f"{b_name} {med(rb):.0f} [{min(rb):.0f}-{max(rb):.0f}] "
                f"cudnn {med(rc):.0f} | B/A {ratio:.3f} | A x cudnn {row['a_x_cudnn']:.3f} "
                f"B x cudnn {row['b_x_cudnn']:.3f}")
            del q, k, v
            torch.cuda.empty_cache()
            write()  # after every point: a run cut short by its time limit keeps what it has
    meta["gpu_end"] = gpu_state(torch.device("cuda"))  # the clocks under the rounds' load
    write()
    if rows:
        plot(os.path.join(args.out, f"{args.name}.json"),
             os.path.join(args.out, f"{args.name}.png"))


if __name__ == "__main__":
    main()
