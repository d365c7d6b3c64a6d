"""A fault-injecting HTTP reverse proxy on 127.0.0.1, to put in front of the moto S3 server.

    with faultproxy.proxy(upstream_env) as (env, faults):
        faults.throttle(seconds=2)                  # 503 SlowDown for 2 s, nothing forwarded
        faults.lose_reply(count=1, match=r"^PUT ")  # forwarded and applied, reply dropped
        faults.refuse(count=1)                      # connection closed, nothing forwarded

Each request is forwarded unchanged (method, target, headers with Host as received, body) on a
fresh upstream connection (moto closes every connection anyway); clients get HTTP/1.1 keep-alive.
Only the framing is rewritten: a chunked request body is forwarded de-chunked with Content-Length,
Expect is dropped (the proxy answers "100 Continue" itself), and responses are relayed with
Content-Length instead of Transfer-Encoding. Standard library only.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Union
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

Match = Union[None, str, Callable[[str, str, Any], bool]]
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
_UNSET: Any = object()
_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Service is unable to handle request.",
}


def _matcher(match: Match) -> Callable[[str, str, Any], bool]:
    """None (all), a regex searched in "METHOD /path?query", or callable(method, path, headers)."""
    if match is None:
        return lambda m, p, h: True
    if isinstance(match, str):
        rx = re.compile(match)
        return lambda m, p, h: rx.search(f"{m} {p}") is not None
    return match


@dataclass
class _Rule:
    kind: str  # "throttle" | "lose_reply" | "refuse"
    match: Callable[[str, str, Any], bool]
    remaining: int | None = None  # the next `remaining` matching requests, or
    until: float | None = None  # every matching request until this time.monotonic()
    status: int = 503
    code: str = "SlowDown"
    message: str = ""

    def active(self, now: float) -> bool:
        return (self.remaining is None or self.remaining > 0) and (
            self.until is None or now < self.until
        )


class Faults:
    """The controller: arms faults and records every request the proxy sees (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._entries: list[tuple[str, str, int | None, str | None, Any]] = []

    def throttle(
        self,
        seconds: float | None = None,
        *,
        count: int | None = None,
        status: int = 503,
        code: str = "SlowDown",
        message: str | None = None,
        match: Match = None,
    ) -> None:
        """Answer matching requests with an S3 XML error without forwarding them: for `seconds`
        (5.0 if neither is given) from now, or else the next `count` of them."""
        until = (
            None if count is not None else time.monotonic() + (5.0 if seconds is None else seconds)
        )
        msg = _MESSAGES.get(code, "Please try again.") if message is None else message
        self._add(_Rule("throttle", _matcher(match), count, until, status, code, msg))

    def lose_reply(self, count: int = 1, match: Match = None) -> None:
        """Forward the next `count` matching requests (the store applies them), then close the
        client connection without sending any response bytes."""
        self._add(_Rule("lose_reply", _matcher(match), count))

    def refuse(self, count: int = 1, match: Match = None) -> None:
        """Close the connection on the next `count` matching requests, without forwarding."""
        self._add(_Rule("refuse", _matcher(match), count))

    def clear(self) -> None:
        """Disarm every fault (the log is kept)."""
        with self._lock:
            self._rules.clear()

    @property
    def log(self) -> list[tuple[str, str, int | None, str | None]]:
        """(method, path?query, status, fault) of every request so far, in order of completion.
        status is moto's (also for a lost reply) or the throttle's; None if refused, or if moto
        could not be reached (fault "upstream-error")."""
        with self._lock:
            return [e[:4] for e in self._entries]

    def count(self, method: str | None = None, match: Match = None) -> int:
        """How many logged requests have this method (any if None) and match `match`."""
        f, method = _matcher(match), method and method.upper()
        with self._lock:
            entries = list(self._entries)
        return sum(1 for m, p, _s, _f, h in entries if method in (None, m) and f(m, p, h))

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _pick(self, method: str, path: str, headers: Any) -> _Rule | None:
        """The first active rule matching the request; uses up one of a counted rule."""
        with self._lock:
            now = time.monotonic()
            self._rules = [r for r in self._rules if r.active(now)]
            for r in self._rules:
                if r.match(method, path, headers):
                    if r.remaining is not None:
                        r.remaining -= 1
                    return r
        return None

    def _record(self, h: _Handler, status: int | None, fault: str | None) -> None:
        with self._lock:
            self._entries.append((h.command, h.path, status, fault, h.headers))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.conns.add(self.connection)

    def finish(self) -> None:
        with self.server.lock:
            self.server.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle_expect_100(self) -> bool:
        # Decide before the body is sent: a refused request gets no "100 Continue".
        self._rule = self.server.faults._pick(self.command, self.path, self.headers)
        return not self._refused(self._rule) and super().handle_expect_100()

    def _refused(self, rule: _Rule | None) -> bool:
        if rule is None or rule.kind != "refuse":
            return False
        self.server.faults._record(self, None, "refuse")
        self.close_connection = True  # nothing more is read or sent
        return True

    def _read_body(self) -> bytes:
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts: list[bytes] = []
        while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)

    def _handle(self) -> None:
        faults = self.server.faults
        rule = self.__dict__.pop("_rule", _UNSET)  # set if handle_expect_100 ran
        if rule is _UNSET:
            rule = faults._pick(self.command, self.path, self.headers)
        if self._refused(rule):
            return
        body = self._read_body()
        if rule is not None and rule.kind == "throttle":
            rid = uuid.uuid4().hex[:16].upper()
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{rule.code}</Code>'
                f"<Message>{escape(rule.message)}</Message><RequestId>{rid}</RequestId>"
                "<HostId>faultproxy</HostId></Error>"
            ).encode()
            hdrs = [("Content-Type", "application/xml"), ("Content-Length", str(len(xml)))]
            faults._record(self, rule.status, "throttle")
            return self._reply(rule.status, None, [*hdrs, ("x-amz-request-id", rid)], xml)
        try:
            status, reason, headers, data = self._forward(body)
        except (OSError, http.client.HTTPException):
            faults._record(self, None, "upstream-error")
            self.close_connection = True
            return
        faults._record(self, status, rule and rule.kind)  # recorded before the client hears
        if rule is not None:  # lose_reply: applied upstream, the client gets nothing
            self.close_connection = True
        else:
            self._reply(status, reason, headers, data)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.server.upstream, timeout=120)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in _HOP and k.lower() not in ("expect", "content-length"):
                    conn.putheader(k, v)
            if body or "Content-Length" in self.headers or "Transfer-Encoding" in self.headers:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _reply(self, status: int, reason: str | None, headers: list, body: bytes) -> None:
        self.send_response_only(status, reason)
        for k, v in headers:
            if k.lower() not in _HOP:
                self.send_header(k, v)
        has_length = any(k.lower() == "content-length" for k, _ in headers)
        if not has_length and status not in (204, 304) and self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))  # it was chunked
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()


