"""A whole simulated site for end-to-end tests: sim fleet + real broker + object store + Iceberg
catalog + local Slack receiver, with a config folder that points calmon at all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from calmon_core.config import local_site_settings
from calmon_sim.fleet import SimFleet
from calmon_sim.fleet_spec import FleetSpec, small_camera
from calmon_sim.slack_receiver import SlackReceiver


def device(id: str, seed: int, yaw: float = 0.0, offset=(0.0, 0.0, 0.0), **extra) -> dict:
    return small_camera(id, seed, yaw, tuple(offset), **extra)


def site_ini(
    root: Path,
    s3_endpoint: str | None,
    stabilize_time: float = 1.0,
    timeout: float = 20,
    alert_policy: str = "every_check",  # the platform tests count one message per check
) -> str:
    return local_site_settings(
        root,
        webhook_env="CALMON_TEST_WEBHOOK",
        stabilize_time=stabilize_time,
        timeout=timeout,
        reference_stabilize_time=0.5,
        s3_endpoint=s3_endpoint,
        written_by="a calmon test",
        alert_policy=alert_policy,
    )


@dataclass
class Site:
    root: Path
    config_dir: Path
    fleet: SimFleet
    slack: SlackReceiver
    platforms: list = field(default_factory=list)

    def platform(self):
        from calmon_cli.platform import Platform

        p = Platform(str(self.config_dir), home=str(self.root / "dagster_home"))
        self.platforms.append(p)
        return p

    def platform_with_references(self, device_ids=None):
        """A platform whose reference scans were taken on calibrated cameras: offsets are measured
        against the reference, so the hidden offsets must come after it to be found."""
        p = self.platform()
        with self.fleet.calibrated():
            runs = p.collect_references(device_ids)
        assert [r.error for r in runs if not r.succeeded] == []
        return p


def start_site(root: Path, broker, deployments: list[dict], s3_endpoint: str | None, monkeypatch, **ini) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    slack = SlackReceiver().start()
    monkeypatch.setenv("CALMON_TEST_WEBHOOK", slack.url)
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    spec = FleetSpec.model_validate({"deployments": deployments})
    fleet = SimFleet(spec, broker_host=broker.host, broker_port=broker.port).start()
    for name, value in fleet.camera_secrets().items():  # devices.yaml names them as ${NAME}
        monkeypatch.setenv(name, value)
    config_dir = root / "configs"
    config_dir.mkdir(exist_ok=True)
    fleet.write_devices_yaml(config_dir / "devices.yaml")
    (config_dir / "calibration_monitoring.ini").write_text(site_ini(root, s3_endpoint, **ini))
    return Site(root, config_dir, fleet, slack)


def stop_site(site: Site) -> None:
    site.fleet.stop()
    site.slack.stop()
