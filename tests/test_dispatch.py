"""Auto-dispatch: fastest *correct* backend, self-checks, fallback, persistence."""

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import attnhub
from attnhub import dispatch
from attnhub._cache import DispatchCache

from ._oracle import oracle
from .plugin_fixtures import plugin_site, test_plugins  # noqa: F401  (fixtures)


def rand(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def test_wrong_values_are_excluded_with_reason(test_plugins):
    q, k, v = rand(1, 2, 40, 16), rand(1, 2, 40, 16, seed=1), rand(1, 2, 40, 16, seed=2)
    with attnhub.use_backend("wrong-values", "wrong-shape", "naive"):
        with pytest.warns(RuntimeWarning, match="wrong-values"):
            o = attnhub.attention(q, k, v)
        exp = attnhub.explain(q, k, v)
    want, _ = oracle(q, k, v)
    assert (o.double() - want).abs().max() < 1e-5
    assert exp.chosen == "naive"
    rows = {r.name: r for r in exp.rows}
    assert rows["wrong-values"].verdict.startswith("failed: wrong values")
    assert "breaks the contract" in rows["wrong-shape"].verdict
    print(exp)
    assert "wrong-values" in str(exp) and "chosen" in str(exp)


@pytest.mark.parametrize("scale", [0.0, -0.5])
def test_a_verdict_for_positive_scales_does_not_cover_scales_at_most_zero(test_plugins, scale):
    q, k, v = rand(1, 2, 24, 16), rand(1, 2, 24, 16, seed=1), rand(1, 2, 24, 16, seed=2)
    with attnhub.use_backend("nan-scale-le-0", "naive"):
        attnhub.attention(q, k, v, causal=True)  # trusted for the positive default scale
        assert attnhub.explain(q, k, v, causal=True).chosen == "nan-scale-le-0"
        with pytest.warns(RuntimeWarning, match="nan-scale-le-0"):
            o = attnhub.attention(q, k, v, causal=True, scale=scale)
        assert attnhub.explain(q, k, v, causal=True, scale=scale).chosen == "naive"
    want, _ = oracle(q, k, v, causal=True, scale=scale)
    assert not torch.isnan(o).any() and (o.double() - want).abs().max() < 1e-5


def test_fastest_correct_backend_wins(test_plugins):
    q, k, v = rand(1, 4, 64, 32), rand(1, 4, 64, 32, seed=1), rand(1, 4, 64, 32, seed=2)
    with attnhub.use_backend("slow", "quick"):  # a restriction keeps preference order...
        assert attnhub.explain(q, k, v).chosen == "slow"
    exp = attnhub.explain(q, k, v)  # ...auto-dispatch measures
    print(exp)
    times = {r.name: r.seconds for r in exp.rows if r.seconds is not None}
    assert "slow" in times and times["slow"] >= 0.02
    assert exp.chosen != "slow" and times[exp.chosen] < times["slow"]


def test_runtime_failure_falls_back_and_is_recorded(test_plugins, monkeypatch):
    monkeypatch.setenv("ATTNHUB_AUTOTUNE", "0")  # declared priority: raises-big first
    q, k, v = rand(1, 2, 128, 16), rand(1, 2, 128, 16, seed=1), rand(1, 2, 128, 16, seed=2)
    assert attnhub.explain(q, k, v).order[0] == "raises-big"
    with pytest.warns(RuntimeWarning, match="raises-big"):
        o = attnhub.attention(q, k, v)
    want, _ = oracle(q, k, v)
    assert (o.double() - want).abs().max() < 1e-5
    exp = attnhub.explain(q, k, v)
    assert exp.chosen != "raises-big"
    assert "out of scratch memory" in {r.name: r for r in exp.rows}["raises-big"].verdict


def test_out_of_memory_falls_back_for_the_call_only(test_plugins, monkeypatch):
    """A CUDA OOM depends on what else is allocated: the call falls back, but unlike a
    failure nothing is recorded, so the kernel is used again once memory allows."""
    from attnhub import registry

    monkeypatch.setenv("ATTNHUB_AUTOTUNE", "0")  # declared priority: raises-big first
    backend = registry.get_backend("raises-big")
    q, k, v = rand(1, 2, 64, 16), rand(1, 2, 64, 16, seed=1), rand(1, 2, 64, 16, seed=2)
    real = type(backend).forward

    def oom(self, *args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(type(backend), "forward", oom)
    with pytest.warns(RuntimeWarning, match="ran out of memory"):
        o = attnhub.attention(q, k, v)
    want, _ = oracle(q, k, v)
    assert (o.double() - want).abs().max() < 1e-5
    rows = {r.name: r for r in attnhub.explain(q, k, v).rows}
    assert not rows["raises-big"].verdict.startswith("failed")
    with attnhub.use_backend("raises-big"), pytest.raises(torch.OutOfMemoryError):
        attnhub.attention(q, k, v)  # nowhere to fall back to: torch's own error
    monkeypatch.setattr(type(backend), "forward", real)
    assert attnhub.explain(q, k, v).chosen == "raises-big"


def test_hanging_self_check_is_quarantined(test_plugins):
    q, k, v = (rand(1, 2, 16, 8, dtype=torch.float64, seed=s) for s in range(3))
    with pytest.warns(RuntimeWarning, match="hangs-in-check"):
        o = attnhub.attention(q, k, v)
    want, _ = oracle(q, k, v)
    assert (o - want).abs().max() < 1e-9
    info = {i.name: i for i in attnhub.list_backends()}["hangs-in-check"]
    assert info.status == "broken" and "did not finish" in info.reason


def test_core_backward_for_forward_only_backend(test_plugins):
    from attnhub_test_plugins.backends import ForwardOnly

    q, k, v = (rand(1, 4, 20, 16, dtype=torch.float64, seed=s).requires_grad_()
               for s in range(3))
    before = ForwardOnly.calls
    o = attnhub.attention(q[:, :, :, :], k[:, :2], v[:, :2], causal=True, backend="forward-only")
    got = torch.autograd.grad(o.sum(), (q, k, v))
    want = torch.autograd.grad(oracle(q, k[:, :2], v[:, :2], causal=True)[0].sum(), (q, k, v))
    assert ForwardOnly.calls == before + 1
    for a, b in zip(got, want):
        assert (a - b).abs().max() < 1e-6  # LSE is float32 by contract


def test_pinned_contract_violation_names_the_backend(test_plugins):
    q, k, v = (rand(1, 2, 16, 8, seed=s) for s in range(3))
    with pytest.raises(attnhub.ContractViolation, match="'wrong-shape' broke the contract"):
        attnhub.attention(q, k, v, backend="wrong-shape")


def test_pinned_unsupported_lists_reasons(test_plugins):
    q, k, v = (rand(1, 2, 16, 8, dtype=torch.float64, seed=s) for s in range(3))
    with pytest.raises(NotImplementedError, match=r"(?s)'quick' does not support.*dtype float64"):
        attnhub.attention(q, k, v, backend="quick")


def test_env_pin_and_unavailable_pin(test_plugins, monkeypatch):
    q, k, v = (rand(1, 2, 16, 8, seed=s) for s in range(3))
    monkeypatch.setenv("ATTNHUB_BACKEND", "quick")
    assert attnhub.explain(q, k, v).chosen == "quick"
    with pytest.raises(RuntimeError, match="unavailable: needs a Frobnicator"):
        attnhub.attention(q, k, v, backend="unavailable")


def test_no_backend_error_lists_every_backend(fresh_registry):
    q, k, v = (torch.randn(1, 2, 4, 8).to("meta") for _ in range(3))
    with attnhub.use_backend("opencl"):
        with pytest.raises(NotImplementedError) as info:
            attnhub.attention(q, k, v)
    print(info.value)
    assert "opencl" in str(info.value)


def test_fp8_inputs_never_reach_non_fp8_backends(fresh_registry):
    if not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("torch without float8")
    q, k, v = (torch.randn(1, 2, 8, 16).to(torch.float8_e4m3fn) for _ in range(3))
    exp = attnhub.explain(q, k, v)
    for row in exp.rows:
        if row.status == "available" and row.name in ("naive", "opencl", "torch-sdpa"):
            assert not row.supported and any("fp8" in r for r in row.reasons)


# -- persistence ----------------------------------------------------------------------------
SCRIPT = textwrap.dedent("""
    import json, torch, attnhub
    from attnhub import dispatch
    q, k, v = (torch.randn(1, 4, 96, 64) for _ in range(3))
    exp = attnhub.explain(q, k, v, causal=True)
    attnhub.attention(q, k, v, causal=True)
    print(json.dumps({"chosen": exp.chosen, **dispatch.STATS}))
""")


def test_second_process_does_not_remeasure(tmp_path):
    env = dict(os.environ, ATTNHUB_CACHE_DIR=str(tmp_path))
    runs = [json.loads(subprocess.run([sys.executable, "-c", SCRIPT], env=env, check=True,
                                      capture_output=True, text=True).stdout.splitlines()[-1])
            for _ in range(2)]
    print(runs)
    assert runs[0]["self_checks"] >= 1
    assert runs[1]["self_checks"] == 0 and runs[1]["timings"] == 0
    assert runs[0]["chosen"] == runs[1]["chosen"]


def test_corrupt_and_foreign_cache_files_are_ignored_and_rewritten(tmp_path):
    path = tmp_path / "dispatch.json"
    path.write_text("{not json")
    cache = DispatchCache(path)
    assert "corrupt" in cache.ignored_reason
    cache.put("verdicts", "x", {"ok": True, "reason": ""})
    assert json.loads(path.read_text())["verdicts"]["x"]["ok"] is True
    doc = json.loads(path.read_text())
    doc["header"]["attnhub"] = "0.0.0-other"
    path.write_text(json.dumps(doc))
    cache = DispatchCache(path)
    assert "another" in cache.ignored_reason and cache.get("verdicts", "x") is None


WRITER = textwrap.dedent("""
    import sys
    from attnhub._cache import DispatchCache
    c = DispatchCache(sys.argv[1])
    for i in range(25):
        c.put("timings", f"bucket-{sys.argv[2]}-{i}", {"b@1": i * 1e-3})
""")


def test_concurrent_writers_never_corrupt_or_lose_entries(tmp_path):
    path = tmp_path / "dispatch.json"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)])
             for n in range(4)]
    assert all(p.wait() == 0 for p in procs)
    doc = json.loads(path.read_text())
    assert len(doc["timings"]) == 100
    assert not list(tmp_path.glob(".dispatch-*"))


