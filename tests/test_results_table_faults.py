"""The results table when its storage is damaged: a lost catalog is loud, a lost data file degrades."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from resources.results_table import ResultsTable, ResultsTableError
from tests.test_results_table import check, settings


def filled(root: Path) -> ResultsTable:
    table = ResultsTable(settings(root))
    table.write([check("cam-1", 0), check("cam-2", 0)])
    table.write([check("cam-1", 30, yaw=0.7), check("cam-3", 30)])  # another day partition, other files
    return table


def damage(catalog: Path, how: str) -> None:
    if how == "emptied":
        catalog.write_bytes(b"")
    elif how == "deleted":
        catalog.unlink()
    elif how == "corrupt":
        catalog.write_bytes(b"this is not an sqlite database\n" * 200)
    elif how == "tables dropped":
        with sqlite3.connect(catalog) as db:
            db.execute("DELETE FROM iceberg_tables")


@pytest.mark.parametrize("how", ["emptied", "deleted", "corrupt", "tables dropped"])
def test_a_lost_catalog_is_a_loud_error_naming_it(tmp_path, how):
    filled(tmp_path)
    catalog = tmp_path / "catalog.db"
    damage(catalog, how)
    for use in ("latest_per_device", "write"):
        with pytest.raises(ResultsTableError) as info:
            table = ResultsTable(settings(tmp_path))
            table.latest_per_device() if use == "latest_per_device" else table.write([check("cam-9", 40)])
        assert str(catalog) in str(info.value), use
    # and no new, empty table was started behind the user's back
    if how in ("emptied", "deleted", "tables dropped"):
        with sqlite3.connect(catalog) as db:
            names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            rows = list(db.execute("SELECT * FROM iceberg_tables")) if "iceberg_tables" in names else []
        assert rows == []


def test_a_lost_catalog_is_recovered_from_the_warehouse_on_request(tmp_path):
    filled(tmp_path)
    (tmp_path / "catalog.db").write_bytes(b"")
    table = ResultsTable(settings(tmp_path))
    table.recover_from_warehouse()
    assert {(r.device_id, r.check_partition) for r in table.all_rows()} == {
        ("cam-1", check("cam-1", 0).check_partition),
        ("cam-2", check("cam-2", 0).check_partition),
        ("cam-1", check("cam-1", 30).check_partition),
        ("cam-3", check("cam-3", 30).check_partition),
    }


def test_first_use_of_an_empty_site_still_creates_the_table(tmp_path):
    table = ResultsTable(settings(tmp_path))
    assert table.latest_per_device() == []
    table.write([check("cam-1", 0)])
    assert [r.device_id for r in ResultsTable(settings(tmp_path)).latest_per_device()] == ["cam-1"]


def data_files(table: ResultsTable) -> list[str]:
    return table.table().inspect.files()["file_path"].to_pylist()


def test_one_missing_data_file_degrades_reads_and_names_it(tmp_path):
    table = filled(tmp_path)
    lost = next(f for f in data_files(table) if "2026-11-20" in f)  # the first day's file
    Path(lost.removeprefix("file://")).unlink()
    # the current-state table still holds each device's newest row, cam-2's (only in the lost file) too
    reader = ResultsTable(settings(tmp_path))
    assert {r.device_id for r in reader.latest_per_device()} == {"cam-1", "cam-2", "cam-3"}
    assert reader.unreadable_files == []  # that read did not need the history
    # rebuilt from the history (or read from it), what the lost file held is gone, and it is named
    reader.drop_current()
    latest = {r.device_id: r for r in reader.latest_per_device()}
    assert set(latest) == {"cam-1", "cam-3"} and latest["cam-1"].yaw_offset == 0.7
    assert reader.unreadable_files == [lost]
    assert [r.device_id for r in reader.history("cam-1", limit=10)] == ["cam-1"]
    assert len(reader.all_rows()) == 2
    # writing the other day still works, and the damage is still reported on every read
    reader.write([check("cam-4", 31)])
    assert {r.device_id for r in reader.latest_per_device()} == {"cam-1", "cam-3", "cam-4"}
    assert reader.unreadable_files == [lost]


def test_a_readable_table_reports_no_unreadable_files(tmp_path):
    reader = filled(tmp_path)
    reader.latest_per_device()
    assert reader.unreadable_files == []


def test_a_writer_racing_the_first_creation_waits_for_it_instead_of_calling_the_catalog_lost(tmp_path):
    import threading

    first = ResultsTable(settings(tmp_path))
    first.ensure_table()
    # the state another writer sees while the first is creating the table: pyiceberg has written
    # the first metadata file but not yet registered it in the catalog
    metadata = first.catalog.load_table(first.identifier).metadata_location
    with sqlite3.connect(tmp_path / "catalog.db") as db:
        db.execute("DELETE FROM iceberg_tables")
    registered = threading.Timer(1.0, lambda: first.catalog.register_table(first.identifier, metadata))
    registered.start()
    try:
        second = ResultsTable(settings(tmp_path))
        second.write([check("cam-1", 0)])
    finally:
        registered.join()
    assert [r.device_id for r in ResultsTable(settings(tmp_path)).latest_per_device()] == ["cam-1"]
