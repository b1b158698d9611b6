#!/usr/bin/env bash
# One device call (about 3 minutes; written in the seventeenth session, NOT YET RUN): where
# the CUDA forward's `wait` stalls sit.  ncu's per-instruction stall samples (SourceCounters)
# of hopper-fa3's forward at d64 2k causal and d128 2k (the points where it stalls on `wait`
# 1.39-1.47 cycles per instruction against cuDNN's 0.86-0.90; NOTES.md), built with
# -lineinfo (ATTNHUB_HOPPER_LINEINFO=1), printed per SASS instruction as CSV.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_LINEINFO=1
for P in "64 2048 --causal" "128 2048"; do
    set -- $P
    name="fwd_src_d$1_$2${3:+_causal}"
    timeout ${NCU_SECONDS:-120} ncu --clock-control none --profile-from-start off \
        --kernel-name regex:fa3_fwd --section SourceCounters --section WarpStateStats \
        --import-source yes -f -o "$OUT/$name" \
        python3 benchmarks/ncu_profile.py --d $1 --s $2 ${3:-} --impls hopper-fa3 \
        > "$OUT/$name.log" 2>&1
    echo "ncu $name rc=$?"
    # per-instruction table (the source page as CSV); the report itself comes back too
    ncu --import "$OUT/$name.ncu-rep" --page source --csv --print-source sass \
        > "$OUT/$name.csv" 2> "$OUT/$name.csv.err" || cat "$OUT/$name.csv.err"
    grep -E "Warp Stall|stall" "$OUT/$name.log" | head -20
done
(cd "$OUT" && tar czf /tmp/all.tgz . && mv /tmp/all.tgz "$OUT/all.tgz")
