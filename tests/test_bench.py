"""The benchmark harness (attnhub.bench) on the CPU: grid, FLOP counting, the per-point
check, JSON schema, tables and plots.  No timing assertions: speed lives in the results."""

from __future__ import annotations

import json
import math
import struct
import subprocess

import pytest
import torch

import attnhub
from attnhub import bench

CPU = torch.device("cpu")
TINY = ["--device", "cpu", "--tokens", "256", "--hidden", "64", "--head-dims", "32",
        "--seqlens", "64", "128", "--dtypes", "bf16", "--warmup", "1", "--rep", "3", "--quiet"]
RECORD_KEYS = {"dtype", "head_dim", "seqlen", "causal", "batch", "heads", "direction", "flops",
               "method", "group", "status", "ms", "tflops", "reason"}


# -- grid and FLOPs -----------------------------------------------------------------------
def test_full_grid_is_the_flashattention_grid():
    points = bench.fa_grid()
    assert len(points) == 3 * 6 * 2 * 2  # head dims x seqlens x causal x dtypes
    assert {p.head_dim for p in points} == {64, 128, 256}
    assert {p.seqlen for p in points} == {512, 1024, 2048, 4096, 8192, 16384}
    assert {p.dtype for p in points} == {"bf16", "fp16"}
    assert {p.causal for p in points} == {False, True}
    for p in points:
        assert p.batch * p.seqlen == 16384, p
        assert p.heads * p.head_dim == 2048, p
    assert set(bench.quick_grid()) <= set(points)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(head_dims=(96,), hidden=2048), "head_dim=96"),
    (dict(seqlens=(32768,)), "seqlen=32768"),
    (dict(dtypes=("fp8",)), "'fp8'"),
])
def test_grid_rejects_impossible_sizes(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        bench.fa_grid(**kwargs)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("d, s", [(64, 512), (128, 4096), (256, 16384)])
def test_flops_follow_the_flashattention_papers(d, s, causal):
    b, h = 16384 // s, 2048 // d
    fwd = bench.attention_flops(b, h, s, s, d, causal=causal, direction="fwd")
    bwd = bench.attention_flops(b, h, s, s, d, causal=causal, direction="bwd")
    assert fwd == 4 * b * h * s * s * d / (2 if causal else 1)
    assert bwd == 2.5 * fwd
    problem = attnhub.Problem(batch=b, heads_q=h, heads_kv=h, seqlen_q=s, seqlen_k=s,
                              head_dim=d, head_dim_v=d, dtype=torch.bfloat16, device=CPU,
                              causal=causal)
    assert fwd == problem.flops("fwd") and bwd == problem.flops("bwd")
    point = bench.Point("bf16", d, s, causal, b, h)
    assert point.flops("bwd") == bwd


def test_flops_of_the_d128_16k_point():
    # 4 * 1 * 16 * 16384^2 * 128 = 2.199e12 FLOPs: 550 TFLOP/s is 4.0 ms.
    assert bench.attention_flops(1, 16, 16384, 16384, 128, causal=False) == 2199023255552.0


def test_seqlen_arguments_accept_k_suffixes():
    assert bench._ints("512,1k 2K") == [512, 1024, 2048]
    with pytest.raises(Exception, match="2kb"):
        bench._ints("2kb")


@pytest.mark.parametrize("name, tag", [("NVIDIA H100 80GB HBM3", "h100"),
                                       ("NVIDIA A100-SXM4-80GB", "a100"),
                                       ("NVIDIA GeForce RTX 4090", "rtx4090")])
def test_device_tag_names_the_gpu(name, tag):
    assert bench.device_tag({"device": "cuda", "device_name": name}) == tag


# -- running methods ----------------------------------------------------------------------
def _math(q, k, v, causal):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward, gradient times 3: a kernel whose backward is wrong."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 3 * g


def _raise(exc):
    def fn(q, k, v, causal):
        raise exc
    return fn


FAKES = [
    bench.Method("good", "attnhub", _math),
    bench.Method("wrong-fwd", "attnhub", lambda q, k, v, c: _math(q, k, v, not c)),
    bench.Method("wrong-bwd", "attnhub", lambda q, k, v, c: _math(_ScaleGrad.apply(q), k, v, c)),
    bench.Method("raises", "attnhub", _raise(RuntimeError("kernel exploded"))),
    bench.Method("refuses", "attnhub", _raise(NotImplementedError("head_dim=32 (supported: 64)"))),
    bench.Method("returns-none", "attnhub", lambda q, k, v, c: None),
    bench.Method("small-only", "reference", _math, max_seqlen=64),
    bench.Method("cuda-only", "attnhub", _math,
                 capabilities=attnhub.Capabilities(devices=("cuda",))),
    bench.Method("sdpa-flash", "peer", bench._sdpa("FLASH_ATTENTION")),
    bench.Method("sdpa-cudnn", "peer", bench._sdpa("CUDNN_ATTENTION")),
]


@pytest.fixture(scope="module")
def fake_results():
    points = bench.fa_grid(tokens=256, hidden=64, head_dims=(32,), seqlens=(64, 128),
                           causal=(True,), dtypes=("bf16",))
    timer, _ = bench.make_timer(CPU, warmup_ms=1, rep_ms=2)
    res = bench.run_grid(points, FAKES, device=CPU, timer=timer, progress=False)
    return {(r["method"], r["seqlen"], r["direction"]): r for r in res}


def test_every_method_point_and_direction_gets_one_record(fake_results):
    assert len(fake_results) == len(FAKES) * 2 * 2
    for r in fake_results.values():
        assert RECORD_KEYS <= set(r), r
        assert r["status"] in bench.STATUSES


def test_a_correct_method_is_ok_and_checked(fake_results):
    for s in (64, 128):
        fwd, bwd = fake_results["good", s, "fwd"], fake_results["good", s, "bwd"]
        print(fwd["errors"], bwd["errors"])
        assert fwd["status"] == bwd["status"] == "ok"
        assert set(fwd["errors"]) == {"o"} and set(bwd["errors"]) == {"o", "dq", "dk", "dv"}
        assert max(bwd["errors"].values()) < 0.02
        assert fwd["ms"] > 0 and math.isclose(fwd["tflops"], fwd["flops"] / fwd["ms"] / 1e9)


@pytest.mark.parametrize("name, direction, needle", [
    ("wrong-fwd", "fwd", "o="), ("wrong-bwd", "bwd", "dq="),
])
def test_wrong_outputs_are_timed_but_flagged(fake_results, name, direction, needle):
    r = fake_results[name, 128, direction]
    assert r["status"] == "wrong", r
    assert needle in r["reason"] and r["ms"] is not None


def test_the_wrong_backward_passes_its_forward_check(fake_results):
    assert fake_results["wrong-bwd", 128, "fwd"]["status"] == "ok"


@pytest.mark.parametrize("name, status, needle", [
    ("raises", "error", "RuntimeError: kernel exploded"),
    ("refuses", "skipped", "head_dim=32 (supported: 64)"),
    ("returns-none", "error", "returned NoneType"),
    ("cuda-only", "skipped", "device 'cpu'"),
    ("sdpa-cudnn", "skipped", "No viable backend"),
])
def test_failures_are_recorded_with_reasons_not_raised(fake_results, name, status, needle):
    for direction in ("fwd", "bwd"):
        r = fake_results[name, 64, direction]
        assert r["status"] == status and needle in r["reason"], r
        assert r["tflops"] is None


def test_small_only_methods_are_skipped_at_large_seqlen(fake_results):
    assert fake_results["small-only", 64, "fwd"]["status"] == "ok"
    r = fake_results["small-only", 128, "fwd"]
    assert r["status"] == "skipped" and "seqlen <= 64" in r["reason"]


def test_ratios_against_the_peers(fake_results):
    r = fake_results["good", 128, "fwd"]
    flash = fake_results["sdpa-flash", 128, "fwd"]
    assert flash["status"] == "ok"
    assert math.isclose(r["vs_flash"], r["tflops"] / flash["tflops"])
    assert r["vs_cudnn"] is None  # cuDNN skipped on the CPU
    assert "vs_flash" not in fake_results["wrong-fwd", 128, "fwd"]
    assert "vs_flash" not in flash


def test_the_cpu_timer_clears_grads_before_each_rep():
    x = torch.ones(3, requires_grad=True)
    seen = []

    def fn():
        seen.append(x.grad)
        x.sum().backward()

    timer, text = bench.make_timer(CPU, warmup_ms=0, rep_ms=0)
    assert timer(fn, grad_to_none=[x]) >= 0 and "host clock" in text
    assert len(seen) >= 4 and all(g is None for g in seen)


def test_discovery_pins_available_backends_and_keeps_naive_small():
    infos = [attnhub.BackendInfo("naive", "1", "attnhub", "available", "",
                                 attnhub.Capabilities()),
             attnhub.BackendInfo("fast", "2", "attnhub", "available", "", attnhub.Capabilities()),
             attnhub.BackendInfo("theirs", "3", "attnhub-theirs", "available", "", None),
             attnhub.BackendInfo("gone", "1", "x", "unavailable", "no CUDA", None)]
    methods = {m.name: m for m in bench.discover_methods(infos=infos, small_seqlen=512)}
    assert list(methods) == ["fast", "theirs", "naive", "auto", "sdpa-flash", "sdpa-cudnn",
                             "sdpa-efficient", "sdpa-math"]
    assert methods["theirs"].group == "plugin"  # third-party: timed, no ratio columns
    assert methods["naive"].group == "reference" and methods["naive"].max_seqlen == 512
    assert methods["sdpa-math"].max_seqlen == 512
    assert methods["fast"].group == methods["auto"].group == "attnhub"


# -- the command line: a tiny CPU run, its JSON, the table and the plots ------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert bench.main(TINY + ["--out", str(out)]) == 0
    (path,) = out.glob("fa_grid_cpu_*.json")
    return out, path, json.loads(path.read_text())


def test_tiny_cpu_run_writes_the_json_schema(tiny_run):
    out, path, data = tiny_run
    assert data["schema"] == bench.SCHEMA and path.name == f"fa_grid_cpu_{data['date']}.json"
    for key in ("device", "device_name", "driver", "torch", "triton", "cuda", "cudnn",
                "attnhub", "backends"):
        assert key in data["env"], key
    assert data["config"]["seqlens"] == [64, 128] and data["config"]["directions"] == ["fwd", "bwd"]
    names = [m["name"] for m in data["methods"]]
    peers = {"sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "sdpa-math"}
    assert {"naive", "auto"} | peers <= set(names)
    assert len(data["results"]) == 2 * 2 * 2 * len(names)  # seqlens x causal x directions
    # the matmul ceiling of the same run, before and after the grid, per dtype of the grid
    ceiling = data["ceiling"]
    assert ceiling["n"] == bench.ceiling_size(torch.device("cpu"))
    for when in ("start", "end"):
        assert set(ceiling[when]) == set(data["config"]["dtypes"]), ceiling
        assert all(math.isfinite(x) and x > 0 for x in ceiling[when].values()), ceiling
        assert ceiling[f"gpu_{when}"] is None  # no GPU, no clocks
    for r in data["results"]:
        assert RECORD_KEYS <= set(r), r


@pytest.mark.parametrize("method", ["naive", "auto", "sdpa-math", "sdpa-flash"])
def test_tiny_cpu_run_times_attnhub_and_torch_on_the_cpu(tiny_run, method):
    rows = [r for r in tiny_run[2]["results"] if r["method"] == method]
    assert rows and all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    assert all(r["tflops"] > 0 for r in rows)


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_from_json_re_renders_table_and_plots(tiny_run, tmp_path, capsys):
    _, path, data = tiny_run
    capsys.readouterr()
    assert bench.main(["--from-json", str(path), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for needle in ("bf16 fwd", "bf16 bwd", "sdpa-cudnn", "auto/flash", "auto/cudnn",
                   "matmul ceiling in this run"):
        assert needle in text, needle
    (png,) = tmp_path.glob("*.png")
    assert png.name == f"fa_grid_cpu_{data['date']}_bf16.png"
    # One head dim x (full, causal) x (fwd, bwd): one row of 4 panels, 4.2 x 3.2 in @110 dpi.
    assert _png_size(png) == (round(4 * 4.2 * 110), round(1 * 3.2 * 110))


def test_matmul_ceiling_counts_2n3_flops_and_records_none_when_the_matmul_fails():
    assert bench.matmul_ceiling(["bf16"], torch.device("cpu"), lambda fn: 2.0, n=100) == {
        "bf16": pytest.approx(2 * 100 ** 3 / 2e-3 / 1e12)}

    def no_kernel(fn):
        raise RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'')
    assert bench.matmul_ceiling(["fp16"], torch.device("cpu"), no_kernel, n=8) == {"fp16": None}


def test_gpu_state_reads_nvidia_smi_and_is_none_off_cuda(monkeypatch):
    assert bench.gpu_state(CPU) is None
    line = "1755, 1980, 612.35, 71, 0x0000000000000004"
    assert bench.parse_gpu_state(line) == dict(
        sm_mhz=1755.0, sm_max_mhz=1980.0, power_w=612.35, temperature_c=71.0,
        throttle_reasons="0x0000000000000004")
    assert bench.parse_gpu_state("[N/A], 1980, [N/A], 40, 0x0")["sm_mhz"] == "[N/A]"

    class Props:
        uuid = "1234-abcd"
    seen = {}

    def run(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 0, stdout=line + "\n", stderr="")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: Props())
    monkeypatch.setattr(bench.subprocess, "run", run)
    assert bench.gpu_state(torch.device("cuda", 0))["power_w"] == 612.35
    assert seen["cmd"][:3] == ["nvidia-smi", "-i", "GPU-1234-abcd"]

    # a driver that knows the bit mask only by its newer name, then one that knows neither
    for known in ("clocks_event_reasons.active", None):
        def picky(cmd, **kw):
            asked = cmd[3].removeprefix("--query-gpu=").split(",")
            if any(f.endswith("reasons.active") and f != known for f in asked):
                return subprocess.CompletedProcess(cmd, 2, stdout="", stderr="Field ... is not "
                                                   "a valid field to query.")
            return subprocess.CompletedProcess(cmd, 0, stdout=", ".join(line.split(", ")[
                :len(asked)]) + "\n", stderr="")
        monkeypatch.setattr(bench.subprocess, "run", picky)
        state = bench.gpu_state(torch.device("cuda", 0))
        assert state["sm_mhz"] == 1755.0
        assert ("throttle_reasons" in state) == (known is not None), state

    def missing(cmd, **kw):
        raise FileNotFoundError("nvidia-smi")
    monkeypatch.setattr(bench.subprocess, "run", missing)
    assert bench.gpu_state(torch.device("cuda", 0)) is None


def test_plots_have_one_panel_per_head_dim_causal_and_direction(tmp_path):
    recs = [dict(dtype="fp16", head_dim=d, seqlen=s, causal=c, direction=dr, method=m,
                 group="peer", status="ok", tflops=1.0 + s / 1e3, ms=1.0, reason="")
            for d in (64, 128, 256) for s in (512, 1024) for c in (False, True)
            for dr in ("fwd", "bwd") for m in ("sdpa-flash", "sdpa-cudnn")]
    data = dict(schema=bench.SCHEMA, suite="fa_grid", date="2026-11-23", results=recs,
                env=dict(device="cuda", device_name="NVIDIA H100 80GB HBM3"), methods=[])
    (png,) = bench.plot_results(data, tmp_path)
    assert png.name == "fa_grid_h100_2026-11-23_fp16.png"
    assert _png_size(png) == (round(4 * 4.2 * 110), round(3 * 3.2 * 110))


@pytest.mark.parametrize("argv, needle", [
    (["--device", "cpu"], "--tokens 256"),
    (TINY + ["--methods", "nope"], "unknown method 'nope'"),
    (TINY + ["--head-dims", "48"], "head_dim=48"),
])
def test_usage_errors_exit_2_and_say_what_to_do(argv, needle, capsys):
    assert bench.main(argv) == 2
    assert needle in capsys.readouterr().out


def test_from_json_refuses_a_foreign_file(tmp_path, capsys):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"schema": "something-else"}))
    assert bench.main(["--from-json", str(path)]) == 2
    assert "attnhub-bench/1" in capsys.readouterr().out


