"""`protocol: http`: calmon's simulator JSON API (POST /ptz/absolute, GET /snapshot.jpg, GET /status).

Kept for the simulator and for sites that put a small bridge of their own in front of a camera.
"""

from __future__ import annotations

from resources.cameras.base import CameraClient


class JsonHttpCamera(CameraClient):
    """The base client's own dialect, under the protocol's name."""
