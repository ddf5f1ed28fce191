"""The results table: one Iceberg row per (device_id, check_partition), what Athena queries.

Catalogs: SQLite SqlCatalog with a local (or s3://) warehouse as the embedded default, AWS Glue
(what Athena reads), or an Iceberg REST catalog. Writes replace the row of a check (a retry or a
backfill never duplicates it) in one snapshot, and survive concurrent writers by reloading the
table and rebuilding the Arrow data on each commit attempt.

Beside the history sits the current-state table `<table>_current`: one row per device, its newest
row, and the history snapshot it reflects (table property `calmon.history-snapshot-id`). Iceberg
has no transaction over two tables, so it is derived state: every write brings it up to the
history's current snapshot from the data files added since the one it reflects, and a reader that
finds it behind does the same in memory; missing, unreadable or out of the history's lineage, it is
rebuilt from the history. "Latest per device" reads one small file instead of a year of rows.
"""

from __future__ import annotations

import logging
import math
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationException,
)
from pyiceberg.expressions import (
    AlwaysFalse,
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThan,
    Or,
)
from pyiceberg.io.pyarrow import ArrowScan, schema_to_pyarrow
from pyiceberg.manifest import DataFile, ManifestEntryStatus
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import ancestors_of
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from calmon_core.check import DEFAULT_THRESHOLD_DEG, classify
from calmon_core.config import AwsSettings, ResultsSettings
from calmon_core.models import CalibrationResult, CheckStatus

log = logging.getLogger(__name__)

# Field ids are the table's identity for columns: never renumber, only append new ids.
_FIELDS: list[tuple[str, Any, str]] = [
    ("deployment_name", StringType(), "deployment (site) the device belongs to"),
    ("device_id", StringType(), "camera id, unique across the fleet"),
    ("timestamp", TimestamptzType(), "when the query was captured (or the check ran, if it failed)"),
    ("check_partition", StringType(), "the schedule's time partition key, e.g. 2026-11-24-13:00"),
    ("pitch_offset", DoubleType(), "degrees, measured minus reported"),
    ("yaw_offset", DoubleType(), "degrees, measured minus reported"),
    ("roll_offset", DoubleType(), "degrees, measured minus reported"),
    ("pitch_uncertainty", DoubleType(), "degrees, one sigma"),
    ("yaw_uncertainty", DoubleType(), "degrees, one sigma"),
    ("roll_uncertainty", DoubleType(), "degrees, one sigma"),
    ("mode", StringType(), "passive or active"),
    ("capture_positions", StringType(), "JSON list of the reported poses of the query frames"),
    ("files_location", StringType(), "where the query capture is stored"),
    ("success", BooleanType(), "the estimator produced offsets"),
    ("status", StringType(), "ok, breach, inconclusive or failed"),
    ("failure_log", StringType(), "why the check failed or was inconclusive"),
    ("inliers", LongType(), "feature matches consistent with the estimate"),
    ("frames_used", LongType(), "query frames that contributed"),
    ("threshold_deg", DoubleType(), "the alert threshold in force"),
    ("algorithm_version", StringType(), "estimator version"),
    ("run_id", StringType(), "Dagster run that wrote the row"),
    ("written_at", TimestamptzType(), "when the row was written"),
    ("trend_axis", StringType(), "axis of the drift forecast: the one reaching the threshold soonest"),
    ("trend_deg_per_day", DoubleType(), "that axis's robust trend over the recent checks, degrees per day"),
    ("trend_sigma_deg_per_day", DoubleType(), "one sigma of the trend"),
    ("days_to_threshold", DoubleType(), "days until the trend reaches the threshold (null: not heading there)"),
    ("days_to_threshold_sigma", DoubleType(), "one sigma of days_to_threshold"),
    ("gauge_id", StringType(), "the reference gauge the offsets are relative to (kept across re-scans)"),
    ("lighting_regime", StringType(), "day, dusk or night, from the query's images"),
    ("bank_entry", StringType(), "the reference set the query matched: reference (the original) or a bank entry"),
]
RESULTS_SCHEMA = Schema(
    *[
        NestedField(field_id=i, name=name, field_type=kind, required=False, doc=doc)
        for i, (name, kind, doc) in enumerate(_FIELDS, start=1)
    ]
)
RESULTS_PARTITION_SPEC = PartitionSpec(
    PartitionField(source_id=3, field_id=1000, transform=DayTransform(), name="timestamp_day"),
    PartitionField(source_id=1, field_id=1001, transform=IdentityTransform(), name="deployment_name"),
)
# Athena reads Iceberg v2 with Parquet; merged manifests keep planning fast after many appends.
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.format.default": "parquet",
    "write.parquet.compression-codec": "zstd",
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "50",
    "commit.retry.num-retries": "10",
    # pyiceberg's own waits double up to a minute by default: on a busy table a write that waits
    # that long only finds newer commits again (minutes per row). Short waits stay in the race.
    "commit.retry.min-wait-ms": "20",
    "commit.retry.max-wait-ms": "500",
    "commit.retry.total-timeout-ms": "15000",
    # each commit writes a new metadata file; keep the last 100, not one per check forever
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
}
# given to tables created by older versions (or by hand) when first opened
_MAINTAINED_PROPERTIES = {
    k: v for k, v in TABLE_PROPERTIES.items() if k.startswith(("commit.retry.", "write.metadata."))
}
# The current-state table: small (one row per device) and rewritten whole by every write, so its own
# commit retries are off (a conflict means another writer moved it: recompute from what it holds
# now, see ResultsTable._refresh_current) and only its last few metadata files are kept.
CURRENT_TABLE_SUFFIX = "_current"
CURRENT_TABLE_PROPERTIES = {
    "format-version": "2",
    "write.format.default": "parquet",
    "write.parquet.compression-codec": "zstd",
    "commit.retry.num-retries": "0",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "10",
}
SYNCED_SNAPSHOT_PROPERTY = "calmon.history-snapshot-id"
# on the history snapshots of compaction: the same rows in fewer files, nothing for the current state
REWRITE_SNAPSHOT_PROPERTY = "calmon.rewrite"
# how long a writer that finds the table's metadata in the warehouse but not in the catalog waits for a
# concurrent first writer to register it, before calling the catalog lost
CONCURRENT_CREATION_GRACE_S = 5.0
# history(limit=): the first look-back, and the widest before the whole history is read
FIRST_HISTORY_WINDOW, LAST_HISTORY_WINDOW = timedelta(days=3), timedelta(days=366)
HISTORY_WINDOW_MARGIN = 1.25  # a window is sized for this many times the rows still wanted
CHECK_INTERVAL = timedelta(hours=1)  # the schedule's default: what the first window assumes
LEGACY_PARTITION_FORMAT = "%Y-%m-%d-%H:00"  # hourly key given to rows that predate check_partition
# ValidationException: pyiceberg's own commit retry found that a concurrent writer added rows under
# our delete filter (the same check written twice at once); a fresh attempt re-evaluates the delete.
_COMMIT_ERRORS: tuple[type[BaseException], ...] = (CommitFailedException, ValidationException)
try:  # sqlite's "database is locked" under concurrent writers is a conflict too
    from sqlalchemy.exc import OperationalError as _SqlOperationalError

    _COMMIT_ERRORS += (_SqlOperationalError,)
