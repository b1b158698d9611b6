"""The conformance kit for the backend named on the command line:

    pytest --pyargs attnhub.testing.suite --attnhub-backend NAME [--attnhub-device cuda]
"""

from attnhub.testing import conformance_tests

test_conformance = conformance_tests()
