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

from .._lazy import lazy_exports

_EXPORTS = {
    "run_checks": "conformance",
    "plan_checks": "conformance",
    "load_backend": "conformance",
    "CheckResult": "conformance",
    "ConformanceReport": "conformance",
    "conformance_tests": "pytest_plugin",
    "assert_matches_reference": "tolerance",
    "random_inputs": "tolerance",
    "long_rows_view": "tolerance",
    "compare": "tolerance",
    "compare_forward": "tolerance",
    "compare_backward": "tolerance",
    "check_forward": "tolerance",
    "check_backward": "tolerance",
    "Comparison": "tolerance",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
