"""torch-sdpa through attnhub's conformance kit (CPU here; `--attnhub-device cuda` on a GPU)."""

from attnhub.testing import conformance_tests

test_conformance = conformance_tests("torch-sdpa")
