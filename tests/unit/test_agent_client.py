"""The browser agents' client against hostile replies: size, trickle, malformed JSON."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import BaseModel

from controller.browser.backend import AgentHandle
from controller.browser.client import AgentClient, reply_json, reply_model, reply_object
from controller.errors import BadGateway, GatewayTimeout, MalformedReply

AGENT = AgentHandle("a-1", "http://agent.invalid:8080", "the-token")


def client_of(handler: httpx.MockTransport) -> AgentClient:
    return AgentClient(transport=handler)


async def test_a_reply_over_the_cap_is_a_502_whether_declared_or_not() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 10

    declared = client_of(httpx.MockTransport(lambda r: httpx.Response(200, content=b"x" * 40)))
    undeclared = client_of(httpx.MockTransport(lambda r: httpx.Response(200, content=chunks())))
    for agents in (declared, undeclared):
        with pytest.raises(BadGateway, match="over 39"):
            await agents.request(AGENT, "GET", "/content", max_bytes=39)
        assert (await agents.request(AGENT, "GET", "/content", max_bytes=40)).content == b"x" * 40
        await agents.close()


async def test_a_trickling_reply_is_cut_off_at_the_whole_replys_deadline() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(100):  # 10 s in all, each byte well inside any per-read timeout
            await asyncio.sleep(0.1)
            yield b"x"

    agents = client_of(httpx.MockTransport(lambda r: httpx.Response(200, content=trickle())))
    start = time.monotonic()
    with pytest.raises(GatewayTimeout):
        await agents.request(AGENT, "GET", "/content", timeout_s=0.5)
    assert time.monotonic() - start < 5
    await agents.close()


async def test_the_token_goes_with_each_call_and_never_into_a_repr() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={})

    agents = client_of(httpx.MockTransport(handler))
    await agents.request(AGENT, "GET", "/health")
    assert seen == ["Bearer the-token"]
    assert "the-token" not in repr(AGENT)
    await agents.close()


class Reply(BaseModel):
    title: str


@pytest.mark.parametrize(
    "content",
    [b"not json", b"NaN", b'{"x": Infinity}', b"[" * 100_000 + b"]" * 100_000, b"\xff"],
)
def test_malformed_json_from_an_agent_is_a_502(content: bytes) -> None:
    with pytest.raises(MalformedReply):
        reply_json(httpx.Response(200, content=content))


def test_json_of_the_wrong_shape_is_a_502_naming_the_mismatch() -> None:
    with pytest.raises(MalformedReply, match="not an object"):
        reply_object(httpx.Response(200, json=[1]))
    with pytest.raises(MalformedReply, match=r"invalid Reply \(title"):
        reply_model(httpx.Response(200, json={"title": 7}), Reply)
    assert reply_model(httpx.Response(200, json={"title": "t"}), Reply).title == "t"


async def test_a_compressed_reply_is_read_once_decoded() -> None:
    import gzip

    body = gzip.compress(b"<html>hello</html>")
    agents = client_of(
        httpx.MockTransport(
            lambda r: httpx.Response(200, content=body, headers={"content-encoding": "gzip"})
        )
    )
    assert (await agents.request(AGENT, "GET", "/content")).content == b"<html>hello</html>"
    await agents.close()