except ImportError:  # pragma: no cover - sqlalchemy comes with pyiceberg[sql-sqlite]
    pass


class ResultsTableError(Exception):
    """The results table could not be reached or written (message names table and catalog)."""


# a data file deleted, truncated or not Parquet: pyarrow's OSError or ArrowInvalid (a ValueError)
_UNREADABLE_FILE_ERRORS = (OSError, pa.ArrowException)


def arrow_schema() -> pa.Schema:
    return schema_to_pyarrow(RESULTS_SCHEMA, include_field_ids=False)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_arrow(results: Iterable[CalibrationResult]) -> pa.Table:
    rows = []
    for result in results:
        row = result.model_dump()
        row["status"] = str(CheckStatus(result.status))
        row["timestamp"] = _utc(result.timestamp)
        row["written_at"] = _utc(result.written_at)
        rows.append({name: row.get(name) for name, _, _ in _FIELDS})
    return pa.Table.from_pylist(rows, schema=arrow_schema())


# looked up once: pydantic builds model_fields anew on each access, 27 times per row read
_RESULT_FIELDS = frozenset(CalibrationResult.model_fields)


def _from_row(row: dict[str, Any]) -> CalibrationResult:
    known = {k: v for k, v in row.items() if k in _RESULT_FIELDS and v is not None}
    for key in ("pitch_offset", "yaw_offset", "roll_offset"):
        if isinstance(known.get(key), float) and not math.isfinite(known[key]):
            known.pop(key)
    # rows of the seed table, written before calmon's own columns existed
    if "check_partition" not in known and known.get("timestamp") is not None:
        known["check_partition"] = _utc(known["timestamp"]).strftime(LEGACY_PARTITION_FORMAT)
    if "written_at" not in known and known.get("timestamp") is not None:
        known["written_at"] = known["timestamp"]
    if "status" not in known:
        offsets = {a: row.get(f"{a}_offset") for a in ("yaw", "pitch", "roll")}
        success = bool(row.get("success"))
        known["status"] = classify(
            success,
            offsets,
            row.get("threshold_deg") or DEFAULT_THRESHOLD_DEG,
            capture_failed=not success and all(v is None for v in offsets.values()),
        )
    return CalibrationResult.model_validate(known)


def from_arrow(table: pa.Table) -> list[CalibrationResult]:
    return [_from_row(row) for row in table.to_pylist()]


def _check_key_filter(keys: Iterable[tuple[str, str]]) -> BooleanExpression:
    """Rows of these (device_id, check_partition) keys: one term per check partition."""
    by_partition: dict[str, set[str]] = defaultdict(set)
    for device_id, check_partition in keys:
        by_partition[check_partition].add(device_id)
    terms: list[BooleanExpression] = [
        And(
            EqualTo("check_partition", partition),
            _device_filter(devices),
        )
        for partition, devices in sorted(by_partition.items())
    ]
    return _any_of(terms)


