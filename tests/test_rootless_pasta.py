"""What rootless podman 5's network, pasta, does to a TCP signature set inside a container, measured
as tests/test_podman_rootless.py measures slirp4netns on podman 4.3: with TCP-MD5 (this kernel has
no TCP-AO; both are options the kernel adds to the segments of the socket they are set on).

Debian trixie's podman 5.4 and passt (tests/support/quadlet_host.py's root file system, booted on a
network of the private Docker engine) run a container as an unprivileged user with the subordinate
IDs trixie's useradd gives it; the peer is another machine on that network. This is what
`doctor`'s `tcp-ao-rootless` says of podman 5 (docs/quickstart.md#rootless-podman).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import tcpsig
from tests.support.engine import DockerEngine
from tests.support.engine import available as docker_missing
from tests.support.quadlet_host import WORK, QuadletHost

pytestmark = pytest.mark.engine

USER = "tester"
NETWORK = "rq-pasta"
SUBNET = "10.199.73.0/24"  # its own: the engines of other tests allocate from the default pools
PORT = 7100
KEY = "the shared key"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.conftest import missing_component

    if docker_missing():
        missing_component(f"a container engine ({', '.join(docker_missing())})")
    work = tmp_path_factory.mktemp("pasta")
    shutil.copy(tcpsig.__file__, work / "tcpsig.py")
    work.chmod(0o755)  # the user's container reads it (mounted at WORK)
    (work / "tcpsig.py").chmod(0o644)
    engine = DockerEngine().start()
    h = QuadletHost(engine, work, name="pasta-host", network=NETWORK)
    try:
        h.docker("network", "create", "--subnet", SUBNET, NETWORK)
        h.boot()
        h.sh(
            # docker gives a container no /dev/net/tun, which pasta's tap device needs (the host has it)
            "mkdir -p /dev/net && mknod -m 666 /dev/net/tun c 10 200"
            f" && useradd -m {USER}"  # trixie's useradd gives it a subordinate ID range
            f" && mkdir -p /home/{USER}/.config/containers /home/{USER}/root"
            # overlay on overlay needs fuse-overlayfs; the container below has a --rootfs anyway
            f" && printf '[storage]\\ndriver = \"vfs\"\\n' > /home/{USER}/.config/containers/storage.conf"
            f" && cd /home/{USER}/root && mkdir -p usr etc tmp proc dev sys run probe"
            " && for l in bin lib lib64 sbin; do ln -s usr/$l $l; done"
            f" && chown -R {USER}: /home/{USER}"
        )
        info = h.sh(f"su - {USER} -c \"podman info --format '{{{{json .Host}}}}'\"").stdout
        yield {"h": h, "host": json.loads(info[info.index("{") :])}
    finally:
        h.docker("rm", "-f", "peer", check=False)
        h.remove()
        engine.stop()


def attempt(h: QuadletHost, require_key: bool) -> tuple[str, str, str]:
    """A peer machine listens (requiring the key for the host's address, or not); the user's
    rootless container, on podman's default network, sets the key for the peer and connects.
    Returns what the client said, what the peer saw, and the host's address."""
    image = h.docker("inspect", h.name, "--format", "{{.Config.Image}}").stdout.strip()
    address = h.docker(
        "inspect",
        h.name,
        "--format",
        f"{{{{(index .NetworkSettings.Networks {json.dumps(NETWORK)}).IPAddress}}}}",
    ).stdout.strip()
    h.docker("rm", "-f", "peer", check=False)
    h.docker(
        "run", "-d", "--name", "peer", "--network", NETWORK, "-v", f"{h.work}:{WORK}", image,
        "python3", f"{WORK}/tcpsig.py", "--listen", address, str(PORT), KEY, "1" if require_key else "0",
    )  # fmt: skip
    peer = h.docker(
        "inspect",
        "peer",
        "--format",
        f"{{{{(index .NetworkSettings.Networks {json.dumps(NETWORK)}).IPAddress}}}}",
    ).stdout.strip()
    time.sleep(1)  # the listener is up
    client = h.sh(
        f"su - {USER} -c 'podman run --rm -v /usr:/usr:ro -v {WORK}:/probe:ro --rootfs /home/{USER}/root"
        f' python3 /probe/tcpsig.py {peer} {PORT} "{KEY}"\' 2>&1',
        check=False,
        timeout=120,
    ).stdout.strip()
    h.docker("wait", "peer", timeout=60)
    seen = h.docker("logs", "peer").stdout.strip()
    return client, seen, address


def test_rootless_podman_5_uses_pasta_by_default(host: dict[str, Any]) -> None:
    assert host["host"]["security"]["rootless"] is True
    assert host["host"]["rootlessNetworkCmd"] == "pasta", host["host"]["rootlessNetworkCmd"]


def test_a_tcp_signature_set_in_a_pasta_container_never_reaches_the_wire(host: dict[str, Any]) -> None:
    """A peer that requires the key never sees the connection; one that does not sees it come from
    the host's address (which pasta also gives the container), unsigned: pasta made it anew from a
    socket of its own, and its answer, unsigned too, is refused by the client's kernel."""
    h: QuadletHost = host["h"]
    said, seen, _ = attempt(h, require_key=True)
    assert said.startswith("connect failed") and seen == "timeout", (said, seen)
    said, seen, address = attempt(h, require_key=False)
    assert seen == f"accepted {address}", (said, seen, address)
    assert said.startswith("connect failed"), said
