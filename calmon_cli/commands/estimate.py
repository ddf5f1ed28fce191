"""calmon estimate REFERENCE QUERY: offsets of a query capture against a reference scan.

Prints one JSON object (capture-format.md); exit 0 estimated, 1 could not estimate, 2 bad input."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from calmon_core.check import DEFAULT_THRESHOLD_DEG

HELP = "estimate pitch/yaw/roll offsets of a query capture against a reference scan (folders or s3://)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="reference scan: folder or s3://bucket/prefix")
    parser.add_argument("query", help="query capture: folder or s3://bucket/prefix")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD_DEG,
        help=f"breach threshold in degrees (default {DEFAULT_THRESHOLD_DEG}, as [check] threshold_deg)",
    )
    parser.add_argument(
        "--diagnostics", metavar="DIR", default=None, help="write a diagnostic PNG per query frame into DIR"
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri}: no bucket in the s3:// address")
    return bucket, prefix.strip("/")


def s3_store(bucket: str):
    """The object store client for a bucket (standard AWS credential chain, AWS_ENDPOINT_URL)."""
    from resources.object_store import S3ObjectStore

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return S3ObjectStore(bucket, region=region, endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))


def local_folder(location: str, scratch: Path, name: str) -> Path:
    """A local folder holding the scan: the folder itself, or a download of an s3:// prefix."""
    if not location.startswith("s3://"):
        return Path(location)
    bucket, prefix = split_s3_uri(location)
    return s3_store(bucket).download_folder(prefix, scratch / name)


def run(args: argparse.Namespace) -> int:
    from calmon_core.capture_format import CaptureFormatError
    from calmon_core.estimation import estimate_offsets

    with tempfile.TemporaryDirectory(prefix="calmon-estimate-") as tmp:
        try:
            reference = local_folder(args.reference, Path(tmp), "reference")
            query = local_folder(args.query, Path(tmp), "query")
            result = estimate_offsets(reference, query, threshold_deg=args.threshold, diagnostics_dir=args.diagnostics)
        except (CaptureFormatError, ValueError) as exc:
            print(f"calmon estimate: bad input: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # object store errors (missing or unreachable): cannot read the input
            from resources.object_store import ObjectStoreError

            if isinstance(exc, ObjectStoreError):
                print(f"calmon estimate: cannot read input: {exc}", file=sys.stderr)
                return 2
            raise
    print(json.dumps(result.to_json_dict(), indent=2))
    return 0 if result.success else 1
