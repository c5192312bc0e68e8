"""Kubernetes placement of executions: one short-lived runner pod per execution.

Each pod is started ahead of demand (the warm pool, ``WARM_SANDBOXES`` per replica),
runs ``python -m runner serve`` (the same bubblewrap sandbox and seccomp filter as local
mode, inside the pod), takes exactly one job over HTTP straight at its address with a
secret of its own, answers the outcome, and is deleted.  The API server is on the pod's
way in and out, never on a job's: a job costs one HTTP request to a warm pod.

Nothing leaks: every pod is owned by this replica's Lease; the replica renews it, and
each replica's sweep removes the leases (and the pods) of replicas that are gone; a pod
exits by itself when no job came (``--max-idle-s``) and has an activeDeadlineSeconds.
At start, a real execution in a real pod must prove the isolation, or the service
fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
from runner.contract import MIB, EgressGrant, EventSink, Job, Outcome
from runner.wire import Failure, WireError, decode_result, encode_job

from controller.egress.grants import sign
from controller.errors import SandboxUnavailable
from controller.execution.backend import NOT_STARTED, SandboxCheck
from controller.execution.limits import sandbox_limits
from controller.execution.selftest import judge, self_test_job
from controller.kubernetes import sweep
from controller.kubernetes.api import KubeApi, KubernetesError, ObjectWatch, load_client
from controller.kubernetes.manifests import (
    LEASES_SELECTOR,
    RUNNERS_SELECTOR,
    Owner,
    RunnerPodSpec,
    execution_label,
    lease_name,
    micro_time,
    owner_selector,
    replica_lease,
)
from controller.kubernetes.runners import RunnerPod, RunnerPods
from controller.kubernetes.streamed import EventRelay, read_streamed
from controller.pool import Backoff, PoolClosed, WarmPool
from controller.replies import IDENTITY, ReplyTooLarge, ReplyUndecodable
from controller.settings import Settings
from sandbox_common import resolver
from sandbox_common.domains import DomainPolicy

log = logging.getLogger(__name__)

START_BACKOFF = Backoff(first_s=1.0, max_s=30.0)
# Past the job's own timeout: the runner's status grace, the file collection, the answer.
ANSWER_MARGIN_S = 20.0
DELIVERY_ATTEMPTS = 3
LABEL_AFTER_S = 1.0


async def proxy_address(service: str) -> str:
    """``host:port`` of the egress proxy's Service as ``address:port`` (resolved here, once:
    a Service's address does not change, and runner pods cannot resolve names)."""
    host, _, port = service.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"EGRESS_PROXY must be host:port, not {service!r}")
    infos = await resolver.shared().getaddrinfo(host, int(port))
    address = str(infos[0][4][0])
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def egress_grant(
    settings: Settings, proxy: str, grant_id: str, network: DomainPolicy, deadline: float
) -> EgressGrant:
    """The grant a runner pod shows the egress proxy: ``network`` signed for ``grant_id``
    (an execution's or a context's) until ``deadline`` (epoch seconds), and the caps."""
    key = settings.egress_grant_key
    assert key is not None  # the settings refuse NETWORK_ALLOWED_DOMAINS without one
    return EgressGrant(
        proxy=proxy,
        token=sign(key.get_secret_value().encode(), grant_id, network, deadline),
        max_connections=settings.network_max_connections,
        max_bytes=settings.network_max_mb * MIB,
    )


class _NotDelivered(Exception):
    """The job never reached the pod (it was gone): another pod may take it."""


def pod_spec(settings: Settings) -> RunnerPodSpec:
    return RunnerPodSpec(
        image=settings.runner_image,
        pull_policy=settings.runner_image_pull_policy,
        seccomp_profile=settings.runner_seccomp_profile,
        mounted=sandbox_limits(settings),
        cpu_request=settings.runner_cpu_request,
        cpu_limit=settings.runner_cpu_limit,
        memory_request_mb=settings.runner_memory_request_mb,
        memory_limit_mb=settings.runner_pod_memory_mb,
        ephemeral_storage_mb=settings.runner_ephemeral_storage_mb,
        max_idle_s=settings.warm_sandbox_max_age_s + 60,
        egress=settings.network_ceiling.allows_anything,
        scheduling=settings.runner_pod_scheduling,
        user_namespace=settings.runner_user_namespace,
    )


