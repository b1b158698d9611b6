"""pytest plugin (registered as ``pytest11`` entry point ``attnhub``): the conformance kit as
tests.  It does nothing unless a test asks for it, and imports nothing heavy until then.

A backend package's whole conformance test file::

    # tests/test_conformance.py
    from attnhub.testing import conformance_tests
    test_conformance = conformance_tests("my-backend")     # one test per check

    $ pytest tests/test_conformance.py -v                  # test_conformance[causal-113x203] ...
    $ pytest tests/test_conformance.py --attnhub-device cuda --attnhub-quick

Any backend, without writing a file::

    $ pytest --pyargs attnhub.testing.suite --attnhub-backend my-backend

Options: ``--attnhub-backend NAME`` (used where ``conformance_tests()`` names no backend),
``--attnhub-device DEV`` (overrides the device everywhere; default ``cpu``),
``--attnhub-quick`` (one case per feature).  Fixture ``attnhub_backend``: the instantiated
backend named by ``--attnhub-backend`` (the test is skipped when the option is absent).
A check the backend refuses, or a backend that cannot run here (``probe()``), is skipped.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest

_PARAM = "attnhub_check"


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("attnhub", "attnhub conformance kit")
    group.addoption("--attnhub-backend", default=None, metavar="NAME",
                    help="backend checked by conformance_tests() without a name")
    group.addoption("--attnhub-device", default=None, metavar="DEVICE",
                    help="device for the conformance checks (default: cpu)")
    group.addoption("--attnhub-quick", action="store_true", default=False,
                    help="one conformance case per feature")


def conformance_tests(backend: Any = None, *, device: Optional[str] = None,
                      quick: bool = False):
    """A pytest test function parametrised over the conformance checks of ``backend`` (a
    registered name, a Backend instance or class; ``None``: ``--attnhub-backend``).  Assign it
    to a ``test_*`` name in a test module."""

    def test_conformance(attnhub_check):
        attnhub_check.assert_ok()

    test_conformance.attnhub_target = {"backend": backend, "device": device, "quick": quick}
    return test_conformance


def pytest_generate_tests(metafunc: Any) -> None:
    if _PARAM not in metafunc.fixturenames:
        return
    config = metafunc.config
    target = getattr(metafunc.function, "attnhub_target", {})
    backend = target.get("backend") or config.getoption("attnhub_backend")
    if backend is None:
        reason = "no backend: pass --attnhub-backend NAME or conformance_tests('NAME')"
        metafunc.parametrize(_PARAM, [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
                             ids=["no-backend"])
        return
    from . import conformance

    device = config.getoption("attnhub_device") or target.get("device") or "cpu"
    quick = bool(config.getoption("attnhub_quick") or target.get("quick"))
    try:
        name, instance, why = conformance._resolve(backend)
    except ValueError as exc:  # unknown name
        instance, why = None, str(exc)
    if instance is None:
        checks = [conformance.Check("load", lambda: conformance.CheckResult("load", "fail", why))]
    else:
        checks = conformance.plan_checks(instance, device, quick=quick)
    metafunc.parametrize(_PARAM, checks, ids=[c.name for c in checks])


@pytest.fixture
def attnhub_backend(request):
    """The backend named by ``--attnhub-backend`` (instantiated through the registry)."""
    name = request.config.getoption("attnhub_backend")
    if not name:
        pytest.skip("no --attnhub-backend given")
    from .conformance import load_backend

    return load_backend(name)