def test_autotune_off_measures_nothing(fresh_registry, monkeypatch):
    monkeypatch.setenv("ATTNHUB_AUTOTUNE", "0")
    before = dict(dispatch.STATS)
    q, k, v = (torch.randn(1, 2, 33, 16) for _ in range(3))
    attnhub.attention(q, k, v)
    assert dispatch.STATS["timings"] == before["timings"]


def test_timing_counts_the_backward_when_gradients_are_needed():
    """A backend with a fast forward and a slow backward must not win a training problem."""
    import time

    from attnhub import reference
    from attnhub._validate import make_problem

    class SlowBackward(attnhub.Backend):
        name = "slow-backward"
        capabilities = attnhub.Capabilities(devices=("cpu",), dtypes=(torch.float32,),
                                            backward=True)

        def forward(self, q, k, v, problem):
            return reference.forward(q, k, v, problem)

        def backward(self, do, q, k, v, o, lse, problem):
            time.sleep(0.03)
            return reference.backward(do, q, k, v, o, lse, problem)

    q, k, v = (rand(1, 2, 16, 8, seed=s).requires_grad_() for s in range(3))
    backend = SlowBackward()
    with_grad, *_ = make_problem(q, k, v)
    without_grad, *_ = make_problem(q.detach(), k.detach(), v.detach())
    assert with_grad.requires_grad and not without_grad.requires_grad
    assert dispatch._time_backend(backend, q, k, v, with_grad) >= 0.03
    assert dispatch._time_backend(backend, q, k, v, without_grad) < 0.03


