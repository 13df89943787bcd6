"""The TCP-AO sidecar as the kernel and tcpao-proxy accept it (releaser/tcpao.py): every rendered
config passes the proxy's own rules, and the stand-in proxy the quickstart tests run refuses
exactly what the rules refuse; keys are 1-80 raw bytes, checked by doctor before anything starts;
the sidecar runs unprivileged unless `tcpao.runAsRoot` asks otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from releaser.cli import app
from releaser.pipeline import load_plan, render_files
from releaser.quickstart.secrets import TCPAO_KEY_LENGTH
from releaser.release import mac_algorithms
from releaser.tcpao import MAC_ALGORITHMS, MAX_KEY_BYTES, config_problems, key_problems

from .conftest import EXAMPLE, RELEASES, ROOT, missing_component
from .support.chartsite import site

runner = CliRunner()
STANDIN = ROOT / "tests/support/standins/tcpao-proxy"

TERMINATOR = """[terminator]
listen_ao = "0.0.0.0:1790"
forward_plain = "127.0.0.1:11019"

[[ao_policy]]
name = "speaker"
peer_ip = "10.77.0.20"
keyid = 1
mac_alg = "hmac-sha256"
key_source = "file:KEY"
"""

# (what is wrong, the config, a fragment of what config_problems says)
BROKEN = [
    ("no policy", TERMINATOR.split("[[ao_policy]]")[0], "at least one [[ao_policy]]"),
    ("no name", TERMINATOR.replace('name = "speaker"\n', ""), "needs a name"),
    (
        "a duplicate name",
        TERMINATOR + TERMINATOR.split("\n\n", 1)[1].replace("10.77.0.20", "10.77.0.21"),
        "duplicate name 'speaker'",
    ),
    (
        "a duplicate peer",
        TERMINATOR + TERMINATOR.split("\n\n", 1)[1].replace('name = "speaker"', 'name = "other"'),
        "duplicate peer 10.77.0.20:*",
    ),
    (
        "a port on a terminator",
        TERMINATOR.replace("keyid = 1", "peer_port = 1790\nkeyid = 1"),
        "names no peer_port",
    ),
    ("a key id over 255", TERMINATOR.replace("keyid = 1", "keyid = 256"), "keyid 256 is not 0-255"),
    ("RFC 5926's name", TERMINATOR.replace("hmac-sha256", "cmac-aes128"), "mac_alg 'cmac-aes128'"),
    ("a vault key source", TERMINATOR.replace("file:KEY", "vault:secret/x"), "is not file:PATH or env:VAR"),
]


def test_every_rendered_sidecar_config_passes_the_proxys_rules() -> None:
    seen = 0
    for name, directory in RELEASES.items():
        plan, _ = load_plan(directory)
        for rel, text in render_files(plan)[f"compose/{name}"].items():
            if rel.startswith("tcpao/"):
                assert config_problems(text.decode()) == [], (name, rel)
                seen += 1
    assert seen >= 2


@pytest.mark.parametrize(("what", "config", "said"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_config_the_proxy_would_refuse_is_named(what: str, config: str, said: str) -> None:
    problems = config_problems(config)
    assert any(said in p for p in problems), problems


def _standin(config: str, key: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    busybox = shutil.which("busybox")
    if busybox is None:
        missing_component("busybox (busybox-static)")
    (tmp_path / "key").write_bytes(key)
    (tmp_path / "config.toml").write_text(config.replace("file:KEY", f"file:{tmp_path / 'key'}"))
    mode = "terminator" if "[terminator]" in config else "initiator"
    # a config it accepts goes on to listen: a port nobody uses, and a timeout that ends it
    cfg = (tmp_path / "config.toml").read_text().replace("0.0.0.0:1790", "127.0.0.1:1")
    (tmp_path / "config.toml").write_text(cfg)
    return subprocess.run(
        [
            "timeout",
            "2",
            str(busybox),
            "sh",
            str(STANDIN),
            "--mode",
            mode,
            "--config",
            str(tmp_path / "config.toml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(("what", "config", "said"), BROKEN, ids=[b[0] for b in BROKEN])
def test_the_stand_in_proxy_refuses_what_the_real_one_would(
    what: str, config: str, said: str, tmp_path: Path
) -> None:
    proc = _standin(config, b"k" * 32, tmp_path)
    assert proc.returncode == 1 and "tcpao-proxy stand-in:" in proc.stderr, (proc.stdout, proc.stderr)


@pytest.mark.parametrize(("key", "ok"), [(b"", False), (b"k" * 80, True), (b"k" * 81, False), (b"k", True)])
def test_keys_are_1_to_80_raw_bytes_for_the_checks_and_the_stand_in(
    key: bytes, ok: bool, tmp_path: Path
) -> None:
    problems, _ = key_problems(key)
    assert (problems == []) is ok
    proc = _standin(TERMINATOR, key, tmp_path)
    assert (proc.returncode != 1) is ok, proc.stderr  # accepted: it listens until the timeout


def test_the_one_list_of_algorithms_and_the_generated_key() -> None:
    assert list(mac_algorithms()) == list(MAC_ALGORITHMS)  # the schema's enum is the proxy's names, in order
    assert key_problems(b"x" * TCPAO_KEY_LENGTH) == ([], []) and TCPAO_KEY_LENGTH <= MAX_KEY_BYTES
    _, warnings = key_problems(b"secret\n")
    assert "line break" in warnings[0]


def test_doctor_checks_the_stacks_tcpao_key_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    secrets = tmp_path / "quickstart/.secrets"
    secrets.mkdir(parents=True)
    (secrets / "bmp-tcpao-key").write_bytes(b"x" * 100)
    result = runner.invoke(app, ["doctor", str(EXAMPLE), "--skip", "tcp-ao", "--json"])
    doc = json.loads(result.stdout)
    checks = {c["name"]: c for c in (doc.get("error") or doc["result"])["checks"]}
    key = checks["tcpao-key-bmp-tcpao-key"]
    assert key["status"] == "fail" and "is 100 bytes; TCP-AO keys are at most 80" in key["detail"]
    assert "printf %s KEY > FILE" in key["fix"] and result.exit_code == 8
    assert "x" * 20 not in result.output  # the key itself is never shown
    (secrets / "bmp-tcpao-key").write_bytes(b"x" * 32)
    result = runner.invoke(app, ["doctor", str(EXAMPLE), "--skip", "tcp-ao", "--json"])
    doc = json.loads(result.stdout)
    checks = {c["name"]: c for c in (doc.get("error") or doc["result"])["checks"]}
    assert checks["tcpao-key-bmp-tcpao-key"]["status"] == "pass"
    assert "net-admin" not in checks  # the sidecar asks for no capability
    # the stack the quickstart uses: --stack, or $RELEASER_QUICKSTART_DIR as for `releaser quickstart`
    elsewhere = tmp_path / "elsewhere/.secrets"
    elsewhere.mkdir(parents=True)
    (elsewhere / "bmp-tcpao-key").write_bytes(b"")
    env = {"RELEASER_QUICKSTART_DIR": str(tmp_path / "elsewhere")}
    result = runner.invoke(app, ["doctor", str(EXAMPLE), "--skip", "tcp-ao", "--json"], env=env)
    checks = {c["name"]: c for c in json.loads(result.stdout)["error"]["checks"]}
    assert "is empty" in checks["tcpao-key-bmp-tcpao-key"]["detail"] and result.exit_code == 8


def _rendered(tmp_path: Path, run_as_root: bool) -> tuple[dict[str, object], Path]:
    d = tmp_path / "rel"
    shutil.copytree(EXAMPLE, d)
    doc = yaml.safe_load((d / "release.yaml").read_text())
    doc["services"]["collector"]["tcpao"]["runAsRoot"] = run_as_root
    (d / "release.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = runner.invoke(app, ["render", str(d), "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    compose = yaml.safe_load((tmp_path / "out/compose/bmp-tcpao/compose.yaml").read_text())
    return compose["services"], tmp_path / "out/charts/bmp-tcpao"


def _sidecar_context(helm: str, chart: Path, *extra: str) -> dict[str, object]:
    proc = subprocess.run(
        [helm, "template", "rel", str(chart), *site(chart), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    for doc in yaml.safe_load_all(proc.stdout):
        if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"] == "collector":
            spec = doc["spec"]["template"]["spec"]
            (side,) = [c for c in spec["containers"] if c["name"] == "tcpao"]
            return {
                "container": side["securityContext"],
                "pod": spec["securityContext"],
                "volumes": spec["volumes"],
            }
    raise AssertionError("no collector Deployment")


def test_the_sidecar_runs_unprivileged_and_reads_its_key_through_fsgroup(tmp_path: Path, helm3: str) -> None:
    services, chart = _rendered(tmp_path, run_as_root=False)
    side = services["collector-tcpao"]
    assert side["user"] == "65532:65532" and side["cap_drop"] == ["ALL"] and "cap_add" not in side
    ctx = _sidecar_context(helm3, chart)
    c = ctx["container"]
    assert isinstance(c, dict) and c["runAsNonRoot"] is True and c["runAsUser"] == 65532
    assert c["capabilities"] == {"drop": ["ALL"]} and c["readOnlyRootFilesystem"] is True
    assert c["seccompProfile"] == {"type": "RuntimeDefault"} and c["allowPrivilegeEscalation"] is False
    pod = ctx["pod"]
    assert isinstance(pod, dict) and pod["fsGroup"] == 65532
    volumes = ctx["volumes"]
    assert isinstance(volumes, list)
    (key,) = [v for v in volumes if v["name"] == "tcpao-key"]
    assert key["secret"]["defaultMode"] == 0o440  # root:fsGroup, group-readable: the sidecar is in the group


def test_run_as_root_is_an_explicit_switch_in_release_yaml_and_in_values(tmp_path: Path, helm3: str) -> None:
    services, chart = _rendered(tmp_path, run_as_root=True)
    side = services["collector-tcpao"]
    assert side["user"] == "0:0" and side["cap_add"] == ["NET_ADMIN"]
    c = _sidecar_context(helm3, chart)["container"]
    assert isinstance(c, dict) and c["runAsUser"] == 0 and c["capabilities"]["add"] == ["NET_ADMIN"]
    assert c["runAsNonRoot"] is False
    # and back off at install time, from values
    off = _sidecar_context(helm3, chart, "--set", "services.collector.tcpao.runAsRoot=false")["container"]
    assert isinstance(off, dict) and off["runAsUser"] == 65532 and "add" not in off["capabilities"]


def test_a_cmac_aes_key_is_an_aes_key_of_16_24_or_32_bytes() -> None:
    """The proxy hands the kernel `cmac(aes)` for cmac-aes, whose key is an AES key: the kernel takes
    16, 24 or 32 bytes and refuses every other length with EINVAL (seen on a TCP-AO kernel,
    test_tcpao_kernel.py). 16 is RFC 5926's AES-128-CMAC-96; 24 and 32 work only between Linux peers."""
    from releaser.tcpao import key_problems

    for n in (1, 15, 17, 33, 80):
        problems, _ = key_problems(b"k" * n, cmac=True)
        assert problems and "16, 24 or 32 bytes" in problems[0], (n, problems)
    assert key_problems(b"k" * 16, cmac=True) == ([], [])
    problems, warnings = key_problems(b"k" * 32, cmac=True)
    assert not problems and "AES-256-CMAC" in warnings[0] and "RFC 5926" in warnings[0]
    assert key_problems(b"k" * 1) == ([], [])  # HMAC keys: 1 to 80 bytes


