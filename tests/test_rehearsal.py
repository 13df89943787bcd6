"""The README's main command ends in scripts/rehearse.py: it must keep working."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.engine  # registries, and a Docker engine for the quickstart


def test_airgap_rehearsal_runs_end_to_end(helm3: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/rehearse.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RELEASER_REHEARSAL_SUBNET": "10.79.0"},  # beside test_quickstart.py's 10.77.0
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (
        "ok: the bundle verified, loaded, and the private registry serves exactly the locked digests"
        in proc.stdout
    )
    assert "MISMATCH" not in proc.stdout
    # docs/airgap.md's "Verifying with other tools" commands ran as written
    assert "Verified OK" in proc.stdout and "listed in checksums.txt match" in proc.stdout
