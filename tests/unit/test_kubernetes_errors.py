"""The Kubernetes API's failures, classed by cause at the edge (controller.kubernetes.api)."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError

from controller.kubernetes.api import (
    KubeConflict,
    KubeForbidden,
    KubeNotFound,
    KubeQuotaExceeded,
    KubernetesError,
    KubeUnavailable,
    wrap,
)


def refused(status: int, message: str) -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


@pytest.mark.parametrize(
    ("status", "message", "cause"),
    [
        (404, 'pods "rp-1" not found', KubeNotFound),
        (409, "the object has been modified", KubeConflict),
        (403, 'pods is forbidden: User "x" cannot create', KubeForbidden),
        (403, "exceeded quota: sandbox-quota, requested: pods=1", KubeQuotaExceeded),
        (422, "Pod is invalid: spec.containers: Required value", KubeForbidden),
        (500, "etcdserver: request timed out", KubeUnavailable),
        (503, "the server is currently unable to handle the request", KubeUnavailable),
    ],
)
def test_each_failure_is_classed_by_its_cause(
    status: int, message: str, cause: type[KubernetesError]
) -> None:
    error = wrap("cannot create runner pod rp-1", refused(status, message), "sandbox.quota")
    assert type(error) is cause
    assert error.status == status
    assert error.message.startswith("cannot create runner pod rp-1: ")
    assert message in error.message


def test_a_full_quota_names_the_value_to_raise() -> None:
    error = wrap("cannot create browser pod", refused(403, "exceeded quota: q"), "browser.quota")
    assert "chart value browser.quota" in error.message
    assert isinstance(error, KubeForbidden)  # retrying as such will not help now


def test_an_unreachable_api_server_is_unavailable() -> None:
    error = wrap("cannot list pods", MaxRetryError(None, "/api", "connection refused"))  # type: ignore[arg-type]
    assert type(error) is KubeUnavailable and error.status is None
    assert "unreachable" in error.message


def test_they_are_not_the_products_errors() -> None:
    """Each placement maps them to its own (executions: sandbox_unavailable; browser
    sessions: browser_unavailable), so that none answers as another's."""
    from controller.errors import ControllerError

    assert not issubclass(KubernetesError, ControllerError)
