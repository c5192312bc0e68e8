"""Local placement of code contexts: a warm sandbox of the local backend, kept for life.

A context takes a sandbox from the same warm pool as executions (its interpreter is
already started), so creating one costs a message, not a sandbox start.  Its egress
socket, when a domain is allowed, stays open for its life; each call gets a fresh
account and ask-callback, so the network caps, the violations and the callback's
answers are per call, as for an execution.  A connection is counted against the call
during which it was opened (one kept open by background work stays on that call's
account and caps).
"""

from __future__ import annotations

from dataclasses import replace

from runner.context import ContextSandbox
from runner.contract import CallOutcome, EventSink
from runner.egress import with_egress

from controller.contexts.placement import ContextCall, ContextSpec, LiveContext
from controller.egress.channel import EgressChannel
from controller.execution.local import LocalBackend


class LocalContext:
    """One context's sandbox on this host, and its egress channel if it has one."""

    def __init__(
        self, sandbox: ContextSandbox, channel: EgressChannel | None, backend: LocalBackend
    ) -> None:
        self.sandbox, self.channel, self._backend = sandbox, channel, backend

    async def run(self, call: ContextCall, events: EventSink | None = None) -> CallOutcome:
        account = None
        if self.channel is not None:
            account = self._backend.new_run(self.channel, call.call_id)
        limits = self._backend.run_limits(call.limits)
        ran = await self.sandbox.run(
            call.code, call.stdin, limits, call.grace_ms, call.figures, events
        )
        if account is None:
            return ran
        return replace(ran, outcome=with_egress(ran.outcome, account))

    async def interrupt(self, call_id: str) -> None:
        # The sandbox's pipe keeps order: an interrupt reaches its keeper before any later
        # call, and one for a call that has ended is ignored there.
        await self.sandbox.interrupt()

    async def restart(self) -> None:
        await self.sandbox.restart()

    async def list_files(self, max_entries: int) -> tuple[list[tuple[str, int]], bool]:
        return await self.sandbox.list_files(max_entries)

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        return await self.sandbox.read_file(path, max_bytes)

    async def write_file(self, path: str, data: bytes) -> None:
        await self.sandbox.write_file(path, data)

    async def delete(self, path: str) -> None:
        await self.sandbox.delete(path)


class LocalContexts:
    """Contexts as sandboxes of the local backend (started and stopped with it)."""

    name = "local"

    def __init__(self, backend: LocalBackend) -> None:
        self._backend = backend

    async def open(self, spec: ContextSpec, caller: str) -> LiveContext:
        backend = self._backend
        sandbox = await backend.lend(caller)
        context = None
        channel = None
        try:
            context = ContextSandbox(sandbox)
            if spec.network is not None:
                channel = await backend.open_egress(sandbox, spec.network, caller, spec.context_id)
            await context.begin(
                list(spec.files), backend.run_limits(spec.limits), egress=channel is not None
            )
        except BaseException:
            if channel is not None:
                await channel.close()
            if context is not None:
                context.close()
            backend.retire(sandbox)
            raise
        return LocalContext(context, channel, backend)

    async def close(self, context: LiveContext) -> None:
        assert isinstance(context, LocalContext)
        if context.channel is not None:
            await context.channel.close()
        context.sandbox.close()
        self._backend.retire(context.sandbox.sandbox)
