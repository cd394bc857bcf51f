"""The container image, built and run without a Docker daemon (``docker/smoke.sh``: buildah on a local
Debian base, then synth → ingest → one training epoch inside the image as its non-root user, and the same to
and from ``s3://`` against a moto server on the host's loopback when this Python has ``moto[server]``).

About 12 minutes from scratch on the 2-core machine and root needed, so it is marked ``container`` and not
run by CI (``addopts`` deselects it): run it with ``scripts/test.sh -m container``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.container
def test_the_image_builds_and_runs_the_pipeline_inside() -> None:
    if shutil.which("buildah") is None or os.geteuid() != 0:
        pytest.skip("needs buildah and root (apt-get install -y buildah debootstrap)")
    try:
        importlib.import_module("moto.server")  # what docker/smoke.sh needs to serve S3
        has_moto = True
    except ImportError:
        has_moto = False
    result = subprocess.run(
        [str(REPO / "docker" / "smoke.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "S3_PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "== smoke test passed" in result.stdout
    assert "image localhost/avts:smoke:" in result.stdout
    if has_moto:
        assert "s3 shards equal the local ones" in result.stdout
        assert "object storage ok" in result.stdout
    else:
        assert "the object-storage step is skipped" in result.stdout
