"""calmon extract-features REFERENCE: (re)build a reference scan's features/ and print the summary."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HELP = "(re)build a reference scan's features (COLMAP database + calmon index); folder or s3://"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="reference scan: folder or s3://bucket/prefix")
    parser.add_argument(
        "--detector",
        default="sift",
        choices=["sift", "akaze", "orb"],
        help="keypoint detector (default sift, RootSIFT descriptors)",
    )


def run(args: argparse.Namespace) -> int:
    from calmon_cli.commands.estimate import local_folder, s3_store, split_s3_uri
    from calmon_core.capture_format import CaptureFormatError
    from calmon_core.features import FEATURES_DIR, build_reference_features

    with tempfile.TemporaryDirectory(prefix="calmon-features-") as tmp:
        try:
            folder = local_folder(args.reference, Path(tmp), "reference")
            summary = build_reference_features(folder, detector=args.detector)
        except (CaptureFormatError, ValueError) as exc:
            print(f"calmon extract-features: bad input: {exc}", file=sys.stderr)
            return 2
        if args.reference.startswith("s3://"):
            bucket, prefix = split_s3_uri(args.reference)
            s3_store(bucket).upload_folder(folder / FEATURES_DIR, f"{prefix}/{FEATURES_DIR}")
    print(json.dumps(summary, indent=2))
    return 0