def test_a_failing_point_set_up_is_recorded_and_the_run_goes_on(monkeypatch):
    points = bench.fa_grid(tokens=64, hidden=32, head_dims=(32,), seqlens=(32,),
                           causal=(False, True), dtypes=("bf16",))
    real = bench._reference

    def reference(q, k, v, do, point, backward):
        if point.causal:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(q, k, v, do, point, backward)

    monkeypatch.setattr(bench, "_reference", reference)
    timer, _ = bench.make_timer(CPU, warmup_ms=0, rep_ms=0)
    res = bench.run_grid(points, FAKES[:1], device=CPU, timer=timer, progress=False)
    status = {(r["causal"], r["direction"]): (r["status"], r["reason"]) for r in res}
    assert status[False, "fwd"][0] == status[False, "bwd"][0] == "ok"
    for direction in ("fwd", "bwd"):
        assert status[True, direction][0] == "error"
        assert "point set-up failed: RuntimeError: CUDA error" in status[True, direction][1]


def test_rounds_time_every_ran_method_again_in_a_rotating_order_and_keep_the_median():
    """--rounds 3: each method that ran is timed twice more after all of them ran once, each
    round starting one method later; ms is the median of the three and tflops follows it.
    Skipped and failing methods get no extra timings; a method failing in a later round
    becomes an error with the round named."""
    points = bench.fa_grid(tokens=128, hidden=64, head_dims=(32,), seqlens=(64,),
                           causal=(False,), dtypes=("bf16",))
    order, fail_in_round_3 = [], {"n": 0}

    def flaky(q, k, v, causal):
        fail_in_round_3["n"] += 1
        return _math(q, k, v, causal)

    methods = [bench.Method("a", "attnhub", _math), bench.Method("b", "peer", _math),
               bench.Method("raises", "attnhub", _raise(RuntimeError("kernel exploded"))),
               bench.Method("c", "attnhub", flaky)]
    calls = iter(range(1, 1000))

    def timer(fn, grad_to_none=None):
        fn()
        n = next(calls)
        order.append(n)
        if fail_in_round_3["n"] >= 4:  # c: check, round 1, round 2, then round 3 raises
            fail_in_round_3["n"] = -99
            raise RuntimeError("lost the device")
        return float(n)

    res = bench.run_grid(points, methods, directions=("fwd",), device=CPU, timer=timer,
                         progress=False, rounds=3)
    by = {r["method"]: r for r in res}
    # round 1: a=1, b=2, c=3; round 2 starts at b: b=4, c=5, a=6; round 3 at c: c raises (7)
    assert by["a"]["ms_rounds"] == [1.0, 6.0] + [8.0] and by["a"]["ms"] == 6.0
    assert by["b"]["ms_rounds"] == [2.0, 4.0, 9.0] and by["b"]["ms"] == 4.0
    assert by["b"]["tflops"] == pytest.approx(points[0].flops("fwd") / 4e-3 / 1e12)
    assert by["c"]["status"] == "error" and "round 3: RuntimeError: lost the device" in \
        by["c"]["reason"] and by["c"]["ms_rounds"] == [3.0, 5.0]
    assert by["raises"]["status"] == "error" and "ms_rounds" not in by["raises"]
    with pytest.raises(ValueError, match="rounds=0"):
        bench.run_grid(points, methods, device=CPU, timer=timer, progress=False, rounds=0)


