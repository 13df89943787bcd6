"""Hostile YAML in release.yaml and release.lock.yaml: alias bombs, self-containing aliases and
oversized files end in an ordinary error naming the file, quickly and in bounded memory (the
command runs with a 512 MiB address-space limit and a 60 s timeout: a hang or a blow-up fails).
And files that are not files: a device, a FIFO, a broken link or a link loop named as release.yaml,
the lock, a config file or a key is refused by what it is, without reading (releaser.fs.read_input)."""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLE

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))


def validate(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "releaser", "validate", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limited,
        check=False,
    )


def test_an_alias_bomb_in_release_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "release.yaml").write_text(LAUGHS)  # 9**9 values once expanded
    proc = validate(tmp_path)
    assert proc.returncode == 1, proc
    assert "release.yaml:" in proc.stderr and "expands to more than 50,000 values" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_value_that_contains_itself_is_named(tmp_path: Path) -> None:
    (tmp_path / "release.yaml").write_text("x: &a [*a, *a]\n")
    proc = validate(tmp_path)
    assert proc.returncode == 1 and "$.x[0]: a recursive alias" in proc.stderr, proc
    assert "Traceback" not in proc.stderr + proc.stdout


def test_an_alias_bomb_in_the_lock_is_refused(tmp_path: Path) -> None:
    release = tmp_path / "rel"
    shutil.copytree(EXAMPLE, release)
    (release / "release.lock.yaml").write_text(LAUGHS)
    proc = validate(release)
    assert proc.returncode in (1, 3) and "release.lock.yaml:" in proc.stderr, proc
    assert "expands to more than 50,000 values" in proc.stderr and "Traceback" not in proc.stderr


def test_an_oversized_file_is_not_read(tmp_path: Path) -> None:
    with (tmp_path / "release.yaml").open("w") as f:
        f.write("# padding\n" * 500_000)  # 5 MB of comments
    proc = validate(tmp_path)
    assert proc.returncode == 1 and "a release file is read only up to 4,194,304" in proc.stderr, proc


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "releaser", *args],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=_limited,
        check=False,
    )


def test_a_device_or_a_pipe_named_as_release_yaml_or_the_lock_is_refused_by_name(tmp_path: Path) -> None:
    """stat says 0 bytes for a device; a FIFO blocks whoever opens it to read. Both are refused
    by what they are, at once, without reading (docs/security.md: budgets)."""
    import os

    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "release.yaml").symlink_to("/dev/zero")
    proc = validate(tmp_path / "dev")
    assert proc.returncode == 1 and "is a character device, not a file" in proc.stderr, proc
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "release.yaml")
    proc = validate(tmp_path / "fifo")
    assert proc.returncode == 1 and "is a named pipe (FIFO), not a file" in proc.stderr, proc
    for target, what in (("/dev/urandom", "a character device"), (None, "a named pipe (FIFO)")):
        release = tmp_path / f"lock-{what[2:6]}"
        shutil.copytree(EXAMPLE, release)
        (release / "release.lock.yaml").unlink()
        if target:
            (release / "release.lock.yaml").symlink_to(target)
        else:
            os.mkfifo(release / "release.lock.yaml")
        for command in (
            ("validate", str(release)),
            ("render", str(release), "--out-dir", str(tmp_path / "out")),
        ):
            proc = _run(*command)
            assert (
                proc.returncode == 1 and f"release.lock.yaml: error: $: is {what}, not a file" in proc.stderr
            ), proc
            assert "Traceback" not in proc.stderr


def test_a_broken_link_and_a_link_loop_are_said_as_such(tmp_path: Path) -> None:
    release = tmp_path / "rel"
    shutil.copytree(EXAMPLE.parent / "platform", release)
    (release / "release.lock.yaml").unlink()
    (release / "release.lock.yaml").symlink_to("gone.yaml")
    for command in (("validate", str(release)), ("render", str(release), "--out-dir", str(tmp_path / "out"))):
        proc = _run(*command)
        assert (
            proc.returncode == 1
            and "release.lock.yaml: error: $: is a broken symbolic link (to gone.yaml)" in proc.stderr
        )
    (release / "release.lock.yaml").unlink()
    (release / "config" / "api.yaml").unlink()
    (release / "config" / "api.yaml").symlink_to("loop.yaml")
    (release / "config" / "loop.yaml").symlink_to("api.yaml")
    proc = validate(release)
    assert proc.returncode == 1 and "config/api.yaml is a symbolic link loop" in proc.stderr, proc
    assert "Traceback" not in proc.stderr


def test_a_key_that_is_a_device_or_a_pipe_is_refused_by_name(tmp_path: Path) -> None:
    import os

    bundle = tmp_path / "b.tar.zst"
    bundle.write_bytes(b"")
    os.mkfifo(tmp_path / "releaser.pub")
    for key, what in (
        ("/dev/zero", "a character device"),
        (str(tmp_path / "releaser.pub"), "a named pipe (FIFO)"),
    ):
        proc = _run("airgap", "verify", str(bundle), "--key", key)
        assert proc.returncode == 1 and f"public key {key} is {what}, not a file" in proc.stderr, proc


