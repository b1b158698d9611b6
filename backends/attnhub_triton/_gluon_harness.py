"""What ``gluon_check.py`` (forward) and ``gluon_bwd_check.py`` (backward) share: loading a
kernel module without the attnhub package, running the script as a child process that prints one JSON record a line
(so a hung kernel costs one child's timeout), the report's path, and the offline sm90
compile table (registers, shared memory, spills, SASS instruction counts).

Loaded by file path, like the kernels, so the scripts run on the device without the
package installed."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import types


def load_kernel(path):
    """The kernel module in ``path`` (``_gluon_fwd.py`` / ``_gluon_bwd.py``), imported as a
    member of a stand-in package over its folder, so its ``from ._gluon_common import ...``
    resolves without the attnhub package (Gluon's JIT looks functions up by module name)."""
    folder, name = os.path.split(os.path.abspath(path))
    pkg = "attnhub_gluon_kernels"
    if pkg not in sys.modules:
        stand_in = types.ModuleType(pkg)
        stand_in.__path__ = [folder]
        sys.modules[pkg] = stand_in
    return importlib.import_module(f"{pkg}.{os.path.splitext(name)[0]}")


def run_child(script, args_list, timeout):
    """Run ``script`` with ``args_list`` in a child; (json records, stderr tail, timed_out)."""
    cmd = [sys.executable, os.path.abspath(script)] + args_list
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        out, err, to = p.stdout, p.stderr, False
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        to = True
    recs = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return recs, err[-3000:], to


def out_path(out, filename):
    """--out as given (a .json path) or ``filename`` inside it (a directory); None if unset."""
    if not out:
        return None
    if out.endswith(".json"):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        return out
    os.makedirs(out, exist_ok=True)
    return os.path.join(out, filename)


def compile_table(mod, specs, dims, parse, extra=None):
    """Compile every variant spec x head dim x (non-causal, causal) x (bf16, fp16) offline
    for sm90 with ``mod.compile_offline`` and print / return one row each: maxnreg, the
    highest register in the SASS, shared memory, ptxas spills and warnings, HGMMA (and its
    shapes), UTMALDG / UTMASTG / REDG, LDL+STL, setmaxnreg values.  ``extra(sass)`` may add
    fields: it returns (dict, text for the printed line)."""
    import triton

    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    cuobjdump = os.path.join(bindir, "cuobjdump")
    ptxas = os.path.join(bindir, "ptxas")
    rows = []
    for spec in specs:
        name, knobs = parse(spec)
        for d in dims:
            for causal in (False, True):
                for dt in ("bf16", "fp16"):
                    tag = f"{spec} d{d} {'causal' if causal else 'full'} {dt}"
                    try:
                        mod.resolve_config(d, variant=name, **knobs)
                    except ValueError as exc:
                        print(f"SKIP {tag}: {exc}")
                        continue
                    try:
                        t0 = time.time()
                        ck = mod.compile_offline(d, dt, causal, variant=name, **knobs)
                        with tempfile.TemporaryDirectory() as td:
                            cub = os.path.join(td, "k.cubin")
                            ptx = os.path.join(td, "k.ptx")
                            open(cub, "wb").write(ck.asm["cubin"])
                            open(ptx, "w").write(ck.asm["ptx"])
                            sass = subprocess.run([cuobjdump, "-sass", cub], capture_output=True,
                                                  text=True).stdout
                            res = subprocess.run([cuobjdump, "-res-usage", cub],
                                                 capture_output=True, text=True).stdout
                            pv = subprocess.run([ptxas, "-arch=sm_90a", "-v", ptx, "-o",
                                                 os.path.join(td, "x.cubin")],
                                                capture_output=True, text=True).stderr
                        regs = re.findall(r"REG:(\d+)", res)
                        spill = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", pv)
                        # ptxas reports serialised wgmmas (C7512, a large loss) as "info"
                        warn = [ln for ln in pv.splitlines()
                                if "warning" in ln.lower() or "C7512" in ln]
                        maxr = max([int(x) for x in re.findall(r"\bR(\d+)\b", sass)] or [0])
                        shapes = {}
                        for ln in sass.splitlines():
                            if "HGMMA." in ln:
                                h = ln.split("HGMMA.")[1].split()[0]
                                shapes[h] = shapes.get(h, 0) + 1
                        row = {"variant": spec, "d": d, "causal": causal, "dtype": dt,
                               "maxnreg": int(regs[0]) if regs else None,
                               "max_reg_index": maxr, "shared": int(ck.metadata.shared),
                               "spill_stores_loads": [int(x) for x in spill[0]] if spill else None,
                               "ptxas_warnings": warn, "HGMMA": sum(shapes.values()),
                               "HGMMA_shapes": shapes, "UTMALDG": sass.count("UTMALDG"),
                               "UTMASTG": sass.count("UTMASTG"), "REDG": sass.count("REDG"),
                               "LDL/STL": sass.count("LDL") + sass.count("STL"),
                               "setmaxnreg": sorted(set(re.findall(
                                   r"USETMAXREG\.\S+ (?:UP\d, )?(0x[0-9a-f]+)", sass)))}
                        more, text = extra(sass) if extra else ({}, "")
                        row.update(more)
                        row["seconds"] = round(time.time() - t0, 1)
                        rows.append(row)
                        print(f"OK   {tag}: maxnreg {row['maxnreg']} maxR {maxr} smem "
                              f"{row['shared']} spill(st/ld B) {row['spill_stores_loads']} "
                              f"LDL/STL {row['LDL/STL']} HGMMA {row['HGMMA']} {shapes} "
                              f"UTMALDG {row['UTMALDG']} UTMASTG {row['UTMASTG']} "
                              f"REDG {row['REDG']} setmaxnreg {row['setmaxnreg']} "
                              f"warnings {len(warn)}" + (f" | {text}" if text else ""))
                    except Exception as exc:
                        print(f"FAIL {tag}: {type(exc).__name__}: {str(exc)[-800:]}")
                        rows.append({"variant": spec, "d": d, "causal": causal, "dtype": dt,
                                     "error": f"{type(exc).__name__}: {exc}"})
    return rows


def check_and_bench(script, args, specs, expected, points, report, path, details, load_kernel,
                    title):
    """The GPU run of a check script: the environment, then one correctness child per variant
    spec (``--child-correct``, ``args.jobs`` at once, ``args.timeout`` each; a variant whose
    child hangs or dies before reporting its ``expected`` cases fails), one line per case
    (``details(record)`` adds the kernel-specific numbers), exactly
    ``correctness: N/M passed (T s)``, then -- if every case passed, or ``args.bench_anyway``
    -- one bench child over ``points`` for the variants that passed (``args.rounds``,
    ``args.bench_timeout``) and the TFLOP/s table under ``title``.  The report goes to
    ``path`` after each phase."""
    from concurrent.futures import ThreadPoolExecutor
    import traceback

    try:
        import torch
        import triton
        report["torch"] = torch.__version__
        report["triton"] = triton.__version__
        report["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
        report["cudnn"] = torch.backends.cudnn.version()
        print(f"torch {torch.__version__} triton {triton.__version__} device {report['device']}")
        ok, why = load_kernel().gluon_available()
        print(f"gluon_available: {ok} {why}")
        report["gluon_available"] = [ok, why]
    except Exception:
        traceback.print_exc()

    def save():
        if path:
            json.dump(report, open(path, "w"), indent=1)

    # ---- correctness: one child per variant ----
    t0 = time.time()

    def one(spec):
        return spec, run_child(script, ["--child-correct", spec, "--cases", args.cases],
                               args.timeout)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        results = list(ex.map(one, specs))
    n_pass = n_all = 0
    all_recs, variant_ok = [], {}
    for spec, (recs, err, timed_out) in results:
        bad, got = False, 0
        for r in recs:
            st = r.get("status")
            if st == "INFO":
                print(f"  {spec}: {r.get('error')}")
                continue
            line = f"{st:4s} {spec:22s} {r.get('case')}" + details(r)
            if "error" in r:
                line += "  " + r["error"].replace("\n", " | ")[-600:]
            if "why" in r:
                line += "  " + r["why"]
            print(line)
            if str(r.get("case", "")).startswith("<"):  # <setup>: its cases count as missing
                bad |= st == "FAIL"
                continue
            got += st in ("PASS", "FAIL", "SKIP")
            if st in ("PASS", "FAIL"):
                n_all += 1
                n_pass += st == "PASS"
                bad |= st == "FAIL"
        if timed_out or got < expected:
            missing = expected - got
            why = "TIMEOUT (deadlock?)" if timed_out else "child died"
            print(f"FAIL {spec:22s} {why}: {missing} case(s) did not report; stderr tail: "
                  + err.replace("\n", " | ")[-1500:])
            n_all += max(missing, 1)
            bad = True
        variant_ok[spec] = not bad
        all_recs.extend(recs)
    report["correctness"] = all_recs
    report["variant_ok"] = variant_ok
    report["correctness_seconds"] = round(time.time() - t0, 1)
    report["correctness_summary"] = f"{n_pass}/{n_all}"
    print(f"correctness: {n_pass}/{n_all} passed ({report['correctness_seconds']} s)")
    save()

    # ---- bench ----
    if args.no_bench:
        return report
    timed = [s for s in specs if variant_ok.get(s)]
    if n_pass != n_all and not args.bench_anyway:
        print("bench skipped: not every case passed (--bench-anyway times the passing variants)")
        return report
    if not timed:
        print("bench skipped: no variant passed")
        return report
    pts = ",".join(f"{S}x{D}{'c' if c else ''}" for S, D, c in points)
    recs, err, timed_out = run_child(script, ["--child-bench", ",".join(timed), "--rounds",
                                              str(args.rounds), "--points", pts],
                                     args.bench_timeout)
    if timed_out or len(recs) < len(points):
        print(f"bench: {len(recs)}/{len(points)} points reported"
              f"{' (TIMEOUT)' if timed_out else ''}; stderr tail: {err[-1500:]}")
    report["bench"] = recs
    cols = timed + ["cudnn", "flash"]
    print(f"\n{title}")
    print(f"{'D':>4} {'S':>6} {'causal':>6} | " + " | ".join(f"{c[:18]:>18}" for c in cols))
    for r in recs:
        cells = []
        for c in cols:
            tf, x = r["tflops"].get(c), r["x_cudnn"].get(c)
            cells.append(f"{tf:7.1f} x{x:4.2f}".rjust(18) if tf and x else
                         (f"{tf:7.1f}".rjust(18) if tf else
                          f"{'err' if c in r['errors'] else '-':>18}"))
        print(f"{r['D']:>4} {r['S']:>6} {str(r['causal']):>6} | " + " | ".join(cells))
        for c, e in r.get("errors", {}).items():
            print(f"      {c}: {e[-300:]}")
    save()
    if path:
        print(f"wrote {path}")
    return report


def parser(doc, *, variants, names, cases, timeout, bench_timeout, jobs, dims,
           case_sets=("quick", "all")):
    """The check scripts' command line (defaults per script; ``case_sets``: the names the
    script's ``case_list`` takes)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="JSON path (*.json) or directory")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--bench-anyway", action="store_true",
                    help="time the variants whose cases all passed even if another failed")
    ap.add_argument("--cases", choices=case_sets, default=cases)
    ap.add_argument("--variants", default=variants,
                    help=f"comma list of name[:knob=val...]; names: {names}")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds per point")
    ap.add_argument("--points", default="all", help="'all' or e.g. 2048x128c,16384x64")
    ap.add_argument("--timeout", type=int, default=timeout, help="seconds per correctness child")
    ap.add_argument("--bench-timeout", type=int, default=bench_timeout)
    ap.add_argument("--jobs", type=int, default=jobs, help="correctness children at once")
    ap.add_argument("--compile-only", action="store_true",
                    help="offline sm90 compile of every variant, no GPU needed")
    ap.add_argument("--dims", default=dims)
    ap.add_argument("--emulate", action="store_true",
                    help="CPU emulation of the kernel's block schedule against the reference")
    ap.add_argument("--child-correct", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-bench", default=None, help=argparse.SUPPRESS)
    return ap


def parse_points(text, default):
    """'all' -> ``default``; '2048x128c,16384x64' -> [(2048, 128, True), (16384, 64, False)]."""
    if text == "all":
        return default
    points = []
    for p in text.split(","):
        S, D = p.rstrip("c").split("x")
        points.append((int(S), int(D), p.endswith("c")))
    return points


def compile_report(report, rows, path):
    """Print the compile table's summary (compiled, with spills) and write the report."""
    report["compile"] = rows
    n_err = sum(1 for r in rows if "error" in r)
    n_sp = sum(1 for r in rows if r.get("spill_stores_loads") not in (None, [0, 0]))
    print(f"compile-only: {len(rows) - n_err}/{len(rows)} compiled, {n_sp} with spills")
    if path:
        json.dump(report, open(path, "w"), indent=1)
        print(f"wrote {path}")