def test_rounds_from_the_command_line(tmp_path, capsys):
    assert bench.main(TINY + ["--rounds", "0"]) == 2
    assert "--rounds 0" in capsys.readouterr().out
    assert bench.main(TINY + ["--rounds", "2", "--methods", "naive", "sdpa-math",
                              "--out", str(tmp_path), "--no-plot", "--quiet"]) == 0
    (path,) = tmp_path.glob("*.json")
    data = json.loads(path.read_text())
    assert data["config"]["rounds"] == 2
    ok = [r for r in data["results"] if r["status"] == "ok"]
    assert ok and all(len(r["ms_rounds"]) == 2 for r in ok)


@pytest.mark.parametrize("training", (False, True), ids=("fwd", "bwd"))
def test_auto_choice_is_asked_for_the_timed_direction(monkeypatch, training):
    """The backward row's "chosen" is dispatch's choice for a training problem (inputs that
    require grad, grad mode on), not the forward's."""
    seen = {}

    def fake_explain(q, k, v, **kw):
        seen["grad"] = torch.is_grad_enabled() and q.requires_grad and k.requires_grad
        return type("E", (), {"chosen": "x"})()

    monkeypatch.setattr(attnhub, "explain", fake_explain)
    q = torch.randn(1, 2, 8, 16)
    with torch.no_grad():
        assert bench._chosen(q, q, q, True, training=training) == "x"
    assert seen["grad"] is training
    assert not q.requires_grad  # the caller's tensors are left alone