def test_an_inventory_or_a_backup_that_is_a_device_or_a_pipe_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bundle --since` (an inventory or a lock) and `quickstart restore` read files a user names
    through the same helper as release.yaml: a FIFO would block, a device never end."""
    import os

    from releaser.errors import InputError
    from releaser.quickstart.backup import _read_backup

    os.mkfifo(tmp_path / "site.inventory.json")
    monkeypatch.setenv("RELEASER_KEY_PASSPHRASE", "test-only-passphrase")
    keys = tmp_path / "keys"
    assert _run("keygen", "--out-dir", str(keys)).returncode == 0
    for since, what in (
        ("/dev/zero", "a character device"),
        (str(tmp_path / "site.inventory.json"), "a named pipe (FIFO)"),
    ):
        proc = _run(
            "bundle", str(EXAMPLE), "--signing-key", str(keys / "releaser.key"), "--since", since,
            "--out-file", str(tmp_path / "b.tar.zst"),
        )  # fmt: skip
        assert proc.returncode == 1 and f"--since {since} is {what}, not a file" in proc.stderr, proc
    for backup, what in (
        ("/dev/zero", "a character device"),
        (str(tmp_path / "site.inventory.json"), "a named pipe (FIFO)"),
    ):
        with pytest.raises(InputError, match=f"backup {re.escape(backup)} is {re.escape(what)}, not a file"):
            _read_backup(Path(backup), tmp_path)


_BASE = """apiVersion: releaser.dev/v1alpha1
kind: Release
metadata: {name: sloppy, version: 1.0.0}
images:
  web: {ref: registry.example.org/a/web:1}
services:
  web:
    image: web
    ports: [{name: http, port: 8080}]
    health: {http: {path: /healthz, port: http}}
    resources: {requests: {cpu: 250m, memory: 64Mi}}
"""

# (what the edit breaks, old, new, the JSON path validate names): each passed validate and render,
# then Helm, Compose or a cluster refused the output
_SLOPPY = [
    (
        "a config file name Compose and the values schema refuse",
        "    image: web\n",
        "    image: web\n    configs: [{path: /etc/app/routes+prod.yaml, content: x}]\n",
        "$.services.web.configs[0].path",
    ),
    (
        "a probe path that ends the YAML scalar",
        "path: /healthz,",
        'path: "/healthz: ready",',
        "$.services.web.health.http.path",
    ),
    (
        "a probe path Kubernetes reads as a comment",
        "path: /healthz,",
        'path: "/healthz #probe",',
        "$.services.web.health.http.path",
    ),
    (
        "an ingress path that ends the YAML scalar",
        "    image: web\n",
        '    image: web\n    expose: {host: a.example.com, port: http, path: "/api: v1"}\n',
        "$.services.web.expose.path",
    ),
    ("a CPU quantity Compose cannot parse", "cpu: 250m", "cpu: 1k", "$.services.web.resources.requests.cpu"),
    (
        "a UID past int32",
        "    image: web\n",
        '    image: web\n    user: "4294967296"\n',
        "$.services.web.user",
    ),
    (
        "a version Helm cannot parse",
        "version: 1.0.0",
        "version: 18446744073709551616.0.0",
        "$.metadata.version",
    ),
]


@pytest.mark.parametrize(("what", "old", "new", "where"), _SLOPPY, ids=[s[0] for s in _SLOPPY])
def test_what_helm_compose_or_a_cluster_would_refuse_validate_refuses(
    tmp_path: Path, what: str, old: str, new: str, where: str
) -> None:
    assert old in _BASE
    (tmp_path / "release.yaml").write_text(_BASE.replace(old, new, 1))
    proc = validate(tmp_path)
    assert proc.returncode == 1, (what, proc.stdout, proc.stderr)
    assert f"error: {where}:" in proc.stderr, (what, proc.stderr)


def test_every_path_a_user_writes_into_the_chart_is_quoted() -> None:
    """One rule for strings in templates: a path from values is written with toJson (a YAML
    double-quoted scalar), so no value can change the document's structure."""
    templates = Path(__file__).parents[1] / "releaser/render/helm_chart/templates"
    for f in [*templates.glob("*.yaml"), templates / "_helpers.tpl"]:
        for line in f.read_text().splitlines():
            if re.match(r"\s*-?\s*path: \{\{", line):
                assert "| toJson }}" in line or "| quote }}" in line, (f.name, line)


def test_a_backup_manifest_is_typed_and_a_wrong_one_refused(tmp_path: Path) -> None:
    """backup.json round-trips through its record, and one of another shape (a list, another format,
    a path that leaves the stack, a size that is not a number) is refused naming the backup."""
    from releaser.errors import ReleaserError
    from releaser.quickstart.backup import BackupManifest, FileMode, VolumeCopy

    where = tmp_path / "b.tar.zst"
    m = BackupManifest(
        release="demo",
        version="1.0.0",
        created="2026-12-06T00:00:00Z",
        volumes={"data": VolumeCopy(service="db", path="/var/lib/db", sha256="ab" * 32, size=10)},
        files={"compose.yaml": "cd" * 32},
        modes={"compose.yaml": FileMode(mode=0o644, uid=0, gid=0)},
    )
    assert BackupManifest.parse(m.to_json(), where) == m
    good = m.to_json()
    for bad in (
        [],
        {**good, "format": "releaser.dev/quickstart-backup/v0"},
        {**good, "files": {"../etc/passwd": "00"}},
        {**good, "volumes": {"data": {**good["volumes"]["data"], "size": "10"}}},
        {**good, "modes": {"other": {"mode": 1, "uid": 0, "gid": 0}}},
    ):
        with pytest.raises(ReleaserError, match=re.escape(str(where))):
            BackupManifest.parse(bad, where)


def test_a_control_character_is_named_with_its_fix(tmp_path: Path) -> None:
    """libyaml parses release.yaml, but a control character is still refused up front, as not text."""
    from releaser.errors import ValidationError
    from releaser.release import load_release

    (tmp_path / "release.yaml").write_text("apiVersion: releaser.dev/v1alpha1\n\x01kind: Release\n")
    with pytest.raises(ValidationError) as err:
        load_release(tmp_path)
    (problem,) = err.value.problems
    assert problem.message.startswith("not YAML text") and "control characters" in (problem.fix or "")
