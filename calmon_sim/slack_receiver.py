"""A local stand-in for a Slack incoming webhook: records (and optionally prints) what it receives.

The demo posts to it when no SLACK_WEBHOOK_URL is set, so messages travel over real HTTP.
Binds to loopback only.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlackReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, echo=None):
        self.messages: list[dict] = []
        self._echo = echo
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body or b"{}")
                except json.JSONDecodeError:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"invalid_payload")
                    return
                receiver.messages.append(payload)
                if receiver._echo:
                    receiver._echo(payload.get("text", ""))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="slack-receiver")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/services/T00000000/B00000000/local"

    def start(self) -> SlackReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve_forever that never started
            self._server.shutdown()
        self._server.server_close()

    def texts(self) -> list[str]:
        return [m.get("text", "") for m in self.messages]