def test_cache_keys_follow_the_backends_cache_tag(monkeypatch):
    """A verdict or timing earned by one configuration of a backend (its cache_tag: which
    kernels an environment switch selects) is never looked up for another."""
    import attnhub

    class Tagged(attnhub.Backend):
        name, version = "tagged", "1.0"
        capabilities = attnhub.Capabilities()
        tag = "fwd-a"

        def cache_tag(self):
            return self.tag

        def forward(self, q, k, v, problem):  # never called here
            raise AssertionError

    b = Tagged()
    first = dispatch._bk(b)
    b.tag = "fwd-b"
    assert first == "tagged@1.0#fwd-a" and dispatch._bk(b) == "tagged@1.0#fwd-b"
    b.tag = ""
    assert dispatch._bk(b) == "tagged@1.0"  # untagged keys are what they always were

    def broken():
        raise RuntimeError("no")
    b.cache_tag = broken
    assert dispatch._bk(b) == "tagged@1.0#cache_tag-raised-RuntimeError"


def test_hopper_fa3_cache_tag_follows_its_switches(monkeypatch):
    pytest.importorskip("attnhub_hopper")
    from attnhub_hopper import HopperFA3Backend, cuda_fwd

    be = HopperFA3Backend()
    monkeypatch.setattr(cuda_fwd, "installed_reason", lambda: None)
    monkeypatch.delenv("ATTNHUB_HOPPER_CUDA_BWD", raising=False)
    monkeypatch.delenv("ATTNHUB_HOPPER_BWD_TILE", raising=False)
    if importlib.util.find_spec("attnhub_triton") is not None:  # e.g. AUTOTUNE=0 on a GPU run
        from attnhub_triton import ops
        for name in ops._KERNEL_SWITCHES:
            monkeypatch.delenv(name, raising=False)
    assert be.cache_tag() == "fwd-cuda+bwd-cuda"
    monkeypatch.setenv("ATTNHUB_HOPPER_BWD_TILE", "s2-ahead")  # another backward variant
    assert be.cache_tag() == "fwd-cuda+bwd-cuda[s2-ahead]"
    monkeypatch.setenv("ATTNHUB_HOPPER_CUDA_BWD", "0")
    assert be.cache_tag() == "fwd-cuda+bwd-triton"
    monkeypatch.setattr(cuda_fwd, "installed_reason", lambda: "cupy is not installed")
    assert be.cache_tag() == "fwd-triton+bwd-triton"
    if importlib.util.find_spec("attnhub_triton") is not None:  # its backward's switches
        monkeypatch.setenv("ATTNHUB_TRITON_LEAN_BWD", "1")
        assert be.cache_tag() == "fwd-triton+bwd-triton[lean_bwd=1]"


