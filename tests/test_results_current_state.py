"""The current-state table beside the results history: "latest per device" from one small table,
kept right through backfills, re-runs, compaction, concurrent writers, and rebuilt from the history
when it is missing, behind, or of another schema (instances made before it existed)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType

from resources.results_table import SYNCED_SNAPSHOT_PROPERTY, ResultsTable, to_arrow
from tests.test_results_table import check, settings


def latest(table: ResultsTable) -> list[tuple[str, str, float | None]]:
    return [(r.device_id, r.check_partition, r.yaw_offset) for r in table.latest_per_device()]


def from_history(table: ResultsTable) -> list[tuple[str, str, float | None]]:
    return [(r.device_id, r.check_partition, r.yaw_offset) for r in table.latest_per_device_from_history()]


def current_state(table: ResultsTable):
    """(rows held, the history snapshot it says it reflects, the history's current snapshot)."""
    current = table.catalog.load_table(table.current_identifier)
    rows = sorted((r["device_id"], r["check_partition"]) for r in current.scan().to_arrow().to_pylist())
    return rows, int(current.properties[SYNCED_SNAPSHOT_PROPERTY]), table.table().current_snapshot().snapshot_id


@pytest.fixture
def table(tmp_path) -> ResultsTable:
    return ResultsTable(settings(tmp_path))


def key(hour: int) -> str:
    return check("x", hour).check_partition


def test_a_write_keeps_one_row_per_device_beside_the_history(table):
    for hour in range(3):
        table.write([check(d, hour, yaw=hour / 10) for d in ("cam-1", "cam-2")])
    rows, synced, head = current_state(table)
    assert rows == [("cam-1", key(2)), ("cam-2", key(2))]
    assert synced == head
    assert latest(table) == [("cam-1", key(2), 0.2), ("cam-2", key(2), 0.2)]


def test_latest_does_not_read_the_old_history(table):
    """A data file of last year lost: the history scan trips over it, latest-per-device does not."""
    table.write([check("cam-1", -24 * 300, yaw=0.4)])
    old_file = table.table().inspect.files()["file_path"].to_pylist()[0]
    table.write([check("cam-1", 0, yaw=0.1), check("cam-2", 0, yaw=0.2)])
    Path(old_file.removeprefix("file://")).unlink()
    assert latest(table) == [("cam-1", key(0), 0.1), ("cam-2", key(0), 0.2)]
    assert table.unreadable_files == []
    table.latest_per_device_from_history()
    assert table.unreadable_files == [old_file]


def test_a_backfill_of_an_older_check_does_not_replace_the_latest(table):
    table.write([check("cam-1", 10, yaw=0.1)])
    table.write([check("cam-1", 3, yaw=0.9)])  # a backfill of an older partition, written later
    assert latest(table) == [("cam-1", key(10), 0.1)] == from_history(table)


def test_a_device_not_seen_for_months_keeps_its_last_row(table):
    table.write([check("cam-old", -24 * 200, yaw=0.3)])
    for hour in range(3):
        table.write([check("cam-new", hour, yaw=0.05)])
    assert latest(table) == [("cam-new", key(2), 0.05), ("cam-old", key(-24 * 200), 0.3)] == from_history(table)


def test_a_rerun_of_the_latest_check_replaces_it_even_if_older(table):
    table.write([check("cam-1", 0, yaw=0.1)])
    table.write([check("cam-1", 1, yaw=0.2, timestamp=check("x", 1).timestamp + timedelta(minutes=50))])
    # the re-run of check 1 captured earlier than the first attempt (whose clock ran late), and
    # earlier than check 0's row of a camera whose clock ran later still: the history decides
    table.write([check("cam-1", 0, yaw=0.15, timestamp=check("x", 1).timestamp + timedelta(minutes=20))])
    table.write([check("cam-1", 1, yaw=0.3, timestamp=check("x", 1).timestamp)])
    assert latest(table) == from_history(table) == [("cam-1", key(0), 0.15)]


def test_a_deleted_current_state_is_rebuilt_from_the_history(table):
    table.write([check(d, h, yaw=h / 10) for h in range(4) for d in ("cam-1", "cam-2")])
    table.drop_current()
    assert latest(table) == [("cam-1", key(3), 0.3), ("cam-2", key(3), 0.3)]
    rows, synced, head = current_state(table)  # stored again by that read
    assert rows == [("cam-1", key(3)), ("cam-2", key(3))] and synced == head
    table.drop_current()
    table.write([check("cam-3", 5, yaw=0.5)])  # or by the next write
    rows, synced, head = current_state(table)
    assert rows == [("cam-1", key(3)), ("cam-2", key(3)), ("cam-3", key(5))] and synced == head


def test_an_instance_from_before_the_current_state_migrates(tmp_path):
    """History written without it (an older calmon, or a bulk load): the first read builds it."""
    table = ResultsTable(settings(tmp_path))
    table.append_arrow(to_arrow([check(d, h, yaw=h / 10) for h in range(5) for d in ("cam-1", "cam-2")]))
    assert not table.catalog.table_exists(table.current_identifier)
    assert latest(table) == [("cam-1", key(4), 0.4), ("cam-2", key(4), 0.4)]
    assert current_state(table)[0] == [("cam-1", key(4)), ("cam-2", key(4))]


def test_a_current_state_behind_the_history_is_caught_up(table):
    table.write([check("cam-1", 0, yaw=0.1)])
    table.append_arrow(to_arrow([check("cam-1", 1, yaw=0.2), check("cam-2", 1, yaw=0.3)]))  # not reflected
    rows, synced, head = current_state(table)
    assert rows == [("cam-1", key(0))] and synced != head
    assert latest(table) == [("cam-1", key(1), 0.2), ("cam-2", key(1), 0.3)]


def test_a_current_state_out_of_the_history_lineage_is_rebuilt(table):
    table.write([check("cam-1", 0, yaw=0.1)])
    current = table.catalog.load_table(table.current_identifier)
    with current.transaction() as transaction:  # a snapshot the history never had
        transaction.set_properties({SYNCED_SNAPSHOT_PROPERTY: "12345"})
    table.write([check("cam-2", 1, yaw=0.2)])
    assert latest(table) == [("cam-1", key(0), 0.1), ("cam-2", key(1), 0.2)]
    assert current_state(table)[1] == current_state(table)[2]


def test_a_current_state_of_an_older_schema_is_made_again(table):
    table.write([check("cam-1", 0, yaw=0.1)])
    table.drop_current()
    table.catalog.create_table(
        table.current_identifier, schema=Schema(NestedField(1, "device_id", StringType(), required=False))
    )
    table.write([check("cam-2", 1, yaw=0.2)])
    assert latest(table) == [("cam-1", key(0), 0.1), ("cam-2", key(1), 0.2)]
    assert current_state(table)[0] == [("cam-1", key(0)), ("cam-2", key(1))]


def test_compaction_and_maintenance_keep_it_right(tmp_path):
    table = ResultsTable(settings(tmp_path, snapshot_retention_hours=1e-6))
    for hour in range(30):
        table.write([check(d, hour, yaw=hour / 100) for d in ("cam-1", "cam-2")])
    table.write([check("cam-1", 2, yaw=0.9)])  # a backfill
    table.maintain()
    rows, synced, head = current_state(table)
    assert synced == head and rows == [("cam-1", key(29)), ("cam-2", key(29))]
    table.write([check("cam-2", 30, yaw=0.7)])
    assert latest(table) == [("cam-1", key(29), 0.29), ("cam-2", key(30), 0.7)] == from_history(table)