def _three_points():
    """A CPU grid of three bf16 forward points, S = 32, 64, 128."""
    return bench.fa_grid(tokens=256, hidden=64, head_dims=(32,), seqlens=(32, 64, 128),
                         causal=(False,), dtypes=("bf16",))


@pytest.mark.parametrize("sig", ("SIGTERM", "SIGINT"))
def test_a_signal_ends_the_grid_with_what_it_measured(sig):
    """`timeout` (TERM, or -s INT) ends a grid run with its records kept, whatever handler a
    loaded library left for the signal (here one that ignores it)."""
    import os
    import signal

    signum = getattr(signal, sig)
    calls = []

    def kill_on_second_point(q, k, v, causal):
        calls.append(q.shape[2])
        if q.shape[2] == 64 and len(calls) > 1:  # the second point's first call
            os.kill(os.getpid(), signum)
        return _math(q, k, v, causal)

    points = _three_points()
    timer, _ = bench.make_timer(CPU, warmup_ms=0, rep_ms=0)
    before = signal.signal(signum, signal.SIG_IGN)  # a library that swallowed the signal
    try:
        res = bench.run_grid(points, [bench.Method("killer", "attnhub", kill_on_second_point)],
                             device=CPU, timer=timer, progress=False)
        assert signal.getsignal(signum) is signal.SIG_IGN  # put back after the run
    finally:
        signal.signal(signum, before)
    assert {r["seqlen"] for r in res} == {32}  # the first point's records, nothing after
    assert all(r["status"] == "ok" for r in res) and len(res) == 2


