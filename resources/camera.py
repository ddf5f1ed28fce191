"""The camera drivers' old address, kept while the code location imports from here."""

from resources.cameras import (  # noqa: F401 - re-exports
    CameraAuthError,
    CameraClient,
    CameraError,
    CameraRefused,
    CameraResource,
    camera_client,
)
from resources.cameras.base import MqttCommand  # noqa: F401
