"""`quickstart upgrade | rollback | history` on a real engine (Docker + Compose v2) with the
platform example's stand-ins: an upgrade whose API never becomes ready leaves the release before
it running with its data volume intact (read back from the volume); a good upgrade keeps the
data and the secrets; a rollback on purpose goes back; the history says what happened."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_platform_quickstart import platform_stack, run

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    with platform_stack("upgrade-qs-") as found:
        yield {"env": found["env"], "v1": found["rel"], "work": found["work"]}


def version(s: dict[str, Any], name: str, *, edit: str = "", config: str = "") -> Path:
    """A copy of v1 as release `name` (version 2.4.0), with release.yaml edited by `edit`
    (old=>new) and the API's config file replaced by `config`."""
    rel = s["work"] / name
    shutil.copytree(s["v1"], rel)
    text = (rel / "release.yaml").read_text().replace("version: 2.3.0", "version: 2.4.0", 1)
    if edit:
        old, new = edit.split("=>")
        assert old in text
        text = text.replace(old, new)
    (rel / "release.yaml").write_text(text)
    if config:
        (rel / "config/api.yaml").write_text(config)
    (rel / "release.lock.yaml").unlink()
    run(s["env"], "lock", str(rel))
    return rel


def store(s: dict[str, Any], *cmd: str) -> str:
    """Run `cmd` in the store's container as its user, who owns /data (store-volumes gave it the
    volume; the stand-in itself never writes there)."""
    status = json.loads(run(s["env"], "quickstart", "status", "--json").stdout)["result"]
    container = next(x["container"] for x in status["services"] if x["service"] == "store")
    out = subprocess.run(
        ["docker", "exec", container, *cmd],
        env=s["env"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def state(s: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(s["env"]["RELEASER_QUICKSTART_DIR"]) / "quickstart.json").read_text())  # type: ignore[no-any-return]


def test_a_failed_upgrade_rolls_back_and_keeps_the_data(stack: dict[str, Any]) -> None:
    env = stack["env"]
    store(stack, "sh", "-c", "echo written-before-the-upgrade > /data/marker")
    secrets = Path(env["RELEASER_QUICKSTART_DIR"]) / ".secrets"
    before = {p.name: p.read_bytes() for p in secrets.iterdir()}
    broken = version(stack, "broken", edit='"--config=/etc/api/api.yaml"=>"--config=/etc/api/missing.yaml"')
    proc = run(env, "quickstart", "upgrade", str(broken), "--timeout", "90", "--json", expect=9, timeout=900)
    error = json.loads(proc.stdout)["error"]
    assert error["error"] == "UpgradeFailed" and error["rolledBackTo"] == "2.3.0", json.dumps(error, indent=1)
    assert error["service"] == "api" and "cannot read the config file" in error["logs"], error
    assert "quickstart restore" in error["fix"] and "backup.tar.zst" in error["fix"]
    # the release before runs again, ready, with the data written before the upgrade
    assert state(stack)["version"] == "2.3.0" and state(stack)["revision"] == 1
    status = run(env, "quickstart", "status")
    assert "ok: every service is ready" in status.stdout, status.stdout
    assert store(stack, "cat", "/data/marker") == "written-before-the-upgrade\n"
    assert {p.name: p.read_bytes() for p in secrets.iterdir()} == before
    history = json.loads(run(env, "quickstart", "history", "--json").stdout)["result"]
    assert history["current"] == 1
    assert [(r["number"], r["version"], r["outcome"]) for r in history["revisions"]] == [
        (1, "2.3.0", "running"),
        (2, "2.4.0", "failed"),
    ]


def test_an_upgrade_keeps_data_and_secrets_and_a_rollback_goes_back(stack: dict[str, Any]) -> None:
    env = stack["env"]
    secrets = Path(env["RELEASER_QUICKSTART_DIR"]) / ".secrets"
    before = {p.name: p.read_bytes() for p in secrets.iterdir()}
    good = version(stack, "good", config="# api 2.4.0\nlisten: 8081\nfeature: on\n")
    proc = run(env, "quickstart", "upgrade", str(good), "--json", timeout=900)
    result = json.loads(proc.stdout)["result"]
    assert (result["from"], result["to"], result["replaced"], result["revision"]) == ("2.3.0", "2.4.0", 1, 3)
    assert result["backup"] and Path(result["backup"]).is_file()
    assert store(stack, "cat", "/data/marker") == "written-before-the-upgrade\n"
    assert {p.name: p.read_bytes() for p in secrets.iterdir()} == before
    logs = run(env, "quickstart", "logs", "api").stdout
    assert "config /etc/api/api.yaml: 37 bytes" in logs, logs
    # back on purpose: the files of revision 1, the same data
    proc = run(env, "quickstart", "rollback", "--json", timeout=900)
    back = json.loads(proc.stdout)["result"]
    assert (back["from"], back["to"], back["revision"]) == ("2.4.0", "2.3.0", 1)
    assert state(stack)["version"] == "2.3.0"
    assert store(stack, "cat", "/data/marker") == "written-before-the-upgrade\n"
    text = run(env, "quickstart", "history").stdout
    assert "*   1  2.3.0" in text and "failed" in text and "rolled-back" in text, text
    # an upgrade to another release changes nothing
    other = stack["work"] / "other"
    shutil.copytree(stack["v1"], other)
    (other / "release.yaml").write_text(
        (other / "release.yaml").read_text().replace("name: platform", "name: other", 1)
    )
    (other / "release.lock.yaml").unlink()
    run(env, "lock", str(other))
    proc = run(env, "quickstart", "upgrade", str(other), expect=2)
    assert "nothing was changed" in proc.stderr + proc.stdout
    assert state(stack)["version"] == "2.3.0"


def test_an_upgrade_from_a_signed_bundle_runs_from_its_registry(stack: dict[str, Any]) -> None:
    """Last in the file. The running release came from a directory; 2.4.0 comes as a bundle, loaded
    into a registry of the stack's own (--to local), and runs the same digests from there."""
    env = {**stack["env"], "RELEASER_KEY_PASSPHRASE": "upgrade test only"}
    good = version(stack, "from-bundle", config="# api 2.4.0 (bundle)\n")
    keys = stack["work"] / "keys"
    run(env, "keygen", "--out-dir", str(keys))
    bundle = stack["work"] / "platform-2.4.0.tar.zst"
    signing = ["--signing-key", str(keys / "releaser.key"), "--no-installer", "--out-file", str(bundle)]
    run(env, "bundle", str(good), *signing, timeout=600)
    pub = str(keys / "releaser.pub")
    proc = run(
        env, "quickstart", "upgrade", str(bundle), "--key", pub, "--to", "local", "--json", timeout=900
    )
    result = json.loads(proc.stdout)["result"]
    assert (result["from"], result["to"]) == ("2.3.0", "2.4.0"), result
    current = state(stack)
    assert (
        current["sourceKind"] == "bundle"
        and current["localRegistry"]
        and "compose.airgap.yaml" in current["files"]
    )
    assert store(stack, "cat", "/data/marker") == "written-before-the-upgrade\n"
    history = json.loads(run(env, "quickstart", "history", "--json").stdout)["result"]
    assert history["current"] == result["revision"] == max(r["number"] for r in history["revisions"])
    images = next(r["images"] for r in history["revisions"] if r["number"] == history["current"])
    assert images and all(i.startswith(current["registry"]) for i in images), images


def test_reset_deletes_the_upgrade_backups_it_names(stack: dict[str, Any]) -> None:
    """After the upgrades above, the revisions hold backups (volume data and secrets): reset names
    each one and leaves none of them behind."""
    where = Path(stack["env"]["RELEASER_QUICKSTART_DIR"])
    backups = sorted(where.glob(".revisions/*/backup.tar.zst"))
    assert backups
    asked = run(stack["env"], "quickstart", "reset", expect=2)
    for b in backups:
        assert f"upgrade backup {b} (volume data and secrets)" in asked.stderr, asked.stderr
    assert "--out-file backup.tar.zst" in asked.stderr
    run(stack["env"], "quickstart", "reset", "--yes")
    assert not list(where.glob(".revisions/*/backup.tar.zst"))
    assert not (where / ".secrets").exists() or not any((where / ".secrets").iterdir())
