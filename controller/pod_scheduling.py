"""Where the operator's runner and browser pods may run: node pool, runtime, priority, pull secrets.

One setting per pod kind (RUNNER_POD_SCHEDULING, BROWSER_POD_SCHEDULING), a JSON object
that the chart renders from the same values as the runner-pod admission policy, which
then admits exactly these fields and no others (helm/templates/runner-pod-policy.yaml).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
"""A label or taint key: an optional DNS-subdomain prefix and a name of 63 characters."""
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
OBJECT_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class Toleration(BaseModel):
    """A taint the pods tolerate (Kubernetes' Toleration, as written in a pod)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(default="", pattern=r"^$|" + QUALIFIED_NAME)
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = Field(default="", pattern=LABEL_VALUE)
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    tolerationSeconds: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def coherent(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists has no value")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without a key must have operator Exists")
        if self.tolerationSeconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies to the NoExecute effect only")
        return self

    def as_pod_field(self) -> dict[str, Any]:
        """As the pod carries it: the fields that are set."""
        return self.model_dump(exclude_defaults=True) | {"operator": self.operator}


class PodScheduling(BaseModel):
    """The placement fields every pod of one kind carries; empty: the scheduler's choice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nodeSelector: dict[str, str] = Field(default_factory=dict, max_length=32)
    tolerations: tuple[Toleration, ...] = Field(default=(), max_length=32)
    affinity: dict[Literal["nodeAffinity", "podAffinity", "podAntiAffinity"], Any] = Field(
        default_factory=dict
    )
    """Kubernetes' Affinity, passed as written (the API server validates its inside)."""
    priorityClassName: str = Field(default="", pattern=r"^$|" + OBJECT_NAME)
    runtimeClassName: str = Field(default="", pattern=r"^$|" + OBJECT_NAME)
    imagePullSecrets: tuple[str, ...] = Field(default=(), max_length=16)

    @model_validator(mode="after")
    def valid_names(self) -> PodScheduling:
        for key, value in self.nodeSelector.items():
            if not re.fullmatch(QUALIFIED_NAME, key) or not re.fullmatch(LABEL_VALUE, value):
                raise ValueError(f"nodeSelector {key!r}: {value!r} is not a label and its value")
        for name in self.imagePullSecrets:
            if not re.fullmatch(OBJECT_NAME, name):
                raise ValueError(f"imagePullSecrets: {name!r} is not a Secret's name")
        return self

    def pod_fields(self) -> dict[str, Any]:
        """The fields to add to a pod's spec: only those given."""
        fields: dict[str, Any] = {}
        if self.nodeSelector:
            fields["nodeSelector"] = dict(self.nodeSelector)
        if self.tolerations:
            fields["tolerations"] = [t.as_pod_field() for t in self.tolerations]
        if self.affinity:
            fields["affinity"] = dict(self.affinity)
        if self.priorityClassName:
            fields["priorityClassName"] = self.priorityClassName
        if self.runtimeClassName:
            fields["runtimeClassName"] = self.runtimeClassName
        if self.imagePullSecrets:
            fields["imagePullSecrets"] = [{"name": name} for name in self.imagePullSecrets]
        return fields
