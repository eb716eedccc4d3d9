"""moto's server on loopback, with the ECS extension and a layer that injects AWS faults."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

# Set before moto's EC2 module loads: its default AMI catalogue costs seconds and is never used.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from discobridge.fakeaws import moto_ext
from discobridge.fakeaws.ecs_events import BUS

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Rewrite = Callable[[dict[str, Any]], dict[str, Any]]

# EC2 (the query protocol) answers errors in XML; the JSON protocols (ECS, Cloud Map) in JSON.
_EC2_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
    "<Message>{message}</Message></Error></Errors><RequestID>fault</RequestID></Response>"
)


@dataclass
class _Fault:
    remaining: int | None
    match: str = ""  # only requests whose body contains this (a cluster's name, say)
    after: int = 0  # let this many matching requests through first
    code: str = ""  # an AWS error to answer with
    status: int = 500
    message: str = ""
    delay_s: float = 0.0  # wait this long first (longer than the client's read timeout: a timeout)
    drop: bool = False  # close the connection without an answer
    rewrite: Rewrite | None = None  # change the real JSON answer


class Faults:
    """Makes named AWS operations misbehave, for N calls or until cleared: correctly shaped AWS
    errors, delays, dropped connections, or rewritten answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, _Fault] = {}
        self.calls: dict[str, int] = {}

    def fail(
        self,
        operation: str,
        *,
        code: str = "ServerException",
        status: int = 500,
        message: str = "injected fault",
        times: int | None = None,
        match: str = "",
        after: int = 0,
    ) -> None:
        """Answer `operation` with an AWS error: `times` times (None: until cleared), only for
        requests whose body contains `match`, after letting `after` of them through."""
        self._set(operation, _Fault(times, match, after, code=code, status=status, message=message))

    def delay(self, operation: str, seconds: float, *, times: int | None = None, match: str = "") -> None:
        self._set(operation, _Fault(times, match, delay_s=seconds))

    def drop(self, operation: str, *, times: int | None = None) -> None:
        self._set(operation, _Fault(times, drop=True))

    def rewrite(
        self, operation: str, change: Callable[[dict[str, Any]], dict[str, Any]], *, times: int | None = None
    ) -> None:
        """Answer from moto as usual, but pass the JSON answer through `change` first."""
        self._set(operation, _Fault(times, rewrite=change))

    def _set(self, operation: str, fault: _Fault) -> None:
        with self._lock:
            self._faults[operation] = fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def wrap(self, app: Wsgi) -> Wsgi:
        def faulty(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            operation, is_query, request = _operation(environ)
            fault = self._take(operation, request)
            if fault is None:
                return app(environ, start_response)
            if fault.delay_s:
                time.sleep(fault.delay_s)  # this server thread only; moto serves others meanwhile
                if not fault.code and not fault.drop:
                    return app(environ, start_response)
            if fault.drop:
                _drop_connection(environ)
                return []
            if fault.rewrite is not None:
                return _rewritten(app, environ, start_response, fault.rewrite)
            if is_query:
                body = _EC2_ERROR.format(code=fault.code, message=fault.message).encode()
                content_type = "text/xml"
            else:
                body = json.dumps({"__type": fault.code, "message": fault.message}).encode()
                content_type = "application/x-amz-json-1.1"
            start_response(f"{fault.status} Fault", [("Content-Type", content_type)])
            return [body]

        return faulty

    def _take(self, operation: str, body: str) -> _Fault | None:
        with self._lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            fault = self._faults.get(operation)
            if fault is None or fault.match not in body:
                return None
            if fault.after > 0:
                fault.after -= 1
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[operation]
            return fault


def _drop_connection(environ: dict[str, Any]) -> None:
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def _rewritten(
    app: Wsgi,
    environ: dict[str, Any],
    start_response: StartResponse,
    change: Callable[[dict[str, Any]], dict[str, Any]],
) -> Iterable[bytes]:
    captured: dict[str, Any] = {}

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"], captured["headers"] = status, headers

    body = json.dumps(change(json.loads(b"".join(app(environ, capture))))).encode()
    headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
    start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
    return [body]


def _operation(environ: dict[str, Any]) -> tuple[str, bool, str]:
    """The AWS operation a request names (X-Amz-Target for the JSON APIs, Action= for EC2's
    query API; S3 is named by method), whether it is a query-API call, and its body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    body = raw.decode("utf-8", "replace")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.rsplit(".", 1)[-1], False, body
    action = parse_qs(body).get("Action", [""])[0]
    return action or _S3_OPERATIONS.get(environ.get("REQUEST_METHOD", ""), ""), bool(action), body


# The S3 calls discobridge makes, by HTTP method (the REST API names operations no other way).
_S3_OPERATIONS = {"GET": "GetObject", "PUT": "PutObject"}


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per AWS call would drown the demo's own output


class FakeAws:
    """A moto server on 127.0.0.1 (a free port by default), extended and fault-injectable."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self.faults = Faults()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeAws.start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAws:
        moto_ext.install()
        app = self.faults.wrap(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._host, self._port, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-aws", daemon=True)
        self._thread.start()
        return self

    def reset(self) -> None:
        """Forget every AWS resource and fault: each test starts from an empty account."""
        self.faults.clear()
        BUS.clear()
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310 - our URL
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
