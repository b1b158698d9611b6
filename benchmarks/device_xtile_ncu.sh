#!/usr/bin/env bash
# One device call (about 2.5 minutes; twenty-second session): why Tile.xtile lost (-4.8 % at
# d128 1k, -1.4..-2.9 % at d64 causal 2k; NOTES.md).  Nsight Compute (speed of light, warp
# states, scheduler) of the shipped persistent forward and of xtile 2 at those two points.
# The xtile build comes from commit 5d97bb2 with xtile 2 made the default of persistent
# tiles, prepared (untracked) as xtile_src/ by:
#   mkdir xtile_src; git show 5d97bb2:backends/attnhub_hopper/fa3_fwd.cu > xtile_src/fa3_fwd.cu
#   git show 5d97bb2:backends/attnhub_hopper/cuda_fwd.py > xtile_src/cuda_fwd.py
#   (then "tile = tile._replace(xtile=2) if tile.persistent else tile" after the lazy line)
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
NCU_SECTIONS="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section LaunchStats"
for tag in shipped xtile2; do
    if [ $tag = xtile2 ]; then
        cp xtile_src/fa3_fwd.cu xtile_src/cuda_fwd.py backends/attnhub_hopper/
        rm -rf /tmp/attnhub-cache
    fi
    NCU_SECONDS=60 ncu_prof ${tag}_d128_1k --d 128 --s 1024 --impls hopper-fa3,cudnn
    NCU_SECONDS=60 ncu_prof ${tag}_d64_2k_causal --d 64 --s 2048 --causal --impls hopper-fa3,cudnn
done
pack_out
# A second call right after it (same session, the command given inline; kept here) took ncu's
# per-SASS-instruction stall samples of both builds at d128 1k (the biggest loss):
#   source benchmarks/device_setup.sh; for tag in shipped xtile2; do [xtile2: copy xtile_src
#   in, rm -rf /tmp/attnhub-cache]; ncu --clock-control none --profile-from-start off
#   --kernel-name regex:fa3_fwd --section SourceCounters --section WarpStateStats -f
#   -o $OUT/src_$tag python3 benchmarks/ncu_profile.py --d 128 --s 1024 --impls hopper-fa3;
#   ncu --import $OUT/src_$tag.ncu-rep --page source --csv --print-source sass > src_$tag.csv