def test_triton_fa2_cache_tag_follows_its_switches(monkeypatch):
    pytest.importorskip("attnhub_triton")
    from attnhub_triton import TritonFA2Backend, ops

    be = TritonFA2Backend()
    for name in ops._KERNEL_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ops, "_GLUON", {"mod": None, "why": "no Gluon"})  # the plain forward
    assert be.cache_tag() == ""
    monkeypatch.setenv("ATTNHUB_TRITON_BWD", "atomic")
    monkeypatch.setenv("ATTNHUB_TRITON_LEAN_BWD", "1")
    assert be.cache_tag() == "bwd=atomic,lean_bwd=1"
    assert dispatch._bk(be) == f"triton-fa2@{be.version}#bwd=atomic,lean_bwd=1"
    monkeypatch.setattr(ops, "_GLUON", {"mod": ops, "why": ""})  # a Gluon-capable Triton
    assert be.cache_tag() == f"bwd=atomic,lean_bwd=1,{ops.forward_tag()}"
    assert ops.forward_tag().startswith(f"gluon-fwd={ops.GLUON_VARIANT}")


def test_no_backend_error_reports_a_tagged_backends_failed_self_check(monkeypatch):
    """The error's self-check lookup uses the same key as the check (with cache_tag)."""
    import types

    import attnhub
    from attnhub import registry
    from attnhub.contract import Problem

    class Tagged(attnhub.Backend):
        name, version = "tagged", "1.0"
        capabilities = attnhub.Capabilities()

        def cache_tag(self):
            return "cfg-b"

        def forward(self, q, k, v, problem):
            raise AssertionError

    b = Tagged()
    p = Problem(1, 2, 2, 8, 8, 16, 16, torch.float32, torch.device("cpu"), scale=0.25)
    info = types.SimpleNamespace(name="tagged", version="1.0", status="available", reason="")
    monkeypatch.setattr(registry, "list_backends", lambda: [info])
    monkeypatch.setattr(registry, "get_backend", lambda name: b)
    monkeypatch.setitem(dispatch._verdicts, f"{dispatch._bk(b)}|{dispatch.class_key(p)}",
                        (False, "wrong LSE"))
    assert "tagged: failed its self-check: wrong LSE" in str(dispatch._no_backend_error(p))