for _m in ("GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"):
    setattr(_Handler, "do_" + _m, _Handler._handle)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, faults: Faults) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream, self.faults = upstream, faults
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()  # open client connections, shut down at exit

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-request is no error here


@contextmanager
def proxy(upstream_env: dict[str, str]) -> Iterator[tuple[dict[str, str], Faults]]:
    """Run the proxy in front of upstream_env["AWS_ENDPOINT_URL"]; yields (env, faults), env
    being a copy of upstream_env pointing at the proxy."""
    faults = Faults()
    server = _Server(urlsplit(upstream_env["AWS_ENDPOINT_URL"]).netloc, faults)
    thread = threading.Thread(target=server.serve_forever, name="faultproxy", daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    env = {**upstream_env, "AWS_ENDPOINT_URL": endpoint}
    if "AWS_ENDPOINT_URL_S3" in env:
        env["AWS_ENDPOINT_URL_S3"] = endpoint
    try:
        yield env, faults
    finally:
        server.shutdown()
        with server.lock:
            for sock in server.conns:  # idle keep-alive connections
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        server.server_close()
        thread.join(timeout=10)


def set_storage_class(
    env: dict[str, str], bucket: str, prefix: str, storage_class: str = "GLACIER"
) -> int:
    """Copy every object under `prefix` onto itself with this storage class; returns how many.
    Objects already in that class are skipped: moto refuses to copy from GLACIER/DEEP_ARCHIVE
    (403 ObjectNotInActiveTierError) unless restored, while GET answers 403 InvalidObjectState."""
    from s3server import client

    c, n = client(env), 0
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj.get("StorageClass", "STANDARD") == storage_class:
                continue
            key = obj["Key"]
            c.copy_object(
                Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                StorageClass=storage_class, MetadataDirective="COPY",
            )  # fmt: skip
            n += 1
    return n
