"""The ONVIF side of a simulated camera: SOAP 1.2 on /onvif/{device,media,ptz}_service.

Requests are parsed as SOAP envelopes (lxml); the operation is the Body's first element. Every
operation except GetSystemDateAndTime needs a WS-Security UsernameToken with PasswordDigest
(Base64(SHA-1(nonce + created + password))) whose Created time is within 5 minutes of the CAMERA's
clock (which may be skewed: the client must ask GetSystemDateAndTime). Answers follow the ONVIF
schemas (onvif.xsd 2.4.2 as shipped with onvif-zeep-async): GetServices, GetCapabilities,
GetDeviceInformation, GetProfiles, GetSnapshotUri, GetStreamUri, GetNodes, GetNode, AbsoluteMove,
GetStatus. Faults are SOAP 1.2 Faults with ONVIF subcodes (ter:NotAuthorized, ter:ActionNotSupported,
ter:InvalidArgVal).

The PTZ node offers SphericalPositionSpaceDegrees only if the camera's spec says so; otherwise
just the generic spaces, pan -1...1 over -180...180 degrees, tilt -1...1 over -90...90, zoom 0...1
over the zoom limits. A client that guesses these ranges wrong points the camera elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from lxml import etree

if TYPE_CHECKING:
    from calmon_sim.camera import SimCamera

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
TT = "http://www.onvif.org/ver10/schema"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TPTZ = "http://www.onvif.org/ver20/ptz/wsdl"
TER = "http://www.onvif.org/ver10/error"
DEGREES_SPACE = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/SphericalPositionSpaceDegrees"
GENERIC_PAN_TILT = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace"
GENERIC_ZOOM = "http://www.onvif.org/ver10/tptz/ZoomSpaces/PositionGenericSpace"
PAN_LIMITS = (-180.0, 180.0)
TILT_LIMITS = (-90.0, 90.0)
MAX_CLOCK_DIFFERENCE_S = 300.0
PROFILE = "profile_1"
NODE = "ptz_node_1"
SERVICE_PATHS = {"/onvif/device_service": TDS, "/onvif/media_service": TRT, "/onvif/ptz_service": TPTZ}
SNAPSHOT_PATH = "/onvif/snapshot.jpg"


class SoapFault(Exception):
    def __init__(self, status: int, code: str, subcode: str, reason: str):
        self.status, self.code, self.subcode, self.reason = status, code, subcode, reason
        super().__init__(reason)


def _envelope(body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<s:Envelope xmlns:s="{SOAP}" xmlns:tt="{TT}" '
        f'xmlns:tds="{TDS}" xmlns:trt="{TRT}" xmlns:tptz="{TPTZ}" xmlns:ter="{TER}"><s:Body>{body}</s:Body>'
        "</s:Envelope>"
    ).encode()


def fault_body(fault: SoapFault) -> bytes:
    return _envelope(
        f"<s:Fault><s:Code><s:Value>s:{fault.code}</s:Value><s:Subcode><s:Value>ter:{fault.subcode}</s:Value>"
        f'</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">{escape(fault.reason)}</s:Text></s:Reason></s:Fault>'
    )


def _lerp(value: float, src: tuple[float, float], dst: tuple[float, float]) -> float:
    return dst[0] + (value - src[0]) / (src[1] - src[0]) * (dst[1] - dst[0])


class OnvifService:
    def __init__(self, camera: SimCamera):
        self.camera = camera
        self.refused = 0  # requests turned away for missing or wrong credentials

    # ------------------------------------------------------------------ entry point

    def handle(self, path: str, body: bytes, base_url: str) -> tuple[int, bytes]:
        try:
            try:
                envelope = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
            except etree.XMLSyntaxError as exc:
                raise SoapFault(400, "Sender", "WellFormed", f"not XML: {exc}") from None
            if envelope.tag != f"{{{SOAP}}}Envelope":
                raise SoapFault(400, "Sender", "WellFormed", "not a SOAP 1.2 envelope")
            soap_body = envelope.find(f"{{{SOAP}}}Body")
            if soap_body is None or len(soap_body) == 0:
                raise SoapFault(400, "Sender", "WellFormed", "SOAP body is empty")
            request = soap_body[0]
            namespace, _, operation = request.tag[1:].partition("}")
            if namespace != SERVICE_PATHS[path]:
                raise SoapFault(400, "Sender", "ActionNotSupported", f"{operation} is not served at {path}")
            if operation != "GetSystemDateAndTime":
                self._authenticate(envelope)
            handler = getattr(self, f"_{operation}", None)
            if handler is None:
                raise SoapFault(400, "Receiver", "ActionNotSupported", f"{operation} is not supported")
            return 200, _envelope(handler(request, base_url))
        except SoapFault as fault:
            return fault.status, fault_body(fault)

    # ------------------------------------------------------------------ WS-Security

    def camera_now(self) -> float:
        return time.time() + self.camera.spec.clock_skew_s

    def _authenticate(self, envelope: etree._Element) -> None:
        spec = self.camera.spec
        if not spec.username:
            return
        token = envelope.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if token is None:
            self.refused += 1
            raise SoapFault(400, "Sender", "NotAuthorized", "Sender not Authorized: no UsernameToken")
        username = token.findtext(f"{{{WSSE}}}Username") or ""
        password = token.find(f"{{{WSSE}}}Password")
        nonce = token.findtext(f"{{{WSSE}}}Nonce") or ""
        created = token.findtext(f"{{{WSU}}}Created") or ""
        if password is None or not (password.get("Type") or "").endswith("#PasswordDigest"):
            self.refused += 1
            raise SoapFault(400, "Sender", "NotAuthorized", "Sender not Authorized: PasswordDigest required")
        try:
            raw_nonce = base64.b64decode(nonce)
        except ValueError:
            raw_nonce = b""
        digest = base64.b64encode(
            hashlib.sha1(raw_nonce + created.encode() + (spec.password or "").encode()).digest()  # noqa: S324
        ).decode()
        if username != spec.username or not secrets.compare_digest(digest, (password.text or "").strip()):
            self.refused += 1
            raise SoapFault(400, "Sender", "NotAuthorized", "Sender not Authorized")
        try:
            stamp = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            stamp = float("nan")
        if not abs(stamp - self.camera_now()) <= MAX_CLOCK_DIFFERENCE_S:
            self.refused += 1
            raise SoapFault(400, "Sender", "NotAuthorized", "Sender not Authorized: Created is off the camera clock")

    # ------------------------------------------------------------------ device service

    def _GetSystemDateAndTime(self, request: etree._Element, base_url: str) -> str:  # noqa: N802 - ONVIF names
        now = datetime.fromtimestamp(self.camera_now(), UTC)
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType>"
            "<tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime><tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}</tt:Minute>"
            f"<tt:Second>{now.second}</tt:Second></tt:Time><tt:Date><tt:Year>{now.year}</tt:Year>"
            f"<tt:Month>{now.month}</tt:Month><tt:Day>{now.day}</tt:Day></tt:Date></tt:UTCDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    def _GetServices(self, request: etree._Element, base_url: str) -> str:  # noqa: N802
        services = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{base_url}{path}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>40</tt:Minor></tds:Version></tds:Service>"
            for path, ns in SERVICE_PATHS.items()
        )
        return f"<tds:GetServicesResponse>{services}</tds:GetServicesResponse>"

    def _GetCapabilities(self, request: etree._Element, base_url: str) -> str:  # noqa: N802
        return (
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{base_url}/onvif/device_service</tt:XAddr></tt:Device>"
            f"<tt:Media><tt:XAddr>{base_url}/onvif/media_service</tt:XAddr><tt:StreamingCapabilities>"
            "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true"
            "</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
            f"<tt:PTZ><tt:XAddr>{base_url}/onvif/ptz_service</tt:XAddr></tt:PTZ>"
            "</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )

    def _GetDeviceInformation(self, request: etree._Element, base_url: str) -> str:  # noqa: N802
        return (
            "<tds:GetDeviceInformationResponse><tds:Manufacturer>calmon-sim</tds:Manufacturer>"
            "<tds:Model>SimPTZ</tds:Model><tds:FirmwareVersion>1.0</tds:FirmwareVersion>"
            f"<tds:SerialNumber>{escape(self.camera.device_id)}</tds:SerialNumber><tds:HardwareId>1</tds:HardwareId>"
            "</tds:GetDeviceInformationResponse>"
        )

    # ------------------------------------------------------------------ media service

    def _GetProfiles(self, request: etree._Element, base_url: str) -> str:  # noqa: N802
        cam = self.camera
        space = DEGREES_SPACE if cam.spec.onvif_degrees else GENERIC_PAN_TILT
        return (
            f'<trt:GetProfilesResponse><trt:Profiles token="{PROFILE}" fixed="true"><tt:Name>main</tt:Name>'
            '<tt:VideoSourceConfiguration token="video_source_config"><tt:Name>video</tt:Name>'
            "<tt:UseCount>1</tt:UseCount><tt:SourceToken>video_source</tt:SourceToken>"
            f'<tt:Bounds x="0" y="0" width="{cam.width}" height="{cam.height}"/></tt:VideoSourceConfiguration>'
            '<tt:PTZConfiguration token="ptz_config"><tt:Name>ptz</tt:Name><tt:UseCount>1</tt:UseCount>'
            f"<tt:NodeToken>{NODE}</tt:NodeToken>"
            f"<tt:DefaultAbsolutePantTiltPositionSpace>{space}</tt:DefaultAbsolutePantTiltPositionSpace>"
            f"<tt:DefaultAbsoluteZoomPositionSpace>{GENERIC_ZOOM}</tt:DefaultAbsoluteZoomPositionSpace>"
            "</tt:PTZConfiguration></trt:Profiles></trt:GetProfilesResponse>"
        )

    def _profile_token(self, request: etree._Element) -> None:
        token = request.findtext(f"{{{TRT}}}ProfileToken") or request.findtext(f"{{{TPTZ}}}ProfileToken")
        if token != PROFILE:
            raise SoapFault(400, "Sender", "NoProfile", f"no profile {token!r}")

    def _GetSnapshotUri(self, request: etree._Element, base_url: str) -> str:  # noqa: N802
        self._profile_token(request)
        return (
            f"<trt:GetSnapshotUriResponse><trt:MediaUri><tt:Uri>{base_url}{SNAPSHOT_PATH}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false"
            "</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetSnapshotUriResponse>"
        )

    def _GetStreamUri(self, request: etree._Element, base_url: str) -> str:  # noqa: N802
        self._profile_token(request)
        return (
            f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{base_url}/stream.mjpg</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false"
            "</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>"
        )

    # ------------------------------------------------------------------ PTZ service

    def _node(self) -> str:
        lo, hi = self.camera.spec.zoom_limits()
        spaces = ""
        if self.camera.spec.onvif_degrees:
            spaces += (
                f"<tt:AbsolutePanTiltPositionSpace><tt:URI>{DEGREES_SPACE}</tt:URI>"
                f"<tt:XRange><tt:Min>{PAN_LIMITS[0]}</tt:Min><tt:Max>{PAN_LIMITS[1]}</tt:Max></tt:XRange>"
                f"<tt:YRange><tt:Min>{TILT_LIMITS[0]}</tt:Min><tt:Max>{TILT_LIMITS[1]}</tt:Max></tt:YRange>"
                "</tt:AbsolutePanTiltPositionSpace>"
            )
        spaces += (
            f"<tt:AbsolutePanTiltPositionSpace><tt:URI>{GENERIC_PAN_TILT}</tt:URI>"
            "<tt:XRange><tt:Min>-1</tt:Min><tt:Max>1</tt:Max></tt:XRange>"
            "<tt:YRange><tt:Min>-1</tt:Min><tt:Max>1</tt:Max></tt:YRange></tt:AbsolutePanTiltPositionSpace>"
            f"<tt:AbsoluteZoomPositionSpace><tt:URI>{GENERIC_ZOOM}</tt:URI>"
            "<tt:XRange><tt:Min>0</tt:Min><tt:Max>1</tt:Max></tt:XRange></tt:AbsoluteZoomPositionSpace>"
        )
        del lo, hi  # the zoom factors behind 0...1 are not part of ONVIF: devices.yaml says them
        return (
            f"<tt:Name>PTZ</tt:Name><tt:SupportedPTZSpaces>{spaces}</tt:SupportedPTZSpaces>"
            "<tt:MaximumNumberOfPresets>0</tt:MaximumNumberOfPresets><tt:HomeSupported>false</tt:HomeSupported>"
        )

    def _GetNodes(self, request: etree._Element, base_url: str) -> str:  # noqa: N802
        return (
            f'<tptz:GetNodesResponse><tptz:PTZNode token="{NODE}">{self._node()}</tptz:PTZNode></tptz:GetNodesResponse>'
        )

    def _GetNode(self, request: etree._Element, base_url: str) -> str:  # noqa: N802
        token = request.findtext(f"{{{TPTZ}}}NodeToken")
        if token != NODE:
            raise SoapFault(400, "Sender", "NoEntity", f"no PTZ node {token!r}")
        return (
            f'<tptz:GetNodeResponse><tptz:PTZNode token="{NODE}">{self._node()}</tptz:PTZNode></tptz:GetNodeResponse>'
        )

    def _AbsoluteMove(self, request: etree._Element, base_url: str) -> str:  # noqa: N802
        cam = self.camera
        self._profile_token(request)
        if cam.spec.refuse_absolute_move:
            raise SoapFault(400, "Receiver", "ActionNotSupported", "AbsoluteMove is not supported by this PTZ node")
        position = request.find(f"{{{TPTZ}}}Position")
        pan_tilt = position.find(f"{{{TT}}}PanTilt") if position is not None else None
        zoom_el = position.find(f"{{{TT}}}Zoom") if position is not None else None
        here = cam.target()
        yaw, pitch, zoom = here
        try:
            if pan_tilt is not None:
                x, y = float(pan_tilt.get("x")), float(pan_tilt.get("y"))  # type: ignore[arg-type]
                space = pan_tilt.get("space") or (DEGREES_SPACE if cam.spec.onvif_degrees else GENERIC_PAN_TILT)
                if space == DEGREES_SPACE and cam.spec.onvif_degrees:
                    limits = (PAN_LIMITS, TILT_LIMITS)
                    yaw, pitch = x, y
                elif space == GENERIC_PAN_TILT:
                    limits = ((-1.0, 1.0), (-1.0, 1.0))
                    yaw, pitch = _lerp(x, (-1, 1), PAN_LIMITS), _lerp(y, (-1, 1), TILT_LIMITS)
                else:
                    raise SoapFault(400, "Sender", "InvalidArgVal", f"unsupported pan/tilt space {space}")
                if not (limits[0][0] <= x <= limits[0][1] and limits[1][0] <= y <= limits[1][1]):
                    raise SoapFault(400, "Sender", "InvalidPosition", f"position ({x}, {y}) outside the space")
            if zoom_el is not None:
                z = float(zoom_el.get("x"))  # type: ignore[arg-type]
                if (zoom_el.get("space") or GENERIC_ZOOM) != GENERIC_ZOOM or not 0 <= z <= 1:
                    raise SoapFault(400, "Sender", "InvalidPosition", f"zoom {z} outside the generic space")
                zoom = _lerp(z, (0, 1), cam.spec.zoom_limits())
        except (TypeError, ValueError):
            raise SoapFault(400, "Sender", "InvalidArgVal", "position is not numbers") from None
        cam.move_to(yaw, pitch, zoom)
        return "<tptz:AbsoluteMoveResponse/>"

    def _GetStatus(self, request: etree._Element, base_url: str) -> str:  # noqa: N802
        cam = self.camera
        self._profile_token(request)
        pose = cam.reported_pose()
        if cam.spec.onvif_degrees:
            pan_tilt = f'<tt:PanTilt x="{pose.yaw:.4f}" y="{pose.pitch:.4f}" space="{DEGREES_SPACE}"/>'
        else:
            x, y = _lerp(pose.yaw, PAN_LIMITS, (-1, 1)), _lerp(pose.pitch, TILT_LIMITS, (-1, 1))
            pan_tilt = f'<tt:PanTilt x="{x:.7f}" y="{y:.7f}" space="{GENERIC_PAN_TILT}"/>'
        zoom = _lerp(pose.zoom, cam.spec.zoom_limits(), (0, 1))
        state = "MOVING" if cam.is_moving() else "IDLE"
        utc = datetime.fromtimestamp(self.camera_now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"<tptz:GetStatusResponse><tptz:PTZStatus><tt:Position>{pan_tilt}"
            f'<tt:Zoom x="{zoom:.6f}" space="{GENERIC_ZOOM}"/></tt:Position><tt:MoveStatus>'
            f"<tt:PanTilt>{state}</tt:PanTilt><tt:Zoom>{state}</tt:Zoom></tt:MoveStatus>"
            f"<tt:UtcTime>{utc}</tt:UtcTime></tptz:PTZStatus></tptz:GetStatusResponse>"
        )