def test_the_grid_checkpoints_after_every_point(tmp_path):
    """run_benchmark(checkpoint_dir=...): after each point the document so far is on disk
    as <stem>.partial.json, marked partial, with every record measured by then (a run killed
    outright leaves it); a finished run removes it and its document is not partial."""
    seen = []
    points = _three_points()

    def peek(q, k, v, causal):
        found = list(tmp_path.glob("*.partial.json"))
        seen.append((q.shape[2], [json.loads(f.read_text()) for f in found]))
        return _math(q, k, v, causal)

    data = bench.run_benchmark(points, device=CPU, methods=[bench.Method("peek", "attnhub", peek)],
                               directions=("fwd",), warmup_ms=0, rep_ms=0, check=False,
                               infos=[], progress=False, checkpoint_dir=tmp_path)
    first = [docs for S, docs in seen if S == 32]
    assert first and all(docs == [] for docs in first)  # nothing before the first point ends
    at_128 = [docs for S, docs in seen if S == 128][0]
    assert len(at_128) == 1
    doc = at_128[0]
    assert doc["partial"]["points_done"] == 2 and doc["partial"]["points"] == 3
    assert sorted({r["seqlen"] for r in doc["results"]}) == [32, 64]
    assert all(r["status"] == "ok" and r["tflops"] > 0 for r in doc["results"])
    assert doc["ceiling"]["end"] == {}  # no end-of-run ceiling in a checkpoint
    assert not list(tmp_path.glob("*.partial.json"))  # removed at the end
    assert "partial" not in data and {r["seqlen"] for r in data["results"]} == {32, 64, 128}


