"""The HTTP API of one simulated camera, on its own port (threaded http.server).

    GET  /snapshot.jpg         the current view (JPEG, rendered at the true pose)
    GET  /stream.mjpg[?fps=N]  multipart/x-mixed-replace MJPEG (cv2.VideoCapture opens it)
    POST /ptz/absolute         {"yaw", "pitch", "zoom"?} -> 200 {"ok": true, "target": {...}}
    GET  /status               health: pose, moving, faults
    POST /faults               {"offline": true, "slow_seconds": 2, ...} or {"clear": true}
    GET  /truth                the hidden offset (tests and benchmarks only)
    POST /truth                {"yaw", "pitch", "roll"} sets the hidden offset (a step)

Those are the `http` protocol's routes (calmon's own JSON dialect). A camera with another
`protocol` serves that vendor's routes instead (calmon_sim.dialects: vapix, isapi;
calmon_sim.onvif_service: onvif) and answers 404 to the JSON ones; /status, /faults and /truth stay
for tests. With credentials configured every camera route needs HTTP Digest (ONVIF SOAP:
WS-Security UsernameToken instead).

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

from calmon_sim import dialects
from calmon_sim.onvif_service import SERVICE_PATHS, SNAPSHOT_PATH, OnvifService

STREAM_BOUNDARY = "calmonframe"
DEFAULT_STREAM_FPS = 5.0
MAX_STREAM_FPS = 30.0
POLL_INTERVAL_S = 0.25  # how quickly a stopping server notices; 200 idle servers cost ~nothing
CONTROL_PATHS = ("/faults", "/truth")  # never slowed down, so tests can always undo a fault
OPEN_PATHS = (*CONTROL_PATHS, "/status", "/")  # the simulator's own: no dialect, no credentials
JSON_CAMERA_PATHS = ("/snapshot.jpg", "/ptz/absolute")


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    """One JSON answer, for the cameras' API and the fleet's control service alike."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


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
        self.onvif = OnvifService(camera)
        spec = camera.spec
        self.digest = dialects.DigestAuth(spec.username, spec.password or "") if spec.username else None
        if bound is None:
            super().__init__(address, _Handler)
            return
        super().__init__(address, _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = bound  # already bound to the port: only listen() is left
        self.server_address = bound.getsockname()
        self.server_activate()


def apply_faults_request(cam: SimCamera, body: dict) -> dict:
    """A POST /faults body ({"offline": true, ...} or {"clear": true}) applied; the answer to send.
    Validated whole before anything changes, so a bad request leaves the faults as they were."""
    from calmon_sim.fleet_spec import check_faults

    body = dict(body)
    clear = bool(body.pop("clear", False))
    check_faults(body)  # ValueError names an unknown fault or a bad value
    if clear:
        cam.clear_faults()
    if body:
        cam.set_faults(**body)
    return {"ok": True, "faults": cam.faults}


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
        send_json(self, status, body)

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

    def _send(self, status: int, content_type: str, data: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self, method: str) -> bool:
        """HTTP Digest when the camera has credentials; answers 401 with a challenge otherwise."""
        digest = self.server.digest
        if digest is None or digest.check(method, self.headers.get("Authorization")):
            return True
        self._send(401, "text/plain", b"401 Unauthorized\n", {"WWW-Authenticate": digest.challenge()})
        return False

    def _dialect(self, method: str) -> bool:
        """Answer the request if it is not the JSON dialect's to answer; True when answered."""
        url = urlsplit(self.path)
        cam = self.server.camera
        protocol = cam.spec.protocol
        if url.path in OPEN_PATHS:
            return False
        if protocol == "onvif" and url.path in SERVICE_PATHS:
            self._maybe_slow(url.path)
            length = int(self.headers.get("Content-Length") or 0)
            status, data = self.server.onvif.handle(url.path, self.rfile.read(length) if length else b"", cam.base_url)
            self._send(status, "application/soap+xml; charset=utf-8", data)
            return True
        if not self._authorized(method):
            return True
        if protocol == "http" or url.path == "/stream.mjpg":
            return False
        self._maybe_slow(url.path)
        answer = None
        if protocol == "onvif" and url.path == SNAPSHOT_PATH and method == "GET":
            answer = (200, "image/jpeg", cam.snapshot_jpeg())
        elif protocol == "vapix":
            answer = dialects.vapix(cam, method, url.path, url.query)
        elif protocol == "isapi":
            length = int(self.headers.get("Content-Length") or 0)
            answer = dialects.isapi(cam, method, url.path, self.rfile.read(length) if length else b"")
        if answer is None:
            self._send(404, "text/plain", f"404 no such endpoint {url.path} on a {protocol} camera\n".encode())
        else:
            self._send(*answer)
        return True

    # -------------------------------------------------------------- routes

    def do_PUT(self) -> None:  # noqa: N802 - stdlib name
        try:
            if not self._dialect("PUT"):
                self._json(404, {"error": f"no such endpoint {urlsplit(self.path).path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        cam = self.server.camera
        try:
            if self._dialect("GET"):
                return
        except (BrokenPipeError, ConnectionResetError):
            return
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
        try:
            if self._dialect("POST"):
                return
        except (BrokenPipeError, ConnectionResetError):
            return
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
                self._json(200, apply_faults_request(cam, body))
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


class FleetControlServer:
    """The site's camera management service (a PoE switch, a VMS): one port for the whole fleet that
    stays up while cameras go offline, so a camera's faults can be switched, and an offline camera
    brought back, over HTTP.

        GET  /cameras                       [{"id", "deployment", "base_url", "faults"}]
        POST /cameras/<id>/faults           the camera's POST /faults, reached from outside it
    """

    def __init__(self, cameras: dict[str, SimCamera], host: str = "127.0.0.1", port: int = 0):
        control = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "calmon-sim-control/1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def _json(self, status: int, body: Any) -> None:
                send_json(self, status, body)

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                if urlsplit(self.path).path != "/cameras":
                    self._json(404, {"error": f"no such endpoint {urlsplit(self.path).path}"})
                    return
                self._json(200, {"cameras": [control.describe(cam) for cam in control.cameras.values()]})

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                parts = urlsplit(self.path).path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "cameras" or parts[2] != "faults":
                    self._json(404, {"error": f"no such endpoint {urlsplit(self.path).path}"})
                    return
                cam = control.cameras.get(parts[1])
                if cam is None:
                    self._json(404, {"error": f"no camera {parts[1]!r} in this fleet"})
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length) if length else b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("body must be a JSON object")
                    self._json(200, apply_faults_request(cam, body))
                except (ValueError, TypeError) as exc:
                    self._json(400, {"error": str(exc)})

        self.cameras = cameras
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @staticmethod
    def describe(cam: SimCamera) -> dict:
        return {"id": cam.device_id, "deployment": cam.deployment, "base_url": cam.base_url, "faults": cam.faults}

    def start(self) -> FleetControlServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL_S},
            name="sim-fleet-control",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()
