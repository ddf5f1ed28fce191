"""Screenshots of the Dagster UI as an ops engineer opens it: the fleet view (fleet_health), the
calibration_offsets partitions page and a breached device's within_threshold check.

    python scripts/ui_screenshots.py [--out DIR]

runs a small simulated site (three cameras, one of them out of calibration) through a few check
cycles, starts dagster-webserver on its instance and drives headless Chromium (Debian's chromium and
chromium-driver, through selenium) over the pages, writing one PNG per page into DIR (default
.calmon/ui_screenshots). tests/test_ui_browser.py uses the same functions and asserts on what the
pages show.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from calmon_sim.fleet_spec import small_camera

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = "chromedriver"
WINDOW = (1600, 1100)
BREACHED = "cam-bad"
BREACHED_DEPLOYMENT = "harbor"


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    # text that is on the page once it has rendered (the JS app draws it after its GraphQL answers)
    ready_text: str
    # what the engineer clicks next (the last element with exactly this text), then its ready text
    click: tuple[str, str] | None = None
    full_page: bool = True  # grow the window to the page's height (not for virtualized long lists)


def pages(breached_partition: str) -> list[Page]:
    from urllib.parse import quote

    check = (
        f"/assets/calibration_offsets?view=checks&checkDetail=within_threshold&partition={quote(breached_partition)}"
    )
    return [
        Page("fleet_view", "/assets/fleet_health", "devices_in_breach"),
        # pictures in metadata open in a dialog: Dagster shows markdown over 1000 characters behind a link
        Page("fleet_heat_map", "/assets/fleet_health", "devices_in_breach", ("[Show Markdown]", "heat_map"), False),
        Page(
            "offsets_partitions",
            f"/assets/calibration_offsets?view=partitions&partition={quote(breached_partition)}",
            "Partitions Selected",
            full_page=False,
        ),
        Page("breached_check", check, f"{BREACHED} at"),
        Page("breached_check_partitions", check, f"{BREACHED} at", ("Partitions", "Failed"), False),
    ]


def browser_missing() -> str | None:
    """Why no headless browser can run here (None: chromium, chromedriver and selenium are present)."""
    if not any(shutil.which(name) for name in CHROMIUM):
        return "chromium is not installed (Debian: apt-get install chromium chromium-driver)"
    if not shutil.which(CHROMEDRIVER):
        return "chromedriver is not installed (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def _free_port() -> int:
    from calmon_sim.broker import free_port

    return free_port()


@contextmanager
def webserver(config_dir: Path, dagster_home: Path):
    """dagster-webserver on this workspace and instance, on a free loopback port; yields its URL."""
    port = _free_port()
    env = {**os.environ, "CALMON_CONFIG_DIR": str(config_dir), "DAGSTER_HOME": str(dagster_home)}
    cmd = [sys.executable, "-m", "dagster_webserver", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([*cmd, "-p", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        tail = log.read().decode(errors="replace")[-3000:]
                        raise RuntimeError(f"dagster-webserver did not start:\n{tail}") from None
                    time.sleep(1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def headless_chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    binary = next(shutil.which(name) for name in CHROMIUM if shutil.which(name))
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    # the Debian driver, never one selenium would download
    driver = webdriver.Chrome(service=Service(shutil.which(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def visit(driver, base_url: str, page: Page, out_dir: Path, timeout: float = 90) -> str:
    """Open the page, wait until it shows its ready text and the app has stopped loading, save
    out_dir/<name>.png; the page's visible text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base_url + page.path)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.5)
    _dismiss_welcome(driver)
    try:
        wait.until(lambda d: page.ready_text in d.find_element(By.TAG_NAME, "body").text)
    except TimeoutException:
        out_dir.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out_dir / f"{page.name}.not-ready.png"))
        text = driver.find_element(By.TAG_NAME, "body").text
        raise TimeoutError(
            f"{page.path}: no {page.ready_text!r} after {timeout:.0f}s; the page shows:\n{text}"
        ) from None
    _settled(driver, wait)
    if page.click:
        label, then = page.click
        target = driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{label}']")
        if not target:
            raise TimeoutError(f"{page.path}: nothing labelled {label!r} to click")
        target[0 if label.startswith("[") else -1].click()
        wait.until(lambda d: then in d.find_element(By.TAG_NAME, "body").text)
        _settled(driver, wait)
    if page.full_page:
        # the full page, not only the window: the fleet table and pictures run below the fold
        height = driver.execute_script(
            "let m = document.body.scrollHeight; for (const e of document.querySelectorAll('*')) {"
            " if (e.scrollHeight > e.clientHeight + 10 && getComputedStyle(e).overflowY.match(/auto|scroll/))"
            " m = Math.max(m, e.scrollHeight + 200); } return m;"
        )
        driver.set_window_size(WINDOW[0], min(max(WINDOW[1], height), 4000))
        time.sleep(1.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out_dir / f"{page.name}.png"))
    text = driver.find_element(By.TAG_NAME, "body").text
    driver.set_window_size(*WINDOW)
    return text


def _settled(driver, wait) -> None:
    """Wait out the app's later queries (metadata, check history, partition statuses): their
    spinners and "Loading ..." placeholders come after the page's first text."""
    from selenium.webdriver.common.by import By

    def quiet(d) -> bool:
        if d.find_elements(By.CSS_SELECTOR, "[class*='Spinner'], [role='progressbar']"):
            return False
        return "Loading" not in d.find_element(By.TAG_NAME, "body").text

    wait.until(quiet)
    time.sleep(1.0)  # the last React commit paints after the DOM has its text


_WELCOMED: set[int] = set()


