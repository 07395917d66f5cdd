"""A local HTTP server with single-range ``Range`` support, shared by the download tests.

``http.server`` in a daemon thread, bound to 127.0.0.1 on a free port. It serves the byte strings
in :attr:`ServerState.files`, implements ``Range: bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` itself
(206 + ``Content-Range``, 416 when unsatisfiable), logs every request, and can misbehave on
purpose: cut a response short, ignore ranges (answer 200), or fail with a given status. Nothing
leaves the host.

Use it through :func:`serve`::

    @pytest.fixture()
    def server() -> Iterator[RangeServer]:
        with serve() as srv:
            yield srv
"""

from __future__ import annotations

import contextlib
import http.server
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass
class ServerState:
    """What the server serves and how it misbehaves; tests mutate it between requests."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict[str, str | None]] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent on the next request
    cut_every: dict[str, int] = field(default_factory=dict)  # path -> at most this many bytes per response
    fail_next: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses for the next requests
    range_support: bool = True
    content_type: dict[str, str] = field(default_factory=dict)
    etag: str = '"v1"'


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (inclusive) of a single-range header for a body of ``size`` bytes.

    None means unsatisfiable (416). A malformed header raises ValueError.
    """
    m = _RANGE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        raise ValueError(f"unsupported Range header {header!r}")
    if not m.group(1):  # suffix range: the last n bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else None
    start = int(m.group(1))
    if m.group(2) and int(m.group(2)) < start:
        raise ValueError(f"Range end before start in {header!r}")
    if start >= size:
        return None
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    return start, end


class RangeHandler(http.server.BaseHTTPRequestHandler):
    server: RangeServer

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        st = self.server.state
        rng = self.headers.get("Range")
        st.requests.append({"path": self.path, "range": rng, "if_range": self.headers.get("If-Range")})
        failures = st.fail_next.get(self.path)
        if failures:
            self.send_error(failures.pop(0))
            return
        data = st.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        status, start, end = 200, 0, len(data) - 1
        if rng and st.range_support:
            try:
                span = parse_range(rng, len(data))
            except ValueError as exc:
                self.send_error(400, str(exc))
                return
            if span is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, (start, end) = 206, span
        body = data[start:end + 1]
        self.send_response(status)
        self.send_header("Content-Type", st.content_type.get(self.path, "application/octet-stream"))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", st.etag)
        if st.range_support:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        cut = st.cut_after.pop(self.path, st.cut_every.get(self.path))
        if cut is not None:  # send part of the body, then drop the connection
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class RangeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.state = ServerState()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up mid-body (e.g. on a 200 it did not want) is expected here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextlib.contextmanager
def serve() -> Iterator[RangeServer]:
    """Run a :class:`RangeServer` in a thread for the duration of the block."""
    srv = RangeServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)
