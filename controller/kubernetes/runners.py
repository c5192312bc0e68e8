"""Runner pods as they come and go: started, watched until ready, told apart when they die.

A ``RunnerPod`` is one pod of this replica and what the controller knows of it: its
address once it has one, and whether it is gone.  The pod watch (api.ObjectWatch) feeds
``observe``; a read of the pod stands in when the watch is late.  Readiness is the
runner's own answer on ``GET /ready`` (it listens only once its sandbox is warm), asked
straight at the pod's address: no readiness probe to wait a period for.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from controller.errors import SandboxUnavailable
from controller.kubernetes.api import KubeApi, KubernetesError
from controller.kubernetes.manifests import (
    RUNNER_PORT,
    Owner,
    RunnerPodSpec,
    new_pod_name,
    runner_pod,
)

log = logging.getLogger(__name__)

# Reasons a container waits that mean it will never start (no point waiting longer).
HOPELESS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerError",
        "CreateContainerConfigError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
READY_POLL_S = 0.02
READ_FALLBACK_S = 2.0


@dataclass(eq=False)
class RunnerPod:
    """One runner pod of this replica: a name, its secret, and what was seen of it."""

    name: str
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    address: str | None = None
    gone: str | None = None
    """Why the pod can no longer take a job (deleted, exited, failed), once it cannot."""
    oom_killed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{RUNNER_PORT}"

    @property
    def token_digest(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()

    def observe(self, event: str, pod: dict[str, Any]) -> None:
        """Take in what the API says of the pod (a watch event or a read)."""
        status = pod.get("status") or {}
        phase = status.get("phase")
        if event == "DELETED":
            self._end("the pod was deleted")
        elif phase in ("Succeeded", "Failed"):
            self._end(f"the pod ended ({phase}: {status.get('reason') or 'no reason given'})")
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason") in HOPELESS:
                self._end(f"{waiting['reason']}: {waiting.get('message', '')}".strip(": "))
            if terminated:
                self.oom_killed = self.oom_killed or terminated.get("reason") == "OOMKilled"
                self._end(
                    f"the runner exited ({terminated.get('reason')}, "
                    f"status {terminated.get('exitCode')})"
                )
            if state.get("running") and status.get("podIP") and self.address is None:
                self.address = str(status["podIP"])
        self.changed.set()

    def _end(self, why: str) -> None:
        if self.gone is None:
            self.gone = why


class RunnerPods:
    """Starts this replica's runner pods and keeps what is known of each, by name."""

    def __init__(
        self,
        api: KubeApi,
        http: httpx.AsyncClient,
        spec: RunnerPodSpec,
        owner: Owner,
        start_timeout_s: float,
    ) -> None:
        self._api, self._http, self._spec = api, http, spec
        self.owner = owner
        """What new pods are owned by: this replica's lease (renewed, or taken anew)."""
        self._start_timeout_s = start_timeout_s
        self.known: dict[str, RunnerPod] = {}

    def observe(self, event: str, pod: dict[str, Any]) -> None:
        name = (pod.get("metadata") or {}).get("name")
        runner = self.known.get(str(name))
        if runner is not None:
            runner.observe(event, pod)

    async def start(self) -> RunnerPod:
        """Create a pod and return it once its runner answers ready; SandboxUnavailable
        when it does not, KubernetesError when the API server refuses it."""
        runner = RunnerPod(new_pod_name())
        self.known[runner.name] = runner
        try:
            created = await self._api.create_pod(
                runner_pod(self._spec, runner.name, runner.token_digest, self.owner)
            )
        except BaseException:
            self.known.pop(runner.name, None)  # refused (a quota, say): there is no pod
            raise
        runner.observe("ADDED", created)
        try:
            await self._until_ready(runner)
        except BaseException:
            # Failed, or the caller went away: a pod nobody will use must not linger.
            await asyncio.shield(self._delete_quietly(runner))
            raise
        return runner

    async def _delete_quietly(self, runner: RunnerPod) -> None:
        """Delete without hiding the failure at hand; the sweep retries what this misses."""
        try:
            await self.delete(runner)
        except KubernetesError as exc:
            log.warning("%s", exc)

    async def _until_ready(self, runner: RunnerPod) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        last_read = time.monotonic()
        while runner.address is None:
            self._raise_if_gone(runner)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxUnavailable(
                    f"runner pod {runner.name} got no address within "
                    f"{self._start_timeout_s:.0f}s (setting RUNNER_POD_START_TIMEOUT_S)"
                )
            runner.changed.clear()
            try:
                async with asyncio.timeout(min(remaining, READ_FALLBACK_S)):
                    await runner.changed.wait()
            except TimeoutError:
                pass
            if runner.address is None and time.monotonic() - last_read >= READ_FALLBACK_S:
                # The watch may be late or reconnecting: ask once more directly.
                last_read = time.monotonic()
                for pod in await self._api.list_pods(fields=f"metadata.name={runner.name}"):
                    runner.observe("MODIFIED", pod)
        while not await self._answers_ready(runner):
            self._raise_if_gone(runner)
            if time.monotonic() > deadline:
                raise SandboxUnavailable(
                    f"the runner in pod {runner.name} was not ready within "
                    f"{self._start_timeout_s:.0f}s (setting RUNNER_POD_START_TIMEOUT_S)"
                )
            await asyncio.sleep(READY_POLL_S)

    async def _answers_ready(self, runner: RunnerPod) -> bool:
        try:
            response = await self._http.get(runner.url + "/ready", timeout=2.0)
        except httpx.TransportError:
            return False  # not listening yet: the sandbox is still warming up
        return response.status_code == 200

    def _raise_if_gone(self, runner: RunnerPod) -> None:
        if runner.gone is not None:
            raise SandboxUnavailable(f"runner pod {runner.name} failed to start: {runner.gone}")

    async def delete(self, runner: RunnerPod) -> None:
        """Delete the pod (404 is done); it leaves this replica's care."""
        try:
            await self._api.delete_pod(runner.name)
        finally:
            runner.gone = runner.gone or "deleted by this replica"
            self.known.pop(runner.name, None)
