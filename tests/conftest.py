"""Shared fixtures: real Helm 3 / Helm 4 / Compose v2 binaries and golden-file support.

The binaries are installed by scripts/setup.sh into .tools/. When one is missing
the test fails under CI=true (the project's own setup should have installed it)
and skips elsewhere, printing why.
"""

from __future__ import annotations

import difflib
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLE = ROOT / "examples" / "bmp-tcpao"
PLATFORM = ROOT / "examples" / "platform"
RELEASES = {"bmp-tcpao": EXAMPLE, "kitchen-sink": FIXTURES / "kitchen-sink", "platform": PLATFORM}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output instead of comparing",
    )


def missing_component(what: str) -> None:
    """Fail in CI (setup should have installed it), skip with the reason elsewhere."""
    msg = f"{what} is not installed; run scripts/setup.sh (make setup)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(reason=msg)


def _binary(name: str, probe: list[str]) -> str:
    path = TOOLS / "bin" / name
    if not path.exists():
        missing_component(name)
    proc = subprocess.run([str(path), *probe], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        missing_component(f"{name} (it exists but `{' '.join(probe)}` failed: {proc.stderr.strip()})")
    return str(path)


@pytest.fixture(scope="session")
def helm3() -> str:
    return _binary("helm3", ["version", "--short"])


@pytest.fixture(scope="session")
def helm4() -> str:
    return _binary("helm4", ["version", "--short"])


@pytest.fixture(scope="session", params=["helm3", "helm4"])
def helm(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


@pytest.fixture(scope="session")
def compose_cmd() -> list[str]:
    """`docker compose` (the v2 plugin from .tools) when the docker CLI exists, else the plugin binary itself."""
    plugin = TOOLS / "docker" / "cli-plugins" / "docker-compose"
    if not plugin.exists():
        missing_component("Docker Compose v2")
    docker = shutil.which("docker")
    if docker:
        proc = subprocess.run(
            [docker, "compose", "version"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "DOCKER_CONFIG": str(TOOLS / "docker")},
        )
        if proc.returncode == 0 and "v2." in proc.stdout:
            return [docker, "compose"]
    return [str(plugin)]


@pytest.fixture(scope="session")
def compose_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    env["DOCKER_CONFIG"] = str(TOOLS / "docker")
    return env


@pytest.fixture()
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


def assert_golden(path: Path, actual: str, update: bool) -> None:
    """Compare with a golden file byte for byte; print a unified diff on failure."""
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run `make goldens` and review it")
    expected = path.read_text(encoding="utf-8")
    if expected != actual:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), actual.splitlines(True), fromfile=f"{path} (wanted)", tofile="got"
            )
        )
        pytest.fail(f"output differs from {path.relative_to(ROOT)} (run `make goldens` if intended):\n{diff}")


# Modules that hold a worker longest go first, so that `make test`'s workers (pytest-xdist,
# --dist loadscope: a module's tests stay on one worker with its engine and stacks) end together:
# longest-processing-time first. make test passes --no-loadscope-reorder, without which xdist puts
# the modules with the most tests first and these last (a third longer in all). Ordered by the
# seconds each took on 4 workers (docs/testing.md#the-suite-in-parallel has the figures and how to
# measure them). A module not listed runs after these, in file order.
LONGEST_FIRST = (
    "test_readme_run.py",
    "test_quickstart_upgrade.py",
    "test_quickstart_airgap.py",
    "test_quickstart.py",
    "test_probe.py",
    "test_tcpao_kernel.py",  # one qemu guest, about 130 s
    "test_fuzz.py",
    "test_platform_quickstart.py",
    "test_chart.py",
    "test_bundle_installer.py",
    "test_rehearsal.py",
    "test_hostile_registry.py",
    "test_lock.py",
    "test_trust.py",
    "test_bundle_load.py",
)
QUICK = os.environ.get("RELEASER_TEST_QUICK") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "engine: starts a container engine (a private dockerd, or podman); not in make test-quick"
    )
    config.addinivalue_line(
        "markers", "registry: starts a registry process (docker-registry); not in make test-quick"
    )
    config.addinivalue_line("markers", "vm: boots a qemu guest (the TCP-AO kernel); not in make test-quick")
    config.addinivalue_line(
        "markers",
        "alone: runs after the parallel suite, by itself (make test's second pytest run): podman 4.3 "
        "failed to start a container (`runc start`: exit status 1) while Docker engines ran beside it",
    )


def needs_service(what: str) -> None:
    """Called where a test starts an engine or a registry: in `make test-quick` (which deselects
    the modules marked engine or registry) an unmarked test that does fails here, naming the mark."""
    if QUICK:
        raise RuntimeError(
            f"this test starts {what}: mark its module `pytestmark = pytest.mark."
            f"{'engine' if 'engine' in what else 'registry'}` so that make test-quick leaves it out"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest modules first (see LONGEST_FIRST). RELEASER_TEST_ORDER=reverse or shuffle:SEED
    runs the tests in another order, to show that none depends on another having run first
    (docs/testing.md)."""
    for item in items:  # a test of the bundle world starts its registries (tests/support/bundles.py)
        if {"world", "upgrade"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order within
    order = os.environ.get("RELEASER_TEST_ORDER", "")
    if order == "reverse":
        items.reverse()
    elif order.startswith("shuffle"):
        random.Random(int(order.partition(":")[2] or 0)).shuffle(items)


# The bundle world, built once per session and shared read-only by tests/test_bundle_*.py.
from .support.bundles import upgrade, world  # noqa: E402, F401 - registers the fixtures


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fuzz suite's counts per target and exit code (docs/testing.md records them)."""
    from .support import fuzz

    lines = fuzz.summary()
    if lines:
        terminalreporter.section(f"fuzz cases ({fuzz.PROFILE} profile)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _no_traceback_without_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every in-process CLI run of every test: no output contains a traceback unless --debug or
    RELEASER_DEBUG=1 asked for one (the top-level guard turns anything unexpected into exit 70)."""
    invoke = CliRunner.invoke

    def checked(self: CliRunner, cli: Any, args: Any = None, *a: Any, **kw: Any) -> Result:
        result = invoke(self, cli, args, *a, **kw)
        debug = "--debug" in (args or []) or (kw.get("env") or {}).get("RELEASER_DEBUG") == "1"
        if not debug and "Traceback" in (result.output or ""):
            raise AssertionError(f"a traceback without --debug: releaser {args}\n{result.output}")
        return result

    monkeypatch.setattr(CliRunner, "invoke", checked)
