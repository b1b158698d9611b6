"""The conformance kit (attnhub.testing) judges backends correctly.

``naive`` must pass every check.  Deliberately broken in-test backends — each with one
realistic bug — must fail exactly the checks aimed at that bug and pass the others, so a check
that cannot fail (or fails for the wrong reason) is caught here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import attnhub
from attnhub import reference
from attnhub.testing import run_checks

F16, BF16, F32 = torch.float16, torch.bfloat16, torch.float32


# -- a correct in-test backend and its broken variants -----------------------------------
class Correct(attnhub.Backend):
    """The reference semantics, CPU only (the broken variants override one thing)."""

    name = "test-correct"
    capabilities = attnhub.Capabilities(
        devices=("cpu",), dtypes=(F16, BF16, F32), causal=True, gqa=True, window=False,
        softcap=False, varlen=True, backward=True, priority=0)

    def forward(self, q, k, v, problem):
        return reference.forward(q, k, v, problem)

    def backward(self, do, q, k, v, o, lse, problem):
        return reference.backward(do, q, k, v, o, lse, problem)


def _attend(q, k, v, scale, allowed=None, group="interleave"):
    """Plain float32 attention with an explicit (Sq, Sk) mask; empty rows -> O=0, LSE=-inf."""
    G = q.shape[1] // k.shape[1]
    rep = (lambda t: t.repeat_interleave(G, dim=1)) if group == "interleave" else \
        (lambda t: t.repeat(1, G, 1, 1))
    s = torch.matmul(q.float(), rep(k).float().transpose(-1, -2)) * scale
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse.masked_fill(torch.isinf(lse), 0).unsqueeze(-1))
    o = torch.matmul(p.nan_to_num(0.0), rep(v).float())
    return o.to(q.dtype), lse


class CorrectFP8(Correct):
    """FP8 inputs with (B, Hk) descales: the reference on the dequantized inputs."""

    name = "test-fp8"
    capabilities = attnhub.Capabilities(devices=("cpu",), dtypes=(BF16,), causal=True,
                                        gqa=True, fp8=True)


class IgnoresDescales(CorrectFP8):
    name = "test-fp8-no-descale"

    def forward(self, q, k, v, problem):
        import dataclasses
        return super().forward(q, k, v, dataclasses.replace(
            problem, q_descale=None, k_descale=None, v_descale=None))


class IgnoresScale(Correct):
    name = "test-ignores-scale"

    def forward(self, q, k, v, problem):
        import dataclasses
        return super().forward(q, k, v, dataclasses.replace(problem,
                                                            scale=problem.head_dim ** -0.5))


class Log2LSE(Correct):
    name = "test-log2-lse"

    def forward(self, q, k, v, problem):
        o, lse = super().forward(q, k, v, problem)
        return o, lse / math.log(2)


class TopLeftCausal(Correct):
    name = "test-top-left-causal"

    def forward(self, q, k, v, problem):
        if not problem.causal:
            return super().forward(q, k, v, problem)
        sq, sk = q.shape[2], k.shape[2]
        allowed = torch.ones(sq, sk, dtype=torch.bool).tril()  # j <= i: torch's is_causal
        return _attend(q, k, v, problem.scale, allowed)


class TiledGQA(Correct):
    """Repeats K/V heads with .repeat (h -> h % Hk) instead of grouping (h -> h // G)."""

    name = "test-tiled-gqa"

    def forward(self, q, k, v, problem):
        allowed = reference.allowed_mask(q.shape[2], k.shape[2], problem.causal, None,
                                         q.device)
        return _attend(q, k, v, problem.scale, allowed, group="tile")


class UniformEmptyRows(Correct):
    """Rows with no allowed key attend to every key (a softmax over -inf + bias bug)."""

    name = "test-uniform-empty-rows"

    def forward(self, q, k, v, problem):
        o, lse = super().forward(q, k, v, problem)
        empty = torch.isinf(lse)
        if empty.any():
            full_o, full_lse = _attend(q, k, v, problem.scale)
            o = torch.where(empty.unsqueeze(-1), full_o, o)
            lse = torch.where(empty, full_lse, lse)
        return o, lse


class ContiguousOnly(Correct):
    """Reads its inputs' storage as if they were contiguous BHSD tensors."""

    name = "test-contiguous-only"

    def forward(self, q, k, v, problem):
        def raw(t):
            return torch.as_strided(t, t.shape, torch.empty(t.shape).stride(), t.storage_offset())
        return super().forward(raw(q), raw(k), raw(v), problem)


class MutatesInputs(Correct):
    name = "test-mutates-inputs"

    def forward(self, q, k, v, problem):
        import dataclasses
        q.mul_(2.0)  # pre-scaling in place, and not undone
        return super().forward(q, k, v, dataclasses.replace(problem, scale=problem.scale / 2))


class WrongLSELayout(Correct):
    name = "test-wrong-lse-layout"

    def forward(self, q, k, v, problem):
        o, lse = super().forward(q, k, v, problem)
        return o, lse.transpose(1, 2)


class ClaimsWindowAndSoftcap(Correct):
    """Declares window and softcap but ignores both."""

    name = "test-claims-window"
    capabilities = attnhub.Capabilities(
        devices=("cpu",), dtypes=(F16, F32), causal=True, gqa=True, window=True, softcap=True,
        backward=True)

    def forward(self, q, k, v, problem):
        import dataclasses
        return super().forward(q, k, v, dataclasses.replace(problem, window=None, softcap=None))


class WrongBackward(Correct):
    name = "test-wrong-backward"

    def backward(self, do, q, k, v, o, lse, problem):
        dq, dk, dv = super().backward(do, q, k, v, o, lse, problem)
        return dq, dk * 2, dv


class CrashesWhenCausal(Correct):
    name = "test-crashes"

    def forward(self, q, k, v, problem):
        if problem.causal:
            raise RuntimeError("kernel launch failed: invalid configuration")
        return super().forward(q, k, v, problem)


class RefusesEverything(Correct):
    name = "test-refuses-everything"

    def not_supported_reasons(self, problem):
        return ["this machine is not supported"]


class AcceptsUndeclaredViaBadReasons(Correct):
    """not_supported_reasons returns a string instead of a list."""

    name = "test-bad-reasons"

    def not_supported_reasons(self, problem):
        return "no" if problem.causal else []


class Unavailable(Correct):
    name = "test-unavailable"

    def probe(self):
        return "needs an NVIDIA GPU (torch.cuda.is_available() is False)"


# -- the kit on correct backends ---------------------------------------------------------
def test_naive_passes_every_check():
    report = run_checks("naive", device="cpu")
    print(report.render())
    assert report.ok, report.render()
    names = {r.name for r in report.results}
    assert {"causal-113x203", "causal-203x113", "causal-1023x1024", "fully-masked-rows",
            "gqa-8q2kv", "mqa-4q1kv", "head-dim-59", "head-dim-111", "strided-bshd",
            "strided-packed-qkv", "varlen", "backward-varlen", "refuses-fp8"} <= names
    assert any(n.startswith("window-") for n in names)
    assert any(n.startswith("softcap-") for n in names)


def test_correct_in_test_backend_passes_and_lists_refusals():
    report = run_checks(Correct(), quick=True)
    assert report.ok, report.render()
    refusals = {r.name for r in report.results if r.name.startswith("refuses-")}
    assert refusals == {"refuses-window", "refuses-softcap", "refuses-fp8",
                        "refuses-dtype-float64", "refuses-head-dim-257"}


# -- the kit on broken backends: the right checks fail -----------------------------------
def _statuses(backend, select, **kw):
    report = run_checks(backend, select=select, **kw)
    print(report.render())
    return report, {r.name: r for r in report.results}


@pytest.mark.parametrize("backend, must_fail, must_pass, words", [
    pytest.param(IgnoresScale(), ["custom-scale"], ["basic-float32", "causal-113x203"],
                 "O", id="ignores-scale"),
    pytest.param(Log2LSE(), ["basic-float16", "basic-bfloat16", "basic-float32"], [],
                 "LSE", id="log2-lse"),
    pytest.param(TopLeftCausal(), ["causal-113x203", "causal-203x113", "fully-masked-rows"],
                 ["causal-128x128", "basic-float32"], "outside the tolerance", id="top-left"),
    pytest.param(TiledGQA(), ["gqa-8q2kv"], ["mqa-4q1kv", "basic-float16"], "O",
                 id="tiled-gqa"),
    pytest.param(UniformEmptyRows(), ["fully-masked-rows", "causal-203x113"],
                 ["causal-113x203"], "see no key", id="uniform-empty-rows"),
    pytest.param(ContiguousOnly(), ["strided-bshd", "strided-packed-qkv"], ["basic-float32"],
                 "O", id="contiguous-only"),
    pytest.param(MutatesInputs(), ["basic-float32", "custom-scale"], [],
                 "modified its inputs", id="mutates-inputs"),
    pytest.param(WrongLSELayout(), ["basic-float32"], [], "LSE has shape",
                 id="wrong-lse-layout"),
    pytest.param(WrongBackward(), ["backward-causal-113x203", "backward-64x64"],
                 ["causal-113x203"], "dK", id="wrong-backward"),
    pytest.param(CrashesWhenCausal(), ["causal-113x203", "gqa-8q2kv"], ["basic-float32"],
                 "RuntimeError: kernel launch failed", id="crashes"),
])
def test_broken_backend_fails_the_right_checks(backend, must_fail, must_pass, words):
    report, rows = _statuses(backend, must_fail + must_pass)
    assert not report.ok
    for name in must_fail:
        assert rows[name].status == "fail", rows[name].describe()
        assert words in rows[name].message, rows[name].describe()
    for name in must_pass:
        assert rows[name].status == "pass", rows[name].describe()


def test_fp8_checks():
    good = run_checks(CorrectFP8(), select=["fp8-*"])
    assert good.ok and {r.name for r in good.passed} == {"fp8-e4m3fn", "fp8-e5m2"}, good.render()
    bad = run_checks(IgnoresDescales(), select=["fp8-*"])
    assert len(bad.failed) == 2, bad.render()


def test_claimed_but_ignored_features_fail():
    report, rows = _statuses(ClaimsWindowAndSoftcap(), ["window-*", "softcap-*", "basic-*"])
    windows = [r for n, r in rows.items() if n.startswith("window-")]
    assert windows and all(r.status == "fail" for r in windows)
    assert rows["softcap-2.0"].status == "fail"
    assert all(rows[n].status == "pass" for n in ("basic-float16", "basic-float32"))


def test_refusing_everything_is_not_ok():
    report = run_checks(RefusesEverything(), quick=True)
    assert not report.failed and not report.ok
    skipped = [r for r in report.results if r.status == "skip"]
    assert skipped and all("this machine is not supported" in r.message for r in skipped)
    assert "NOTHING VERIFIED" in report.summary()


def test_malformed_not_supported_reasons_fails():
    report, rows = _statuses(AcceptsUndeclaredViaBadReasons(), ["causal-113x203"])
    assert rows["causal-113x203"].status == "fail"
    assert "expected a list of str" in rows["causal-113x203"].message


def test_unavailable_backend_is_skipped_and_not_ok():
    report = run_checks(Unavailable())
    assert [r.name for r in report.results] == ["metadata", "probe"]
    assert report.results[1].status == "skip" and "NVIDIA GPU" in report.results[1].message
    assert not report.ok


def test_undeclared_device_is_not_ok():
    report = run_checks(Correct(), device="meta")
    assert report.results[-1].name == "device" and "not declared" in report.results[-1].message
    assert not report.ok


def test_device_spelling_does_not_matter():
    """'cpu:0' (like 'cuda' vs 'cuda:0') names the device its tensors report differently."""
    report = run_checks(Correct(), device="cpu:0", select=["basic-float32", "causal-*"])
    assert report.ok, report.render()


def test_unknown_name_raises_with_known_names():
    with pytest.raises(ValueError, match="naive"):
        run_checks("no-such-backend")


# -- the report --------------------------------------------------------------------------
def test_report_json_and_table():
    report = run_checks(TopLeftCausal(), select=["causal-*", "basic-float32"], quick=True)
    data = json.loads(report.to_json())
    assert data["backend"] == "test-top-left-causal" and data["ok"] is False
    row = next(r for r in data["results"] if r["name"] == "causal-113x203")
    assert row["status"] == "fail"
    assert {e["what"] for e in row["errors"]} == {"O", "LSE"}
    assert all(e["bound"] > 0 for e in row["errors"])
    table = report.render(width=160)
    assert "causal-113x203" in table and "fail" in table and "test-top-left-causal" in table


# -- the pytest plugin -------------------------------------------------------------------
def test_pytest_plugin_generates_one_test_per_check(tmp_path):
    (tmp_path / "test_kit.py").write_text(textwrap.dedent("""
        import math
        import attnhub, torch
        from attnhub import reference
        from attnhub.testing import conformance_tests

        class Good(attnhub.Backend):
            name = "good"
            capabilities = attnhub.Capabilities(devices=("cpu",), dtypes=(torch.float32,),
                                                causal=True, gqa=True)
            def forward(self, q, k, v, problem):
                return reference.forward(q, k, v, problem)

        class Bad(Good):
            name = "bad"
            def forward(self, q, k, v, problem):
                o, lse = super().forward(q, k, v, problem)
                return o, lse / math.log(2)

        test_good = conformance_tests(Good, quick=True)
        test_bad = conformance_tests(Bad(), quick=True)
        test_named = conformance_tests()

        def test_fixture(attnhub_backend):
            assert attnhub_backend.name == "naive"
    """))
    # the child imports the same attnhub as this process (not another installed copy)
    root = str(Path(attnhub.__file__).resolve().parents[1])
    env = dict(os.environ, ATTNHUB_DISABLE="triton-fa2,hopper-fa3,opencl",  # slow probes
               PYTHONPATH=os.pathsep.join([root, os.path.join(root, "backends"),
                                           os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         "--attnhub-backend", "naive", "--attnhub-quick", str(tmp_path / "test_kit.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    text = out.stdout + out.stderr
    print(text[-3000:])
    assert out.returncode == 1, text[-3000:]  # test_bad fails
    assert "PASSED test_kit.py::test_good[causal-113x203]" in text
    assert "FAILED test_kit.py::test_bad[basic-float32]" in text
    assert "PASSED test_kit.py::test_named[gqa-8q2kv]" in text  # naive, from the option
    assert "PASSED test_kit.py::test_fixture" in text
    assert "FAILED test_kit.py::test_good" not in text