def test_candidates_are_timed_in_interleaved_rounds(monkeypatch):
    """With ATTNHUB_DISPATCH_ROUNDS > 1, a slow stretch of the host (here: the first six
    steps, whoever runs them) does not decide the ranking.  Timed one after another (the
    default), the faster backend, timed first, takes the whole stretch and loses; in
    interleaved rounds both share it and the median drops it."""
    import time

    from attnhub import reference
    from attnhub._validate import make_problem

    calls = []

    def sleeper(name, seconds):
        class Sleeper(attnhub.Backend):
            capabilities = attnhub.Capabilities(devices=("cpu",), dtypes=(torch.float32,))

            def forward(self, q, k, v, problem):
                calls.append(name)
                time.sleep(seconds + (0.012 if len(calls) <= 6 else 0.0))
                return reference.forward(q, k, v, problem)
        Sleeper.name = name
        return Sleeper()

    fast, slow = sleeper("fast", 0.004), sleeper("slow", 0.007)
    q, k, v = (rand(1, 2, 16, 8, seed=s) for s in range(3))
    problem, *_ = make_problem(q, k, v)
    monkeypatch.delenv("ATTNHUB_DISPATCH_ROUNDS", raising=False)
    times = dispatch._time_candidates([fast, slow], q, k, v, problem)
    assert calls[:6] == ["fast"] * 6 and set(calls[6:]) == {"slow"}  # one after another
    assert times["fast"] > times["slow"], times  # the stretch decided it
    calls.clear()
    monkeypatch.setenv("ATTNHUB_DISPATCH_ROUNDS", "5")
    times = dispatch._time_candidates([fast, slow], q, k, v, problem)
    assert calls[:4] == ["fast", "fast", "slow", "slow"]  # warm-up + first step each
    assert calls[4:6] == ["fast", "slow"] and calls[6:8] == ["slow", "fast"]  # rotated rounds
    assert times["fast"] < times["slow"], times


