"""TCP-AO for real: the BMP example's wire leg on a kernel with TCP-AO (Debian trixie's 6.12 source
built with CONFIG_TCP_AO by scripts/build_ao_kernel.py), booted under qemu, with the sidecar
configs `releaser render` writes and the stand-in proxy's real TCP-AO mode (tests/support/tcpao_ao.py)
in the speaker's and the collector's network namespaces, at the configs' peer addresses
(tests/support/ao_scenario.py). The deployment spec's section 12, case by case:

- traffic crosses, both kernels count good TCP-AO segments and none bad, and every TCP segment
  captured on the wire leg carries option 29;
- a wrong key on the terminator: no session, nothing delivered, the collector's kernel counts the
  segments it dropped for a bad MAC;
- plain TCP from the peer to the terminator is refused (the kernel requires TCP-AO of a peer it
  has a key for);
- a dead terminator, or a dead initiator, takes the speaker's local leg down;
- `releaser doctor`'s probe says TCP-AO is available there, and not on this host;
- the real proxy's initiator, which puts the remote's port into the key's address, is refused by
  the kernel (EINVAL), as docs/release-yaml.md#tcpao says.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from releaser.quickstart.doctor import tcp_ao_supported
from releaser.tcpao import key_problems

from .conftest import ROOT, missing_component
from .support.aoguest import missing, run_guest
from .support.bundles import cli

pytestmark = pytest.mark.vm

PY = ROOT / ".venv" / "bin" / "python"
ALGORITHMS = ("hmac-sha1", "hmac-sha256", "cmac-aes")  # every macAlgorithm release.yaml accepts


def probe_binary(dest: Path) -> None:
    """The amd64 binary of releaser's probe image (releaser/probe/image), as its containers run it."""
    layout = ROOT / "releaser" / "probe" / "image"

    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()

    index = json.loads((layout / "index.json").read_text())
    top = json.loads(blob(index["manifests"][0]["digest"]))
    (amd64,) = [m for m in top["manifests"] if m["platform"]["architecture"] == "amd64"]
    manifest = json.loads(blob(amd64["digest"]))
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"])), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.name.lstrip("./") == "probe":
                    data = tar.extractfile(member)
                    assert data is not None
                    dest.write_bytes(data.read())
                    dest.chmod(0o755)
                    return
    raise AssertionError("no /probe in releaser/probe/image")


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if missing():
        missing_component(", ".join(missing()))
    work = tmp_path_factory.mktemp("ao")
    code, out = cli("render", str(ROOT / "examples" / "bmp-tcpao"), "--out-dir", str(work / "render"))
    assert code == 0, out
    configs = work / "render" / "compose" / "bmp-tcpao" / "tcpao"
    for name in ("speaker", "collector"):
        shutil.copy(configs / f"{name}.toml", work / f"{name}.toml")
    variants = []
    for alg in ALGORITHMS:  # the example rendered again with each macAlgorithm the release accepts
        rel = work / "variants" / alg
        shutil.copytree(ROOT / "examples" / "bmp-tcpao", rel)
        text = (rel / "release.yaml").read_text()
        assert "macAlgorithm: hmac-sha256" in text
        (rel / "release.yaml").write_text(text.replace("macAlgorithm: hmac-sha256", f"macAlgorithm: {alg}"))
        code, out = cli("render", str(rel), "--out-dir", str(rel / "out"))
        assert code == 0, out
        rendered = rel / "out" / "compose" / "bmp-tcpao" / "tcpao"
        assert f'mac_alg = "{alg}"' in (rendered / "speaker.toml").read_text()
        variants.append(f"--variant {alg} {rendered / 'speaker.toml'} {rendered / 'collector.toml'}")
    probe_binary(work / "probe")
    run = run_guest(
        work,
        f"{PY} {ROOT / 'tests' / 'support' / 'ao_scenario.py'} --speaker {work / 'speaker.toml'} "
        f"--collector {work / 'collector.toml'} --out {work / 'result.json'} --probe {work / 'probe'} "
        f"{' '.join(variants)}\n",
        timeout=1200,
    )
    assert run.code == 0 and (work / "result.json").exists(), (
        f"the guest's script exited {run.code} after {run.seconds:.0f} s\n{run.output[-4000:]}\n{run.console[-3000:]}"
    )
    return {"result": json.loads((work / "result.json").read_text()), "seconds": run.seconds}


def test_the_probe_says_available_in_the_guest_and_unavailable_here(wire: dict[str, Any]) -> None:
    ok, detail = wire["result"]["doctor"]
    assert ok and "TCP-AO available" in detail, detail
    here, why = tcp_ao_supported()
    assert not here and "lacks CONFIG_TCP_AO" in why, why


def test_traffic_crosses_counted_good_on_both_ends_with_option_29_on_the_wire(wire: dict[str, Any]) -> None:
    good = wire["result"]["good"]
    assert good["received"] == good["sent"].upper() and not good["error"], good
    for ns in ("speaker", "collector"):
        counters = good["counters"][ns]
        assert counters["TCPAOGood"] > 0 and counters["TCPAOBad"] == 0, (ns, counters)
    cap = good["capture"]
    assert cap["segments"] > 0 and cap["with_option_29"] == cap["segments"], cap


