"""Iceberg results table: SQLite catalog on local disk and on moto's S3, Glue on moto; idempotent
writes, two writing processes, schema evolution, compaction, and docs/athena.md's queries on DuckDB."""

from __future__ import annotations

import multiprocessing
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow as pa
import pytest
from pyiceberg.catalog import load_catalog
from pyiceberg.schema import Schema
from pyiceberg.types import BooleanType, DoubleType, NestedField, StringType, TimestamptzType

from calmon_core.config import AwsSettings, ResultsSettings
from calmon_core.models import CalibrationResult, CheckStatus
from resources.results_table import RESULTS_SCHEMA, ResultsTable, ResultsTableResource

REPO = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 20, 0, 5, tzinfo=UTC)


def settings(root: Path, **overrides) -> ResultsSettings:
    values = {"warehouse": str(root / "warehouse"), "sqlite_path": str(root / "catalog.db"), **overrides}
    return ResultsSettings(**values)


def check(device: str, hour: int, yaw: float = 0.1, deployment: str = "harbor", **fields) -> CalibrationResult:
    moment = START + timedelta(hours=hour)
    values = dict(
        deployment_name=deployment,
        device_id=device,
        timestamp=moment,
        check_partition=(START + timedelta(hours=hour)).strftime("%Y-%m-%d-%H:00"),
        yaw_offset=yaw,
        pitch_offset=-0.02,
        roll_offset=0.01,
        yaw_uncertainty=0.004,
        pitch_uncertainty=0.005,
        roll_uncertainty=0.006,
        success=True,
        status=CheckStatus.breach if abs(yaw) > 0.5 else CheckStatus.ok,
        inliers=300,
        frames_used=3,
        capture_positions='[{"yaw":10.0,"pitch":-3.0,"roll":0.0,"zoom":1.0}]',
        files_location=f"s3://camera-calibration-monitoring/{deployment}/{device}/query_scan/x",
        algorithm_version="test-1",
        run_id=f"run-{device}-{hour}",
    )
    values.update(fields)
    return CalibrationResult(**values)


@pytest.fixture
def table(tmp_path) -> ResultsTable:
    return ResultsTable(settings(tmp_path))


def test_round_trip_keeps_every_field(table):
    written = check("cam-1", 0, yaw=0.712, failure_log=None)
    table.write([written])
    assert table.read("cam-1", written.check_partition) == written
    assert table.read("cam-1", "1999-01-01-00:00") is None
    assert table.read("cam-9", written.check_partition) is None


def test_failed_row_round_trips_with_nulls(table):
    failed = CalibrationResult(
        deployment_name="harbor",
        device_id="cam-2",
        timestamp=START,
        check_partition="2026-11-20-00:00",
        failure_log="camera offline",
    )
    table.write([failed])
    row = table.read("cam-2", "2026-11-20-00:00")
    assert row.status is CheckStatus.failed and row.yaw_offset is None and row.failure_log == "camera offline"


def test_same_check_written_twice_is_one_row(table):
    table.write([check("cam-1", 0, yaw=0.2), check("cam-2", 0, yaw=0.3)])
    table.write([check("cam-1", 0, yaw=0.9)])  # a retry / backfill of the same check
    table.write([check("cam-1", 0, yaw=0.7), check("cam-1", 0, yaw=0.8)])  # duplicates in one batch
    rows = table.all_rows()
    assert sorted((r.device_id, r.check_partition, r.yaw_offset) for r in rows) == [
        ("cam-1", "2026-11-20-00:00", 0.8),
        ("cam-2", "2026-11-20-00:00", 0.3),
    ]


def test_rewrite_of_a_check_that_moved_to_another_day_replaces_it(table):
    # a backfill captures now, so the replaced row may live in a different day partition
    table.write([check("cam-1", 0, yaw=0.2)])
    later = check("cam-1", 0, yaw=0.3, timestamp=START + timedelta(days=3))
    table.write([later])
    assert [r.yaw_offset for r in table.all_rows()] == [0.3]


def test_latest_per_device_and_history(table):
    table.write(
        [
            check(d, h, yaw=h / 100, deployment="harbor" if d != "cam-3" else "city")
            for h in range(6)
            for d in ("cam-1", "cam-2")
        ]
    )
    table.write([check("cam-3", 2, yaw=0.6, deployment="city")])
    latest = table.latest_per_device()
    assert [(r.deployment_name, r.device_id, r.yaw_offset) for r in latest] == [
        ("city", "cam-3", 0.6),
        ("harbor", "cam-1", 0.05),
        ("harbor", "cam-2", 0.05),
    ]
    history = table.history("cam-1")
    assert [r.yaw_offset for r in history] == [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]  # oldest first
    assert [r.yaw_offset for r in table.history("cam-1", limit=2)] == [0.04, 0.05]
    since = table.history("cam-1", since=START + timedelta(hours=4))
    assert [r.yaw_offset for r in since] == [0.04, 0.05]
    assert table.history("cam-404") == []


