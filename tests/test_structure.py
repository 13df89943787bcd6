"""The design holds (the layer order and the absence of import cycles are import-linter's contracts in
pyproject.toml, run by make lint): the schema and the model describe the same fields, every command's --json keys are pinned (and match docs/cli.md), exit codes are
those docs/cli.md lists, and the command line behaves as its conventions say."""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from releaser import errors
from releaser import model as m
from releaser.cli import app

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "releaser"
runner = CliRunner()


# ---------------------------------------------------------------- schema <-> model


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _props(node: dict[str, typing.Any]) -> set[str]:
    if "items" in node:
        node = node["items"]
    return set(node.get("properties", {}))


# schema key -> model field where the names differ; model fields the schema spells differently
ALIASES = {
    "disruptionBudget": "disruption",
    "from": "source",
    "generate": "generate_length",
    "existingSecret": "existing_name",  # an object {name, key}: existing_name + existing_key
    "keySecret": "key_secret",  # an object {name, key}: key_secret + key_secret_key
    "intervalSeconds": "interval",
    "timeoutSeconds": "timeout",
    "startSeconds": "start",
    "ttlSecondsAfterFinished": "ttl_given",  # as written or None; Job.ttl_seconds_after_finished has the default
}
# model fields that come from elsewhere (the map key, a nested object's second field, derived forms)
NOT_IN_SCHEMA = {
    "Service": {"name"},
    "Image": {"name"},
    "SecretFile": {"existing_key"},
    "TcpAo": {"key_secret_key"},
    "Health": {"kind", "path", "port", "command"},  # from the one of http / tcp / exec
}
# schema keys that become something else in the model
NOT_IN_MODEL = {
    "Health": {"http", "tcp", "exec"},
    "Service": {"health"},  # the shorthand: becomes readiness and liveness
}


@pytest.mark.parametrize(
    ("schema_path", "cls"),
    [
        (("$defs", "service"), m.Service),
        (("$defs", "tcpao"), m.TcpAo),
        (("$defs", "peerRef"), m.Peer),
        (("$defs", "service", "properties", "ports"), m.Port),
        (("$defs", "service", "properties", "secrets"), m.SecretFile),
        (("$defs", "service", "properties", "volumes"), m.Volume),
        (("$defs", "service", "properties", "scratch"), m.Scratch),
        (("$defs", "service", "properties", "configs"), m.ConfigFile),
        (("$defs", "service", "properties", "autoscale"), m.Autoscale),
        (("$defs", "service", "properties", "metrics"), m.Metrics),
        (("$defs", "service", "properties", "job"), m.Job),
        (("$defs", "service", "properties", "capabilities"), m.Capability),
        (("$defs", "service", "properties", "disruptionBudget"), m.Disruption),
        (("$defs", "service", "properties", "ingress"), m.IngressRule),
        (("$defs", "service", "properties", "egress"), m.EgressRule),
        (("$defs", "probe"), m.Health),
        (("$defs", "service", "properties", "resources"), m.Resources),
        (("properties", "images", "additionalProperties"), m.Image),
    ],
)
def test_every_schema_field_is_in_the_model_and_back(schema_path: tuple[str, ...], cls: type) -> None:
    node = json.loads((ROOT / "schemas/release.schema.json").read_text())
    for key in schema_path:
        node = node[key]
    schema = {ALIASES.get(k, _snake(k)) for k in _props(node) - NOT_IN_MODEL.get(cls.__name__, set())}
    fields = {f.name for f in dataclasses.fields(cls)} - NOT_IN_SCHEMA.get(cls.__name__, set())
    assert schema == fields, (cls.__name__, sorted(schema ^ fields))


def test_the_release_level_fields() -> None:
    schema = json.loads((ROOT / "schemas/release.schema.json").read_text())
    top = {*_props(schema["properties"]["metadata"]), *_props(schema["properties"]["network"])}
    top |= set(schema["properties"]) - {"kind", "metadata", "network"}  # kind is a constant
    # source_file: where it was read from; trusted_root: trust.trustedRoot, beside the rules of `trust`
    fields = {f.name for f in dataclasses.fields(m.Release)} - {"source_file", "trusted_root"}
    assert {_snake(k) for k in top} == fields


# ---------------------------------------------------------------- --json keys