@contextlib.contextmanager
def sandbox_errors() -> Iterator[None]:
    """The Kubernetes API's failures as executions and code contexts report them: the
    one place where they become the product's error (503 ``sandbox_unavailable``, the
    cause in its message)."""
    try:
        yield
    except KubernetesError as exc:
        raise SandboxUnavailable(exc.message) from exc


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, settings: Settings, api: KubeApi | None = None) -> None:
        self._settings = settings
        self._api = api
        self._http = httpx.AsyncClient(
            trust_env=False,
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=0),
        )
        self._pods: RunnerPods | None = None
        self._watch: ObjectWatch | None = None
        self._pool: WarmPool[RunnerPod] | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._lease = lease_name(settings.replica_name)
        self._egress_address = ""
        """The egress proxy's Service, as an address (runner pods have no DNS)."""
        self.check = NOT_STARTED

    @property
    def warm_sandboxes(self) -> int:
        return self._pool.ready if self._pool is not None else 0

    warm_sandbox_mb = 0  # the pods' memory is the cluster's (quota), not this host's

    async def start(self) -> SandboxCheck:
        settings = self._settings
        try:
            if self._api is None:
                self._api = KubeApi(
                    await asyncio.to_thread(load_client), settings.kubernetes_namespace
                )
            owner = await self._take_lease()
            if settings.network_ceiling.allows_anything:
                self._egress_address = await proxy_address(settings.egress_proxy)
        except (KubernetesError, OSError, ValueError) as exc:
            self.check = SandboxCheck(ok=False, detail=f"cannot use the Kubernetes API: {exc}")
            return self.check
        self._pods = RunnerPods(
            self._api, self._http, pod_spec(settings), owner, settings.runner_pod_start_timeout_s
        )
        loop = asyncio.get_running_loop()
        pods = self._pods

        def observed(event: str, pod: dict[str, Any]) -> None:  # on the watch's thread
            loop.call_soon_threadsafe(pods.observe, event, pod)

        self._watch = self._api.watch_pods(owner_selector(settings.replica_name), observed)
        self._pool = WarmPool(
            "runner pod",
            settings.warm_pool_size,
            start=pods.start,
            close=pods.delete,
            alive=lambda runner: runner.gone is None,
            backoff=START_BACKOFF,
            max_age_s=settings.warm_sandbox_max_age_s,
        )
        try:
            await self._sweep()
        except KubernetesError as exc:  # the next sweep tries again
            log.warning("sweep at start: %s", exc)
        self.check = await self._self_test()
        self._housekeeping = asyncio.create_task(self._keep_house(), name="runner-housekeeping")
        if self.check.ok:
            self._pool.open()
        return self.check

    async def _take_lease(self) -> Owner:
        """This replica's lease, new: an old one of the same name (the same pod, restarted)
        is deleted first, and with it the pods its previous process left."""
        assert self._api is not None
        settings = self._settings
        await self._api.delete_lease(self._lease)
        for pod in await self._api.list_pods(owner_selector(settings.replica_name)):
            await self._api.delete_pod(str(pod["metadata"]["name"]))
        created = await self._api.create_lease(
            replica_lease(
                settings.replica_name,
                settings.replica_name,
                settings.replica_lease_s,
                datetime.now(UTC),
            )
        )
        return Owner(settings.replica_name, self._lease, str(created["metadata"]["uid"]))

    async def _self_test(self) -> SandboxCheck:
        assert self._pods is not None
        job = self_test_job(self._settings)
        try:
            with sandbox_errors():
                runner = await self._pods.start()
                try:
                    outcome = await self._run_in(runner, job, "self-test", None)
                finally:
                    await self._pods.delete(runner)
        except (SandboxUnavailable, _NotDelivered) as exc:
            return SandboxCheck(ok=False, detail=f"runner pod self-test failed: {exc}")
        namespace = self._settings.kubernetes_namespace
        return judge(
            outcome,
            f"runner pod in namespace {namespace} verified (bubblewrap, seccomp)",
            f"the runner pod's limits per execution (memory {self._settings.runner_pod_memory_mb}"
            f" MiB, cpu {self._settings.runner_cpu_limit})",
        )

    async def run(self, job: Job, caller: str, events: EventSink | None = None) -> Outcome:
        with sandbox_errors():
            return await self._run(job, caller, events)

    async def _run(self, job: Job, caller: str, events: EventSink | None) -> Outcome:
        if self._pool is None:
            raise SandboxUnavailable("the Kubernetes backend was not started")
        for _ in range(DELIVERY_ATTEMPTS):
            try:
                runner = await self._pool.take(self._settings.runner_pod_start_timeout_s, caller)
            except TimeoutError as exc:
                raise SandboxUnavailable(
                    "no runner pod became ready within "
                    f"{self._settings.runner_pod_start_timeout_s:.0f}s"
                ) from exc
            except PoolClosed as exc:
                raise SandboxUnavailable(str(exc)) from exc
            try:
                return await self._run_in(runner, job, caller, events)
            except _NotDelivered as exc:
                log.warning("runner pod %s could not take a job: %s", runner.name, exc)
            finally:
                self._pool.retire(runner)
                asyncio.get_running_loop().call_soon(self._pool.fill)
        raise SandboxUnavailable(f"{DELIVERY_ATTEMPTS} runner pods in a row could not take the job")

    def _with_grant(self, job: Job) -> Job:
        """``job`` as a runner pod takes it: its policy signed into a grant for the proxy."""
        if job.network is None:
            return job
        settings = self._settings
        deadline = (
            time.time()
            + settings.runner_pod_start_timeout_s * DELIVERY_ATTEMPTS
            + job.limits.timeout_ms / 1000
            + ANSWER_MARGIN_S
        )
        grant = egress_grant(
            settings, self._egress_address, job.execution_id, job.network, deadline
        )
        return replace(job, network=None, egress=grant)

    async def _run_in(
        self, runner: RunnerPod, job: Job, caller: str, events: EventSink | None
    ) -> Outcome:
        """Send the job to the pod and read its answer with the contract's caps."""
        assert self._api is not None
        api = self._api
        # A run that lasts gets its pod labelled with its id, for an operator looking for
        # it; a short one (most) costs the API server no write for it.
        labelling = asyncio.get_running_loop().call_later(
            LABEL_AFTER_S,
            lambda: self._in_background(
                api.label_pod(runner.name, execution_label(job.execution_id, caller))
            ),
        )
        try:
            return await self._exchange(runner, job, events)
        finally:
            labelling.cancel()

    async def _exchange(self, runner: RunnerPod, job: Job, events: EventSink | None) -> Outcome:
        job = self._with_grant(job)
        relay = EventRelay(job, events)
        timeout = job.limits.timeout_ms / 1000 + ANSWER_MARGIN_S
        try:
            # One deadline for the whole exchange: a pod that trickles its answer a byte at
            # a time is cut off as one that sends nothing.
            async with (
                asyncio.timeout(timeout),
                self._http.stream(
                    "POST",
                    runner.url + "/run",
                    content=encode_job(job),
                    headers={**IDENTITY, "Authorization": f"Bearer {runner.token}"},
                    timeout=httpx.Timeout(timeout, connect=5.0),
                ) as response,
            ):
                raw = await read_streamed(response, relay)
        except TimeoutError:
            raise SandboxUnavailable(
                f"runner pod {runner.name} did not answer within {timeout:g} s"
            ) from None
        except (ReplyTooLarge, ReplyUndecodable) as exc:
            raise SandboxUnavailable(f"runner pod {runner.name} sent {exc}") from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _NotDelivered(f"{type(exc).__name__}: {exc}") from exc
        except httpx.TransportError as exc:
            return await self._lost(runner, job, exc, relay)
        try:
            result = decode_result(raw, job)
        except WireError as exc:
            raise SandboxUnavailable(f"runner pod {runner.name} answered nonsense: {exc}") from None
        if isinstance(result, Failure):
            raise SandboxUnavailable(f"runner pod {runner.name}: {result.code}: {result.message}")
        return result

    async def _lost(
        self, runner: RunnerPod, job: Job, exc: Exception, relay: EventRelay
    ) -> Outcome:
        """The pod stopped answering mid-run.  If its memory limit killed it, that is the
        code's doing (a result, with the output it streamed until then); anything else is
        the platform's (an error)."""
        assert self._api is not None
        for pod in await self._api.list_pods(fields=f"metadata.name={runner.name}"):
            runner.observe("MODIFIED", pod)
        if runner.oom_killed:
            return Outcome(
                exit_code=None,
                signal=9,
                timed_out=False,
                stdout=bytes(relay.output["stdout"]),
                stderr=bytes(relay.output["stderr"]),
                stdout_truncated=False,
                stderr_truncated=False,
                duration_ms=0.0,
                memory_limit_hit=True,
            )
        raise SandboxUnavailable(
            f"runner pod {runner.name} stopped answering during execution "
            f"{job.execution_id}: {type(exc).__name__}: {exc}"
        )

    def _in_background(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(self._logged(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _logged(work: Any) -> None:
        try:
            await work
        except KubernetesError as exc:
            log.warning("%s", exc)

    async def _keep_house(self) -> None:
        """Renew this replica's lease and sweep up after replicas that are gone."""
        assert self._api is not None
        period = self._settings.replica_lease_s / 3
        while True:
            await asyncio.sleep(period)
            try:
                renewed = await self._api.renew_lease(self._lease, micro_time(datetime.now(UTC)))
                if not renewed and self._pods is not None:
                    # Another replica took this one for gone (a long API outage), and the
                    # garbage collector takes the pods it owned: a new lease for new pods.
                    log.error("lease %s was deleted; taking a new one", self._lease)
                    self._pods.owner = await self._take_lease()
                await self._sweep()
            except KubernetesError as exc:
                log.warning("housekeeping: %s", exc)

    async def _sweep(self) -> None:
        assert self._api is not None and self._pods is not None
        now = datetime.now(UTC)
        own = self._settings.replica_name
        leases = await self._api.list_leases(LEASES_SELECTOR)
        for name in sweep.expired_leases(leases, now, own):
            log.info("sweep: lease %s is overdue; deleting it and its runner pods", name)
            await self._api.delete_lease(name)
        pods = await self._api.list_pods(RUNNERS_SELECTOR)
        for name in sweep.orphaned_pods(pods, leases, now, own, set(self._pods.known)):
            log.info("sweep: deleting runner pod %s (its replica is gone)", name)
            await self._api.delete_pod(name)

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._pool is not None:
            await self._pool.stop()
        if self._watch is not None:
            self._watch.stop()
        if self._background:
            await asyncio.wait(set(self._background), timeout=5)
        if self._api is not None:
            try:
                await self._api.delete_lease(self._lease)  # and with it anything left
            except KubernetesError as exc:
                log.warning("%s", exc)
            self._api.close()
        await self._http.aclose()