def test_an_interrupted_grid_says_it_is_partial(tmp_path):
    """A signal that ends the grid early: the returned document says how far it got."""
    import os
    import signal

    def stop_at_64(q, k, v, causal):
        if q.shape[2] == 64:
            os.kill(os.getpid(), signal.SIGINT)
        return _math(q, k, v, causal)

    points = _three_points()
    data = bench.run_benchmark(points, device=CPU,
                               methods=[bench.Method("stop", "attnhub", stop_at_64)],
                               directions=("fwd",), warmup_ms=0, rep_ms=0, check=False,
                               infos=[], progress=False)
    assert data["partial"]["points_done"] == 1 and data["partial"]["points"] == 3
    assert "interrupted" in data["partial"]["why"]


def test_a_failing_checkpoint_warns_once_and_the_grid_goes_on():
    calls = []

    def full_disk(results):
        calls.append(len(results))
        raise OSError(28, "No space left on device")

    points = _three_points()
    timer, _ = bench.make_timer(CPU, warmup_ms=0, rep_ms=0)
    with pytest.warns(RuntimeWarning, match="No space left") as record:
        res = bench.run_grid(points, FAKES[:1], directions=("fwd",), device=CPU, timer=timer,
                             progress=False, checkpoint=full_disk)
    assert len(record) == 1 and calls == [1]  # tried once, then switched off
    assert {r["seqlen"] for r in res} == {32, 64, 128}


def test_grid_summary_marks_a_partial_grid(benchmark_script):
    gs = benchmark_script("grid_summary")
    a = _grid([(128, 8192, False, "fwd", {"sdpa-cudnn": 636.0, "hopper-fa3": 733.0})])
    assert "Partial" not in gs.summary(a, ["hopper-fa3"], 0)
    a["partial"] = {"points_done": 1, "points": 48, "why": "written after every point"}
    assert "**Partial**: 1 of 48" in gs.summary(a, ["hopper-fa3"], 0)
    assert "**partial**: 1 of 48" in gs.compare(a, a, ["hopper-fa3"], 0)