def test_empty_table_reads(table):
    assert table.latest_per_device() == []
    assert table.all_rows() == []


def _writer_process(root: str, writer: int, checks: int, start) -> None:
    table = ResultsTable(settings(Path(root)))
    table.ensure_table()
    start.wait()
    for hour in range(checks):
        table.write([check(f"cam-w{writer}", hour, yaw=writer + hour / 100)])
        table.write([check("cam-both", hour, yaw=writer)])  # both write this same check at once


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    ResultsTable(settings(tmp_path)).ensure_table()
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    checks = 12
    workers = [context.Process(target=_writer_process, args=(str(tmp_path), w, checks, start)) for w in (1, 2)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=240)
        assert worker.exitcode == 0
    table = ResultsTable(settings(tmp_path))
    rows = table.all_rows()
    assert len(rows) == 3 * checks  # nothing lost, and the shared checks are not duplicated
    # and the current-state table the writers kept beside the history agrees with it
    newest = [(r.device_id, r.check_partition) for r in table.latest_per_device()]
    assert newest == [(d, check(d, checks - 1).check_partition) for d in ("cam-both", "cam-w1", "cam-w2")]
    assert newest == [(r.device_id, r.check_partition) for r in table.latest_per_device_from_history()]
    assert {(r.device_id, r.check_partition) for r in rows} == {
        (device, check("x", h).check_partition) for device in ("cam-w1", "cam-w2", "cam-both") for h in range(checks)
    }
    assert {r.yaw_offset for r in rows if r.device_id == "cam-both"} <= {1.0, 2.0}


SEED_SCHEMA = Schema(  # the seed table's columns, before calmon added its own
    NestedField(1, "deployment_name", StringType(), required=False),
    NestedField(2, "device_id", StringType(), required=False),
    NestedField(3, "timestamp", TimestamptzType(), required=False),
    NestedField(4, "pitch_offset", DoubleType(), required=False),
    NestedField(5, "yaw_offset", DoubleType(), required=False),
    NestedField(6, "roll_offset", DoubleType(), required=False),
    NestedField(7, "mode", StringType(), required=False),
    NestedField(8, "capture_positions", StringType(), required=False),
    NestedField(9, "files_location", StringType(), required=False),
    NestedField(10, "success", BooleanType(), required=False),
    NestedField(11, "failure_log", StringType(), required=False),
)


def test_schema_evolution_adds_columns_and_keeps_old_rows(tmp_path):
    s = settings(tmp_path)
    catalog = load_catalog(
        "calmon", type="sql", uri=f"sqlite:///{tmp_path / 'catalog.db'}", warehouse=(tmp_path / "warehouse").as_uri()
    )
    (tmp_path / "warehouse").mkdir()
    catalog.create_namespace(s.database)
    old = catalog.create_table((s.database, s.table), schema=SEED_SCHEMA)
    old.append(
        pa.Table.from_pylist(
            [
                {
                    "deployment_name": "harbor",
                    "device_id": "cam-old",
                    "timestamp": START,
                    "pitch_offset": 0.0,
                    "yaw_offset": 0.9,
                    "roll_offset": 0.0,
                    "mode": "passive",
                    "capture_positions": "[]",
                    "files_location": None,
                    "success": True,
                    "failure_log": None,
                }
            ],
            schema=old.schema().as_arrow(),
        )
    )

    table = ResultsTable(s)
    table.ensure_table()
    evolved = table.table().schema()
    assert set(RESULTS_SCHEMA.column_names) <= set(evolved.column_names)
    assert evolved.find_field("yaw_offset").field_id == 5  # existing ids untouched
    new = check("cam-new", 1, yaw=0.1)
    table.write([new])
    rows = {r.device_id: r for r in table.all_rows()}
    assert rows["cam-old"].yaw_offset == 0.9 and rows["cam-old"].inliers is None
    assert rows["cam-old"].status is CheckStatus.breach  # derived for rows older than the column
    assert rows["cam-new"] == new


FORECAST_COLUMNS = (
    "trend_axis",
    "trend_deg_per_day",
    "trend_sigma_deg_per_day",
    "days_to_threshold",
    "days_to_threshold_sigma",
)