def _dummy(tp: typing.Any) -> typing.Any:
    """A value of a result field's type, enough for to_json()."""
    origin = typing.get_origin(tp)
    if tp is str:
        return ""
    if tp is bool:
        return False
    if tp in (int, float):
        return 0
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return None
    if origin is tuple or tp is tuple:
        return ()
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        return {}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = [
            f
            for f in dataclasses.fields(tp)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return tp(
            **{f.name: _dummy(hints[f.name]) for f in fields}
        )  # a nested result (LoadStats, QuickstartResult)
    raise AssertionError(f"no dummy for {tp}")


def _keys(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    obj = cls(**{f.name: _dummy(hints[f.name]) for f in dataclasses.fields(cls)})
    return list(obj.to_json())


def _results() -> dict[str, type]:
    from releaser.commands import (
        airgap,
        audit,
        bundle,
        check,
        diff,
        doctor,
        init,
        inventory,
        keys,
        load,
        lock,
        merge,
        quickstart,
        render,
        split,
        validate,
    )

    return {
        "init": init.InitResult,
        "validate": validate.ValidateResult,
        "lock": lock.LockResult,
        "render": render.RenderResult,
        "check": check.CheckResult,
        "keygen": keys.KeygenResult,
        "bundle": bundle.BundleResult,
        "bundle split": split.SplitResult,
        "bundle join": split.JoinResult,
        "bundle merge": merge.MergeResult,
        "diff": diff.DiffResult,
        "airgap inventory": inventory.InventoryResult,
        "airgap verify": airgap.VerifyResult,
        "airgap inspect": airgap.InspectResult,
        "airgap check": audit.CheckRegistryResult,
        "airgap": load.AirgapResult,
        "doctor": doctor.DoctorResult,
        "quickstart": quickstart.QuickstartResult,
        "quickstart status": quickstart.StatusResult,
        "quickstart backup": quickstart.BackupResult,
        "quickstart restore": quickstart.RestoreResult,
        "quickstart reset": quickstart.ResetResult,
        "quickstart upgrade": quickstart.UpgradeResult,
        "quickstart rollback": quickstart.RollbackResult,
        "quickstart history": quickstart.HistoryResult,
        "quickstart logs --json": quickstart.LogLines,
    }


PINNED = {
    "init": "path next",
    "validate": "release version services images lock warnings",
    "lock": "release path written images trust",
    "render": "release compose chart quadlet written unchanged removed images notes warnings package packageSha256",
    "check": "release images sources mismatches",
    "keygen": "privateKey publicKey fingerprint",
    "bundle": "path sha256 size images blobs bytesIn fetched signer attachments installer parts delta trust sboms",
    "bundle merge": "path sha256 size release version fromDelta fromBase",
    "diff": "old new release versions images bytes bytesNote services serviceFields values compose care compared "
    "changed",
    "airgap inventory": "path registry repositories tags manifests blobs sha256",
    "bundle split": "source first parts size recompressed",
    "bundle join": "path size sha256 parts",
    "airgap verify": "path release version files bytes images signer delta problems trust",
    "airgap inspect": "path size release version tool formatVersion signer signatureChecked files bytes images chart "
    "parts delta trustedRoot",
    "airgap check": "path target release version manifests blobs sampled tags missing",
    "airgap": "target release version images chart valuesFile composeOverride registriesConf helmInstall stats dryRun plan trust",
    "doctor": "checks",
    "quickstart": "release version stack engine source services urls secretsDir secretsCreated secretsKept "
    "warnings seconds registry localRegistry",
    "quickstart status": "release version stack engine healthy services stopped otherStack killedOnStop",
    "quickstart backup": "path release version volumes files bytes sha256",
    "quickstart restore": "path release volumes files services",
    "quickstart reset": "stack removed",
    "quickstart upgrade": "release from to revision replaced backup services warnings seconds",
    "quickstart rollback": "release from to revision services",
    "quickstart history": "release current revisions",
    "quickstart logs --json": "lines",
}


@pytest.mark.parametrize("command", sorted(PINNED))
def test_json_keys_of_every_command_are_pinned_and_documented(command: str) -> None:
    keys = _keys(_results()[command])
    assert keys == PINNED[command].split(), command
    doc = (ROOT / "docs/cli.md").read_text()
    entry = re.search(rf"`{re.escape(command)}` → `([^`]*)`", doc)
    assert entry is not None, f"docs/cli.md lists no result keys for {command}"
    assert _top_level_keys(entry.group(1)) == keys, (command, entry.group(1))


def _top_level_keys(text: str) -> list[str]:
    """`a, b: [{x, y}], c` -> [a, b, c]."""
    keys, depth, token = [], 0, ""
    for ch in text + ",":
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            keys.append(token.split(":")[0].strip())
            token = ""
        else:
            token += ch
    return keys


# ---------------------------------------------------------------- exit codes


def test_exit_codes_are_the_documented_ones() -> None:
    doc = (ROOT / "docs/cli.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", doc, flags=re.M))
    assert {int(c) for c in table} == set(errors.EXIT_CODES) - {errors.EXIT_INTERRUPTED}
    assert "130: interrupted" in doc
    classes = [
        c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.ReleaserError)
    ]
    assert len(classes) >= 15 and all(c.exit_code in errors.EXIT_CODES for c in classes)
    # every error class of the package lives in errors.py
    for path in PACKAGE.rglob("*.py"):
        if path.name != "errors.py":
            assert not re.search(r"^class \w+\((\w+Error|ReleaserError)\)", path.read_text(), flags=re.M), (
                path
            )


# ---------------------------------------------------------------- the command line


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_each_action_takes_only_its_own_options(tmp_path: Path) -> None:
    for args in (
        ["airgap", "verify", str(tmp_path / "b.tar.zst"), "--to", "r.local:5000"],
        ["airgap", "inspect", str(tmp_path / "b.tar.zst"), "--dry-run"],
        ["quickstart", "status", "--yes"],
        ["quickstart", "logs", "--timeout", "3"],
    ):
        code, out = cli(*args)
        assert code == 2 and "No such option" in out, (args, out)