def test_the_sidecars_health_says_the_leg_is_up_and_when_it_is_not(wire: dict[str, Any]) -> None:
    """The probe's leg:// check (each sidecar's health, docs/release-yaml.md#tcpao): both ends healthy,
    counting good TCP-AO segments, while a session is held; the initiator's end unhealthy once the
    terminator is killed; neither end healthy while a wrong key keeps the leg from coming up, saying
    so with the namespace's counters."""
    held = wire["result"]["terminator_dies"]["legs"]["held"]
    for ns in ("speaker", "collector"):
        assert held[ns]["code"] == 0 and "good " in held[ns]["said"], (ns, held[ns])
    after = wire["result"]["terminator_dies"]["legs"]["after_kill"]["speaker"]
    assert after["code"] == 1 and "no established connection" in after["said"], after
    early = wire["result"]["wrong_key"]["legs"]["early"]
    for ns in ("speaker", "collector"):
        assert early[ns]["code"] == 1 and "no established connection" in early[ns]["said"], (ns, early[ns])
    assert "bad MAC" in early["collector"]["said"], early


def test_a_wrong_key_fails_closed_and_delivers_nothing(wire: dict[str, Any]) -> None:
    bad = wire["result"]["wrong_key"]
    assert bad["received"] == "", bad
    assert bad["closed_by_peer"] or bad["error"], bad
    assert bad["counters"]["collector"]["TCPAOBad"] > 0, bad["counters"]
    assert bad["counters"]["collector"]["TCPAOGood"] == 0, bad["counters"]


def test_plain_tcp_from_the_peer_is_refused(wire: dict[str, Any]) -> None:
    plain = wire["result"]["plain_to_terminator"]
    assert plain["connected"] is False, plain
    assert plain["counters"]["TCPAORequired"] > 0, plain


@pytest.mark.parametrize("which", ["terminator_dies", "initiator_dies"])
def test_a_dead_sidecar_takes_the_local_leg_down(wire: dict[str, Any], which: str) -> None:
    case = wire["result"][which]
    assert case["received"] == case["sent"].upper(), case  # the session was up first
    assert case["closed_by_peer"], case


def test_traffic_resumes_when_the_killed_initiator_starts_again(wire: dict[str, Any]) -> None:
    again = wire["result"]["initiator_dies"]["after_restart"]
    assert again["received"] == again["sent"].upper() and not again["error"], again


def test_the_initiator_says_why_it_gets_no_session_and_never_logs_the_key(wire: dict[str, Any]) -> None:
    logs = wire["result"]["logs"]
    initiator = logs["speaker-initiator.log"]
    assert "cannot verify their MAC" in initiator and '"event": "retry"' in initiator, initiator[-2000:]
    for text in logs.values():
        for key in (b"0123456789abcdef", b"fedcba9876543210"):
            assert key.decode() not in text


def test_an_initiator_started_first_connects_once_its_terminator_is_up(wire: dict[str, Any]) -> None:
    first = wire["result"]["initiator_first"]
    assert first["received"] == first["sent"].upper() and not first["error"], first


def test_a_trailing_line_break_on_one_end_only_fails_closed(wire: dict[str, Any]) -> None:
    case = wire["result"]["newline_on_one_end"]
    assert case["received"] == "", case
    assert case["counters"]["collector"]["TCPAOBad"] > 0 and case["counters"]["collector"]["TCPAOGood"] == 0


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("length", [1, 16, 32, 80])
def test_every_algorithm_establishes_with_every_key_the_kernel_takes_and_doctor_refuses_the_rest(
    wire: dict[str, Any], alg: str, length: int
) -> None:
    """HMAC keys of 1 to 80 bytes; cmac-aes, which the proxy hands the kernel as `cmac(aes)`, only with
    an AES key (16, 24 or 32 bytes): the kernel refuses the others with EINVAL, and so does releaser's
    key check (doctor, the quickstart's preflight) before anything starts."""
    seen = wire["result"]["algorithms"][f"{alg}/{length}"]
    problems, _ = key_problems(b"k" * length, cmac=alg == "cmac-aes")
    if alg == "cmac-aes" and length not in (16, 24, 32):
        assert seen["errno"] == 22, seen  # EINVAL
        assert problems and "16, 24 or 32 bytes" in problems[0], problems
        return
    assert seen["errno"] == 0 and not problems, (seen, problems)
    assert seen["received"] and seen["good"] > 0 and seen["bad"] == 0, seen


def test_the_real_proxys_key_address_with_a_port_is_refused_by_the_kernel(wire: dict[str, Any]) -> None:
    answer = wire["result"]["key_with_port"]
    assert answer["accepted"] is False and answer["errno"] == 22, answer  # EINVAL
