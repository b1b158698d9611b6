"""What ``gluon_check.py`` (forward) and ``gluon_bwd_check.py`` (backward) share: loading a
file as a module, running the script as a child process that prints one JSON record a line
(so a hung kernel costs one child's timeout), the report's path, and the offline sm90
compile table (registers, shared memory, spills, SASS instruction counts).

Loaded by file path, like the kernels, so the scripts run on the device without the
package installed."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time


def load_by_path(name, path):
    """The module in ``path``, registered as ``name`` (Gluon's JIT looks functions up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


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
                        warn = [ln for ln in pv.splitlines() if "warning" in ln.lower()]
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
