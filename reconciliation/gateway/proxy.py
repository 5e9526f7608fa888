"""Forwarding to the Dagster webserver: HTTP (streamed back) and WebSocket (the UI's GraphQL
subscriptions, `graphql-ws` or `graphql-transport-ws`, whichever subprotocol the browser
asked for and the webserver chose). Our cookies never reach the webserver."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
#: request headers not forwarded: ours (cookie) or recomputed (host, length)
DROPPED_REQUEST = HOP_BY_HOP | {"host", "cookie", "content-length"}

RUNS_QUERY = """
query GatewayRunCustomers($ids: [String!]) {
  runsOrError(filter: {runIds: $ids}) {
    __typename
    ... on Runs { results { runId jobName tags { key value } runConfigYaml } }
  }
}
"""

#: what a WebSocket message from the browser is checked with: None to forward it, else
#: the refusal to send back
MessageCheck = Callable[[dict[str, Any]], Awaitable[str | None]]


class Upstream:
    def __init__(self, base_url: str, transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx2.AsyncClient(
            base_url=self.base_url,
            timeout=httpx2.Timeout(120.0, connect=10.0),
            transport=transport,
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self.client.aclose()

    def _headers(self, request: Request) -> list[tuple[str, str]]:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in DROPPED_REQUEST]
        client = request.client.host if request.client else ""
        headers += [
            ("x-forwarded-for", client),
            ("x-forwarded-proto", request.url.scheme),
            ("x-forwarded-host", request.headers.get("host", "")),
        ]
        return headers

    async def forward(
        self,
        request: Request,
        body: bytes,
        *,
        json_body: dict[str, Any] | None = None,
        buffered: bool = False,
    ) -> Response:
        """The request as received (or with `json_body` as a JSON POST), streamed back;
        `buffered` reads the whole answer (mutations, whose result the audit records)."""
        headers = self._headers(request)
        method = request.method
        if json_body is not None:
            body = json.dumps(json_body).encode()
            method = "POST"
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("content-type", "application/json"))
        path = request.url.path
        query = request.url.query if json_body is None else ""
        upstream_request = self.client.build_request(
            method, path + (f"?{query}" if query else ""), headers=headers, content=body
        )
        try:
            answer = await self.client.send(upstream_request, stream=True)
        except httpx2.HTTPError as exc:
            return Response(
                f"the Dagster webserver did not answer ({type(exc).__name__})",
                status_code=502,
                media_type="text/plain",
            )
        response_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        if buffered:
            content = await answer.aread()
            await answer.aclose()
            response_headers.pop("content-encoding", None)  # aread() decoded it
            response_headers.pop("content-length", None)
            return Response(content, status_code=answer.status_code, headers=response_headers)
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers=response_headers,
            background=BackgroundTask(answer.aclose),
        )

    async def run_tags(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each known run's tags and run config, asked of the webserver's GraphQL API."""
        if not run_ids:
            return {}
        answer = await self.client.post(
            "/graphql", json={"query": RUNS_QUERY, "variables": {"ids": run_ids}}
        )
        answer.raise_for_status()
        data = (answer.json().get("data") or {}).get("runsOrError") or {}
        runs = {}
        for run in data.get("results") or ():
            tags = {t["key"]: t["value"] for t in run.get("tags") or ()}
            runs[run["runId"]] = {
                "tags": tags,
                "run_config": run.get("runConfigYaml"),
                "job": run.get("jobName"),
            }
        return runs

    def websocket_url(self, path: str, query: str) -> str:
        scheme = "wss" if self.base_url.startswith("https") else "ws"
        rest = self.base_url.split("://", 1)[1]
        return f"{scheme}://{rest}{path}" + (f"?{query}" if query else "")

    async def relay_websocket(
        self,
        websocket: WebSocket,
        check: MessageCheck,
        alive: Callable[[], Awaitable[bool]],
        watch_seconds: float = 30.0,
    ) -> None:
        """Connects to the webserver with the browser's subprotocols, accepts the browser
        with the one chosen, then relays both ways; each text message from the browser
        passes `check` first. Closes (4401) when `alive()` turns false."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        url = self.websocket_url(websocket.url.path, websocket.url.query)
        asked = list(websocket.scope.get("subprotocols") or [])
        try:
            upstream = await connect(
                url, subprotocols=asked or None, max_size=None, open_timeout=15
            )
        except (OSError, TimeoutError, ConnectionClosed, Exception):
            await websocket.close(code=1011)
            return
        chosen = upstream.subprotocol
        await websocket.accept(subprotocol=chosen)

        async def browser_to_upstream() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if not await alive():
                    await websocket.close(code=4401, reason="session ended")
                    return
                text = message.get("text")
                if text is not None:
                    try:
                        parsed = json.loads(text)
                    except json.JSONDecodeError:
                        parsed = None
                    refusal = await check(parsed) if isinstance(parsed, dict) else None
                    if refusal is not None:
                        await websocket.send_text(_error_frame(chosen, parsed, refusal))
                        continue
                    await upstream.send(text)
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])

        async def upstream_to_browser() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for data in upstream:
                    if isinstance(data, str):
                        await websocket.send_text(data)
                    else:
                        await websocket.send_bytes(data)

        async def watchdog() -> None:
            while True:
                await asyncio.sleep(watch_seconds)
                if not await alive():
                    await websocket.close(code=4401, reason="session ended")
                    return

        tasks = [
            asyncio.create_task(browser_to_upstream()),
            asyncio.create_task(upstream_to_browser()),
            asyncio.create_task(watchdog()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (WebSocketDisconnect, ConnectionClosed):
            pass
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            await upstream.close()
            with contextlib.suppress(Exception):
                await websocket.close()


def _error_frame(subprotocol: str | None, message: dict[str, Any], refusal: str) -> str:
    """A GraphQL error for one operation, in the subprotocol's own shape."""
    error = {"message": refusal, "extensions": {"code": "FORBIDDEN"}}
    if subprotocol == "graphql-transport-ws":
        return json.dumps({"type": "error", "id": message.get("id"), "payload": [error]})
    return json.dumps({"type": "error", "id": message.get("id"), "payload": error})