def test_causal_waste_counts_against_closed_forms(benchmark_script):
    """benchmarks/causal_waste.py (what the hopper NOTES' waste table comes from): with
    64-row tiles and 64-key blocks the diagonal block is the only waste, so useful ÷ computed
    is (S + 1) / (S + 64) exactly; skipping more never adds work; at S a multiple of 128 a
    128-row tile has no dead block at 128 keys, so skip changes nothing there, while at
    S = 900 its top warpgroups have one; bad arguments are refused."""
    cw = benchmark_script("causal_waste")
    for S in (64, 640, 2048):
        assert cw.useful_fraction(S, 64, 64, skip=0) == pytest.approx((S + 1) / (S + 64))
    for S in (1000, 2048, 4096):
        f = [cw.useful_fraction(S, 192, 128, s) for s in (0, 1, 2)]
        assert f[0] < f[1] < f[2] <= 1
    for S in (1024, 2048, 4096):
        assert len({cw.useful_fraction(S, 128, 128, s) for s in (0, 1, 2)}) == 1
    assert cw.useful_fraction(900, 128, 128, 0) < cw.useful_fraction(900, 128, 128, 2)

    def by_pairs(S, M, N, skip):  # the same count from the mask itself, pair by pair
        computed = useful = 0
        for m1 in range(S, 0, -M):
            blocks = range(0, m1, N)
            for top in range(m1 - M, m1, 64):
                rows = range(top, top + 64)
                if not any(r >= 0 for r in rows):
                    continue
                seen = [any(0 <= r and k <= r for r in rows for k in range(b, b + N))
                        for b in blocks]
                dead = not seen[-1]
                computed += 64 * N * (2 * len(blocks) - (skip if dead else 0))
                useful += 2 * sum(r + 1 for r in rows if r >= 0)
        return useful / computed
    for S, M in ((448, 192), (640, 192), (900, 128)):
        for s in (0, 1, 2):
            assert cw.useful_fraction(S, M, 128, s) == pytest.approx(by_pairs(S, M, 128, s))
    with pytest.raises(ValueError, match="block_m"):
        cw.useful_fraction(2048, 100, 128)
    with pytest.raises(ValueError, match="skip"):
        cw.useful_fraction(2048, 192, 128, skip=3)


def test_mask_halves_paths_agree_with_the_causal_mask(benchmark_script):
    """Tile.halves' two fast paths (fa3_fwd.cu, MASK_HALVES) leave columns untested on the
    claim that every row of the warpgroup sees them (or none does); checked here against the
    causal mask itself, element by element, for the tile heights and key-block widths that
    ship, with Sq = Sk, keys past the queries, queries past the keys and shapes off the
    64 grid.  An assumed diagonal narrower or wider than 64 columns is caught, and at
    grid shapes no masked block is left to the general loop."""
    cw = benchmark_script("causal_waste")
    shapes = [(128, 128), (448, 448), (576, 1088), (1088, 576), (1000, 1064), (333, 777),
              (777, 333), (64, 2000), (16, 96)]  # (16, 96): d = 64 with keys ending early
    for M in (128, 192):
        for N in (80, 112, 128, 176):
            for sq, sk in shapes:
                assert cw.halves_violations(sq, sk, M, N) == [], (sq, sk, M, N)
    assert cw.halves_violations(576, 1088, 192, 128, width=56)  # the check can fail
    assert cw.halves_violations(576, 1088, 128, 128, width=72)
    for S in (1024, 2048, 4096):
        for M in (128, 192):
            c = cw.mask_paths(S, S, M, 128)
            assert c["general"] == 0 and c["le0"] > 0 and c["eq64"] > 0, c
            # every warpgroup masks one block on its diagonal, plus the wholly unseen last
            # block when its rows end before that block starts
            assert c["le0"] + c["eq64"] >= S // 64
    assert cw.mask_paths(1000, 1064, 192, 128)["general"] > 0  # off the grid: the loop


def _grid(points, rounds=1, ceiling=None):
    """A minimal FA-grid JSON: points are (d, S, causal, direction, {method: TFLOP/s})."""
    results = [dict(dtype="bf16", direction=direction, head_dim=d, seqlen=S, causal=causal,
                    method=m, tflops=t)
               for d, S, causal, direction, by_method in points for m, t in by_method.items()]
    return dict(env=dict(device_name="Test GPU"), date="2026-12-06", config=dict(rounds=rounds),
                ceiling=ceiling, results=results)


