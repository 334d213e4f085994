"""A real HTTP/1.1 server on 127.0.0.1 that serves files and misbehaves on request.

Used by the download tests and ``bench/download.py``. Files are served with ETag,
Last-Modified, Range (206) and If-Range like a well-behaved static server; a ``Fault``
per path turns that into the failures real servers produce. Every request is logged
(path, Range, status, bytes sent, whether the whole file went out from byte 0).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that hang up (timeouts, our own resets) are part of the tests


@dataclass
class Fault:
    """What to do wrong for one path. ``times`` limits the fault to the first N requests
    (None: always). Status-only faults answer with that status."""
    status: int | None = None             # 404, 410, 403, 429, 500, 503, ...
    retry_after: str | None = None        # header sent with the status
    reset_after: int | None = None        # send this many body bytes, then RST
    truncate_after: int | None = None     # send this many body bytes, then close cleanly
    html: bool = False                    # an error page with 200 and text/html
    delay: float = 0.0                    # seconds before answering (slow server)
    trickle: float = 0.0                  # seconds between 1 KiB chunks of the body
    redirect_to: str | None = None        # Location for a 302
    ignore_range: bool = False            # always 200 with the whole body
    ignore_if_range: bool = False         # honour Range even when the validator is stale
    times: int | None = None


@dataclass
class LogEntry:
    path: str
    range: str | None
    status: int
    sent: int
    whole_from_zero: bool
    at: float           # time.monotonic() when the request arrived
    client_port: int    # one per TCP connection: fewer ports than requests = keep-alive


@dataclass
class Served:
    body: bytes
    etag: str = ""
    mtime: float = 1_600_000_000.0
    content_type: str = "image/jpeg"

    def __post_init__(self):
        if not self.etag:
            self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class FaultServer:
    files: dict[str, Served] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    latency: float = 0.0                  # added to every request (bench: ~20 ms)
    log: list[LogEntry] = field(default_factory=list)

    def __post_init__(self):
        self._hits: dict[str, int] = {}
        self._lock = threading.Lock()
        handler = _make_handler(self)
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def put(self, path: str, body: bytes, **kw) -> str:
        self.files[path] = Served(body, **kw)
        return self.url(path)

    def start(self) -> "FaultServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def settled_log(self, n: int, timeout: float = 5.0) -> list[LogEntry]:
        """The log once it holds ``n`` entries: a request is logged after its body is
        sent, so a client can finish before the server thread records it."""
        deadline = time.monotonic() + timeout
        while len(self.log) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.log)

    def requests_for(self, path: str) -> list[LogEntry]:
        return [e for e in self.log if e.path == path]

    def _fault(self, path: str) -> Fault | None:
        with self._lock:
            n = self._hits.get(path, 0)
            self._hits[path] = n + 1
        fault = self.faults.get(path)
        if fault is None or (fault.times is not None and n >= fault.times):
            return None
        return fault


def _make_handler(server: FaultServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def log_message(self, *args):  # quiet
            pass

        def _record(self, status: int, sent: int, whole: bool) -> None:
            with server._lock:
                server.log.append(LogEntry(self.path, self.headers.get("Range"), status, sent, whole,
                                           self._arrived, self.client_address[1]))

        def _status_only(self, status: int, headers: dict[str, str] | None = None,
                         body: bytes = b"") -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self._record(status, 0, False)

        def do_GET(self):  # noqa: N802 - the stdlib's name
            self._arrived = time.monotonic()
            if server.latency:
                time.sleep(server.latency)
            fault = server._fault(self.path)
            if fault and fault.delay:
                time.sleep(fault.delay)
            if fault and fault.redirect_to:
                return self._status_only(302, {"Location": fault.redirect_to})
            if fault and fault.status:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                # An error page of realistic size (more than a socket read buffers).
                return self._status_only(fault.status, headers, b"<p>error</p>" * 2000)
            if fault and fault.html:
                page = b"<html><body>Sorry, this photo moved.</body></html>"
                return self._status_only(200, {"Content-Type": "text/html; charset=utf-8"}, page)
            served = server.files.get(self.path)
            if served is None:
                return self._status_only(404)
            body, start = served.body, 0
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            last_modified = formatdate(served.mtime, usegmt=True)
            fresh = if_range is None or if_range in (served.etag, last_modified)
            if rng and not (fault and fault.ignore_range) and (fresh or (fault and fault.ignore_if_range)):
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    return self._status_only(416, {"Content-Range": f"bytes */{len(body)}"})
                status = 206
                self.send_response(status)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                status = 200
                self.send_response(status)
            chunk = body[start:]
            self.send_header("Content-Type", served.content_type)
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("ETag", served.etag)
            self.send_header("Last-Modified", last_modified)
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            limit = len(chunk)
            if fault and fault.reset_after is not None:
                limit = min(limit, fault.reset_after)
            if fault and fault.truncate_after is not None:
                limit = min(limit, fault.truncate_after)
            sent = 0
            step = 1024 if fault and fault.trickle else 1 << 16
            try:
                while sent < limit:
                    piece = chunk[sent:min(limit, sent + step)]
                    self.wfile.write(piece)
                    sent += len(piece)
                    if fault and fault.trickle and sent < limit:
                        self.wfile.flush()
                        time.sleep(fault.trickle)
            except (BrokenPipeError, ConnectionResetError):
                self._record(status, sent, False)
                self.close_connection = True
                return
            self._record(status, sent, start == 0 and sent == len(body))
            if sent < len(chunk):
                self.wfile.flush()
                if fault.reset_after is not None:  # RST instead of FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.close_connection = True

    return Handler
