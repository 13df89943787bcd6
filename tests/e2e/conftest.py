"""The end-to-end tests' Kubernetes cluster: one real cluster per session (tests/support/cluster.py).

`make e2e` runs these (and `.ci/run` calls it after `make test`). In CI a cluster that cannot start
fails the run with the component and its log; it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.support.cluster import CGROUP_PARENT, KUBELET_SYSCTLS, Cluster, ClusterError, stop_signal_safe

from .helpers import HELM3, HELM4

TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long the cluster took: the build (or the cache check), each readiness step, the start."""
    if TIMINGS:
        terminalreporter.section("test cluster")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what}: {seconds:.1f} s")


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the test cluster needs root (namespaces, cgroups, mounts)"
    if shutil.which("go") is None:
        return "Go is not installed: the cluster is built from its Go modules"
    for tool in (HELM3, HELM4):
        if not Path(tool).exists():
            return f"{tool} is missing: run scripts/setup.sh"
    return None


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    why = _unavailable()
    if why:
        if IN_CI:
            pytest.fail(why)
        pytest.skip(reason=f"{why} (outside CI only: under CI=true this fails)")
    # short: kubelet's plugin sockets live under its root directory (108-byte socket paths)
    state = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    c = Cluster(state)
    stop_signal_safe(c)
    tunables = _host_tunables()
    try:
        c.start()
    except ClusterError as e:
        pytest.fail(f"the test cluster did not start: {e}")
    TIMINGS.update(c.timings)
    yield c
    if os.environ.get("RELEASER_E2E_HOLD"):  # a look at the cluster after the tests (docs/testing.md)
        print(
            f"\nholding the cluster: KUBECONFIG={c.kubeconfig}; rm {os.environ['RELEASER_E2E_HOLD']} to stop"
        )
        Path(os.environ["RELEASER_E2E_HOLD"]).touch()
        while Path(os.environ["RELEASER_E2E_HOLD"]).exists():
            time.sleep(1)
    t = time.monotonic()
    c.stop()
    TIMINGS["stop"] = time.monotonic() - t
    assert_no_leftovers(c)
    assert _host_tunables() == tunables, "the host's kernel tunables changed"


def _host_tunables() -> dict[str, str]:
    """The host-wide settings kubelet would change (each node is shown its own read-only copy)."""
    return {k: Path("/proc/sys", k).read_text() for k in KUBELET_SYSCTLS}


def assert_no_leftovers(c: Cluster) -> None:
    """After stop(): no process, network link, cgroup or mount of the cluster on the host."""
    marker = str(c.state)
    procs = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    procs.append(p.name)
            except OSError:
                continue
    assert not procs, f"processes of the cluster still run: {procs}"
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    assert c.host_if not in links, links
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/{c.id}")), "kubelet's cgroups remain"
    assert marker not in Path("/proc/self/mountinfo").read_text(), (
        "a mount of the cluster remains on the host"
    )
    assert "registry.local" not in Path("/etc/hosts").read_text()