def test_a_cmac_aes_release_gets_16_byte_keys_from_the_quickstart_and_says_so_in_install_md(
    tmp_path: Path,
) -> None:
    """For cmac-aes the quickstart generates a 16-byte key (AES-128-CMAC-96; the kernel takes only
    AES keys) and the bundle's INSTALL.md says 16 bytes; other algorithms keep 32 and 1 to 80."""
    from releaser.lock import load_lock_file
    from releaser.quickstart.files import secret_specs
    from releaser.quickstart.stack import ComposeFile
    from releaser.render.docs import install_md

    rel = tmp_path / "cmac"
    shutil.copytree(EXAMPLE, rel)
    text = (rel / "release.yaml").read_text()
    (rel / "release.yaml").write_text(text.replace("macAlgorithm: hmac-sha256", "macAlgorithm: cmac-aes"))
    for directory, length, words in ((rel, 16, "16 bytes for `cmac-aes`"), (EXAMPLE, 32, "1 to 80 bytes")):
        plan, _ = load_plan(directory)
        lock = load_lock_file(directory / "release.lock.yaml")
        out = tmp_path / f"render-{length}"
        (out).mkdir()
        (out / "compose.yaml").write_bytes(render_files(plan)[f"compose/{plan.name}"]["compose.yaml"])
        spec = ComposeFile.read([out / "compose.yaml"])
        keys = [s for s in secret_specs(plan, spec) if s.name == "bmp-tcpao-key"]
        assert [k.length for k in keys] == [length], keys
        assert words in install_md(plan, lock).decode()
