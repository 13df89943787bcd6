"""The CLI as users and scripts see it: exit codes, messages, JSON envelopes, atomic outputs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from releaser import __version__
from releaser.cli import app

from .conftest import EXAMPLE

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    d = tmp_path / "rel"
    shutil.copytree(EXAMPLE, d)
    return d


def test_validate_text_and_json(release: Path) -> None:
    code, out = cli("validate", str(release))
    assert code == 0 and "ok: bmp-tcpao 1.4.0 is valid" in out
    code, out = cli("validate", str(release), "--json")
    doc = json.loads(out)
    assert code == 0
    assert set(doc) == {"ok", "command", "format", "version", "result"}
    assert doc["format"] == 1 and doc["version"] == __version__  # the envelope's format is pinned
    assert set(doc["result"]) == {"release", "version", "services", "images", "lock", "warnings"}
    assert doc["result"]["lock"] == "current"


def test_validate_failure_json_lists_problems(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    shutil.copy(Path(__file__).parent / "bad" / "semantics.yaml", d / "release.yaml")
    code, out = cli("validate", str(d), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert doc["error"]["error"] == "ValidationError"
    assert len([p for p in doc["error"]["problems"] if p["severity"] == "error"]) == 7
    assert set(doc["error"]["problems"][0]) == {"file", "line", "path", "severity", "message", "fix"}


def test_render_then_check_then_render_again(release: Path, tmp_path: Path, helm3: str) -> None:
    out = tmp_path / "out"
    code, text = cli("render", str(release), "--out-dir", str(out))
    assert code == 0, text
    assert (out / "compose/bmp-tcpao/compose.yaml").exists()
    assert (out / "charts/bmp-tcpao/Chart.yaml").exists()
    code, text = cli("check", str(release), "--out-dir", str(out), "--helm", helm3)
    assert code == 0, text
    assert "pin the same 5 image(s)" in text
    code, text = cli("render", str(release), "--out-dir", str(out), "--json")
    doc = json.loads(text)
    assert doc["result"]["written"] == [] and doc["result"]["unchanged"] > 10


def test_render_refuses_a_missing_lock(release: Path, tmp_path: Path) -> None:
    (release / "release.lock.yaml").unlink()
    code, text = cli("render", str(release), "--out-dir", str(tmp_path / "out"))
    assert code == 3
    assert "no lock file" in text and "fix:" in text
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_stale_lock(release: Path, tmp_path: Path) -> None:
    src = release / "release.yaml"
    src.write_text(src.read_text().replace("nats:2.10.22", "nats:2.10.23"))
    code, text = cli("render", str(release), "--out-dir", str(tmp_path / "out"))
    assert code == 3
    assert "release.yaml says registry.example.org/library/nats:2.10.23" in text
    assert "releaser lock" in text


def test_validate_says_a_stale_lock_with_exit_3_as_render_does(release: Path) -> None:
    src = release / "release.yaml"
    src.write_text(src.read_text().replace("nats:2.10.22", "nats:2.10.23"))
    code, text = cli("validate", str(release))
    assert code == 3 and "is stale" in text and "releaser lock" in text, text
    code, text = cli("validate", str(release), "--json")
    doc = json.loads(text)
    assert code == 3 and doc["error"]["error"] == "LockError", doc


def test_malformed_lock_names_line_and_path(release: Path, tmp_path: Path) -> None:
    lock = release / "release.lock.yaml"
    text = lock.read_text()
    lock.write_text(text.replace("digest: sha256:d2ad", "digest: sha256:XYZ", 1))
    code, out = cli("render", str(release), "--out-dir", str(tmp_path / "out"))
    assert code == 1
    assert "release.lock.yaml:" in out and "$.images.nats.digest" in out and "not a sha256 digest" in out


def test_failed_render_keeps_previous_outputs(release: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli("render", str(release), "--out-dir", str(out))[0] == 0
    before = (out / "compose/bmp-tcpao/compose.yaml").read_bytes()
    src = release / "release.yaml"
    src.write_text(src.read_text().replace("image: nats", "image: natz"))
    code, text = cli("render", str(release), "--out-dir", str(out))
    assert code == 1 and "did you mean 'nats'?" in text
    assert (out / "compose/bmp-tcpao/compose.yaml").read_bytes() == before
    assert not [p for p in (out / "compose").iterdir() if p.name.startswith(".")]


def test_check_catches_a_tampered_digest(release: Path, tmp_path: Path, helm3: str) -> None:
    out = tmp_path / "out"
    assert cli("render", str(release), "--out-dir", str(out))[0] == 0
    compose = out / "compose/bmp-tcpao/compose.yaml"
    compose.write_text(compose.read_text().replace("nats@sha256:d2ad", "nats@sha256:0000"))
    values = out / "charts/bmp-tcpao/values.yaml"
    values.write_text(values.read_text().replace("digest: sha256:f30b", "digest: sha256:1111"))
    code, text = cli("check", str(release), "--out-dir", str(out), "--helm", helm3)
    assert code == 4, text
    assert "compose (committed): bus uses registry.example.org/library/nats@sha256:0000" in text
    assert (
        "chart (committed): Deployment/collector collector uses registry.example.org/bmp/gobmp-tls@sha256:1111"
        in text
    )
    assert "differs from what release.yaml and the lock render" in text


def test_check_reports_stale_outputs_with_exit_3(release: Path, tmp_path: Path, helm3: str) -> None:
    out = tmp_path / "out"
    assert cli("render", str(release), "--out-dir", str(out))[0] == 0
    (out / "charts/bmp-tcpao/templates/extra.yaml").write_text("# hand-made\n")
    code, text = cli("check", str(release), "--out-dir", str(out), "--helm", helm3, "--json")
    doc = json.loads(text)
    assert code == 3
    assert doc["error"]["mismatches"] == [
        f"{out}/charts/bmp-tcpao/templates/extra.yaml: not part of the rendered output"
    ]


def test_check_without_helm_says_how_to_get_it(release: Path, tmp_path: Path) -> None:
    code, text = cli("check", str(release), "--out-dir", str(tmp_path), "--helm", str(tmp_path / "nope"))
    assert code == 5 and "does not exist" in text and "RELEASER_HELM" in text


def test_init_writes_a_valid_start(tmp_path: Path) -> None:
    d = tmp_path / "My Release"
    code, text = cli("init", str(d))
    assert code == 0 and "release.yaml" in text
    code, text = cli("validate", str(d))
    assert code == 0, text
    assert "my-release" in text and "no lock yet" in text
    warnings = [line for line in text.splitlines() if ": warning: " in line]
    assert len(warnings) == 2, text  # the template is a clean start: a lock and a trust policy to add
    assert "no lock yet" in text and "no trust policy" in text
    code, text = cli("init", str(d))
    assert code == 1 and "already exists" in text and "--force" in text
    assert cli("init", str(d), "--force")[0] == 0


def test_help_teaches() -> None:
    code, text = cli("render", "--help")
    assert code == 0 and "Example:" in text and "--out" in text
    code, text = cli("--version")
    assert code == 0 and text.startswith("releaser ")


def test_every_help_renders_with_its_brackets_literal() -> None:
    """Every command's and subcommand's --help exits 0, and every [...] of its help text is shown
    as written (help is rendered as rich markup, where `[/x]` would be a closing tag)."""
    import re

    import typer

    def walk(command: object, path: list[str]) -> Iterator[tuple[list[str], object]]:
        yield path, command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    seen = 0
    for path, command in walk(typer.main.get_command(app), []):
        code, text = cli(*path, "--help")
        assert code == 0, (path, text)
        flat = re.sub(r"[\s│]+", "", text)  # rich wraps lines inside boxes
        raw = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]  # type: ignore[attr-defined]
        for group in re.findall(r"\[[^\]\s]*\]", " ".join(raw).replace("\\[", "[")):
            assert group in flat, (path, group)
        seen += 1
    assert seen >= 11  # the app, its commands and the quickstart subcommands


def test_help_paragraphs_are_wrapped_by_the_terminal_not_by_the_source() -> None:
    """Docstring lines are joined into paragraphs (a wide terminal shows a sentence on one line),
    while `Example:` lines keep their lines; the groups list their sub-commands."""
    result = CliRunner().invoke(app, ["bundle", "--help"], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert "Identical inputs (and SOURCE_DATE_EPOCH) give a byte-identical bundle." in result.output
    result = CliRunner().invoke(app, ["quickstart", "--help"], env={"COLUMNS": "200"}, catch_exceptions=False)
    lines = [line.strip("│ ") for line in result.output.splitlines()]
    for action in ("up", "status", "logs", "down", "backup", "restore", "reset"):
        assert any(line.startswith(f"{action} ") for line in lines), (action, result.output)
    assert "\b" not in result.output
    result = CliRunner().invoke(
        app, ["airgap", "load", "--help"], env={"COLUMNS": "200"}, catch_exceptions=False
    )
    examples = [line.strip() for line in result.output.splitlines() if line.strip().startswith("Example:")]
    assert len(examples) == 2 and examples[0].startswith("Example:  releaser airgap bundles/")
    assert examples[0].endswith("--key releaser.pub --dry-run")


@pytest.mark.parametrize("example", ["bmp-tcpao", "platform"])
def test_committed_example_passes_check(helm3: str, example: str) -> None:
    from .conftest import ROOT

    code, text = cli("check", str(ROOT / "examples" / example), "--out-dir", str(ROOT), "--helm", helm3)
    assert code == 0, text


def test_a_file_system_refusal_is_an_error_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, text = cli("render", str(EXAMPLE), "--out-dir", str(blocker))  # --out is a file, not a directory
    assert code == 1 and f"error: {blocker}/compose: Not a directory" in text and "fix:" in text
    assert "Traceback" not in text


def test_credentials_on_the_command_line_are_warned_about_never_echoed(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    code, text = cli("lock", str(missing), "--creds", "ci:s3cret-pw")
    assert code == 1 and "warning: --creds on the command line can be read by other users" in text
    assert "s3cret-pw" not in text
    result = runner.invoke(app, ["lock", str(missing)], env={"RELEASER_CREDS": "ci:s3cret-pw"})
    assert result.exit_code == 1 and "warning" not in result.output and "s3cret-pw" not in result.output


def test_a_passphrase_file_need_not_be_utf8(tmp_path: Path) -> None:
    from releaser.bundle.sign import load_private_key, passphrase

    secret = tmp_path / "pass.bin"
    secret.write_bytes(b"\xff\xfe\xfd-not-utf8-\x80\n")
    code, out = cli("keygen", "--out-dir", str(tmp_path / "keys"), "--passphrase-file", str(secret))
    assert code == 0 and "Traceback" not in out, out
    assert load_private_key(tmp_path / "keys/releaser.key", passphrase(secret)) is not None
    assert "not-utf8" not in out


def test_init_names_any_directory_validly_and_lock_says_to_replace_the_placeholders(tmp_path: Path) -> None:
    d = tmp_path / "Café Ünïcode 2"
    code, text = cli("init", str(d))
    assert code == 0 and "replace the example.org image references" in text and f"'{d}'" in text, text
    code, text = cli("validate", str(d))
    assert code == 0 and "caf-n-code-2" in text, text
    code, text = cli("lock", str(d))  # refused before any registry is asked
    assert code == 1 and "still names placeholder images" in text and "images.web:" in text, text
    assert not (d / "release.lock.yaml").exists()
