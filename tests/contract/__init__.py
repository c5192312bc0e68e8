"""The API contract every placement passes: tests written once, run against a base URL.

Each module here holds tests that take the ``api`` fixture (and, for uploads,
``uploads_api`` and ``files``).  tests/integration runs them against the local service,
tests/e2e against the Kubernetes installation through its Ingress: the same tests, not
copies.  A test that only one placement can pass stays in that placement's tier.
"""
