"""Hand-written WAMP clients that can misbehave on purpose.

Autobahn cannot send garbage, stop reading, skip a PONG or send a second HELLO, so the
tests that need that speak the protocol themselves with these small asyncio clients:

- ``RawSocketConn``: RawSocket (4-octet handshake, 4-octet frame prefix) over TCP or a
  Unix socket; answers PING with PONG unless told not to.
- ``WebSocketConn``: RFC 6455 client (masked frames, opening handshake checked), one WAMP
  message per WebSocket message; answers ping with pong unless told not to.
- ``http_exchange``: send raw HTTP bytes, read the whole answer until EOF.

Both connection classes share one API: ``send(msg)`` (a Python list, encoded with the
connection's serializer), ``send_payload(bytes)`` (an already encoded message, or garbage),
``recv(timeout)`` (the next WAMP message, decoded), ``recv_closed(timeout)`` (read until the
router closes, returning what came before), ``hello()`` (HELLO, returns WELCOME).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct

import cbor2
import msgpack

# ---------------------------------------------------------------- WAMP codes

HELLO, WELCOME, ABORT, GOODBYE, ERROR = 1, 2, 3, 6, 8
PUBLISH, PUBLISHED, SUBSCRIBE, SUBSCRIBED, UNSUBSCRIBE, UNSUBSCRIBED, EVENT = 16, 17, 32, 33, 34, 35, 36
CALL, CANCEL, RESULT = 48, 49, 50
REGISTER, REGISTERED, UNREGISTER, UNREGISTERED, INVOCATION, INTERRUPT, YIELD = 64, 65, 66, 67, 68, 69, 70

CLIENT_ROLES = {
    "publisher": {"features": {"publisher_exclusion": True, "publisher_identification": True,
                               "subscriber_blackwhite_listing": True}},
    "subscriber": {"features": {"pattern_based_subscription": True, "publisher_identification": True}},
    "caller": {"features": {"caller_identification": True, "progressive_call_results": True,
                            "call_canceling": True}},
    "callee": {"features": {"caller_identification": True, "progressive_call_results": True,
                            "call_canceling": True, "pattern_based_registration": True,
                            "shared_registration": True}},
}

# ---------------------------------------------------------------- serializers


def _json_default(o):
    if isinstance(o, (bytes, bytearray)):
        return "\0" + base64.b64encode(bytes(o)).decode()
    raise TypeError(f"cannot JSON-encode {type(o)}")


def _json_binary(v):
    # WAMP binary in JSON: "\0" + base64 (advanced/serialization_binary_json.md).
    if isinstance(v, str) and v.startswith("\0"):
        return base64.b64decode(v[1:])
    if isinstance(v, list):
        return [_json_binary(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_binary(x) for k, x in v.items()}
    return v


def _json_dumps(msg):
    def conv(v):
        if isinstance(v, (bytes, bytearray)):
            return _json_default(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return json.dumps(conv(msg), separators=(",", ":"), ensure_ascii=False).encode()


SERIALIZERS = {
    # name: (RawSocket id, WebSocket subprotocol, encode, decode)
    "json": (1, "wamp.2.json", _json_dumps, lambda b: _json_binary(json.loads(b))),
    "msgpack": (2, "wamp.2.msgpack", lambda m: msgpack.packb(m, use_bin_type=True),
                lambda b: msgpack.unpackb(b, raw=False, strict_map_key=False)),
    "cbor": (3, "wamp.2.cbor", cbor2.dumps, cbor2.loads),
}


def encode(serializer: str, msg) -> bytes:
    return SERIALIZERS[serializer][2](msg)


def decode(serializer: str, data: bytes):
    return SERIALIZERS[serializer][3](data)


class Closed(Exception):
    """The router closed the connection. ``code``/``reason``: WebSocket close, if any."""

    def __init__(self, what, code=None, reason=""):
        super().__init__(f"{what} (close code {code}, reason {reason!r})")
        self.code = code
        self.reason = reason


class HandshakeRefused(Exception):
    def __init__(self, reply: bytes):
        super().__init__(f"RawSocket handshake refused: {reply.hex()}")
        self.reply = reply
        self.error_code = reply[1] >> 4


# ---------------------------------------------------------------- common session layer


class _Conn:
    serializer: str
    answer_pings = True

    def __init__(self):
        self.next_request = 0
        self.pings_seen = 0

    def request_id(self) -> int:
        self.next_request += 1
        return self.next_request

    async def send_raw(self, data: bytes):
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            raise Closed("connection lost while sending") from None

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass

    async def send(self, msg):
        await self.send_payload(encode(self.serializer, msg))

    async def recv(self, timeout: float = 10.0):
        return decode(self.serializer, await self.recv_payload(timeout))

    async def recv_until(self, pred, timeout: float = 10.0):
        """Messages until one satisfies ``pred``; returns (match, skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        skipped = []
        while True:
            m = await self.recv(max(0.01, deadline - loop.time()))
            if pred(m):
                return m, skipped
            skipped.append(m)

    async def recv_closed(self, timeout: float = 10.0):
        """Read until the router closes; returns (messages before the close, Closed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        got = []
        while True:
            try:
                got.append(await self.recv(max(0.01, deadline - loop.time())))
            except Closed as c:
                return got, c

    async def hello(self, realm: str = "realm1", details: dict | None = None):
        d = {"roles": CLIENT_ROLES, "agent": "shardbar-interop-raw"}
        d.update(details or {})
        await self.send([HELLO, realm, d])
        m = await self.recv()
        if m[0] != WELCOME:
            raise AssertionError(f"expected WELCOME, got {m!r}")
        self.session_id = m[1]
        self.welcome = m
        self.shard = m[2]["authextra"]["_shard"]
        return m

    async def call_expect(self, msg, code: int, timeout: float = 10.0):
        """Send ``msg``; return the next message answering it (same request id)."""
        await self.send(msg)
        req = msg[1]
        m, _ = await self.recv_until(
            lambda m: (m[0] == code and m[1] == req) or (m[0] == ERROR and m[1] == msg[0] and m[2] == req), timeout
        )
        return m

    async def subscribe(self, topic: str, options: dict | None = None) -> int:
        req = self.request_id()
        m = await self.call_expect([SUBSCRIBE, req, options or {}, topic], SUBSCRIBED)
        assert m[0] == SUBSCRIBED, m
        return m[2]

    async def register(self, procedure: str, options: dict | None = None) -> int:
        req = self.request_id()
        m = await self.call_expect([REGISTER, req, options or {}, procedure], REGISTERED)
        assert m[0] == REGISTERED, m
        return m[2]


# ---------------------------------------------------------------- RawSocket


def rawsocket_prefix(length: int, frame_type: int = 0) -> bytes:
    return struct.pack("!I", (frame_type << 24) | length)


class RawSocketConn(_Conn):
    """A RawSocket client. ``router_max_len``: the limit the router advertised."""

    def __init__(self, reader, writer, serializer, router_max_len, sock):
        super().__init__()
        self.reader, self.writer, self.serializer = reader, writer, serializer
        self.router_max_len = router_max_len
        self.sock = sock

    @classmethod
    async def open(cls, port: int | None = None, path: str | None = None, serializer: str = "msgpack",
                   len_exp: int = 15, rcvbuf: int | None = None, handshake: bytes | None = None):
        """Connect and do the handshake (or send ``handshake`` octets verbatim).

        ``rcvbuf``: SO_RCVBUF set before connecting, so a client that stops reading fills
        up quickly (the kernel then stops acknowledging and the router's writes stall)."""
        sock = socket.socket(socket.AF_UNIX if path else socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, path if path else ("127.0.0.1", port)), 10)
        if path:
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_connection(sock=sock)
        ser_id = SERIALIZERS[serializer][0]
        writer.write(handshake if handshake is not None else bytes([0x7F, (len_exp << 4) | ser_id, 0, 0]))
        await writer.drain()
        try:
            reply = await asyncio.wait_for(reader.readexactly(4), 10)
        except asyncio.IncompleteReadError as e:
            writer.close()
            raise Closed(f"closed during RawSocket handshake after {e.partial!r}") from None
        if reply[0] != 0x7F or reply[1] & 0x0F == 0:
            writer.close()
            raise HandshakeRefused(reply)
        assert reply[1] & 0x0F == ser_id, f"router answered serializer {reply[1] & 0x0F}, asked {ser_id}"
        assert reply[2:] == b"\0\0", reply.hex()
        return cls(reader, writer, serializer, 2 ** (9 + (reply[1] >> 4)), sock)

    async def send_frame(self, payload: bytes, frame_type: int = 0):
        await self.send_raw(rawsocket_prefix(len(payload), frame_type) + payload)

    async def send_payload(self, payload: bytes):
        await self.send_frame(payload, 0)

    async def recv_frame(self, timeout: float = 10.0):
        """The next frame as (type, payload); raises Closed on EOF/reset."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(4), timeout)
            (word,) = struct.unpack("!I", head)
            ftype, length = (word >> 24) & 0x07, word & 0xFFFFFF
            if word >> 24 & 0x08:
                length = 1 << 24
            payload = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        except asyncio.IncompleteReadError:
            raise Closed("RawSocket EOF") from None
        except (ConnectionResetError, BrokenPipeError):
            raise Closed("RawSocket reset") from None
        return ftype, payload

    async def recv_payload(self, timeout: float = 10.0) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ftype, payload = await self.recv_frame(max(0.01, deadline - loop.time()))
            if ftype == 0:
                return payload
            if ftype == 1:
                self.pings_seen += 1
                if self.answer_pings:
                    await self.send_frame(payload, 2)

    async def wait_eof(self, timeout: float = 10.0) -> bytes:
        """Read and discard until EOF; returns everything read."""
        out = bytearray()
        try:
            while True:
                chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not chunk:
                    return bytes(out)
                out += chunk
        except (ConnectionResetError, BrokenPipeError):
            return bytes(out)


# ---------------------------------------------------------------- WebSocket

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def ws_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    # XOR in one go via int arithmetic (fast enough for the sizes the tests use).
    k = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
    return head + key + masked


def parse_http_head(data: bytes):
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


async def http_exchange(port: int, request: bytes, timeout: float = 10.0):
    """Send raw HTTP; return (status, headers, body) read until EOF."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    writer.write(request)
    await writer.drain()
    data = bytearray()
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    writer.close()
    return parse_http_head(bytes(data))


def ws_upgrade_request(port: int, protocols: list[str] | None, key: str, path: str = "/") -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class WebSocketConn(_Conn):
    def __init__(self, reader, writer, serializer):
        super().__init__()
        self.reader, self.writer, self.serializer = reader, writer, serializer
        self.opcode = OP_TEXT if serializer == "json" else OP_BINARY

    @classmethod
    async def open(cls, port: int, serializer: str = "json"):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(ws_upgrade_request(port, [SERIALIZERS[serializer][1]], key))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status, headers, _ = parse_http_head(head)
        assert status == 101, head
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert headers.get("sec-websocket-accept") == accept, headers
        assert headers.get("sec-websocket-protocol") == SERIALIZERS[serializer][1], headers
        return cls(reader, writer, serializer)

    async def send_payload(self, payload: bytes, opcode: int | None = None):
        await self.send_raw(ws_frame(self.opcode if opcode is None else opcode, payload))

    async def recv_ws_frame(self, timeout: float = 10.0):
        try:
            b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            assert not b1 & 0x80, "a server must not mask its frames"
            payload = await asyncio.wait_for(self.reader.readexactly(n), timeout)
        except asyncio.IncompleteReadError:
            raise Closed("WebSocket EOF") from None
        except (ConnectionResetError, BrokenPipeError):
            raise Closed("WebSocket reset") from None
        return bool(b0 & 0x80), b0 & 0x0F, payload

    async def recv_payload(self, timeout: float = 10.0) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        parts = []
        while True:
            fin, op, payload = await self.recv_ws_frame(max(0.01, deadline - loop.time()))
            if op == OP_PING:
                self.pings_seen += 1
                if self.answer_pings:
                    await self.send_raw(ws_frame(OP_PONG, payload))
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed("WebSocket close", code, payload[2:].decode("utf-8", "replace"))
            parts.append(payload)
            if fin:
                return b"".join(parts)


async def open_raw(router, kind: str):
    """A raw connection of ``kind``: "rs-<ser>", "unix-<ser>" or "ws-<ser>"."""
    transport, ser = kind.split("-")
    if transport == "ws":
        return await WebSocketConn.open(router.port, ser)
    if transport == "unix":
        return await RawSocketConn.open(path=router.unix_path, serializer=ser)
    return await RawSocketConn.open(port=router.port, serializer=ser)


async def raw_session(router, kind: str = "rs-msgpack", shard: int | None = None, realm: str = "realm1",
                      tries: int = 64, details: dict | None = None):
    """An established raw session, on ``shard`` if given (reconnecting until the kernel's
    SO_REUSEPORT hash puts the connection there); ``details`` replace HELLO.Details keys."""
    for _ in range(tries):
        c = await open_raw(router, kind)
        await c.hello(realm, details)
        if shard is None or c.shard == shard:
            return c
        await c.send([GOODBYE, {}, "wamp.close.close_realm"])
        c.close()
    raise AssertionError(f"no {kind} session landed on shard {shard} in {tries} tries")
