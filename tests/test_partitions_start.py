"""The partitions' first day: `[schedule] start_date`, else the day calmon first loaded the site,
kept in the site's object store so that every later load (a code-server reload, a run pod, the CLI)
has the same partition keys; never months of "Missing" checks nobody meant to run."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from calmon_assets.defs.partitions import partitions_start_date
from calmon_core.config import SETTINGS_FILE, ConfigError, Settings, load_settings
from calmon_core.layout import PARTITIONS_START_KEY
from resources.object_store import LocalObjectStore

REPO = Path(__file__).resolve().parent.parent

FIRST_KEY = """
from calmon_assets.defs.partitions import check_time_partitions
print(check_time_partitions.get_first_partition_key())
"""


def local_site(root: Path, schedule: str = "") -> Settings:
    ini = root / SETTINGS_FILE
    ini.write_text(f"[storage]\nbackend = local\nlocal_root = {root}/object-store\n{schedule}")
    return load_settings(ini)


def test_an_unset_start_date_is_the_first_load_day_and_stays_it(tmp_path):
    settings = local_site(tmp_path)
    assert settings.schedule.start_date is None
    assert partitions_start_date(settings, today=date(2026, 12, 2)) == "2026-12-02"
    # a reload the next week (the code server restarted, a run pod started) keeps the keys
    assert partitions_start_date(settings, today=date(2026, 12, 9)) == "2026-12-02"
    store = LocalObjectStore(tmp_path / "object-store")
    assert store.get_bytes(PARTITIONS_START_KEY).decode().strip() == "2026-12-02"


def test_an_explicit_start_date_wins_and_records_nothing(tmp_path):
    settings = local_site(tmp_path, "[schedule]\nstart_date = 2026-03-15\n")
    assert partitions_start_date(settings, today=date(2026, 12, 2)) == "2026-03-15"
    assert not LocalObjectStore(tmp_path / "object-store").exists(PARTITIONS_START_KEY)


def test_a_start_date_that_is_no_day_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        local_site(tmp_path, "[schedule]\nstart_date = 2026-13-01\n")
    assert "start_date" in str(caught.value) and "YYYY-MM-DD" in str(caught.value)


def test_a_broken_record_is_named_not_guessed(tmp_path):
    settings = local_site(tmp_path)
    LocalObjectStore(tmp_path / "object-store").put_bytes(PARTITIONS_START_KEY, b"yesterday\n")
    with pytest.raises(ConfigError) as caught:
        partitions_start_date(settings)
    assert PARTITIONS_START_KEY in str(caught.value) and "start_date" in str(caught.value)


def test_the_code_server_and_a_run_pod_on_s3_load_the_same_partitions_from_the_first_day(tmp_path, s3_bucket):
    """Two processes as the chart runs them (the code server, then a run pod), sharing nothing but
    the bucket: the partitions begin on the day of the first load, not on a day in the past."""
    from tests.servers import TEST_AWS_ENV

    endpoint, bucket = s3_bucket
    config_dir = tmp_path / "calmon-config"
    config_dir.mkdir()
    shipped = (REPO / "configs" / SETTINGS_FILE).read_text()
    (config_dir / SETTINGS_FILE).write_text(
        shipped.replace("bucket = camera-calibration-monitoring", f"bucket = {bucket}")
    )
    env = {
        **os.environ,
        **TEST_AWS_ENV,
        "CALMON_CONFIG_DIR": str(config_dir),
        "CALMON_STORAGE_BACKEND": "s3",
        "CALMON_S3_ENDPOINT_URL": endpoint,
        "PYTHONPATH": str(REPO),
    }
    before = datetime.now(UTC).date()
    keys = []
    for pod in ("code-server", "run-pod"):
        workdir = tmp_path / pod
        workdir.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", FIRST_KEY], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        keys.append(proc.stdout.strip().splitlines()[-1])
    after = datetime.now(UTC).date()
    assert keys[0] == keys[1]
    first_day = date.fromisoformat(keys[0][:10])
    assert keys[0].endswith("-00:00") and before <= first_day <= after
    import boto3

    record = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").get_object(
        Bucket=bucket, Key=PARTITIONS_START_KEY
    )
    assert record["Body"].read().decode().strip() == first_day.isoformat()