def _any_of(terms: list[BooleanExpression]) -> BooleanExpression:
    """Or over terms as a balanced tree: pyiceberg's visitors recurse once per level, and a chain of a
    backfill's thousand partitions exceeds Python's recursion limit."""
    if not terms:
        return AlwaysFalse()
    while len(terms) > 1:
        terms = [Or(terms[i], terms[i + 1]) if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def _dedupe(results: list[CalibrationResult]) -> list[CalibrationResult]:
    """One row per (device_id, check_partition): the last one given wins."""
    latest: dict[tuple[str, str], CalibrationResult] = {}
    for result in results:
        latest[(result.device_id, result.check_partition)] = result
    return list(latest.values())


def _latest_first(table: pa.Table) -> pa.Table:
    return table.sort_by([("timestamp", "descending"), ("written_at", "descending")])


def _newest_per_device(rows: pa.Table) -> pa.Table:
    """One row per device, its newest (by timestamp, then written_at), ordered by deployment and device."""
    ordered = _latest_first(rows)
    seen: set[str] = set()
    keep = []
    for i, device in enumerate(ordered["device_id"].to_pylist()):
        if device not in seen:
            seen.add(device)
            keep.append(i)
    return ordered.take(keep).sort_by([("deployment_name", "ascending"), ("device_id", "ascending")])


def _keys(rows: pa.Table) -> list[tuple[str, str]]:
    return list(zip(rows["device_id"].to_pylist(), rows["check_partition"].to_pylist(), strict=True))


def first_history_window(limit: int) -> timedelta:
    """The first look-back for the newest `limit` rows: `limit` hourly checks with the margin, at least
    FIRST_HISTORY_WINDOW (each scan opens every file of its days, so one window that suffices beats
    a narrow one and a second)."""
    return max(FIRST_HISTORY_WINDOW, CHECK_INTERVAL * (HISTORY_WINDOW_MARGIN * limit))


def next_history_window(window: timedelta, found: int, limit: int) -> timedelta | None:
    """The look-back after `window` found `found` of `limit` rows: wide enough for `limit` at the rate
    it found them (with a margin), at least twice as wide, ten times when it found none; None (the
    whole history) beyond LAST_HISTORY_WINDOW."""
    grow = 10.0 if found == 0 else max(2.0, HISTORY_WINDOW_MARGIN * limit / found)
    wider = window * grow
    return None if wider > LAST_HISTORY_WINDOW else wider


def _device_filter(device_ids: set[str]) -> BooleanExpression:
    return EqualTo("device_id", next(iter(device_ids))) if len(device_ids) == 1 else In("device_id", device_ids)


def _partition_filter(check_partitions: set[str]) -> BooleanExpression:
    if len(check_partitions) == 1:
        return EqualTo("check_partition", next(iter(check_partitions)))
    return In("check_partition", check_partitions)


def _oldest_day(table: Table) -> date | None:
    """The first day any data file of the table's snapshot holds, from the manifest list's partition
    summaries alone (no manifest or data file is opened); None when they do not say."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return None
    specs = table.specs()
    oldest: int | None = None
    for manifest in snapshot.manifests(table.io):
        spec = specs.get(manifest.partition_spec_id)
        position = next((i for i, f in enumerate(spec.fields) if f.name == "timestamp_day"), None) if spec else None
        summaries = manifest.partitions or []
        if position is None or position >= len(summaries) or summaries[position].lower_bound is None:
            return None
        day = from_bytes(DateType(), summaries[position].lower_bound)
        oldest = day if oldest is None else min(oldest, day)
    return date(1970, 1, 1) + timedelta(days=oldest) if oldest is not None else None


def _is_ancestor_or_same(history: Table, snapshot_id: int, of: int) -> bool:
    """Whether history snapshot `snapshot_id` is `of` or one of its ancestors."""
    start = history.snapshot_by_id(of)
    return any(s.snapshot_id == snapshot_id for s in ancestors_of(start, history.metadata))


class ResultsTable:
    """Plain client over the Iceberg results table (no Dagster needed)."""

    def __init__(self, results: ResultsSettings, aws: AwsSettings = AwsSettings()):
        self.settings = results
        self.aws = aws
        self.identifier = (results.database, results.table)
        self.catalog = self._make_catalog()
        self._ensured = False
        self._unreadable: set[str] = set()
        self.commit_attempts = 0  # total commit attempts made on the history, for tests and diagnostics
        self.current_commit_attempts = 0  # the same for the current-state table

    # ------------------------------------------------------------------ catalog and table

    def _file_io_properties(self) -> dict[str, str]:
        props = {"s3.region": self.aws.region}
        if self.aws.endpoint_url:
            props["s3.endpoint"] = self.aws.endpoint_url
            if self.aws.endpoint_url.startswith("http://"):
                props["s3.force-virtual-addressing"] = "false"
        return props

    def _warehouse(self) -> str:
        warehouse = self.settings.warehouse
        if "://" in warehouse:
            return warehouse
        path = Path(warehouse).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path.as_uri()

    def _make_catalog(self) -> Catalog:
        s = self.settings
        props = self._file_io_properties()
        if s.catalog == "sqlite":
            db = Path(s.sqlite_path).expanduser().resolve()
            db.parent.mkdir(parents=True, exist_ok=True)
            props.update(type="sql", uri=f"sqlite:///{db}", warehouse=self._warehouse())
        elif s.catalog == "glue":
            props.update({"type": "glue", "glue.region": self.aws.region})
            if self.aws.endpoint_url:
                props["glue.endpoint"] = self.aws.endpoint_url
            if s.warehouse:
                props["warehouse"] = self._warehouse()
        elif s.catalog == "rest":
            if not s.rest_uri:
                raise ResultsTableError("[results] catalog = rest needs rest_uri")
            props.update(type="rest", uri=s.rest_uri)
            if s.warehouse:
                props["warehouse"] = s.warehouse
        else:
            raise ResultsTableError(f"unknown results catalog {s.catalog!r} (sqlite, glue or rest)")
        for attempt in range(3):
            try:
                return load_catalog(s.catalog_name, **props)
            except Exception as exc:
                # SqlCatalog creates its own tables on first open; two writers opening a new
                # catalog at once race on that, and the loser's second open finds them made.
                if "already exists" in str(exc) and attempt < 2:
                    continue
                raise ResultsTableError(f"cannot open the results catalog {self.catalog_description}: {exc}") from exc
        raise AssertionError("unreachable")

    @property
    def catalog_description(self) -> str:
        """Where the catalog is, for messages: the SQLite file's path, or the Glue/REST catalog's name."""
        s = self.settings
        if s.catalog == "sqlite":
            return str(Path(s.sqlite_path).expanduser().resolve())
        return f"{s.catalog} catalog {s.catalog_name!r}"

    def _warehouse_metadata_files(self) -> list[str]:
        """The table's metadata files found in the warehouse, oldest first (a table that ever existed
        leaves them there: `warehouse/database/table/metadata/NNNNN-uuid.metadata.json`)."""
        if not self.settings.warehouse:
            return []
        from pyarrow import fs

        warehouse = self._warehouse()
        if warehouse.startswith("s3://"):
            filesystem = fs.S3FileSystem(
                region=self.aws.region,
                endpoint_override=self.aws.endpoint_url,
                scheme="http" if (self.aws.endpoint_url or "").startswith("http://") else "https",
            )
            root, prefix = warehouse.removeprefix("s3://").rstrip("/"), "s3://"
        else:
            filesystem, root = fs.LocalFileSystem(), Path(warehouse.removeprefix("file://")).as_posix()
            prefix = "file://"
        found: list[str] = []
        for database in (self.settings.database, f"{self.settings.database}.db"):
            folder = f"{root}/{database}/{self.settings.table}/metadata"
            try:
                infos = filesystem.get_file_info(fs.FileSelector(folder, allow_not_found=True))
            except OSError:
                continue
            found += [prefix + i.path for i in infos if i.path.endswith(".metadata.json")]
        return sorted(found, key=lambda uri: uri.rsplit("/", 1)[-1])

    def _refuse_a_new_table_over_history(self) -> bool:
        """The catalog knows no table: that is first use only if the warehouse holds none either. A
        catalog emptied, deleted or replaced must not silently start a new table (all history gone).
        Returns True when the table turned up in the catalog meanwhile: another writer was creating
        it (pyiceberg writes the first metadata file, then registers it in the catalog)."""
        history = self._warehouse_metadata_files()
        if not history:
            return False
        # only a table's first metadata file can be a creation in flight; a table in use has more
        deadline = time.monotonic() + (CONCURRENT_CREATION_GRACE_S if len(history) == 1 else 0.0)
        while True:
            if self.catalog.table_exists(self.identifier):
                return True
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        raise ResultsTableError(
            f"results catalog {self.catalog_description} has no table {self.name}, but the warehouse "
            f"holds its history ({len(history)} metadata files, newest {history[-1]}): the catalog was "
            "lost or replaced. Restore it from a backup, or register the newest metadata again with "
            "`calmon results --recover-catalog`. Nothing was written."
        )

    def recover_from_warehouse(self) -> str:
        """Register the newest metadata file of the table found in the warehouse with the catalog
        (after a lost catalog); returns its location."""
        history = self._warehouse_metadata_files()
        if not history:
            raise ResultsTableError(f"no metadata of {self.name} in the warehouse {self.settings.warehouse}")
        try:
            self.catalog.create_namespace(self.settings.database)
        except NamespaceAlreadyExistsError:
            pass
        try:
            self.catalog.register_table(self.identifier, history[-1])
        except TableAlreadyExistsError as exc:
            raise ResultsTableError(f"{self.name} is already in {self.catalog_description}") from exc
        self._ensured = False
        return history[-1]

    @property
    def name(self) -> str:
        return f"{self.settings.database}.{self.settings.table}"

    def ensure_table(self) -> None:
        """Create the namespace and table if missing; add columns this version knows and it lacks."""
        try:
            self.catalog.create_namespace(self.settings.database)
        except NamespaceAlreadyExistsError:
            pass
        except Exception:
            # first writers racing: the SQL catalog checks, then inserts, and the loser's insert
            # breaks a unique key (an IntegrityError, not NamespaceAlreadyExistsError)
            if not self.catalog.namespace_exists(self.settings.database):
                raise
        try:
            table = self.catalog.load_table(self.identifier)
        except NoSuchTableError:
            if self._refuse_a_new_table_over_history():
                return self.ensure_table()
            try:
                self.catalog.create_table(
                    self.identifier,
                    schema=RESULTS_SCHEMA,
                    partition_spec=RESULTS_PARTITION_SPEC,
                    properties=TABLE_PROPERTIES,
                )
            except TableAlreadyExistsError:
                pass  # another process won the race: same schema
            self._ensured = True
            return
        stale = {k: v for k, v in _MAINTAINED_PROPERTIES.items() if table.properties.get(k) != v}
        if stale:
            try:
                with table.transaction() as transaction:
                    transaction.set_properties(stale)
                table = self.catalog.load_table(self.identifier)
            except _COMMIT_ERRORS:
                pass  # a concurrent writer: the next client tries again
        missing = [f.name for f in RESULTS_SCHEMA.fields if f.name not in table.schema().column_names]
        if missing:
            for attempt in range(5):
                try:
                    with table.update_schema() as update:
                        update.union_by_name(RESULTS_SCHEMA)
                    log.info("results table %s: added columns %s", self.name, missing)
                    break
                except _COMMIT_ERRORS:
                    time.sleep(0.05 * (attempt + 1))
                    table = self.catalog.load_table(self.identifier)
                    if all(n in table.schema().column_names for n in missing):
                        break
        self._ensured = True

    def table(self) -> Table:
        """The table as committed now (reloaded: other processes write too)."""
        if not self._ensured:
            self.ensure_table()
        return self.catalog.load_table(self.identifier)

    # ------------------------------------------------------------------ writing

    def _commit_with_retries(self, what: str, operation, max_attempts: int = 20) -> None:
        """Run operation(table) in a retry loop: reload on every conflict, exponential backoff."""
        for attempt in range(1, max_attempts + 1):
            self.commit_attempts += 1
            table = self.table()
            try:
                operation(table)
                return
            except _COMMIT_ERRORS as exc:
                if attempt == max_attempts:
                    raise ResultsTableError(
                        f"{what} on {self.name}: commit conflict not resolved after {attempt} attempts: {exc}"
                    ) from exc
                time.sleep(min(2.0, 0.02 * 2 ** min(attempt, 7)) * (0.5 + random.random()))

    def write(self, results: list[CalibrationResult]) -> None:
        """Upsert: each (device_id, check_partition) ends with exactly the row given, in one snapshot."""
        rows = _dedupe(list(results))
        if not rows:
            return

        def replace(table: Table) -> None:
            data = to_arrow(rows)  # rebuilt per attempt: a failed commit may have consumed it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "delete did not match any records" on first write
                table.overwrite(
                    data, overwrite_filter=_check_key_filter((r.device_id, r.check_partition) for r in rows)
                )

        self._commit_with_retries("write", replace)
        self._refresh_current_quietly()

    def append_arrow(self, data: pa.Table) -> None:
        """Plain append of rows already known to be new (bulk loads, benchmarks): no upsert."""
        self._commit_with_retries("append", lambda table: table.append(data.cast(arrow_schema())))

    # ------------------------------------------------------------------ reading

    def _scan(
        self,
        row_filter: BooleanExpression | None = None,
        columns: tuple[str, ...] = ("*",),
        table: Table | None = None,
    ) -> pa.Table:
        table = table or self.table()
        scan = table.scan(row_filter=row_filter) if row_filter is not None else table.scan()
        if columns != ("*",):
            scan = scan.select(*columns)
        try:
            return scan.to_arrow()
        except _UNREADABLE_FILE_ERRORS:
            return self._scan_readable_files(scan)

    def _scan_readable_files(self, scan: Any) -> pa.Table:
        """The scan file by file, skipping (and reporting) files that cannot be read: one lost or
        damaged data file must not stop every later read, and with it every alert."""
        from pyiceberg.io.pyarrow import ArrowScan

        reader = ArrowScan(scan.table_metadata, scan.io, scan.projection(), scan.row_filter, scan.case_sensitive)
        parts = []
        for task in scan.plan_files():
            try:
                parts.append(reader.to_table([task]))
            except _UNREADABLE_FILE_ERRORS as exc:
                path = task.file.file_path
                if path not in self._unreadable:
                    log.error(
                        "results table %s: data file %s cannot be read (%s); reading the rest", self.name, path, exc
                    )
                self._unreadable.add(path)
        if not parts:
            return schema_to_pyarrow(scan.projection()).empty_table()
        return pa.concat_tables(parts, promote_options="permissive")

    @property
    def unreadable_files(self) -> list[str]:
        """Data files this client found it could not read (each is also logged once, as an error)."""
        return sorted(self._unreadable)

    def read(self, device_id: str, check_partition: str) -> CalibrationResult | None:
        return self.read_many([(device_id, check_partition)]).get((device_id, check_partition))

    def read_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], CalibrationResult]:
        """The row of each (device_id, check_partition) key that has one, in one scan."""
        wanted = set(keys)
        if not wanted:
            return {}
        # a rectangle of devices x partitions holding the keys: a cheaper filter than one term per key
        devices = {device for device, _ in wanted}
        partitions = {partition for _, partition in wanted}
        data = _latest_first(self._scan(And(_device_filter(devices), _partition_filter(partitions))))
        keys_found = _keys(data)
        rows: dict[tuple[str, str], CalibrationResult] = {}
        keep = [i for i, key in enumerate(keys_found) if key in wanted]
        for row in reversed(from_arrow(data.take(pa.array(keep, pa.int64())))):  # oldest first: newest wins
            rows[(row.device_id, row.check_partition)] = row
        return rows

    def latest_per_device(self) -> list[CalibrationResult]:
        """The most recent row (by timestamp) of every device, sorted by deployment and device: from
        the current-state table, brought up to the history's snapshot if it is behind (and stored,
        if it had to be rebuilt, so that the next reader does not rebuild it again)."""
        current = self._load_current()  # before the history: what it reflects is then never newer
        history = self.table()
        if history.current_snapshot() is None:
            return []
        rows = self._current_rows_at(history, current) if current is not None else None
        if rows is None:
            rows = self._newest_from_history(history)
            self._store_current_quietly(rows, history, current)
        return from_arrow(rows)

    def latest_per_device_from_history(self) -> list[CalibrationResult]:
        """latest_per_device computed from the history alone (what rebuilds the current state)."""
        history = self.table()
        if history.current_snapshot() is None:
            return []
        return from_arrow(self._newest_from_history(history))

    def _newest_from_history(self, history: Table) -> pa.Table:
        """The newest row of every device in the history snapshot `history` holds. Two passes: the
        newest timestamp per device from two narrow columns, then whole rows only from the days at
        or after the oldest of those (day partitions prune the rest)."""
        keys = self._scan(columns=("device_id", "timestamp"), table=history)
        if keys.num_rows == 0:
            return arrow_schema().empty_table()
        newest = keys.group_by("device_id").aggregate([("timestamp", "max")])
        cutoff = pc.min(newest["timestamp_max"]).as_py()
        recent = self._scan(GreaterThanOrEqual("timestamp", cutoff.isoformat()), table=history)
        return _newest_per_device(recent.select(arrow_schema().names).cast(arrow_schema()))

    # ------------------------------------------------------------------ the current-state table

    @property
    def current_identifier(self) -> tuple[str, str]:
        return (self.settings.database, self.settings.table + CURRENT_TABLE_SUFFIX)

    def _load_current(self) -> Table | None:
        try:
            return self.catalog.load_table(self.current_identifier)
        except NoSuchTableError:
            return None

    def _current_table(self) -> Table:
        """The current-state table, created if missing; one of another schema (an older version's,
        without columns added since) is dropped and made again: everything in it is derived."""
        current = self._load_current()
        if current is not None and current.schema().column_names == RESULTS_SCHEMA.column_names:
            return current
        if current is not None:
            try:
                self.catalog.drop_table(self.current_identifier)
            except NoSuchTableError:
                pass
        try:
            return self.catalog.create_table(
                self.current_identifier, schema=RESULTS_SCHEMA, properties=CURRENT_TABLE_PROPERTIES
            )
        except TableAlreadyExistsError:
            return self.catalog.load_table(self.current_identifier)

    @staticmethod
    def _synced_snapshot(current: Table) -> int | None:
        value = current.properties.get(SYNCED_SNAPSHOT_PROPERTY)
        return int(value) if value else None

    def _read_files(self, history: Table, files: list[DataFile]) -> pa.Table:
        reader = ArrowScan(history.metadata, history.io, history.schema(), AlwaysTrue(), True)
        data = reader.to_table([FileScanTask(f) for f in files])
        return data.select(arrow_schema().names).cast(arrow_schema())

    def _added_since(self, history: Table, synced: int) -> list[DataFile] | None:
        """The data files added to the history after snapshot `synced` and still in it (compaction's
        rewrites excepted: they hold rows that were there already). None: `synced` is not an
        ancestor of the current snapshot (expired, or the table was rolled back or replaced)."""
        chain = []
        for snapshot in ancestors_of(history.current_snapshot(), history.metadata):
            if snapshot.snapshot_id == synced:
                break
            chain.append(snapshot)
        else:
            return None
        added: dict[str, DataFile] = {}
        for snapshot in reversed(chain):  # oldest first: a file added, then deleted, is gone
            rewrite = snapshot.summary is not None and snapshot.summary[REWRITE_SNAPSHOT_PROPERTY] == "true"
            if rewrite:
                continue
            for manifest in snapshot.manifests(history.io):
                if manifest.added_snapshot_id != snapshot.snapshot_id:
                    continue
                for entry in manifest.fetch_manifest_entry(history.io, discard_deleted=False):
                    if entry.snapshot_id != snapshot.snapshot_id:
                        continue
                    if entry.status == ManifestEntryStatus.ADDED:
                        added[entry.data_file.file_path] = entry.data_file
                    elif entry.status == ManifestEntryStatus.DELETED:
                        added.pop(entry.data_file.file_path, None)
        return list(added.values())

    def _current_rows_at(self, history: Table, current: Table) -> pa.Table | None:
        """The current state as of the history's snapshot: what the current-state table holds plus
        the rows added to the history since the snapshot it reflects. None: it cannot say (no
        snapshot recorded, out of lineage, a file unreadable): rebuild from the history."""
        synced = self._synced_snapshot(current)
        if synced is None or history.snapshot_by_id(synced) is None:
            return None
        try:
            held = current.scan().to_arrow().select(arrow_schema().names).cast(arrow_schema())
            if synced == history.current_snapshot().snapshot_id:
                return held
            files = self._added_since(history, synced)
            if files is None:
                return None
            added = self._read_files(history, files)
        except _UNREADABLE_FILE_ERRORS as exc:
            log.warning("results table %s: current state unreadable (%s); rebuilding it", self.name, exc)
            return None
        if added.num_rows == 0:
            return held
        # a row of the same check added again is its replacement (a re-run): it wins over the held
        # one even if older, and then an older check of that device may be its newest row: ask the
        # history for those few devices
        added_keys = set(_keys(added))
        held_timestamps = dict(zip(_keys(held), held["timestamp"].to_pylist(), strict=True))
        replaced = [key in added_keys for key in _keys(held)]
        merged = _newest_per_device(pa.concat_tables([held.filter(pc.invert(pa.array(replaced))), added]))
        unsure = [
            device
            for device, partition, moment in zip(
                merged["device_id"].to_pylist(),
                merged["check_partition"].to_pylist(),
                merged["timestamp"].to_pylist(),
                strict=True,
            )
            if (device, partition) in held_timestamps and moment < held_timestamps[(device, partition)]
        ]
        if unsure:
            own = self._scan(In("device_id", unsure), table=history)
            own = own.select(arrow_schema().names).cast(arrow_schema())
            kept = merged.filter(pc.invert(pc.is_in(merged["device_id"], pa.array(unsure))))
            merged = _newest_per_device(pa.concat_tables([kept, own]))
        return merged

    def _refresh_current(self, max_attempts: int = 20) -> None:
        """Bring the current-state table up to the history's current snapshot and record it. Beside
        concurrent writers: a conflict means another one moved it; if it now reflects our snapshot
        (or a later one) there is nothing left to do, otherwise recompute from what it holds now."""
        for attempt in range(1, max_attempts + 1):
            self.current_commit_attempts += 1
            current = self._load_current()
            history = self.table()
            if history.current_snapshot() is None:
                return
            target = history.current_snapshot().snapshot_id
            rows = self._current_rows_at(history, current) if current is not None else None
            if rows is None:
                rows = self._newest_from_history(history)
            try:
                self._store_current(rows, target, current)
                return
            except _COMMIT_ERRORS:
                moved = self._load_current()
                synced = self._synced_snapshot(moved) if moved is not None else None
                if synced is not None and _is_ancestor_or_same(self.table(), target, of=synced):
                    return
                if attempt == max_attempts:
                    raise
                time.sleep(min(1.0, 0.01 * 2 ** min(attempt, 7)) * (0.5 + random.random()))

    def _store_current(self, rows: pa.Table, synced: int, current: Table | None) -> None:
        """Replace the current state with `rows`, reflecting history snapshot `synced` (one commit)."""
        if current is None or current.schema().column_names != RESULTS_SCHEMA.column_names:
            current = self._current_table()
        if self._synced_snapshot(current) == synced:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "delete did not match any records" on an empty table
            with current.transaction() as transaction:
                transaction.overwrite(rows.cast(arrow_schema()), overwrite_filter=AlwaysTrue())
                transaction.set_properties({SYNCED_SNAPSHOT_PROPERTY: str(synced)})

    def _store_current_quietly(self, rows: pa.Table, history: Table, current: Table | None) -> None:
        try:
            self._store_current(rows, history.current_snapshot().snapshot_id, current)
        except Exception as exc:  # derived state: the next writer or reader stores it again
            log.warning("results table %s: current state not stored (%s)", self.name, exc)

    def _refresh_current_quietly(self) -> None:
        """After a write: the history row is committed, which is what counts; the current state is
        derived from it, and a reader or the next writer catches it up if this one cannot."""
        try:
            self._refresh_current()
        except Exception as exc:
            log.warning("results table %s: current state not brought up to date (%s)", self.name, exc)

    def drop_current(self) -> None:
        """Drop the current-state table (it is rebuilt from the history on the next read or write)."""
        try:
            self.catalog.drop_table(self.current_identifier)
        except NoSuchTableError:
            pass

    def history(
        self, device_id: str, since: datetime | None = None, limit: int | None = None
    ) -> list[CalibrationResult]:
        """Rows of one device, oldest first; with limit, the most recent `limit` of them."""
        if since is None and limit is not None:
            return self.histories([device_id], limit)[device_id]
        row_filter: BooleanExpression = EqualTo("device_id", device_id)
        if since is not None:
            row_filter = And(row_filter, GreaterThanOrEqual("timestamp", _utc(since).isoformat()))
        data = _latest_first(self._scan(row_filter))
        if limit is not None:
            data = data.slice(0, max(0, limit))
        return list(reversed(from_arrow(data)))

    def histories(self, device_ids: Iterable[str], limit: int) -> dict[str, list[CalibrationResult]]:
        """The most recent `limit` rows of each device, oldest first, read together: one scan per
        look-back window for all of them (the alert sensor decides a whole cycle's results at once).

        The newest rows live in the newest day partitions, so the scans look back in widening windows,
        each sized by the rate the last one found, and only for the devices still short of `limit`: a
        year of history is not read for the last 200 rows. A window that reaches the table's first day
        is the last one (a young table, or a new device, is read once, not once per window)."""
        pending = set(device_ids)
        found: dict[str, list[CalibrationResult]] = {}
        if not pending:
            return found
        table = self.table()  # one snapshot for every window (and one metadata parse)
        oldest = _oldest_day(table)
        first_moment = datetime.combine(oldest, datetime.min.time(), UTC) if oldest is not None else None
        now = datetime.now(UTC)
        window: timedelta | None = first_history_window(limit)
        while pending:
            start = now - window if window is not None else None
            if start is not None and first_moment is not None and start <= first_moment:
                start = None
            row_filter = _device_filter(pending)
            if start is not None:
                row_filter = And(row_filter, GreaterThanOrEqual("timestamp", start.isoformat()))
            data = _latest_first(self._scan(row_filter, table=table))
            rows_of: dict[str, list[int]] = defaultdict(list)
            for i, device in enumerate(data["device_id"].to_pylist()):
                rows_of[device].append(i)
            fewest = limit
            for device in sorted(pending):
                rows = rows_of.get(device, [])
                if len(rows) >= limit or start is None:
                    found[device] = list(reversed(from_arrow(data.take(pa.array(rows[: max(0, limit)], pa.int64())))))
                    pending.discard(device)
                else:
                    fewest = min(fewest, len(rows))
            if pending:
                window = next_history_window(window, fewest, limit) if window is not None else None
        return found

    def rows_since(self, since: datetime) -> list[CalibrationResult]:
        """Every device's rows from `since` on, oldest first (day partitions prune the rest)."""
        data = self._scan(GreaterThanOrEqual("timestamp", _utc(since).isoformat()))
        return from_arrow(data.sort_by([("timestamp", "ascending"), ("device_id", "ascending")]))

    def all_rows(self) -> list[CalibrationResult]:
        return from_arrow(self._scan().sort_by([("timestamp", "ascending"), ("device_id", "ascending")]))

    def duckdb(self):
        """A DuckDB connection with the table registered as `calibration_results` and, once it
        exists, the current-state table as `calibration_results_current` (local Athena)."""
        connection = self.table().scan().to_duckdb(table_name="calibration_results")
        current = self._load_current()
        if current is not None:
            current.scan().to_duckdb(table_name="calibration_results" + CURRENT_TABLE_SUFFIX, connection=connection)
        return connection

    # ------------------------------------------------------------------ maintenance

    def file_count(self) -> int:
        return self.table().inspect.files().num_rows

    def compact(
        self,
        min_files: int = 2,
        expire_older_than: timedelta = timedelta(0),
        days_per_commit: int = 7,
    ) -> dict:
        """Rewrite every (day, deployment) partition holding min_files or more data files into one
        file sorted by device and time, then expire older snapshots. Days are rewritten in groups of
        up to days_per_commit consecutive days per commit (whole days, every deployment: the filter
        follows partition bounds, so old files are dropped whole). Safe beside writers: a check
        committed meanwhile makes the rewrite fail validation and start again from the new rows."""
        table = self.table()
        files = table.inspect.files()
        files_before = files.num_rows
        counts: dict[tuple[date, str], int] = defaultdict(int)
        for part in files["partition"].to_pylist():
            day = part["timestamp_day"]  # a date (or days since epoch, depending on the reader)
            if isinstance(day, int):
                day = date(1970, 1, 1) + timedelta(days=day)
            counts[(day, part["deployment_name"])] += 1
        targets = sorted(key for key, n in counts.items() if n >= min_files)
        days = sorted({day for day, _ in targets})
        groups: list[list[date]] = []
        for day in days:
            if groups and (day - groups[-1][0]).days < days_per_commit:
                groups[-1].append(day)
            else:
                groups.append([day])
        skipped: list[str] = []
        for group in groups:
            try:
                self._rewrite_days(group[0], group[-1])
            except _UNREADABLE_FILE_ERRORS:
                # a lost or damaged data file: rewriting its day would drop what the table still
                # knows of it, so that day waits (for a restore) and the others are compacted
                for day in group:
                    try:
                        self._rewrite_days(day, day)
                    except _UNREADABLE_FILE_ERRORS as exc:
                        skipped.append(f"{day}: {exc}")
                        log.error(
                            "results table %s: day %s not compacted, a data file cannot be read (%s)",
                            self.name,
                            day,
                            exc,
                        )
        self._refresh_current_quietly()
        expired = self.expire_snapshots(expire_older_than)
        return {
            "partitions_compacted": len(targets),
            "files_before": files_before,
            "files_after": self.file_count(),
            "snapshots_expired": expired,
            "days_skipped": skipped,
        }

    def _rewrite_days(self, first: date, last: date) -> None:
        """Rewrite the days first..last (every deployment) as one file per partition, in one commit."""
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        days_filter = And(GreaterThanOrEqual("timestamp", start.isoformat()), LessThan("timestamp", end.isoformat()))

        def rewrite(t: Table) -> None:
            data = t.scan(row_filter=days_filter).to_arrow()
            data = data.sort_by(
                [("deployment_name", "ascending"), ("device_id", "ascending"), ("timestamp", "ascending")]
            )
            t.overwrite(data, overwrite_filter=days_filter, snapshot_properties={REWRITE_SNAPSHOT_PROPERTY: "true"})

        self._commit_with_retries(f"compact {first}..{last}", rewrite)

    def expire_snapshots(self, older_than: timedelta) -> int:
        """Drop snapshots older than `older_than` (never the current one) of the history and of the
        current-state table; returns how many of the history's."""
        current_state = self._load_current()
        if current_state is not None:
            self._expire(current_state, older_than)
        return self._expire(self.table(), older_than)

    def _expire(self, table: Table, older_than: timedelta) -> int:
        current = table.current_snapshot()
        if current is None:
            return 0
        cutoff_ms = (datetime.now(UTC) - older_than).timestamp() * 1000
        old = [
            s.snapshot_id
            for s in table.snapshots()
            if s.snapshot_id != current.snapshot_id and s.timestamp_ms < cutoff_ms
        ]
        if not old:
            return 0
        try:
            table.maintenance.expire_snapshots().by_ids(old).commit()
        except _COMMIT_ERRORS as exc:  # a writer got in first: expire next time
            log.info("results table %s: snapshot expiry postponed: %s", ".".join(table.name()), exc)
            return 0
        return len(old)

    def maintain(self) -> dict:
        """The scheduled upkeep (hourly, between check cycles): merge the small files (one per check)
        of every partition into one and expire snapshots older than [results]
        snapshot_retention_hours. Without it every reader and writer of the table slows down with
        each check ever written (benchmarks/chaos_soak.py shows by how much)."""
        started = time.monotonic()
        report = self.compact(expire_older_than=timedelta(hours=self.settings.snapshot_retention_hours))
        table = self.table()
        report["snapshots_kept"] = len(table.snapshots())
        report["seconds"] = round(time.monotonic() - started, 2)
        return report


class ResultsTableResource(dg.ConfigurableResource):
    """The Iceberg results table ([results] and [aws] of calibration_monitoring.ini)."""

    catalog: str = "sqlite"
    catalog_name: str = "calmon"
    database: str = "calibration_monitoring"
    table: str = "calibration_results"
    warehouse: str = ".calmon/warehouse"
    sqlite_path: str = ".calmon/catalog.db"
    rest_uri: str | None = None
    region: str = "us-east-1"
    endpoint_url: str | None = None
    snapshot_retention_hours: float = 2

    def get_client(self) -> ResultsTable:
        return ResultsTable(
            ResultsSettings(
                catalog=self.catalog,  # type: ignore[arg-type]
                catalog_name=self.catalog_name,
                database=self.database,
                table=self.table,
                warehouse=self.warehouse,
                sqlite_path=self.sqlite_path,
                rest_uri=self.rest_uri,
                snapshot_retention_hours=self.snapshot_retention_hours,
            ),
            AwsSettings(region=self.region, endpoint_url=self.endpoint_url),
        )
