"""The agent's health endpoint: one JSON document about the agent and its workers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve(host: str, port: int, report: Callable[[], dict[str, Any]]) -> ThreadingHTTPServer:
    """Serve ``GET /health`` (and ``/``) with ``report()`` as JSON, in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/", "/health"):
                self.send_error(404, "try /health")
                return
            body = json.dumps(report(), default=str).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # health probes are not worth a log line each

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="pyfi-agent-health", daemon=True).start()
    return server
