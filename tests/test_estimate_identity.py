"""An estimate compares one camera's reference and query, never two cameras', and never writes into its input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calmon_core.estimation import IdentityMismatchError, estimate_offsets
from calmon_core.features import FEATURES_DIR, cached_features_dir, has_reference_features
from calmon_sim.cases import QueryView, write_query, write_reference
from calmon_sim.scene import load_scene

REPO = Path(__file__).resolve().parent.parent
W, H = 480, 270


@pytest.fixture(scope="module")
def city(scenes_dir):
    return load_scene(str(scenes_dir / "equirec2perspec_image.jpg"))


@pytest.fixture(scope="module")
def scans(tmp_path_factory, city):
    root = tmp_path_factory.mktemp("identity")
    reference = write_reference(root / "reference", city, [-20.0, 20.0], [0.0], width=W, height=H)
    view = [QueryView((0.0, 0.0, 0.0), (0.3, -0.1, 0.0), 60.0)]
    query = write_query(root / "query", city, view, width=W, height=H, rng=np.random.default_rng(1))
    other = write_query(root / "other", city, view, width=W, height=H, device_id="cam-99")
    elsewhere = write_query(root / "elsewhere", city, view, width=W, height=H)
    manifest = json.loads((elsewhere / "manifest.json").read_text())
    manifest["deployment_name"] = "another-site"
    (elsewhere / "manifest.json").write_text(json.dumps(manifest))
    return {"reference": reference, "query": query, "other": other, "elsewhere": elsewhere}


@pytest.mark.parametrize(
    ("reference", "query", "says"),
    [
        ("reference", "other", "devices differ: 'cam-01' and 'cam-99'"),
        ("reference", "elsewhere", "deployments differ: 'bench' and 'another-site'"),
        ("query", "reference", "the reference is a query capture"),
    ],
)
def test_scans_of_different_cameras_or_swapped_are_refused(scans, reference, query, says):
    with pytest.raises(IdentityMismatchError) as info:
        estimate_offsets(scans[reference], scans[query], features_cache=scans["reference"].parent / "cache")
    assert says in str(info.value)


def test_features_are_built_into_the_cache_never_into_the_reference_folder(scans, tmp_path):
    cache = tmp_path / "cache"
    estimate = estimate_offsets(scans["reference"], scans["query"], features_cache=cache)
    assert estimate.success
    assert not (scans["reference"] / FEATURES_DIR).exists()
    assert has_reference_features(scans["reference"], cached_features_dir(scans["reference"], cache))
    # forced: a mismatch is estimated anyway (the caller said it knows)
    assert estimate_offsets(scans["reference"], scans["other"], features_cache=cache, check_identity=False).success


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calmon_cli", "estimate", *args], capture_output=True, text=True, cwd=REPO
    )


def test_calmon_estimate_refuses_another_devices_query_with_exit_2(scans):
    proc = run_cli(str(scans["reference"]), str(scans["other"]))
    assert proc.returncode == 2, proc.stdout
    assert "devices differ" in proc.stderr and "Traceback" not in proc.stderr
