"""Run by test_thread_imports in a fresh interpreter: reference scans and one real check cycle of a
simulated site (two devices in parallel threads), printing as JSON every module first imported off
the main thread."""

from __future__ import annotations

import json
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import pytest

    from calmon_sim.broker import EmbeddedBroker
    from tests.sim_site import device, start_site, stop_site

    off_main: list[str] = []

    def hook(event: str, args: tuple) -> None:
        off_thread = threading.current_thread() is not threading.main_thread()
        if event == "import" and off_thread and args[0] not in sys.modules:
            off_main.append(args[0])

    monkeypatch = pytest.MonkeyPatch()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(prefer=sys.argv[1]) as broker:
        deployments = [{"name": "p", "devices": [device("probe-1", 31), device("probe-2", 32)]}]
        site = start_site(Path(tmp), broker, deployments, None, monkeypatch, timeout=20)
        try:
            platform = site.platform()
            off_main.clear()  # the site's own threads (fleet, Slack receiver) are not the runs'
            sys.addaudithook(hook)
            with site.fleet.calibrated():
                platform.collect_references(workers=2)
            platform.run_check_cycle("2026-11-20-10:00", workers=2)  # estimated: every step of a check
            print(platform.send_alerts(), file=sys.stderr)
        finally:
            stop_site(site)
    print(json.dumps(sorted(set(off_main))))


if __name__ == "__main__":
    main()
