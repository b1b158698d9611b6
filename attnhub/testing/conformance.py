"""The conformance kit: run one backend through the attnhub contract.

    from attnhub.testing import run_checks
    report = run_checks("torch-sdpa", device="cpu", quick=True)
    print(report.render())          # a table: check, status, worst error vs bound, message
    raise SystemExit(0 if report.ok else 1)

The checks are generated from the backend's declared :class:`~attnhub.Capabilities`:

* ``basic-<dtype>``: O and LSE shapes, dtypes and values for every declared dtype, inputs left
  unchanged; ``custom-scale``: a scale other than 1/sqrt(D).
* ``causal-<Sq>x<Sk>``: bottom-right causal with Sq != Sk; ``fully-masked-rows``: rows that
  see no key must give O = 0 and LSE = -inf exactly.
* ``gqa-*`` / ``mqa-*``, ``head-dim-<D>`` (awkward sizes 40, 59, 72, 96, 111 among those
  declared), ``head-dim-v-*``, ``strided-bshd`` and ``strided-packed-qkv`` (views, never
  contiguous copies).
* every declared feature: ``window-*``, ``softcap-*``, ``varlen-*``, ``backward-*``,
  ``fp8-*``, each against :mod:`attnhub.reference` with the tolerance rule of
  :mod:`attnhub.testing.tolerance`;
* ``refuses-<feature>``: a problem using something *not* declared gets a non-empty list of
  reasons (``Capabilities.reasons`` + ``not_supported_reasons``).

A check the backend refuses at run time (``not_supported_reasons``) is skipped with the
reasons.  The report is ``ok`` when no check failed and at least one passed.  The kit calls
``backend.forward``/``backward`` directly, so it tests the backend, not the core.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import zlib
from typing import Any, Callable, Optional, Sequence, Union

import torch

from .. import reference
from ..contract import FP8_DTYPES, Backend, Capabilities, Problem, result_violations
from .tolerance import Comparison, compare_backward, compare_forward, random_inputs

__all__ = ["CheckResult", "ConformanceReport", "Check", "run_checks", "plan_checks",
           "load_backend"]

STATUSES = ("pass", "fail", "skip")
_AWKWARD_HEAD_DIMS = (40, 59, 72, 96, 111)
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# -- results -------------------------------------------------------------------------------
@dataclasses.dataclass
class CheckResult:
    """One row of the report.  ``errors`` holds every compared output (O, LSE, dQ, ...)."""

    name: str
    status: str  # "pass" | "fail" | "skip"
    message: str = ""
    problem: str = ""
    errors: list[Comparison] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    kind: str = "numeric"  # "numeric" (ran the backend), "refusal" or "info"

    @property
    def worst(self) -> Optional[Comparison]:
        """The comparison closest to (or furthest beyond) its bound."""
        def ratio(c: Comparison) -> float:
            if math.isnan(c.max_err):
                return math.inf
            return c.max_err / c.bound if c.bound > 0 else math.inf
        return max(self.errors, key=ratio, default=None)

    def describe(self) -> str:
        lines = [f"{self.name}: {self.status.upper()}" + (f" - {self.message}" if self.message
                                                          else "")]
        if self.problem:
            lines.append(f"  problem: {self.problem}")
        lines += [f"  {c}" for c in self.errors]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "kind": self.kind,
            "message": self.message,
            "problem": self.problem,
            "seconds": round(self.seconds, 4),
            "errors": [{"what": c.what, "max_err": _num(c.max_err), "mean_err": _num(c.mean_err),
                        "baseline_max_err": _num(c.baseline_max_err), "bound": _num(c.bound),
                        "ok": c.ok} for c in self.errors],
        }


def _num(x: float):
    return x if math.isfinite(x) else str(x)


@dataclasses.dataclass
class ConformanceReport:
    """All rows for one backend on one device."""

    backend: str
    device: str
    quick: bool
    results: list[CheckResult]
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def _with(self, status: str) -> list[CheckResult]:
        return [r for r in self.results if r.status == status]

    @property
    def passed(self) -> list[CheckResult]:
        return self._with("pass")

    @property
    def failed(self) -> list[CheckResult]:
        return self._with("fail")

    @property
    def skipped(self) -> list[CheckResult]:
        return self._with("skip")

    @property
    def ok(self) -> bool:
        """No check failed and at least one check that ran the backend passed (a backend
        that is unavailable, or refuses everything, is not ok: nothing was verified)."""
        return not self.failed and any(r.kind == "numeric" for r in self.passed)

    def summary(self) -> str:
        verdict = "OK" if self.ok else ("FAILED" if self.failed else "NOTHING VERIFIED")
        return (f"attnhub check {self.backend} on {self.device}"
                f"{' (quick)' if self.quick else ''}: {verdict} - {len(self.passed)} passed, "
                f"{len(self.failed)} failed, {len(self.skipped)} skipped")

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "device": self.device, "quick": self.quick,
                "ok": self.ok, "passed": len(self.passed), "failed": len(self.failed),
                "skipped": len(self.skipped), "info": self.info,
                "results": [r.to_dict() for r in self.results]}

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def render(self, width: int = 140, color: bool = False) -> str:
        """The report as a rich table (plain text unless ``color``)."""
        import io

        from rich.console import Console
        from rich.table import Table

        table = Table(title=self.summary(), title_justify="left", expand=False)
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("worst err", justify="right", no_wrap=True)
        table.add_column("bound", justify="right", no_wrap=True)
        table.add_column("message / problem", overflow="fold")
        style = {"pass": "green", "fail": "bold red", "skip": "yellow"}
        for r in self.results:
            w = r.worst
            err = f"{w.what} {w.max_err:.2e}" if w else ""
            bound = f"{w.bound:.2e}" if w else ""
            text = r.message if r.message else r.problem
            if r.message and r.problem and r.status == "fail":
                text = f"{r.message} [{r.problem}]"
            table.add_row(r.name, f"[{style[r.status]}]{r.status}[/]", err, bound, text)
        console = Console(file=io.StringIO(), width=width, record=True,
                          color_system="standard" if color else None, force_terminal=color)
        console.print(table)
        return console.export_text(styles=color)


# -- problems ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Spec:
    """One test problem, independent of the device."""

    batch: int = 2
    heads_q: int = 2
    heads_kv: int = 2
    seqlen_q: int = 67
    seqlen_k: int = 91
    head_dim: int = 64
    head_dim_v: Optional[int] = None
    dtype: torch.dtype = torch.float16
    causal: bool = False
    scale: Optional[float] = None
    window: Optional[tuple[int, int]] = None
    softcap: Optional[float] = None
    seqlens: Optional[tuple[tuple[int, ...], tuple[int, ...]]] = None  # varlen (q, k) lengths
    layout: str = "bhsd"  # "bhsd", "bshd" (transposed views) or "packed" (one QKV buffer)
    backward: bool = False

    def problem(self, device: torch.device) -> Problem:
        dv = self.head_dim if self.head_dim_v is None else self.head_dim_v
        scale = self.head_dim ** -0.5 if self.scale is None else self.scale
        kw: dict[str, Any] = {}
        batch, sq, sk = self.batch, self.seqlen_q, self.seqlen_k
        if self.seqlens is not None:
            lq, lk = self.seqlens
            cq = torch.tensor([0, *_cumsum(lq)], dtype=torch.int32, device=device)
            ck = torch.tensor([0, *_cumsum(lk)], dtype=torch.int32, device=device)
            batch, sq, sk = len(lq), sum(lq), sum(lk)
            kw = dict(cu_seqlens_q=cq, cu_seqlens_k=ck, max_seqlen_q=max(lq),
                      max_seqlen_k=max(lk))
        return Problem(batch=batch, heads_q=self.heads_q, heads_kv=self.heads_kv,
                       seqlen_q=sq, seqlen_k=sk, head_dim=self.head_dim, head_dim_v=dv,
                       dtype=self.dtype, device=device, causal=self.causal, scale=scale,
                       window=self.window, softcap=self.softcap,
                       requires_grad=self.backward, **kw)


def _cumsum(xs: Sequence[int]) -> list[int]:
    out, total = [], 0
    for x in xs:
        total += x
        out.append(total)
    return out


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def _inputs(spec: _Spec, problem: Problem, gen: torch.Generator):
    """q, k, v for ``problem``; FP8 problems also get random (B, Hk) descales."""
    if spec.layout == "packed":
        hq, hk = problem.heads_q, problem.heads_kv
        buf = torch.randn(problem.batch, problem.seqlen_q, hq + 2 * hk, problem.head_dim,
                          generator=gen).to(device=problem.device, dtype=problem.dtype)
        q = buf[:, :, :hq].transpose(1, 2)
        k = buf[:, :, hq:hq + hk].transpose(1, 2)
        v = buf[:, :, hq + hk:].transpose(1, 2)
    else:
        q, k, v = random_inputs(problem, generator=gen, layout=spec.layout)
    if problem.is_fp8:
        shape = (problem.batch, problem.heads_kv)
        ds = [(0.5 + 1.5 * torch.rand(shape, generator=gen)).to(problem.device)
              for _ in range(3)]
        problem = dataclasses.replace(problem, q_descale=ds[0], k_descale=ds[1],
                                      v_descale=ds[2])
    return problem, q, k, v


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.dtype in FP8_DTYPES else t


def _reasons(backend: Backend, problem: Problem) -> list[str]:
    """What the core would say: declared capabilities first, then the dynamic checks."""
    reasons = backend.capabilities.reasons(problem)
    if reasons:
        return reasons
    extra = backend.not_supported_reasons(problem)
    if not isinstance(extra, (list, tuple)) or not all(isinstance(r, str) for r in extra):
        raise TypeError(f"not_supported_reasons returned {extra!r}; expected a list of str")
    return list(extra)


def _empty_rows(problem: Problem) -> Optional[torch.Tensor]:
    """Boolean (Sq,) mask of query rows with no allowed key (dense problems), or None."""
    if problem.is_varlen:
        return None
    mask = reference.allowed_mask(problem.seqlen_q, problem.seqlen_k, problem.causal,
                                  problem.window, problem.device)
    if mask is None:
        return None
    rows = ~mask.any(dim=-1)
    return rows if bool(rows.any()) else None


def _run_numeric(backend: Backend, device: torch.device, name: str, spec: _Spec) -> CheckResult:
    problem = spec.problem(device)
    result = CheckResult(name, "pass", problem=problem.describe())
    try:
        refused = _reasons(backend, problem)
    except Exception as exc:  # noqa: BLE001 - reported as a failure
        result.status, result.message = "fail", f"not_supported_reasons raised {_exc(exc)}"
        return result
    if refused:
        result.status, result.message = "skip", "refused: " + "; ".join(refused)
        return result
    gen = torch.Generator().manual_seed(_seed(name))
    problem, q, k, v = _inputs(spec, problem, gen)
    before = [_bits(t).clone() for t in (q, k, v)]
    problems: list[str] = []
    o, lse = backend.forward(q, k, v, problem)
    violations = result_violations(problem, o, lse)
    if violations:
        result.status, result.message = "fail", "; ".join(violations)
        return result
    result.errors += compare_forward(o, lse, q, k, v, problem)
    rows = _empty_rows(problem)
    if rows is not None:
        n = int(rows.sum())
        o_rows, lse_rows = o[:, :, rows], lse[:, :, rows]
        if not bool((o_rows == 0).all()):
            problems.append(f"{n} rows see no key but O != 0 there "
                            f"(max |O| {o_rows.float().abs().max().item():.3g}; expected 0)")
        if not bool((lse_rows == float("-inf")).all()):
            got = lse_rows[lse_rows != float("-inf")].flatten()[:1].tolist()
            problems.append(f"{n} rows see no key but LSE != -inf there (got {got[0]})")
    if spec.backward:
        do = torch.randn(o.shape, generator=gen).to(device=o.device, dtype=o.dtype)
        grads = backend.backward(do, q, k, v, o, lse, problem)
        for what, g, t in zip(("dQ", "dK", "dV"), grads, (q, k, v)):
            if tuple(g.shape) != tuple(t.shape) or g.dtype != t.dtype:
                problems.append(f"{what} is {tuple(g.shape)} {_dtype_name(g.dtype)}, expected "
                                f"{tuple(t.shape)} {_dtype_name(t.dtype)}")
        if not problems:
            result.errors += compare_backward(grads, do, q, k, v, problem)
    if any(not torch.equal(_bits(t), b) for t, b in zip((q, k, v), before)):
        problems.append("the backend modified its inputs q/k/v")
    bad = [c.what for c in result.errors if not c.ok]
    if bad:
        problems.insert(0, f"{', '.join(bad)} outside the tolerance rule")
    if problems:
        result.status, result.message = "fail", "; ".join(problems)
    return result


def _run_refusal(backend: Backend, device: torch.device, name: str, spec: _Spec,
                 what: str) -> CheckResult:
    problem = spec.problem(device)
    result = CheckResult(name, "pass", problem=problem.describe(), kind="refusal")
    try:
        reasons = _reasons(backend, problem)
    except Exception as exc:  # noqa: BLE001
        result.status, result.message = "fail", f"not_supported_reasons raised {_exc(exc)}"
        return result
    if reasons:
        result.message = f"refused ({what}): " + "; ".join(reasons)
    else:
        result.status = "fail"
        result.message = (f"{what} is not declared, but the backend accepts the problem "
                          "(declare it in Capabilities or refuse it in not_supported_reasons)")
    return result


def _exc(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


# -- the plan ------------------------------------------------------------------------------
@dataclasses.dataclass
class Check:
    """One planned check; :meth:`run` never raises (an exception is a failed row)."""

    name: str
    _fn: Callable[[], CheckResult]

    def run(self) -> CheckResult:
        t0 = time.perf_counter()
        try:
            result = self._fn()
        except Exception as exc:  # noqa: BLE001 - a crashing backend is a failed check
            result = CheckResult(self.name, "fail", f"raised {_exc(exc)}")
        result.seconds = time.perf_counter() - t0
        return result

    def assert_ok(self) -> CheckResult:
        """For pytest: skip a skipped check, fail a failed one (printing the errors)."""
        import pytest

        result = self.run()
        print(result.describe())
        if result.status == "skip":
            pytest.skip(result.message)
        assert result.status == "pass", result.describe()
        return result


def _canonical(dev: torch.device) -> torch.device:
    """The device tensors report (``cuda`` -> ``cuda:0``, ``cpu:0`` -> ``cpu``), so that a
    Problem's device equals its outputs' (contract.result_violations compares them)."""
    try:
        return torch.empty(0, device=dev).device
    except Exception:  # noqa: BLE001 - an unusable device is reported by the checks
        return dev


def _head_dim_ok(caps: Capabilities, d: int) -> bool:
    if caps.head_dims is not None:
        return d in caps.head_dims
    return caps.min_head_dim <= d <= caps.max_head_dim and d % caps.head_dim_multiple == 0


def _valid_head_dims(caps: Capabilities, limit: int = 512) -> list[int]:
    if caps.head_dims is not None:
        return sorted(d for d in caps.head_dims if d <= limit)
    return [d for d in range(caps.min_head_dim, min(caps.max_head_dim, limit) + 1)
            if d % caps.head_dim_multiple == 0]


def _pick(options, valid) -> Optional[int]:
    return next((d for d in options if d in valid), valid[0] if valid else None)


def _numeric(backend, device, name, spec) -> Check:
    return Check(name, lambda: _run_numeric(backend, device, name, spec))


def _refusal(backend, device, name, spec, what) -> Check:
    return Check(name, lambda: _run_refusal(backend, device, name, spec, what))


def _info(name: str, status: str, message: str) -> Check:
    return Check(name, lambda: CheckResult(name, status, message, kind="info"))


def _metadata(backend: Backend) -> CheckResult:
    from ..contract import PLUGIN_API_VERSION

    problems = []
    if not isinstance(getattr(backend, "name", None), str) or not backend.name:
        problems.append("name is empty (set the class attribute `name`)")
    if not isinstance(backend.capabilities, Capabilities):
        problems.append("capabilities is not an attnhub.Capabilities")
    try:
        from packaging.specifiers import SpecifierSet

        if PLUGIN_API_VERSION not in SpecifierSet(backend.requires_api):
            problems.append(f"requires_api {backend.requires_api!r} excludes this attnhub's "
                            f"plugin API {PLUGIN_API_VERSION}")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"requires_api {backend.requires_api!r} is not a version specifier "
                        f"({_exc(exc)})")
    caps = backend.capabilities
    if isinstance(caps, Capabilities):
        if caps.backward and type(backend).backward is Backend.backward:
            problems.append("capabilities.backward=True but backward() is not implemented")
        if not _valid_head_dims(caps, limit=1 << 20):
            problems.append("no head dim satisfies the declared head-dim range")
    if problems:
        return CheckResult("metadata", "fail", "; ".join(problems), kind="info")
    return CheckResult("metadata", "pass", f"{backend.name} {backend.version}, "
                       f"requires_api {backend.requires_api}", kind="info")


def plan_checks(backend: Backend, device: Union[str, torch.device] = "cpu",
                quick: bool = False, dtype: Optional[torch.dtype] = None) -> list[Check]:
    """The checks for ``backend`` on ``device``, generated from its capabilities.  ``dtype``
    is the dtype of the feature checks (default: the first of float16, bfloat16, float32,
    float64 that the backend declares); ``basic-*`` covers every declared dtype anyway."""
    dev = torch.device(device)
    checks = [Check("metadata", lambda: _metadata(backend))]
    caps = backend.capabilities
    if not isinstance(caps, Capabilities):
        return checks
    try:
        reason = backend.probe()
    except Exception as exc:  # noqa: BLE001
        reason = f"probe() raised {_exc(exc)}"
    if reason:
        return checks + [_info("probe", "skip", f"backend unavailable here: {reason}")]
    if dev.type not in caps.devices:
        return checks + [_info("device", "skip", f"device {dev.type!r} not declared "
                               f"(declared: {', '.join(caps.devices)})")]
    if dev.type == "cuda" and not torch.cuda.is_available():
        return checks + [_info("device", "skip", "no CUDA device visible to torch")]
    dev = _canonical(dev)

    dtypes = [d for d in caps.dtypes if d in _FLOAT_DTYPES]
    dt = next((d for d in _FLOAT_DTYPES if d in dtypes), None) if dtype is None else dtype
    valid = _valid_head_dims(caps)
    d0 = _pick((64, 128, 32, 96, 80, 48, 16, 256), valid)
    num = lambda name, **kw: _numeric(backend, dev, name, _Spec(**kw))  # noqa: E731
    c = caps.causal

    if dt is not None and d0 is not None:
        for d in dtypes:
            checks.append(num(f"basic-{_dtype_name(d)}", dtype=d, head_dim=d0))
        base = dict(dtype=dt, head_dim=d0, batch=1)
        checks.append(num("custom-scale", scale=0.37, **base))
        # scale <= 0 is valid attention (0: uniform over the visible keys); a kernel that
        # masks with -inf before the scale returns NaN there, so with the mask where declared
        checks.append(num("zero-scale", scale=0.0, causal=c, seqlen_q=67, seqlen_k=90, **base))
        checks.append(num("negative-scale", scale=-0.37, causal=c, seqlen_q=67, seqlen_k=90,
                          **base))
        if c:
            shapes = [(113, 203), (203, 113)] + ([] if quick else [(128, 128), (1023, 1024)])
            for sq, sk in shapes:
                checks.append(num(f"causal-{sq}x{sk}", seqlen_q=sq, seqlen_k=sk, causal=True,
                                  **base))
            checks.append(num("fully-masked-rows", seqlen_q=67, seqlen_k=19, causal=True, **base))
        elif caps.window:
            checks.append(num("fully-masked-rows", seqlen_q=67, seqlen_k=19, window=(3, 0),
                              **base))
        if caps.gqa:
            checks.append(num("gqa-8q2kv", heads_q=8, heads_kv=2, seqlen_q=113, seqlen_k=203,
                              causal=c, **base))
            checks.append(num("mqa-4q1kv", heads_q=4, heads_kv=1, seqlen_q=113, seqlen_k=203,
                              causal=c, **base))
        dims = [d for d in _AWKWARD_HEAD_DIMS if d in valid]
        if not quick:
            dims = sorted(set(dims) | {valid[0], valid[-1]} | {d for d in (64, 128, 256)
                                                               if d in valid})
        for d in dims:
            checks.append(num(f"head-dim-{d}", seqlen_q=33, seqlen_k=47,
                              **dict(base, head_dim=d)))
        if caps.different_v_head_dim:
            dv = _pick(tuple(x for x in (40, 32, 96, 128, 16, 8) if x != d0), valid)
            if dv is not None and dv != d0:
                checks.append(num(f"head-dim-v-{d0}x{dv}", head_dim_v=dv, causal=c,
                                  seqlen_q=113, seqlen_k=203, **base))
        hk = 2 if caps.gqa else 4
        checks.append(num("strided-bshd", layout="bshd", heads_q=4, heads_kv=hk, seqlen_q=113,
                          seqlen_k=203, causal=c, **base))
        checks.append(num("strided-packed-qkv", layout="packed", heads_q=4, heads_kv=hk,
                          seqlen_q=97, seqlen_k=97, causal=c, **base))
        if caps.window:
            windows = [((24, 0), c), ((7, 5), False)]
            if not quick:
                windows += [((-1, 9), False), ((13, -1), False), ((0, 0), False)]
            for w, causal in windows:
                side = lambda x: "inf" if x < 0 else str(x)  # noqa: E731
                checks.append(num(f"window-{side(w[0])}-{side(w[1])}"
                                  f"{'-causal' if causal else ''}",
                                  window=w, causal=causal, seqlen_q=97, seqlen_k=160, **base))
        if caps.softcap:
            checks.append(num("softcap-2.0", softcap=2.0, causal=c, seqlen_q=97, seqlen_k=160,
                              **base))
        seqlens = ((37, 1, 90), (50, 13, 90))
        if caps.varlen:
            checks.append(num("varlen", seqlens=seqlens, causal=c, **base))
            if caps.gqa:
                checks.append(num("varlen-gqa", seqlens=seqlens, causal=c, heads_q=4,
                                  heads_kv=2, **base))
        if caps.backward:
            g = dict(heads_q=4, heads_kv=2 if caps.gqa else 4, backward=True)
            checks.append(num("backward-causal-113x203" if c else "backward-113x203",
                              seqlen_q=113, seqlen_k=203, causal=c, **g, **base))
            if not quick:
                checks.append(num("backward-64x64", seqlen_q=64, seqlen_k=64, **g, **base))
                if c:
                    checks.append(num("backward-fully-masked-rows", seqlen_q=67, seqlen_k=19,
                                      causal=True, **g, **base))
                if caps.window:
                    checks.append(num("backward-window", window=(24, 8), seqlen_q=97,
                                      seqlen_k=160, **g, **base))
                if caps.softcap:
                    checks.append(num("backward-softcap", softcap=2.0, causal=c, seqlen_q=97,
                                      seqlen_k=160, **g, **base))
                checks.append(num("backward-negative-scale", scale=-0.37, causal=c,
                                  seqlen_q=67, seqlen_k=90, **g, **base))
                if caps.varlen:
                    checks.append(num("backward-varlen", seqlens=seqlens, causal=c, **g,
                                      **base))
    if caps.fp8 and valid:
        fp8_dims = _pick((64, 128, 256, 96), valid)
        kinds = [d for d in FP8_DTYPES if quick is False or d == FP8_DTYPES[0]]
        for d in kinds:
            checks.append(num(f"fp8-{_dtype_name(d).replace('float8_', '')}", dtype=d,
                              head_dim=fp8_dims, batch=1, heads_q=4,
                              heads_kv=2 if caps.gqa else 4, seqlen_q=113, seqlen_k=203,
                              causal=c))
    checks += _refusals(backend, dev, caps, dt or torch.float32, d0 or caps.min_head_dim)
    return checks


def _refusals(backend, dev, caps: Capabilities, dt, d0) -> list[Check]:
    base = dict(dtype=dt, head_dim=d0, batch=1, seqlen_q=33, seqlen_k=47)
    specs: list[tuple[str, str, _Spec]] = []
    if not caps.causal:
        specs.append(("causal", "causal", _Spec(causal=True, **base)))
    if not caps.gqa:
        specs.append(("gqa", "GQA", _Spec(heads_q=4, heads_kv=2, **base)))
    if not caps.window:
        specs.append(("window", "a sliding window", _Spec(window=(16, 0), **base)))
    if not caps.softcap:
        specs.append(("softcap", "softcap", _Spec(softcap=5.0, **base)))
    if not caps.varlen:
        specs.append(("varlen", "varlen",
                      _Spec(seqlens=((5, 9), (7, 9)), **dict(base, batch=2))))
    if not caps.fp8 and FP8_DTYPES:
        specs.append(("fp8", "FP8 inputs", _Spec(**dict(base, dtype=FP8_DTYPES[0]))))
    other = next((d for d in _FLOAT_DTYPES if d not in caps.dtypes), None)
    if other is not None:
        specs.append((f"dtype-{_dtype_name(other)}", f"dtype {_dtype_name(other)}",
                      _Spec(**dict(base, dtype=other))))
    bad_d = next((d for d in (caps.max_head_dim + caps.head_dim_multiple,
                              caps.min_head_dim + 1, caps.min_head_dim - 1)
                  if d >= 1 and d <= 4096 and not _head_dim_ok(caps, d)), None)
    if caps.head_dims is not None:
        bad_d = next((d for d in range(1, 1024) if d not in caps.head_dims), None)
    if bad_d is not None:
        specs.append((f"head-dim-{bad_d}", f"head_dim={bad_d}",
                      _Spec(**dict(base, head_dim=bad_d))))
    if not caps.different_v_head_dim:
        dv = next((d for d in _valid_head_dims(caps) if d != d0), d0 + 1)
        specs.append((f"head-dim-v-{d0}x{dv}", "head_dim_v != head_dim",
                      _Spec(head_dim_v=dv, **base)))
    return [_refusal(backend, dev, f"refuses-{slug}", spec, what) for slug, what, spec in specs]


# -- entry points --------------------------------------------------------------------------
def load_backend(name: str) -> Backend:
    """The instantiated backend registered as ``name``.

    Uses ``attnhub.registry.get_backend`` when the registry provides it (allow-lists, conflict
    rules, quarantine); otherwise loads the entry point in group ``attnhub.backends``.
    Raises ValueError (unknown name, listing the known ones) or RuntimeError (registered but
    not available, with the reason).
    """
    from .. import registry

    get = getattr(registry, "get_backend", None)
    if get is not None:
        return get(name)
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="attnhub.backends")]
    matches = [ep for ep in eps if ep.name == name]
    if not matches:
        known = ", ".join(sorted({ep.name for ep in eps})) or "none"
        raise ValueError(f"unknown backend {name!r}; known: {known}. "
                         "Install its package, then see `attnhub list-backends`")
    if len(matches) > 1:
        raise RuntimeError(f"backend name {name!r} is claimed by several entry points: "
                           + ", ".join(ep.value for ep in matches))
    try:
        cls = matches[0].load()
        backend = cls()
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"backend {name!r} ({matches[0].value}) failed to load: "
                           f"{_exc(exc)}") from exc
    if not isinstance(backend, Backend):
        raise RuntimeError(f"{matches[0].value} is not an attnhub.Backend subclass")
    return backend


def _resolve(name_or_backend) -> tuple[str, Optional[Backend], str]:
    """(name, backend or None, why it is not available).  ValueError for unknown names."""
    if isinstance(name_or_backend, Backend):
        return name_or_backend.name or type(name_or_backend).__name__, name_or_backend, ""
    if isinstance(name_or_backend, type) and issubclass(name_or_backend, Backend):
        return name_or_backend.name, name_or_backend(), ""
    name = str(name_or_backend)
    try:
        return name, load_backend(name), ""
    except (KeyError, RuntimeError) as exc:
        return name, None, str(exc.args[0] if exc.args else exc)


def run_checks(name_or_backend: Union[str, Backend, type], *,
               device: Union[str, torch.device] = "cpu", quick: bool = False,
               select: Optional[Sequence[str]] = None,
               dtype: Optional[torch.dtype] = None) -> ConformanceReport:
    """Run the conformance kit for a backend (a registered name, a Backend instance or class).

    ``quick`` runs one case per feature; ``select`` keeps only checks whose name matches one
    of the given glob patterns (e.g. ``["causal-*", "gqa-*"]``); ``dtype`` sets the dtype of
    the feature checks (see :func:`plan_checks`).  Raises ValueError for an unknown name;
    otherwise never raises: a backend that cannot load is a failed ``load`` row, and every
    problem of a loaded one a failed check.
    """
    import fnmatch

    name, backend, why = _resolve(name_or_backend)
    dev = str(torch.device(device))
    info: dict[str, Any] = {"torch": torch.__version__}
    if backend is None:
        return ConformanceReport(name, dev, quick, [CheckResult("load", "fail", why, kind="info")],
                                 info)
    info.update(version=str(getattr(backend, "version", "")),
                module=type(backend).__module__)
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    checks = plan_checks(backend, dev, quick=quick, dtype=dtype)
    if select:
        checks = [c for c in checks if any(fnmatch.fnmatch(c.name, p) for p in select)]
    if dtype is not None:
        info["dtype"] = _dtype_name(dtype)
    return ConformanceReport(name, dev, quick, [c.run() for c in checks], info)
