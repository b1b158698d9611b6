#!/bin/bash
# One short device call: the BWD_PROF phase split of hopper-fa3's CUDA backward (shipped
# tiles, d64, d128, d256, 1k/4k/16k, causal and not), each checked against the plain
# build's gradients, into $OUT/bwd_phases.json; then any ab_hopper.py arguments given
# (e.g. --pair fwd:256:full:default,n80s2-pp) into $OUT/ab_hopper.json.  PHASE_TILES
# names the variants per head dim instead of the shipped ones, e.g.
# PHASE_TILES='256:s1-atomic-v4,s1-atomic-v4-fold;128:s2-alt,s2-alt-fold' (those dims only).
# Each row has the CTAs' packing on the SMs ("SMs busy"), which is what pairs change.
#   [PHASE_TILES=...] bash benchmarks/device_bwd_phases.sh [ab_hopper.py args...]
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_CUDA_BWD=1
timeout 150 python3 - <<'PY' || echo "PHASES FAILED rc=$?"
import json, os, time
import torch
from attnhub_hopper.cuda_bwd_check import phases

from attnhub_hopper import cuda_bwd
from attnhub_hopper.cuda_bwd_check import _SELECT

spec = os.environ.get("PHASE_TILES", "").strip()
tiles = None  # every head dim, the shipped tile of each point
if spec:
    tiles = {}
    for part in spec.split(";"):
        d, names = part.split(":")
        known = {str(t): t for t in cuda_bwd.tiles_for(int(d))}
        tiles[int(d)] = [known[n] for n in names.split(",")]  # KeyError: not a variant
    _SELECT.update(dims=sorted(tiles))
rows = phases(print, tiles)
with open(os.path.join(os.environ["OUT"], "bwd_phases.json"), "w") as f:
    json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                   date=time.strftime("%Y-%m-%d %H:%M"), rows=rows), f, indent=1)
PY
python3 backends/attnhub_hopper/cuda_bwd_check.py --plot-phases-from "$OUT/bwd_phases.json"
if [ $# -gt 0 ]; then
  timeout 150 python3 benchmarks/ab_hopper.py --out "$OUT" "$@" 2>&1 | tail -30
fi
