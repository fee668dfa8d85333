"""Socket Mode (https://docs.slack.dev/apis/events-api/using-socket-mode): the WebSocket that
apps.connections.open hands out, the ``hello`` / ``disconnect`` messages, envelopes and acks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from .fixtures import fixture
from .records import SocketAck


class SocketModeMixin:
    def _init_socket_mode(self) -> None:
        self._tickets: set = set()
        self._socket_connections: list = []  # live aiohttp WebSocketResponse objects, oldest first
        self._socket_transports: dict = {}  # WebSocketResponse -> its TCP transport (to drop it)
        self._socket_connection_count = 0
        self._sent_envelopes: dict = {}  # envelope_id -> (envelope, sent_at)
        #: Slack pings Socket Mode clients (the Node SDK's serverPingTimeout waits for those pings).
        #: A short interval also lets slack_sdk's clients notice a closed connection quickly.
        self.socket_ping_interval = 0.5

    def _add_socket_mode_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/socket/link/", self._handle_socket)

    def _new_socket_url(self) -> str:
        ticket = str(uuid.uuid4())
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://{self.host}:{self.port}/socket/link/?ticket={ticket}&app_id={self.app_id}"

    # ------------------------------------------------------------------ public API

    @property
    def socket_connections(self) -> int:
        """How many Socket Mode clients are connected now."""
        with self._lock:
            return len(self._socket_connections)

    @property
    def socket_connections_opened(self) -> int:
        """How many Socket Mode connections were opened since start (reconnects included)."""
        with self._lock:
            return self._socket_connection_count

    def wait_for_socket_client(self, timeout: float = 5.0, connections_opened: int = 1) -> None:
        """Wait until a client is connected (and has been sent ``hello``)."""
        self.wait_for(
            lambda: self.socket_connections > 0 and self.socket_connections_opened >= connections_opened,
            timeout,
            "a Socket Mode client to connect",
        )

    def socket_send(
        self,
        envelope_type: str,
        payload: dict,
        retry_attempt: int = 0,
        accepts_response_payload: bool | None = None,
        *,
        retry_reason: str = "",
        envelope_id: str | None = None,
    ) -> str:
        """Send an envelope to the newest connected client; returns its ``envelope_id``.

        Envelopes are socket_mode/<type>.json: only slash_commands accept a response payload."""
        envelope = fixture(f"socket_mode/{envelope_type}")
        envelope.update(envelope_id=envelope_id or str(uuid.uuid4()), payload=payload)
        if accepts_response_payload is not None:
            envelope["accepts_response_payload"] = accepts_response_payload
        if envelope_type == "events_api":
            envelope.update(retry_attempt=retry_attempt, retry_reason=retry_reason)
        with self._lock:
            if not self._socket_connections:
                raise AssertionError("no Socket Mode client is connected")
            ws = self._socket_connections[-1]
            self._sent_envelopes[envelope["envelope_id"]] = (envelope, time.monotonic())
        self._run_in_loop(ws.send_str(json.dumps(envelope)))
        return envelope["envelope_id"]

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> SocketAck:
        return self.wait_for(
            lambda: next((a for a in self.socket_acks() if a.envelope_id == envelope_id), None),
            timeout,
            f"the ack of envelope {envelope_id}",
        )

    def socket_slash_command(
        self,
        text: str = "",
        command: str = "/findimage",
        user_id: str = "U0USER",
        channel_id: str = "C0CHANNEL",
        *,
        timeout: float = 5.0,
        **fields: Any,
    ) -> SocketAck:
        """A user runs a slash command; returns the app's ack (``ack.elapsed``, ``ack.envelope``)."""
        payload = self.slash_command_payload(text, command, user_id, channel_id, **fields)
        return self.wait_for_ack(self.socket_send("slash_commands", payload), timeout)

    def socket_event(
        self,
        event: dict,
        event_id: str | None = None,
        retry_attempt: int = 0,
        *,
        retry_reason: str = "",
        timeout: float = 5.0,
    ) -> SocketAck:
        """Deliver an Events API event over Socket Mode; same ``event_id`` + ``retry_attempt`` = a retry."""
        if retry_attempt and not retry_reason:
            retry_reason = "timeout"
        envelope_id = self.socket_send(
            "events_api", self.event_callback(event, event_id), retry_attempt, retry_reason=retry_reason
        )
        return self.wait_for_ack(envelope_id, timeout)

    def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the newest client to reconnect, as Slack does before recycling a connection."""
        with self._lock:
            ws = self._socket_connections[-1]
        message = fixture("socket_mode/disconnect")
        message.update(reason=reason, debug_info={"host": "applink-emulator"})
        self._run_in_loop(ws.send_str(json.dumps(message)))

    def socket_drop(self, *, abrupt: bool = False) -> None:
        """End the newest client's connection from the server side, without a ``disconnect`` message first.

        Default: a WebSocket close frame (code 1011, as when a Slack server fails). ``abrupt=True`` cuts
        the TCP connection with no close frame, as a network failure does; the client can only notice
        that by its own pings.
        """
        with self._lock:
            if not self._socket_connections:
                raise AssertionError("no Socket Mode client is connected")
            ws = self._socket_connections[-1]
            transport = self._socket_transports[ws]

        async def drop() -> None:
            if abrupt:
                transport.abort()
            else:
                await ws.close(code=1011, message=b"emulator dropped the connection")

        self._run_in_loop(drop())

    # ------------------------------------------------------------------ server side

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            known = request.query.get("ticket") in self._tickets
        if not known:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._lock:
            self._socket_connection_count += 1
            hello = fixture("socket_mode/hello")
            hello.update(num_connections=len(self._socket_connections) + 1, connection_info={"app_id": self.app_id})
            hello["debug_info"]["host"] = "applink-emulator"
        await ws.send_str(json.dumps(hello))
        with self._lock:
            self._socket_connections.append(ws)
            self._socket_transports[ws] = request.transport
        self._recorder.changed()
        pinger = asyncio.ensure_future(self._ping_socket(ws))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_socket_text(message.data)
        finally:
            pinger.cancel()
            with self._lock:
                if ws in self._socket_connections:
                    self._socket_connections.remove(ws)
                self._socket_transports.pop(ws, None)
            self._recorder.changed()
        return ws

    async def _ping_socket(self, ws: web.WebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(self.socket_ping_interval)
            try:
                await ws.ping(b"emulator")
            except (ConnectionError, RuntimeError):
                return

    def _on_socket_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict) or "envelope_id" not in message:
            return
        with self._lock:
            envelope, sent_at = self._sent_envelopes.get(message["envelope_id"], (None, None))
        ack = SocketAck(message["envelope_id"], message.get("payload"), envelope, sent_at, time.monotonic())
        self._recorder.add("socket_acks", ack)

    async def _close_sockets(self) -> None:
        with self._lock:
            connections = list(self._socket_connections)
        for ws in connections:
            await ws.close(code=1001, message=b"emulator stopping")