LIGHTING_COLUMNS = ("gauge_id", "lighting_regime", "bank_entry")


def test_a_table_without_the_forecast_and_lighting_columns_gains_them_in_place(tmp_path):
    s = settings(tmp_path)
    (tmp_path / "warehouse").mkdir()
    catalog = load_catalog(
        "calmon", type="sql", uri=f"sqlite:///{tmp_path / 'catalog.db'}", warehouse=(tmp_path / "warehouse").as_uri()
    )
    catalog.create_namespace(s.database)
    before = Schema(*[f for f in RESULTS_SCHEMA.fields if f.name not in FORECAST_COLUMNS + LIGHTING_COLUMNS])
    old_table = catalog.create_table((s.database, s.table), schema=before)
    old = check("cam-old", 0, yaw=0.3)
    row = {k: v for k, v in old.model_dump().items() if k in before.column_names}
    row["status"] = str(row["status"])
    old_table.append(pa.Table.from_pylist([row], schema=old_table.schema().as_arrow()))

    table = ResultsTable(s)
    table.ensure_table()
    evolved = table.table().schema()
    assert [evolved.find_field(n).field_id for n in FORECAST_COLUMNS + LIGHTING_COLUMNS] == list(range(23, 31))
    new = check(
        "cam-new",
        1,
        yaw=0.4,
        trend_axis="yaw",
        trend_deg_per_day=0.05,
        trend_sigma_deg_per_day=0.01,
        days_to_threshold=2.0,
        days_to_threshold_sigma=0.4,
        gauge_id="gauge-0123456789ab",
        lighting_regime="night",
        bank_entry="night",
    )
    table.write([new])
    rows = {r.device_id: r for r in table.all_rows()}
    assert rows["cam-new"] == new
    assert rows["cam-old"].yaw_offset == 0.3 and rows["cam-old"].days_to_threshold is None
    assert rows["cam-old"].gauge_id is None and rows["cam-old"].bank_entry is None


def test_compaction_keeps_rows_and_merges_files(table):
    for hour in range(8):  # one commit per hourly cycle: small files
        table.write([check(d, hour, yaw=hour / 10) for d in ("cam-1", "cam-2", "cam-3")])
    before = sorted((r.device_id, r.check_partition, r.yaw_offset) for r in table.all_rows())
    files_before = table.file_count()
    report = table.compact()
    assert report["files_before"] == files_before == 8
    assert report["files_after"] == table.file_count() == 1
    assert report["snapshots_expired"] > 0
    assert sorted((r.device_id, r.check_partition, r.yaw_offset) for r in table.all_rows()) == before
    table.write([check("cam-1", 3, yaw=0.55)])  # still writable and idempotent afterwards
    assert table.read("cam-1", check("x", 3).check_partition).yaw_offset == 0.55
    assert len(table.all_rows()) == len(before)


def test_maintenance_merges_small_files_and_expires_old_snapshots(tmp_path):
    table = ResultsTable(settings(tmp_path, snapshot_retention_hours=1e-6))
    for hour in range(36):  # one small file per hourly cycle, over two days
        table.write([check(d, hour, yaw=hour / 100) for d in ("cam-1", "cam-2")])
    before = sorted((r.device_id, r.check_partition, r.yaw_offset) for r in table.all_rows())
    assert len(table.table().snapshots()) >= 36
    report = table.maintain()
    assert report["partitions_compacted"] == 2
    assert (report["files_before"], report["files_after"]) == (36, 2)
    assert report["snapshots_kept"] == 1 and report["snapshots_expired"] >= 36
    assert sorted((r.device_id, r.check_partition, r.yaw_offset) for r in table.all_rows()) == before
    assert [r.check_partition for r in table.history("cam-2", limit=3)] == [
        check("x", h).check_partition for h in (33, 34, 35)
    ]
    assert table.maintain()["partitions_compacted"] == 0  # nothing new to merge


def test_tables_from_older_versions_get_the_metadata_cleanup_properties(tmp_path):
    table = ResultsTable(settings(tmp_path))
    table.write([check("cam-1", 0)])
    with table.table().transaction() as transaction:  # as an older calmon created it
        transaction.remove_properties("write.metadata.delete-after-commit.enabled")
    assert "write.metadata.delete-after-commit.enabled" not in table.table().properties
    reopened = ResultsTable(settings(tmp_path))
    properties = reopened.table().properties
    assert properties["write.metadata.delete-after-commit.enabled"] == "true"
    assert properties["write.metadata.previous-versions-max"] == "100"
    assert reopened.read("cam-1", check("x", 0).check_partition) is not None