def test_one_slow_step_does_not_rule_a_candidate_out():
    """The one-after-another timing takes a candidate's first step as its time when that step
    is over 3x the fastest so far; a single hiccup (here: the first step after the warm-up)
    gets a second try, as in the interleaved rounds, and a steadily slow one keeps its time."""
    import time

    from attnhub import reference
    from attnhub._validate import make_problem

    class Stepper(attnhub.Backend):
        name = "stepper"
        capabilities = attnhub.Capabilities(devices=("cpu",), dtypes=(torch.float32,))

        def __init__(self, sleeps):
            self.sleeps, self.calls = sleeps, 0

        def forward(self, q, k, v, problem):
            self.calls += 1
            time.sleep(self.sleeps(self.calls))
            return reference.forward(q, k, v, problem)

    q, k, v = (rand(1, 2, 16, 8, seed=s) for s in range(3))
    problem, *_ = make_problem(q, k, v)
    hiccup = Stepper(lambda n: 0.1 if n == 2 else 0.002)  # call 1 is the warm-up
    assert dispatch._time_backend(hiccup, q, k, v, problem, best=0.01) < 0.03
    assert hiccup.calls > 3  # timed on, not judged by its slow step
    slow = Stepper(lambda n: 0.05)
    assert dispatch._time_backend(slow, q, k, v, problem, best=0.01) >= 0.05
    assert slow.calls == 3  # warm-up and two slow steps: slower beyond doubt


@pytest.mark.parametrize("value", ["0", "-2", "three", "1.5"])
def test_a_bad_dispatch_rounds_value_is_refused_with_the_variable_named(monkeypatch, value):
    monkeypatch.setenv("ATTNHUB_DISPATCH_ROUNDS", value)
    with pytest.raises(ValueError, match="ATTNHUB_DISPATCH_ROUNDS.*whole number"):
        dispatch.dispatch_rounds()


def test_a_close_call_is_timed_again_in_interleaved_rounds(monkeypatch):
    """Timed one after another (the default), two candidates that read within
    ATTNHUB_DISPATCH_CLOSE (1.10) of each other are timed again together in rotating rounds:
    here the faster one runs its first-pass steps during a slow stretch and reads 5 % slower
    (11.6 against 11 ms, where it takes 8),
    and the rounds put it back in front.  With the variable at 1 the first pass decides."""
    import time

    from attnhub import reference
    from attnhub._validate import make_problem

    calls = []

    def sleeper(name, seconds, slowed):
        class Sleeper(attnhub.Backend):
            capabilities = attnhub.Capabilities(devices=("cpu",), dtypes=(torch.float32,))

            def forward(self, q, k, v, problem):
                calls.append(name)
                time.sleep(slowed if slowed and len(calls) <= 6 else seconds)
                return reference.forward(q, k, v, problem)
        Sleeper.name = name
        return Sleeper()

    q, k, v = (rand(1, 2, 16, 8, seed=s) for s in range(3))
    problem, *_ = make_problem(q, k, v)
    monkeypatch.delenv("ATTNHUB_DISPATCH_ROUNDS", raising=False)
    monkeypatch.setenv("ATTNHUB_DISPATCH_CLOSE", "1")
    fast, slow = sleeper("fast", 0.008, 0.0116), sleeper("slow", 0.011, None)
    times = dispatch._time_candidates([fast, slow], q, k, v, problem)
    assert calls[:6] == ["fast"] * 6 and set(calls[6:]) == {"slow"}
    assert times["fast"] > times["slow"], times  # the slow stretch decided it

    calls.clear()
    monkeypatch.delenv("ATTNHUB_DISPATCH_CLOSE")
    before = dispatch.STATS["close_calls"]
    fast, slow = sleeper("fast", 0.008, 0.0116), sleeper("slow", 0.011, None)
    times = dispatch._time_candidates([fast, slow], q, k, v, problem)
    assert dispatch.STATS["close_calls"] == before + 1
    n = calls.index("slow")
    n = n + calls[n:].index("fast")  # the close call starts: a warm-up step each, then rounds
    assert calls[n:n + 6] == ["fast", "slow", "fast", "slow", "slow", "fast"], calls[n:]
    assert times["fast"] < times["slow"], times

    # far apart (over 10 %): no close call, the first pass stands
    calls.clear()
    far = sleeper("far", 0.030, None)
    fast = sleeper("fast", 0.008, None)
    times = dispatch._time_candidates([fast, far], q, k, v, problem)
    assert dispatch.STATS["close_calls"] == before + 1 and times["fast"] < times["far"]


