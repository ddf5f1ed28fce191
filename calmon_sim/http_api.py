"""The HTTP API of one simulated camera, on its own port (threaded http.server).

    GET  /snapshot.jpg         the current view (JPEG, rendered at the true pose)
    GET  /stream.mjpg[?fps=N]  multipart/x-mixed-replace MJPEG (cv2.VideoCapture opens it)
    POST /ptz/absolute         {"yaw", "pitch", "zoom"?} -> 200 {"ok": true, "target": {...}}
    GET  /status               health: pose, moving, faults
    POST /faults               {"offline": true, "slow_seconds": 2, ...} or {"clear": true}
    GET  /truth                the hidden offset (tests and benchmarks only)
    POST /truth                {"yaw", "pitch", "roll"} sets the hidden offset (a step)

The offline fault closes the listening socket (connection refused) and reopens it on the same port
when cleared. Meanwhile the port stays bound without listening: connections are still refused, and
no other socket (an outgoing connection's ephemeral port, say) can take it and make the camera
unable to come back ("Address already in use" after 400 checks of benchmarks/chaos_soak.py).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from calmon_sim.camera import SimCamera

STREAM_BOUNDARY = "calmonframe"
DEFAULT_STREAM_FPS = 5.0
MAX_STREAM_FPS = 30.0
POLL_INTERVAL_S = 0.25  # how quickly a stopping server notices; 200 idle servers cost ~nothing
CONTROL_PATHS = ("/faults", "/truth")  # never slowed down, so tests can always undo a fault


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        camera: SimCamera,
        closing: threading.Event,
        bound: socket.socket | None = None,
    ):
        self.camera = camera
        self.closing = closing
        if bound is None:
            super().__init__(address, _Handler)
            return
        super().__init__(address, _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = bound  # already bound to the port: only listen() is left
        self.server_address = bound.getsockname()
        self.server_activate()


def _hold_port(host: str, port: int) -> socket.socket | None:
    """A bound, non-listening socket on the port: connections are refused, and nobody else binds it."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        held.bind((host, port))
    except OSError:
        held.close()
        return None
    return held


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "calmon-sim/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # a fleet of 200 cameras would drown the console

    # -------------------------------------------------------------- helpers

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        body = json.loads(raw or b"{}")
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return body

    def _maybe_slow(self, path: str) -> None:
        delay = self.server.camera.slow_seconds
        if delay > 0 and path not in CONTROL_PATHS:
            self.server.closing.wait(delay)

    # -------------------------------------------------------------- routes

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        cam = self.server.camera
        self._maybe_slow(url.path)
        try:
            if url.path == "/snapshot.jpg":
                data = cam.snapshot_jpeg()
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)
            elif url.path == "/stream.mjpg":
                self._stream(parse_qs(url.query))
            elif url.path == "/status":
                self._json(200, cam.status())
            elif url.path == "/truth":
                self._json(200, cam.truth())
            elif url.path == "/lighting":
                self._json(200, cam.lighting.describe())
            elif url.path == "/":
                self._json(
                    200,
                    {
                        "device_id": cam.device_id,
                        "endpoints": [
                            "GET /snapshot.jpg",
                            "GET /stream.mjpg",
                            "POST /ptz/absolute",
                            "GET /status",
                            "POST /faults",
                            "GET /truth",
                            "POST /truth",
                            "GET /lighting",
                            "POST /lighting",
                        ],
                    },
                )
            else:
                self._json(404, {"error": f"no such endpoint {url.path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        cam = self.server.camera
        self._maybe_slow(url.path)
        try:
            body = self._body()
        except ValueError as exc:
            self._json(400, {"error": f"body is not a JSON object: {exc}"})
            return
        try:
            if url.path == "/ptz/absolute":
                missing = [k for k in ("yaw", "pitch") if body.get(k) is None]
                if missing:
                    raise ValueError(f"missing {missing}")
                zoom = body.get("zoom")
                cam.move_to(float(body["yaw"]), float(body["pitch"]), None if zoom is None else float(zoom))
                target = cam.target()  # clamped to the head's limits
                self._json(200, {"ok": True, "target": dict(zip(("yaw", "pitch", "zoom"), target, strict=True))})
            elif url.path == "/faults":
                if body.pop("clear", False):
                    cam.clear_faults()
                if body:
                    cam.set_faults(**body)
                self._json(200, {"ok": True, "faults": cam.faults})
            elif url.path == "/truth":
                offset = cam.truth()["true_offset"]
                cam.set_true_offset(*(float(body.get(k, offset[k])) for k in ("yaw", "pitch", "roll")))
                if isinstance(body.get("drift"), dict):
                    cam.set_drift(**{k: float(v) for k, v in body["drift"].items()})
                self._json(200, {"ok": True, "true_offset": cam.truth()["true_offset"]})
            elif url.path == "/lighting":
                cam.lighting.set(body)
                self._json(200, {"ok": True, "lighting": cam.lighting.describe()})
            else:
                self._json(404, {"error": f"no such endpoint {url.path}"})
        except (ValueError, TypeError) as exc:
            self._json(400, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stream(self, query: dict[str, list[str]]) -> None:
        try:
            fps = min(MAX_STREAM_FPS, max(0.1, float(query.get("fps", [DEFAULT_STREAM_FPS])[0])))
        except ValueError:
            fps = DEFAULT_STREAM_FPS
        cam = self.server.camera
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={STREAM_BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        period = 1.0 / fps
        next_frame = time.monotonic()
        while not self.server.closing.is_set() and not cam.offline:
            data = cam.snapshot_jpeg()
            self.wfile.write(
                f"--{STREAM_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                + data
                + b"\r\n"
            )
            self.wfile.flush()
            next_frame += period
            self.server.closing.wait(max(0.0, next_frame - time.monotonic()))


class CameraHttpServer:
    """Binds its port at construction (so the port is known before start) and serves while the
    camera is started and not offline."""

    def __init__(self, camera: SimCamera, host: str, port: int = 0):
        self.camera = camera
        self.host = host
        self._closing = threading.Event()
        self._server: _Server | None = _Server((host, port), camera, self._closing)
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._held: socket.socket | None = None  # the port, while offline
        self.wanted = False

    @property
    def serving(self) -> bool:
        return self._thread is not None

    def sync(self) -> None:
        """Serve iff the camera is started and not offline."""
        if self.wanted and not self.camera.offline:
            self._open()
        else:
            self._close(hold_port=self.wanted)  # offline: keep the port for the camera's return

    def _open(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            if self._server is None:
                self._closing = threading.Event()
                held, self._held = self._held, None
                self._server = _Server((self.host, self.port), self.camera, self._closing, bound=held)
            self._closing.clear()
            server = self._server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL_S},
                name=f"sim-http-{self.camera.device_id}",
                daemon=True,
            )
            self._thread.start()

    def _close(self, hold_port: bool) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server, self._thread = None, None
            self._closing.set()  # ends streams and slow answers
        if server is not None:
            if thread is not None:
                server.shutdown()
            server.server_close()
        with self._lock:
            if hold_port and self._server is None and self._held is None:
                self._held = _hold_port(self.host, self.port)
            elif not hold_port and self._held is not None:
                self._held.close()
                self._held = None