def athena_queries() -> list[str]:
    text = (REPO / "docs" / "athena.md").read_text()
    return re.findall(r"```sql\n(.*?)```", text, flags=re.S)


def test_docs_athena_queries_run_on_duckdb(table):
    now = datetime.now(UTC).replace(minute=5, second=0, microsecond=0)
    rows = [
        check(d, 0, yaw=y, timestamp=now - timedelta(hours=h), check_partition=f"p{h}", deployment=dep)
        for h in range(5)
        for d, y, dep in (("cam-07", 0.6 + h / 100, "harbor"), ("cam-08", 0.1, "city"))
    ]
    rows.append(
        check(
            "cam-08",
            0,
            timestamp=now - timedelta(days=30),
            check_partition="old",
            deployment="city",
            yaw_offset=None,
            success=False,
            status=CheckStatus.failed,
        )
    )
    table.write(rows)
    queries = athena_queries()
    assert len(queries) == 5
    connection = table.duckdb()
    latest, current, breaches, drift, outcomes = (connection.execute(q).fetchall() for q in queries)
    assert current == latest  # the current-state table answers the same as the window over the history
    assert [(r[0], r[1], r[3]) for r in latest] == [("city", "cam-08", "ok"), ("harbor", "cam-07", "breach")]
    assert latest[1][4] == pytest.approx(0.6)
    assert [(r[0], r[1], r[2]) for r in breaches] == [("harbor", "cam-07", 5)]
    assert breaches[0][3] == pytest.approx(0.64)
    assert sum(r[4] for r in drift) == 5 and min(r[2] for r in drift) == pytest.approx(0.6)
    assert outcomes == [("city", 5, 0, 0, 1), ("harbor", 0, 5, 0, 0)]


def test_sqlite_catalog_with_warehouse_on_moto_s3(s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    table = ResultsTable(settings(tmp_path, warehouse=f"s3://{bucket}/iceberg"), AwsSettings(endpoint_url=endpoint))
    table.write([check("cam-1", 0), check("cam-2", 0)])
    table.write([check("cam-1", 0, yaw=0.75)])
    assert {(r.device_id, r.yaw_offset) for r in table.all_rows()} == {("cam-1", 0.75), ("cam-2", 0.1)}
    keys = [
        o["Key"]
        for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket, Prefix="iceberg/")["Contents"]
    ]
    assert any("/data/timestamp_day=2026-11-20/deployment_name=harbor/" in k for k in keys)
    assert any(k.endswith(".metadata.json") for k in keys)


