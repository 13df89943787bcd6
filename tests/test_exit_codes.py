"""Exit codes exactly as docs/cli.md lists them: one table over every command, each row a real
situation (a missing file, a stale lock, a tampered bundle, a registry that answers badly or asks
for a login, no container engine), run through the CLI with --json. Every failure gives the JSON
envelope on stdout and no traceback. The table covers every command and every documented code;
code 9 needs a running stack and is asserted by tests/test_quickstart_airgap.py (`expect=9`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from releaser import errors
from releaser.cli import app

from .conftest import EXAMPLE, ROOT
from .support.bundles import PASS, World
from .support.hostile import HostileRegistry

runner = CliRunner()


@dataclass
class Ctx:
    tmp: Path
    world: World
    hostile: HostileRegistry
    helm: str

    def release(self, ref: str | None = None, lock: bool = True) -> Path:
        """A copy of the example (its images moved to `ref`'s registry when given)."""
        d = self.tmp / "rel"
        shutil.copytree(EXAMPLE, d)
        if not lock:
            (d / "release.lock.yaml").unlink()
        if ref is not None:
            (d / "release.lock.yaml").unlink()
            text = (d / "release.yaml").read_text()
            (d / "release.yaml").write_text(text.replace("registry.example.org", ref))
        return d

    def rendered(self) -> tuple[Path, Path]:
        d, out = self.release(), self.tmp / "out"
        assert cli("render", str(d), "--out-dir", str(out))[0] == 0
        return d, out

    def tampered_bundle(self) -> Path:
        bad = self.tmp / "cut.tar.zst"
        data = self.world.bundle.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        return bad


Row = Callable[[Ctx], list[str]]


def _stale(c: Ctx) -> list[str]:
    d = c.release()
    (d / "release.yaml").write_text((d / "release.yaml").read_text().replace("v1.4.0", "v1.4.1", 1))
    return ["render", str(d), "--out-dir", str(c.tmp / "out")]


def _check_tampered(c: Ctx) -> list[str]:
    d, out = c.rendered()
    compose = out / "compose/bmp-tcpao/compose.yaml"
    compose.write_text(compose.read_text().replace("nats@sha256:d2ad", "nats@sha256:0000"))
    return ["check", str(d), "--out-dir", str(out), "--helm", c.helm]


def _check_stale(c: Ctx) -> list[str]:
    d, out = c.rendered()
    (out / "charts/bmp-tcpao/templates/extra.yaml").write_text("# hand-made\n")
    return ["check", str(d), "--out-dir", str(out), "--helm", c.helm]


def _keygen_twice(c: Ctx) -> list[str]:
    assert cli("keygen", "--out-dir", str(c.tmp / "keys"))[0] == 0
    return ["keygen", "--out-dir", str(c.tmp / "keys")]


def _join_without_part_3(c: Ctx) -> list[str]:
    base = c.tmp / "parts.tar.zst"
    split = ["bundle", "split", str(c.world.bundle), "--split-size", "5M", "--signing-key", str(c.world.key)]
    assert cli(*split, "--out-file", str(base))[0] == 0
    (c.tmp / "parts.tar.zst.003").unlink()
    return ["bundle", "join", str(c.tmp / "parts.tar.zst.001"), "--key", str(c.world.pub)]


def _load(c: Ctx, to: str, bundle: Path | None = None) -> list[str]:
    return [
        "airgap",
        str(bundle or c.world.bundle),
        "--to",
        to,
        "--key",
        str(c.world.pub),
        "--out-dir",
        str(c.tmp / "o"),
    ]


def _loaded_into(c: Ctx) -> str:
    to = f"{c.world.dst.host}/exitcheck"
    assert cli(*_load(c, to))[0] == 0
    return to


def _delta(c: Ctx) -> Path:
    """The world's release as a delta against its own bundle: it relies on every layer."""
    out = c.tmp / "delta.tar.zst"
    args = ["bundle", str(c.world.release), "--signing-key", str(c.world.key), "--since", str(c.world.bundle)]
    assert cli(*args, "--no-installer", "--out-file", str(out))[0] == 0
    return out


def _internal(c: Ctx) -> list[str]:
    return ["validate", str(c.release())]


# (command, expected exit code, what the row is, the arguments; `env` extras)
TABLE: list[tuple[str, int, str, Row, dict[str, str]]] = [
    ("init", 0, "a new release directory", lambda c: ["init", str(c.tmp / "new")], {}),
    ("init", 1, "the directory already holds a release", lambda c: ["init", str(c.release())], {}),
    ("validate", 0, "the example", lambda c: ["validate", str(c.release())], {}),
    ("validate", 1, "no release.yaml", lambda c: ["validate", str(c.tmp / "none")], {}),
    ("validate", 2, "an unknown option", lambda c: ["validate", str(c.release()), "--bogus"], {}),
    ("validate", 3, "the lock is stale", lambda c: ["validate", _stale(c)[1]], {}),
    ("lock", 1, "no release.yaml", lambda c: ["lock", str(c.tmp / "none")], {}),
    (
        "lock",
        6,
        "the registry answers HTML",
        lambda c: ["lock", str(c.release(f"{c.hostile.host}/notjson"))],
        {},
    ),
    (
        "lock",
        7,
        "the registry asks for a login",
        lambda c: ["lock", str(c.release(f"{c.hostile.host}/auth"))],
        {},
    ),
    ("render", 0, "the example", lambda c: ["render", str(c.release()), "--out-dir", str(c.tmp / "out")], {}),
    ("render", 3, "the lock is stale", _stale, {}),
    (
        "render",
        3,
        "no lock",
        lambda c: ["render", str(c.release(lock=False)), "--out-dir", str(c.tmp / "o")],
        {},
    ),
    (
        "check",
        0,
        "fresh outputs",
        lambda c: ["check", str(c.rendered()[0]), "--out-dir", str(c.tmp / "out"), "--helm", c.helm],
        {},
    ),
    ("check", 3, "an output that render does not make", _check_stale, {}),
    ("check", 4, "a digest edited by hand", _check_tampered, {}),
    (
        "check",
        5,
        "no helm",
        lambda c: ["check", str(c.release()), "--out-dir", str(c.tmp), "--helm", str(c.tmp / "nope")],
        {},
    ),
    ("probe show", 0, "the probe image this releaser carries", lambda c: ["probe", "show", "--json"], {}),
    (
        "probe push",
        2,
        "a digest where a tag goes",
        lambda c: ["probe", "push", "127.0.0.1:9/a/b@sha256:" + "0" * 64],
        {},
    ),
    (
        "probe push",
        6,
        "the registry answers HTML",
        lambda c: ["probe", "push", f"{c.hostile.host}/notjson:1"],
        {},
    ),
    ("keygen", 0, "a new key pair", lambda c: ["keygen", "--out-dir", str(c.tmp / "keys")], {}),
    ("keygen", 1, "the key exists", _keygen_twice, {}),
    (
        "keygen",
        1,
        "no passphrase",
        lambda c: ["keygen", "--out-dir", str(c.tmp / "k")],
        {"RELEASER_KEY_PASSPHRASE": ""},
    ),
    ("bundle create", 2, "no signing key", lambda c: ["bundle", str(c.release())], {}),
    (
        "bundle create",
        3,
        "no lock",
        lambda c: ["bundle", str(c.release(lock=False)), "--signing-key", str(c.world.key)],
        {},
    ),
    (
        "bundle split",
        2,
        "parts under 1 MiB",
        lambda c: [
            "bundle",
            "split",
            str(c.world.bundle),
            "--split-size",
            "1K",
            "--signing-key",
            str(c.world.key),
        ],
        {},
    ),
    (
        "bundle split",
        1,
        "a damaged bundle",
        lambda c: [
            "bundle",
            "split",
            str(c.tampered_bundle()),
            "--split-size",
            "8M",
            "--signing-key",
            str(c.world.key),
        ],
        {},
    ),
    (
        "bundle join",
        2,
        "not a split bundle",
        lambda c: ["bundle", "join", str(c.world.bundle), "--key", str(c.world.pub)],
        {},
    ),
    ("bundle join", 1, "a part missing", _join_without_part_3, {}),
    ("doctor", 8, "no container engine", lambda c: ["doctor"], {"PATH": "/nonexistent"}),
    ("completion", 0, "bash", lambda c: ["completion", "bash"], {}),
    ("completion", 2, "an unknown shell", lambda c: ["completion", "tcsh"], {}),
    (
        "airgap verify",
        0,
        "the bundle",
        lambda c: ["airgap", "verify", str(c.world.bundle), "--key", str(c.world.pub)],
        {},
    ),
    (
        "airgap verify",
        1,
        "a truncated bundle",
        lambda c: ["airgap", "verify", str(c.tampered_bundle()), "--key", str(c.world.pub)],
        {},
    ),
    (
        "airgap verify",
        2,
        "--to is not an option of verify",
        lambda c: ["airgap", "verify", str(c.world.bundle), "--to", "x:5000"],
        {},
    ),
    ("airgap inspect", 0, "the bundle", lambda c: ["airgap", "inspect", str(c.world.bundle)], {}),
    ("airgap inspect", 1, "not a bundle", lambda c: ["airgap", "inspect", str(EXAMPLE / "release.yaml")], {}),
    (
        "airgap check",
        0,
        "a registry the bundle was loaded into",
        lambda c: [
            "airgap",
            "check",
            str(c.world.bundle),
            "--to",
            _loaded_into(c),
            "--key",
            str(c.world.pub),
        ],
        {},
    ),
    (
        "airgap check",
        4,
        "a registry that holds none of it",
        lambda c: [
            "airgap",
            "check",
            str(c.world.bundle),
            "--to",
            f"{c.world.dst.host}/none",
            "--key",
            str(c.world.pub),
        ],
        {},
    ),
    (
        "airgap load",
        1,
        "no such bundle",
        lambda c: [
            "airgap",
            str(c.tmp / "none.tar.zst"),
            "--to",
            "localhost:5000",
            "--key",
            str(c.world.pub),
        ],
        {},
    ),
    (
        "airgap load",
        1,
        "a truncated bundle",
        lambda c: _load(c, f"{c.world.dst.host}/exitcodes", bundle=c.tampered_bundle()),
        {},
    ),
    ("airgap load", 2, "a target no client could pull from", lambda c: _load(c, "reg_istry:5000"), {}),
    (
        "airgap load",
        4,
        "a delta whose base the target lacks",
        lambda c: _load(c, f"{c.world.dst.host}/nobase", bundle=_delta(c)),
        {},
    ),
    (
        "airgap inventory",
        0,
        "a registry",
        lambda c: ["airgap", "inventory", "--from", c.world.dst.host, "--out-file", str(c.tmp / "inv.json")],
        {},
    ),
    (
        "airgap inventory",
        6,
        "a registry answering without end",
        lambda c: ["airgap", "inventory", "--from", f"{c.hostile.host}/endless", "--repository", "x"],
        {},
    ),
    ("diff", 0, "a bundle against itself", lambda c: ["diff", str(c.world.bundle), str(c.world.bundle)], {}),
    ("diff", 1, "a side that is not there", lambda c: ["diff", str(c.tmp / "none"), str(c.world.bundle)], {}),
    (
        "bundle merge",
        0,
        "a delta and its base",
        lambda c: [
            "bundle",
            "merge",
            str(c.world.bundle),
            str(_delta(c)),
            "--key",
            str(c.world.pub),
            "--out-file",
            str(c.tmp / "full.tar.zst"),
        ],
        {},
    ),
    (
        "bundle merge",
        1,
        "a full bundle as the delta",
        lambda c: ["bundle", "merge", str(c.world.bundle), str(c.world.bundle), "--key", str(c.world.pub)],
        {},
    ),
    ("airgap load", 6, "the target answers without end", lambda c: _load(c, f"{c.hostile.host}/endless"), {}),
    ("airgap load", 7, "the target asks for a login", lambda c: _load(c, f"{c.hostile.host}/auth"), {}),
    ("quickstart up", 1, "no release.yaml", lambda c: ["quickstart", "up", str(c.tmp / "none")], {}),
    (
        "quickstart up",
        8,
        "no container engine",
        lambda c: ["quickstart", "up", str(c.release()), "--stack", str(c.tmp / "s")],
        {"PATH": "/nonexistent"},
    ),
    (
        "quickstart status",
        1,
        "no stack",
        lambda c: ["quickstart", "status", "--stack", str(c.tmp / "none")],
        {},
    ),
    ("quickstart logs", 1, "no stack", lambda c: ["quickstart", "logs", "--stack", str(c.tmp / "none")], {}),
    (
        "quickstart upgrade",
        1,
        "no stack to upgrade",
        lambda c: ["quickstart", "upgrade", str(c.release()), "--stack", str(c.tmp / "none")],
        {},
    ),
    (
        "quickstart rollback",
        1,
        "no stack",
        lambda c: ["quickstart", "rollback", "--stack", str(c.tmp / "none")],
        {},
    ),
    ("quickstart rollback", 2, "revision 0", lambda c: ["quickstart", "rollback", "0"], {}),
    (
        "quickstart history",
        1,
        "no stack",
        lambda c: ["quickstart", "history", "--stack", str(c.tmp / "none")],
        {},
    ),
    ("quickstart down", 1, "no stack", lambda c: ["quickstart", "down", "--stack", str(c.tmp / "none")], {}),
    ("quickstart down", 2, "--yes is not an option of down", lambda c: ["quickstart", "down", "--yes"], {}),
    (
        "quickstart backup",
        1,
        "no stack",
        lambda c: [
            "quickstart",
            "backup",
            "--stack",
            str(c.tmp / "none"),
            "--out-file",
            str(c.tmp / "b.tar.zst"),
        ],
        {},
    ),
    (
        "quickstart restore",
        1,
        "no such backup",
        lambda c: ["quickstart", "restore", str(c.tmp / "none.tar.zst"), "--stack", str(c.tmp / "s")],
        {},
    ),
    (
        "quickstart reset",
        1,
        "no stack",
        lambda c: ["quickstart", "reset", "--stack", str(c.tmp / "none")],
        {},
    ),
    ("validate", 70, "a bug", _internal, {"FAULT": "RuntimeError"}),
    ("validate", 130, "Ctrl-C", _internal, {"FAULT": "KeyboardInterrupt"}),
]


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"RELEASER_KEY_PASSPHRASE": PASS, **(env or {})})
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileRegistry]:
    server = HostileRegistry().start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("command", "code", "what", "row", "env"), TABLE, ids=[f"{c}-{n}-{w}" for c, n, w, _, _ in TABLE]
)
def test_exit_code(
    command: str,
    code: int,
    what: str,
    row: Row,
    env: dict[str, str],
    tmp_path: Path,
    world: World,
    hostile: HostileRegistry,
    helm3: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = row(Ctx(tmp_path, world, hostile, helm3))
    env = {"RELEASER_REGISTRY_TIMEOUT": "2", **env}
    fault = env.pop("FAULT", None)
    if fault:  # its own process: after Ctrl-C the CLI leaves at once (os._exit), as it must
        script = (
            "import sys, releaser.commands.validate as v\n"
            f"def boom(*a, **k): raise {fault}('boom')\n"
            "v.load_release = boom\n"
            "from releaser.cli import main\n"
            "sys.argv = ['releaser', *sys.argv[1:]]\n"
            "main()\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script, *args, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        if code == 70:
            assert "internal error in validate (please report): RuntimeError" in proc.stdout
            assert json.loads(proc.stdout)["ok"] is False
        return
    as_json = [] if command == "completion" else ["--json"]  # a completion script is not JSON
    result = runner.invoke(app, [*args, *as_json], env={"RELEASER_KEY_PASSPHRASE": PASS, **env})
    assert result.exit_code == code, (args, result.output)
    assert "Traceback" not in result.output, result.output
    if code != 0 and command != "completion":
        envelope = json.loads(result.stdout)  # the envelope on every exit path
        assert envelope["ok"] is False and envelope["error"]["message"], envelope


def test_the_table_covers_every_command_and_every_documented_code() -> None:
    def leaves(c: object, prefix: tuple[str, ...] = ()) -> Iterator[str]:
        subs = getattr(c, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from leaves(sub, (*prefix, name))
        else:
            yield " ".join(prefix)

    commands = set(leaves(typer.main.get_command(app)))
    assert commands == {c for c, *_ in TABLE}, commands ^ {c for c, *_ in TABLE}
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", (ROOT / "docs/cli.md").read_text(), re.M)}
    documented.add(130)  # its own paragraph under the table
    assert documented == set(errors.EXIT_CODES), documented ^ set(errors.EXIT_CODES)
    covered = {n for _, n, *_ in TABLE}
    assert documented - covered == {errors.EXIT_UNHEALTHY}, documented - covered
    assert "expect=9" in (ROOT / "tests/test_quickstart_airgap.py").read_text()  # where 9 is asserted
