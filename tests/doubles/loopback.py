"""What every test server here shares: an HTTP handler served on 127.0.0.1 and a free port from daemon
threads, stopped by itself after a lifetime so that a test that forgets to close it leaves nothing."""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a load test connects many at once; the default 5 would refuse them

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up (a run stopped, a connection reset) is no error of the server's: say nothing of it
        (socketserver prints its traceback to the test's stderr, which tests read)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LoopbackServer:
    def __init__(
        self, handler: type[BaseHTTPRequestHandler], lifetime_s: float, expire: Callable[[], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`expire` is called when the lifetime ends (the owner's own close); by default, `close`. With `tls`,
        it speaks HTTPS."""
        self._httpd: ThreadingHTTPServer | None = _Server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        self._timer = threading.Timer(lifetime_s, expire or self.close)
        self._timer.daemon = True
        self._timer.start()

    @property
    def base_url(self) -> str:
        assert self._httpd, "the server is closed"
        return f"{self.scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        """Stop serving (idempotent; also called by the lifetime timer)."""
        httpd, self._httpd = self._httpd, None
        if threading.current_thread() is not self._timer:
            self._timer.cancel()
        if httpd:
            httpd.shutdown()
            httpd.server_close()