def test_glue_catalog_on_moto(s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    database = f"calmon_{bucket.rsplit('-', 1)[1]}"
    s = ResultsSettings(catalog="glue", database=database, warehouse=f"s3://{bucket}/iceberg")
    table = ResultsTable(s, AwsSettings(endpoint_url=endpoint))
    table.write([check("cam-1", 0), check("cam-2", 1)])
    table.write([check("cam-1", 0, yaw=-0.8)])
    glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1")
    described = glue.get_table(DatabaseName=database, Name="calibration_results")["Table"]
    assert described["Parameters"]["table_type"] == "ICEBERG"  # what Athena needs
    assert described["Parameters"]["metadata_location"].startswith(f"s3://{bucket}/iceberg/")
    assert {(r.device_id, r.yaw_offset) for r in table.all_rows()} == {("cam-1", -0.8), ("cam-2", 0.1)}
    latest = table.latest_per_device()
    assert [r.device_id for r in latest] == ["cam-1", "cam-2"]
    # a later calmon version adds a column: the Glue table evolves, old rows stay readable
    with table.table().update_schema() as update:
        update.add_column("site_note", StringType())
    reopened = ResultsTable(s, AwsSettings(endpoint_url=endpoint))
    reopened.write([check("cam-3", 2)])
    assert len(reopened.all_rows()) == 3
    assert "site_note" in reopened.table().schema().column_names


def test_resource_gives_a_working_client(tmp_path):
    resource = ResultsTableResource(warehouse=str(tmp_path / "w"), sqlite_path=str(tmp_path / "c.db"))
    client = resource.get_client()
    client.write([check("cam-1", 0)])
    assert resource.get_client().read("cam-1", check("x", 0).check_partition).device_id == "cam-1"


def test_history_limit_widens_its_window_at_the_rate_it_finds_rows(tmp_path):
    from resources.results_table import (
        FIRST_HISTORY_WINDOW,
        LAST_HISTORY_WINDOW,
        first_history_window,
        next_history_window,
    )

    assert first_history_window(50) == FIRST_HISTORY_WINDOW  # 50 hourly checks fit in 3 days
    assert first_history_window(200) == timedelta(hours=250)  # 200 hourly checks and the margin
    # 72 hourly rows in 3 days, 200 wanted: the next window is sized for 250 at that rate
    assert next_history_window(FIRST_HISTORY_WINDOW, 72, 200) == FIRST_HISTORY_WINDOW * (1.25 * 200 / 72)
    assert next_history_window(FIRST_HISTORY_WINDOW, 199, 200) == FIRST_HISTORY_WINDOW * 2  # at least doubles
    assert next_history_window(FIRST_HISTORY_WINDOW, 0, 200) == FIRST_HISTORY_WINDOW * 10  # found none
    assert next_history_window(LAST_HISTORY_WINDOW / 2, 1, 200) is None  # beyond: the whole history

    table = ResultsTable(settings(tmp_path))
    now = datetime.now(UTC).replace(minute=5, second=0, microsecond=0)

    def row(device: str, moment: datetime, yaw: float) -> CalibrationResult:
        return check(device, 0, yaw=yaw, timestamp=moment, check_partition=moment.strftime("%Y-%m-%d-%H:00"))

    daily = [row("cam-daily", now - timedelta(days=d, hours=1), d / 1000) for d in range(500)]  # > a year
    hourly = [row("cam-hourly", now - timedelta(hours=h + 1), h / 1000) for h in range(300)]
    table.write(daily + hourly)  # one write of 800 check partitions, as a backfill may make
    # oldest first, exactly the newest `limit`, whichever window they were found in
    assert [r.yaw_offset for r in table.history("cam-daily", limit=40)] == [d / 1000 for d in reversed(range(40))]
    assert [r.yaw_offset for r in table.history("cam-daily", limit=450)] == [d / 1000 for d in reversed(range(450))]
    assert [r.yaw_offset for r in table.history("cam-hourly", limit=200)] == [h / 1000 for h in reversed(range(200))]
    assert len(table.history("cam-hourly", limit=1000)) == 300


def test_histories_read_many_devices_at_once_as_history_reads_each(tmp_path):
    from resources.results_table import _oldest_day

    table = ResultsTable(settings(tmp_path))
    assert _oldest_day(table.table()) is None  # no snapshot yet
    now = datetime.now(UTC).replace(minute=5, second=0, microsecond=0)

    def row(device: str, moment: datetime, yaw: float) -> CalibrationResult:
        return check(device, 0, yaw=yaw, timestamp=moment, check_partition=moment.strftime("%Y-%m-%d-%H:00"))

    rows = [row(f"cam-{d}", now - timedelta(hours=h + 1), d + h / 1000) for d in range(4) for h in range(30 + 40 * d)]
    rows += [row("cam-old", now - timedelta(days=40 + h), h / 1000) for h in range(5)]  # checked long ago only
    table.write(rows)
    # the first day a file holds, read from the manifest list alone
    assert _oldest_day(table.table()) == (now - timedelta(days=44)).date()
    devices = [f"cam-{d}" for d in range(4)] + ["cam-old", "cam-never"]
    for limit in (20, 100, 500):
        together = table.histories(devices, limit)
        assert set(together) == set(devices)
        assert together["cam-never"] == []
        for device in devices:
            assert together[device] == table.history(device, limit=limit), (device, limit)
        assert [r.yaw_offset for r in together["cam-2"]] == [2 + h / 1000 for h in reversed(range(min(limit, 110)))]
        assert len(together["cam-old"]) == 5


def test_read_many_finds_each_key_and_only_those(table):
    table.write([check("cam-1", h, yaw=h / 100) for h in range(6)] + [check("cam-2", h) for h in range(3)])
    table.write([check("cam-1", 2, yaw=0.9)])  # a re-run of one partition: its newest row counts
    wanted = [("cam-1", check("cam-1", h).check_partition) for h in (0, 2, 5)] + [
        ("cam-2", check("cam-2", 5).check_partition),  # a partition cam-2 has no row for
        ("cam-9", check("cam-9", 0).check_partition),
    ]
    rows = table.read_many(wanted)
    assert sorted(rows) == sorted(wanted[:3])
    assert [rows[key].yaw_offset for key in wanted[:3]] == [0.0, 0.9, 0.05]
    assert table.read_many([]) == {}
