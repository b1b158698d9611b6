#!/bin/bash
# One short device call: the BWD_PROF phase split of hopper-fa3's CUDA backward (shipped
# tiles, d64, d128, d256, 1k/4k/16k, causal and not), each checked against the plain
# build's gradients, into $OUT/bwd_phases.json; then any ab_hopper.py arguments given
# (e.g. --pair fwd:256:full:default,n80s2-pp) into $OUT/ab_hopper.json.
#   bash benchmarks/device_bwd_phases.sh [ab_hopper.py args...]
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_CUDA_BWD=1
timeout 150 python3 - <<'PY' || echo "PHASES FAILED rc=$?"
import json, os, time
import torch
from attnhub_hopper.cuda_bwd_check import phases

rows = phases(print)  # every head dim, the shipped tile of each point
with open(os.path.join(os.environ["OUT"], "bwd_phases.json"), "w") as f:
    json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                   date=time.strftime("%Y-%m-%d %H:%M"), rows=rows), f, indent=1)
PY
python3 backends/attnhub_hopper/cuda_bwd_check.py --plot-phases-from "$OUT/bwd_phases.json"
if [ $# -gt 0 ]; then
  timeout 150 python3 benchmarks/ab_hopper.py --out "$OUT" "$@" 2>&1 | tail -30
fi