def _dismiss_welcome(driver) -> None:
    """Dagster's first-visit "Join the Dagster community" dialog covers the page until skipped
    (once per browser: skipping is remembered in its local storage)."""
    from selenium.webdriver.common.by import By

    if id(driver) in _WELCOMED:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
            if button.is_displayed():
                button.click()
                _WELCOMED.add(id(driver))
                return
        time.sleep(0.5)


def screenshot_ui(config_dir: Path, dagster_home: Path, out_dir: Path, breached_partition: str) -> dict[str, str]:
    """Every page's visible text, by page name; the PNGs in out_dir."""
    started = time.monotonic()
    texts = {}
    with webserver(config_dir, dagster_home) as url, headless_chromium() as driver:
        print(f"webserver up after {time.monotonic() - started:.0f} s", flush=True)
        for page in pages(breached_partition):
            begun = time.monotonic()
            texts[page.name] = visit(driver, url, page, out_dir)
            print(f"{page.name}: rendered in {time.monotonic() - begun:.0f} s", flush=True)
    return texts


# --------------------------------------------------------------------------- the simulated site


FLEET = {
    "deployments": [
        {
            "name": "harbor",
            "devices": [small_camera("cam-ok", 11, 5.0), small_camera(BREACHED, 12, 10.0, (0.8, -0.3, 0.1))],
        },
        {"name": "city", "devices": [small_camera("cam-drift", 13, 0.0, (0.2, 0.0, 0.0))]},
    ]
}


@contextmanager
def simulated_site(root: Path, cycles: int = 3, start_date: str | None = None):
    """A site whose references were collected and which ran `cycles` hourly checks (the last one
    now), the fleet view refreshed; yields (config_dir, dagster_home, time keys of the cycles).

    start_date: the partitions' first day; only where calmon_assets is not imported yet (it loads
    its partitions from $CALMON_CONFIG_DIR once), else local_site_settings' day."""
    config_dir = root / "configs"
    if start_date is not None:
        if "calmon_assets.defs.partitions" in sys.modules:
            raise RuntimeError("start_date must be chosen before calmon_assets is imported")
        os.environ["CALMON_CONFIG_DIR"] = str(config_dir)
    from calmon_core.config import local_site_settings
    from calmon_sim.broker import EmbeddedBroker
    from calmon_sim.fleet import SimFleet
    from calmon_sim.fleet_spec import FleetSpec
    from calmon_sim.slack_receiver import SlackReceiver

    root.mkdir(parents=True, exist_ok=True)
    home = root / "dagster_home"
    slack = SlackReceiver().start()
    os.environ["CALMON_UI_WEBHOOK"] = slack.url
    try:
        with EmbeddedBroker() as broker:
            fleet = SimFleet(FleetSpec.model_validate(FLEET), broker_host=broker.host, broker_port=broker.port)
            with fleet:
                for name, value in fleet.camera_secrets().items():
                    os.environ[name] = value
                config_dir.mkdir(exist_ok=True)
                fleet.write_devices_yaml(config_dir / "devices.yaml")
                ini = local_site_settings(
                    root,
                    webhook_env="CALMON_UI_WEBHOOK",
                    stabilize_time=1.0,
                    timeout=20,
                    reference_stabilize_time=0.5,
                    written_by="scripts/ui_screenshots.py",
                    **({"start_date": start_date} if start_date is not None else {}),
                )
                (config_dir / "calibration_monitoring.ini").write_text(ini)
                # after the ini exists: the code location reads its partitions once, at import
                from calmon_assets.defs.partitions import current_time_key
                from calmon_cli.platform import Platform

                platform = Platform(str(config_dir), home=str(home))
                with fleet.calibrated():
                    refs = platform.collect_references()
                failed = [r.error for r in refs if not r.succeeded]
                if failed:
                    raise RuntimeError(f"reference scans failed: {failed}")
                now = datetime.now(UTC)
                keys = [current_time_key(now - timedelta(hours=h)) for h in range(cycles - 1, -1, -1)]
                for number, key in enumerate(keys):
                    fleet.cameras["cam-drift"].set_true_offset(0.2 + 0.1 * number, 0.0, 0.0)
                    platform.run_check_cycle(key)
                    platform.send_alerts()
                platform.refresh_fleet_health()
                yield config_dir, home, keys
    finally:
        slack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / ".calmon" / "ui_screenshots"), help="folder for the PNGs")
    parser.add_argument("--workdir", help="the simulated site's folder (default: a temporary one)")
    parser.add_argument(
        "--reuse", action="store_true", help="screenshot the site already in --workdir (no new check cycles)"
    )
    args = parser.parse_args(argv)
    if reason := browser_missing():
        print(f"ui_screenshots: {reason}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    with tempfile.TemporaryDirectory(prefix="calmon-ui-") as tmp:
        root = Path(args.workdir).resolve() if args.workdir else Path(tmp)
        if args.reuse:
            os.environ["CALMON_UI_WEBHOOK"] = "http://127.0.0.1:9/unused"
            os.environ["CALMON_CONFIG_DIR"] = str(root / "configs")
            from calmon_assets.defs.partitions import current_time_key

            texts = screenshot_ui(
                root / "configs",
                root / "dagster_home",
                out,
                f"{BREACHED_DEPLOYMENT}|{current_time_key(datetime.now(UTC))}",
            )
        else:
            # partitions from yesterday: the UI as a site that started monitoring recently sees it
            yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
            with simulated_site(root, start_date=yesterday) as (config_dir, home, keys):
                texts = screenshot_ui(config_dir, home, out, f"{BREACHED_DEPLOYMENT}|{keys[-1]}")
    for name in texts:
        print(f"{name}: {out / (name + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
