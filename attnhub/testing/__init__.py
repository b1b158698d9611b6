"""attnhub's testing tools: the conformance kit, the tolerance rule, a pytest plugin.

    from attnhub.testing import run_checks
    print(run_checks("my-backend", device="cpu").render())

    # a backend package's whole conformance test file (pytest):
    from attnhub.testing import conformance_tests
    test_conformance = conformance_tests("my-backend")

Everything is imported on first use, so importing this package (as the pytest plugin does)
costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_checks": "conformance",
    "plan_checks": "conformance",
    "load_backend": "conformance",
    "CheckResult": "conformance",
    "ConformanceReport": "conformance",
    "conformance_tests": "pytest_plugin",
    "assert_matches_reference": "tolerance",
    "random_inputs": "tolerance",
    "compare": "tolerance",
    "compare_forward": "tolerance",
    "compare_backward": "tolerance",
    "check_forward": "tolerance",
    "check_backward": "tolerance",
    "Comparison": "tolerance",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'attnhub.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
