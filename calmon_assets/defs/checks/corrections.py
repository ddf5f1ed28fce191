"""Publishing a device's current correction as a retained MQTT message on its deployment's broker
([corrections] mqtt_topic), after a conclusive check; the payload is calmon_core.corrections'."""

from __future__ import annotations

from collections.abc import Sequence

from calmon_core.config import CalmonConfig
from calmon_core.corrections import correction_payload, correction_topic, current_correction
from calmon_core.models import CalibrationResult
from resources.kubectl import KubectlError, KubectlResource, device_endpoints
from resources.mqtt import MqttPublishFailed, MqttResource


def publish_correction(
    config: CalmonConfig,
    row: CalibrationResult,
    history: Sequence[CalibrationResult],
    gauge_id: str | None,
    kubectl: KubectlResource,
    mqtt: MqttResource,
    log,
) -> str:
    """What became of the correction, in words for the asset's metadata (a broker that cannot be
    reached is a warning: the row is written, the next conclusive check publishes again)."""
    template = config.settings.corrections.mqtt_topic
    assert template is not None
    deployment, device = config.fleet.find(row.device_id)
    earlier = [r for r in history if r.check_partition != row.check_partition]
    correction = current_correction([*earlier, row], gauge_id)
    if correction is None:
        return "no conclusive check to publish"
    topic = correction_topic(template, deployment.name, device.id)
    password = deployment.mqtt.password.get_secret_value() if deployment.mqtt.password else None
    try:
        with device_endpoints(deployment, device, kubectl_executable=kubectl.executable) as endpoints:
            mqtt.publish_retained(
                endpoints.mqtt_host,
                endpoints.mqtt_port,
                topic,
                correction_payload(correction),
                username=deployment.mqtt.username,
                password=password,
            )
    except (MqttPublishFailed, KubectlError, OSError) as exc:
        log.warning(f"{row.device_id}: correction not published: {exc}")
        return f"not published: {exc}"
    return f"published (retained) on {topic}"