@pytest.mark.parametrize("value", ["0.9", "close", "inf", "nan"])
def test_a_bad_dispatch_close_value_is_refused_with_the_variable_named(monkeypatch, value):
    monkeypatch.setenv("ATTNHUB_DISPATCH_CLOSE", value)
    with pytest.raises(ValueError, match="ATTNHUB_DISPATCH_CLOSE.*factor >= 1"):
        dispatch.dispatch_close()


def test_a_close_call_that_runs_out_of_memory_keeps_the_first_timing(monkeypatch):
    """In a close call every close candidate's step is alive at once; one that runs out of
    memory (or raises) there leaves the rounds with its first timing, and nothing is recorded
    against it (no out-of-memory count, no warning)."""
    from attnhub import reference
    from attnhub._validate import make_problem

    class Fragile(attnhub.Backend):
        name = "fragile"
        capabilities = attnhub.Capabilities(devices=("cpu",), dtypes=(torch.float32,))
        calls = 0

        def forward(self, q, k, v, problem):
            Fragile.calls += 1
            if Fragile.calls > 6:  # warm-up + its first timing's steps, then full
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return reference.forward(q, k, v, problem)

    class Steady(attnhub.Backend):
        name = "steady"
        capabilities = attnhub.Capabilities(devices=("cpu",), dtypes=(torch.float32,))

        def forward(self, q, k, v, problem):
            return reference.forward(q, k, v, problem)

    q, k, v = (rand(1, 2, 16, 8, seed=s) for s in range(3))
    problem, *_ = make_problem(q, k, v)
    monkeypatch.delenv("ATTNHUB_DISPATCH_ROUNDS", raising=False)
    monkeypatch.setenv("ATTNHUB_DISPATCH_CLOSE", "1000")  # every candidate is a close call
    before = dict(dispatch.STATS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        times = dispatch._time_candidates([Fragile(), Steady()], q, k, v, problem)
    assert Fragile.calls > 6  # it was in the close call
    assert math.isfinite(times["fragile"]) and math.isfinite(times["steady"]), times
    assert dispatch.STATS["close_calls"] == before["close_calls"] + 1
    assert dispatch.STATS["out_of_memory"] == before["out_of_memory"]


def test_explain_names_the_timed_step_and_a_close_call(monkeypatch):
    """The time column says what was timed (forward, or forward + backward for a problem that
    needs gradients), and two timings within ATTNHUB_DISPATCH_CLOSE of each other get a line
    saying that dispatch times such a close call again in interleaved rounds."""
    from attnhub.contract import Problem
    from attnhub.dispatch import BackendRow, Explanation

    p = Problem(1, 2, 2, 8, 8, 16, 16, torch.float32, torch.device("cpu"), scale=0.25)
    rows = [BackendRow("a", "available", True, [], "passed", 1.00e-3),
            BackendRow("b", "available", True, [], "passed", 1.05e-3)]
    monkeypatch.delenv("ATTNHUB_DISPATCH_CLOSE", raising=False)
    monkeypatch.delenv("ATTNHUB_DISPATCH_ROUNDS", raising=False)
    text = str(Explanation(p, "a", ["a", "b"], rows, "bucket"))
    assert "time (forward)" in text and "a close call" in text and "5 interleaved" in text
    monkeypatch.setenv("ATTNHUB_DISPATCH_CLOSE", "1.02")  # 5 % apart: not close any more
    assert "close call" not in str(Explanation(p, "a", ["a", "b"], rows, "bucket"))
    import dataclasses
    trained = dataclasses.replace(p, requires_grad=True)
    assert "time (forward + backward)" in str(Explanation(trained, "a", ["a"], rows[:1], "b"))
