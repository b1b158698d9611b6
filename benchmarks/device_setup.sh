# Sourced by the benchmarks/device_*.sh scripts on the lent GPU machine (no network):
# installs the carried wheels (.whl/: stevedore, platformdirs, pyopencl, pytools, siphash24,
# transformers and its dependencies) into /tmp/site and attnhub + the torch-sdpa plugin
# editable, so the entry points are registered.
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 ATTNHUB_CACHE_DIR=/tmp/attnhub-cache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . \
    -e plugins/attnhub-torch-sdpa 2>&1 | tail -3

# step NAME SECONDS CMD...: one logged step in $OUT/NAME.txt, its last ${TAIL:-4} lines printed.
step() {
    local name=$1 secs=$2; shift 2
    local t0=$SECONDS
    timeout "$secs" "$@" > "$OUT/$name.txt" 2>&1
    echo "== $name rc=$? ($((SECONDS - t0)) s)"; tail -${TAIL:-4} "$OUT/$name.txt"
}

# ncu_prof NAME ARGS...: Nsight Compute over benchmarks/ncu_profile.py ARGS (its profiled
# ranges only), the report in $OUT/ncu_NAME.txt and a few headline lines printed.
NCU_SECTIONS=${NCU_SECTIONS:-"--section SpeedOfLight --section ComputeWorkloadAnalysis
    --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats
    --section MemoryWorkloadAnalysis"}
ncu_prof() {
    local name=$1; shift
    timeout ${NCU_SECONDS:-90} ncu --clock-control none --profile-from-start off $NCU_SECTIONS \
        python3 benchmarks/ncu_profile.py "$@" > "$OUT/ncu_$name.txt" 2>&1
    echo "ncu $name rc=$?"
    grep -E "Context [0-9]+, Stream|Duration|Compute \(SM\) Throughput|Waves Per SM|Issue Slots Busy|Registers Per Thread|Achieved Occupancy|^\[" \
        "$OUT/ncu_$name.txt" | head -40
}

# pack_out: everything under $OUT into $OUT/all.tgz and nothing else there (the device tool
# returns only a handful of files a call; one archive always comes back).
pack_out() {
    (cd "$OUT" && tar czf /tmp/all.tgz . && find . -mindepth 1 -delete && mv /tmp/all.tgz all.tgz)
}

# budgeted NAME SECONDS: a call bounded by SECONDS in all (BUDGET overrides) whose step logs
# go to RES=/tmp/res_NAME and whose $OUT/all.tgz `repack` re-writes after every step, so a
# call cut short by the device time left still brings back every finished step; `left N`
# caps a step's N seconds at what is left.
budgeted() {
    END=$((SECONDS + ${BUDGET:-$2}))
    RES=/tmp/res_$1; rm -rf "$RES"; mkdir -p "$RES"
    ORIG_OUT=$OUT; OUT=$RES
}
repack() { tar czf /tmp/all_res.tgz -C "$RES" . && mv /tmp/all_res.tgz "$ORIG_OUT/all.tgz"; }
left() {
    local l=$((END - SECONDS)); [ "$l" -lt 1 ] && l=1
    [ "$1" -lt "$l" ] && echo "$1" || echo "$l"
}

# grid_step NAME SECONDS DTYPE [ARGS...]: the FA grid at 2k-16k keys for DTYPE (one timing
# a point unless ARGS add --rounds), every attnhub backend but opencl / naive against the
# SDPA peers, JSON + PNG under $RES/NAME (with <stem>.partial.json after every point).
# Auto-dispatch starts from an empty cache of its own, $RES/NAME/dispatch/dispatch.json,
# which comes back with the results: a second grid on the warm machine used to reuse the
# first one's stored timings (one pick, not two; thirtieth session).
grid_step() {
    local name=$1 secs=$2 dtype=$3; shift 3
    ATTNHUB_CACHE_DIR="$RES/$name/dispatch" TAIL=${TAIL:-3} step "$name" "$secs" \
        python3 benchmarks/fa_grid.py --warmup 10 --rep 40 --quiet --seqlens 2k 4k 8k 16k \
        --dtypes "$dtype" --out "$RES/$name" "$@" \
        --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient
}

# gpu_clocks: nvidia-smi's clocks and power now, in $RES/nvidia_smi.txt.
gpu_clocks() {
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv \
        > "$RES/nvidia_smi.txt" 2>&1
}