def test_usage_errors_give_the_json_envelope() -> None:
    for args in (["validate", "--bogus", "--json"], ["airgap", "inspect", "-o", "json"], ["lock", "--json"]):
        code, out = cli(*args)
        doc = json.loads(out)
        assert code == 2 and doc["ok"] is False and doc["error"]["error"] == "UsageError", (args, out)
        assert doc["error"]["fix"].startswith("see `releaser "), doc


def test_short_forms_route_to_the_main_action(tmp_path: Path) -> None:
    missing = tmp_path / "b.tar.zst"
    code, out = cli("airgap", str(missing), "--to", "reg.local:5000", "--key", str(tmp_path / "k.pub"))
    assert code == 1 and "no such file" in out, out
    code, out = cli("airgap", "--to", "reg.local:5000", str(missing))  # options before the bundle
    assert code == 1 and "no such file" in out, out
    logs = tmp_path / "logs"  # a release directory named like an action
    logs.mkdir()
    code, out = cli("quickstart", "up", str(logs))
    assert code == 1 and str(logs / "release.yaml") in out, out


def test_help_is_h_everywhere_version_is_v_and_flags_are_flags() -> None:
    for args in ([], ["airgap"], ["airgap", "load"], ["quickstart"], ["quickstart", "backup"], ["render"]):
        code, out = cli(*args, "-h")
        assert code == 0 and "Usage: releaser" in out, (args, out)
        assert "<bool>" not in out, args
    code, out = cli("-v")
    assert code == 0 and re.fullmatch(r"releaser \d+\.\d+\.\d+\n", out)


def test_old_spellings_work_with_a_deprecation_note(tmp_path: Path) -> None:
    from .conftest import EXAMPLE

    result = CliRunner().invoke(app, ["render", str(EXAMPLE), "--out", str(tmp_path / "a"), "--json"])
    assert result.exit_code == 0, result.output
    assert "--out is deprecated: use --out-dir" in result.stderr
    assert json.loads(result.stdout)["ok"] is True  # the note never lands in the JSON
    result = CliRunner().invoke(app, ["render", str(EXAMPLE), "-o", str(tmp_path / "b")])
    assert result.exit_code == 0 and (tmp_path / "b/compose").is_dir(), result.output
    assert "-o DIR (-o is now the output format) is deprecated" in result.stderr
    result = CliRunner().invoke(app, ["render", str(EXAMPLE), "--out-dir", str(tmp_path / "c"), "-o", "json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] and not (Path("json")).exists()
    # the quickstart's stack was --dir, a bundle's registry --registry: now --stack and --to
    for args, old, new in (
        (["quickstart", "status", "--dir", str(tmp_path / "none")], "--dir", "--stack"),
        (["quickstart", "status", f"--dir={tmp_path / 'none'}"], "--dir", "--stack"),
        (["doctor", str(EXAMPLE), "--dir", str(tmp_path / "none"), "--skip", "engine"], "--dir", "--stack"),
        (
            ["quickstart", str(EXAMPLE), "--registry", "127.0.0.1:5000", "--stack", str(tmp_path / "s")],
            "--registry",
            "--to",
        ),
    ):
        result = CliRunner().invoke(app, args)
        assert f"warning: {old} is deprecated: use {new}" in result.stderr, (args, result.output)
        assert "No such option" not in result.output, result.output
    result = CliRunner().invoke(app, ["quickstart", "status", "--stack", str(tmp_path / "none")])
    assert str(tmp_path / "none") in result.output and "deprecated" not in result.stderr
    result = CliRunner().invoke(
        app, ["render", str(EXAMPLE), "--out-dir", str(tmp_path / "d"), "--", "--dir"]
    )
    assert "--dir is deprecated" not in result.stderr  # nothing after -- is an option


def test_shell_completion() -> None:
    for shell in ("bash", "zsh", "fish"):
        code, out = cli("completion", shell)
        assert code == 0 and "_RELEASER_COMPLETE" in out, shell
    env = {"_RELEASER_COMPLETE": "complete_bash", "COMP_WORDS": "releaser airgap ", "COMP_CWORD": "2"}
    proc = subprocess.run([sys.executable, "-m", "releaser"], env=env, capture_output=True, text=True)
    assert proc.stdout.split() == ["verify", "inspect", "check", "inventory", "load"], proc


def test_an_internal_error_is_reported_not_thrown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from releaser.commands import validate

    def boom(_: Path) -> None:
        raise KeyError("x")

    monkeypatch.setattr(validate, "validate_release", boom)
    code, out = cli("validate", str(tmp_path))
    assert code == 70 and "internal error in validate (please report): KeyError" in out
    assert "Traceback" not in out
    code, out = cli("validate", str(tmp_path), "--json")
    assert code == 70 and json.loads(out)["error"]["error"] == "InternalError"
    code, out = cli("--debug", "validate", str(tmp_path))
    assert code == 70 and "Traceback" in out