def test_grid_summary_counts_the_points_under_each_threshold(benchmark_script):
    """Under each table: per method, how many points read >= 1.05x and >= 1.0x cuDNN and
    which are under 1.05x (three decimals; the range where most are), and where auto chose
    another backend than the first method, with both ratios and the chosen backend's
    pinned one where the grid timed it; a method with no point timed gets no line."""
    gs = benchmark_script("grid_summary")
    g = _grid([(64, 2048, True, "fwd", {"sdpa-cudnn": 400.0, "hopper-fa3": 410.0,
                                        "triton-fa2": 350.0, "auto": 405.0}),
               (128, 8192, False, "fwd", {"sdpa-cudnn": 600.0, "hopper-fa3": 700.0,
                                          "triton-fa2": 500.0, "auto": 620.0,
                                          "torch-sdpa": 650.0}),
               (64, 4096, False, "fwd", {"sdpa-cudnn": 440.0, "hopper-fa3": 480.0,
                                         "triton-fa2": 400.0, "auto": 478.0}),
               (256, 4096, False, "fwd", {"sdpa-cudnn": 500.0, "hopper-fa3": 490.0,
                                          "triton-fa2": 520.0, "auto": 495.0})])
    picks = {(64, 2048): "hopper-fa3", (128, 8192): "torch-sdpa", (64, 4096): "hopper-fa3",
             (256, 4096): "hopper-fa3"}
    for r in g["results"]:
        if r["method"] == "auto":
            r["chosen"] = picks[r["head_dim"], r["seqlen"]]
    lines = [line for line in gs.summary(g, ["hopper-fa3", "triton-fa2", "fa-x"], 0)
             .splitlines() if line.startswith("- ")]
    assert lines == [
        "- hopper-fa3 ÷ cuDNN, 4 points: ≥ 1.05× at 2, ≥ 1.00× at 3; under 1.05×: "
        f"d64 causal 2k {410 / 400:.3f}, d256 full 4k {490 / 500:.3f}",
        f"- triton-fa2 ÷ cuDNN, 4 points: ≥ 1.05× at 0, ≥ 1.00× at 1; under 1.05×: "
        f"{500 / 600:.3f}–{520 / 500:.3f}× over all",
        "- auto chose hopper-fa3 at 3 of 4 points; elsewhere: d128 full 8k → torch-sdpa "
        f"(auto {620 / 600:.3f}×, hopper-fa3 {700 / 600:.3f}×, torch-sdpa pinned "
        f"{650 / 600:.3f}× cuDNN)"]


def test_grid_summary_compares_two_grids_point_by_point(benchmark_script, tmp_path, capsys):
    """grid_summary --against: each method's ratio to its own run's cuDNN, cuDNN B ÷ A, only
    the points both grids timed, '—' where a method is missing, and each run's rounds,
    ceiling and clocks in the header."""
    gs = benchmark_script("grid_summary")
    a = _grid([(128, 8192, False, "fwd", {"sdpa-cudnn": 636.0, "hopper-fa3": 733.0}),
               (128, 2048, False, "fwd", {"sdpa-cudnn": 640.0, "hopper-fa3": 660.0}),
               (64, 512, True, "bwd", {"sdpa-cudnn": 150.0, "hopper-fa3": 170.0})])
    b = _grid([(128, 8192, False, "fwd", {"sdpa-cudnn": 691.0, "hopper-fa3": 672.0}),
               (128, 2048, False, "fwd", {"sdpa-cudnn": 659.0}),
               (64, 1024, True, "bwd", {"sdpa-cudnn": 233.0, "hopper-fa3": 265.0})],
              rounds=3, ceiling=dict(n=8192, start={"bf16": 770.0}, end={"bf16": 760.0},
                                     gpu_start={"clocks.sm": "1980 MHz"}))
    text = gs.compare(a, b, ["hopper-fa3"], 0)
    row8k = next(line for line in text.splitlines() if line.startswith("| 128 | 8192 |"))
    assert row8k == (f"| 128 | 8192 | no | 636 | 691 | {691 / 636:.3f} | "
                     f"{733 / 636:.3f} / {672 / 691:.3f} |")
    row2k = next(line for line in text.splitlines() if line.startswith("| 128 | 2048 |"))
    assert row2k.endswith(f"| {660 / 640:.3f} / — |")
    assert "| 64 |" not in text and "bwd" not in text  # no point timed in both
    assert "3 timing round(s)" in text and "bf16 770 / 760" in text
    assert "clocks.sm 1980 MHz" in text
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    gs.main([str(pa), "--against", str(pb), "--methods", "hopper-fa3"])
    out = capsys.readouterr().out
    assert row8k in out and str(pa) in out and str(pb) in out
    gs.main([str(pa), "--methods", "hopper-fa3"])  # one grid: the per-run summary
    assert f"733 ({733 / 636:.2f}, —)" in capsys.readouterr().out


def test_dispatch_picks_plots_every_pick_of_every_setting(tmp_path, benchmark_script):
    pytest.importorskip("matplotlib")
    dp = benchmark_script("dispatch_picks")
    rows = [dict(D=128, S=2048, causal=c, direction=d, loss={"1": [1.0, 1.046], "1.10": [1.0, 1.0]})
            for c in (False, True) for d in ("fwd", "fwd+bwd")]
    js = tmp_path / "picks.json"
    js.write_text(json.dumps(dict(meta=dict(device="GPU", date="today", closes=["1", "1.10"],
                                            rounds=6), rows=rows)))
    dp.plot(str(js), str(tmp_path / "picks.png"))
    assert (tmp_path / "picks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
