"""release.yaml validation: every problem at once, with file:line, JSON path and fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from releaser.errors import ValidationError
from releaser.release import load_release

from .conftest import EXAMPLE, FIXTURES, assert_golden

BAD = Path(__file__).parent / "bad"
GOLDEN = Path(__file__).parent / "golden" / "errors"


def _problems_text(tmp_path: Path, case: Path) -> str:
    d = tmp_path / case.stem
    d.mkdir()
    shutil.copy(case, d / "release.yaml")
    with pytest.raises(ValidationError) as info:
        load_release(d)
    return info.value.render().replace(str(tmp_path), "<tmp>") + "\n"


@pytest.mark.parametrize("case", sorted(BAD.glob("*.yaml")), ids=lambda p: p.stem)
def test_error_messages_are_golden(case: Path, tmp_path: Path, update_goldens: bool) -> None:
    assert_golden(GOLDEN / f"{case.stem}.txt", _problems_text(tmp_path, case), update_goldens)


def test_every_problem_has_file_line_path_and_most_a_fix(tmp_path: Path) -> None:
    for case in sorted(BAD.glob("*.yaml")):
        d = tmp_path / case.stem
        d.mkdir()
        shutil.copy(case, d / "release.yaml")
        with pytest.raises(ValidationError) as info:
            load_release(d)
        for p in info.value.problems:
            assert p.file.endswith("release.yaml")
            assert p.line and p.line > 0, p
            assert p.path.startswith("$"), p
        fixes = [p.fix for p in info.value.problems]
        assert sum(f is not None for f in fixes) >= len(fixes) - 1, (case, fixes)


def test_all_problems_are_reported_in_one_run(tmp_path: Path) -> None:
    text = _problems_text(tmp_path, BAD / "semantics.yaml")
    for needle in (
        "image 'wbe' is not defined",
        "clashes with port 'http'",
        "blocks every eviction",
        "no service named 'nodes'",
        "no port named 'https'",
        "already published by web.http",
        "NetworkPolicy does not apply to hostNetwork pods",
    ):
        assert needle in text


def test_the_example_and_fixtures_are_valid() -> None:
    for d in (EXAMPLE, FIXTURES / "kitchen-sink"):
        release, warnings = load_release(d)
        assert release.services
        assert not [w for w in warnings if w.severity == "error"]


def test_tcpao_pair_checks_name_both_ends() -> None:
    release, _ = load_release(EXAMPLE)
    collector = release.service("collector")
    speaker = release.service("speaker")
    assert collector.tcpao and collector.tcpao.role == "terminator"
    assert speaker.tcpao and speaker.tcpao.role == "initiator"
    assert collector.host_network and speaker.host_network  # implied by tcpao


def test_a_hostnetwork_source_is_a_warning_not_an_error(tmp_path: Path) -> None:
    d = tmp_path / "r"
    d.mkdir()
    (d / "release.yaml").write_text(
        "apiVersion: releaser.dev/v1alpha1\nkind: Release\nmetadata: {name: r, version: 1.0.0}\n"
        "images:\n  a: {ref: registry.example.org/a:1}\n"
        "services:\n  agent: {image: a, hostNetwork: true}\n"
        "  bus:\n    image: a\n    ports: [{name: c, port: 4222}]\n    ingress: [{from: {service: agent}}]\n"
    )
    _, warnings = load_release(d)
    warnings = [w for w in warnings if "no resources" not in w.message and "no trust policy" not in w.message]
    assert [w.path for w in warnings] == ["$.services.bus.ingress[0].from.service"]
    assert "node CIDR" in (warnings[0].fix or "")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="1 problem"):
        load_release(tmp_path)
    (tmp_path / "release.yaml").write_text("")
    with pytest.raises(ValidationError) as info:
        load_release(tmp_path)
    assert "empty" in info.value.render()
    (tmp_path / "release.yaml").write_text("- a list\n")
    with pytest.raises(ValidationError) as info:
        load_release(tmp_path)
    assert "expected a mapping" in info.value.render()


def test_every_schema_property_has_a_description() -> None:
    from releaser.release import release_schema

    missing = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if isinstance(sub, dict) and "description" not in sub:
                    missing.append(f"{path}.properties.{name}")
            for key, sub in node.items():
                if key != "if":  # conditions restate properties, they do not declare them
                    walk(sub, f"{path}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{path}[{i}]")

    walk(release_schema(), "$")
    assert not missing


def test_schema_is_shipped_and_mirrored_at_top_level() -> None:
    from .conftest import ROOT

    top = (ROOT / "schemas" / "release.schema.json").read_bytes()
    assert top == (ROOT / "releaser" / "schemas" / "release.schema.json").read_bytes()


TRUST_RELEASE = (
    "apiVersion: releaser.dev/v1alpha1\nkind: Release\nmetadata: {name: r, version: 1.0.0}\n"
    "images:\n  a: {ref: registry.example.org/a:1}\n  b: {ref: registry.example.org/b:1}\n"
    "services:\n  one: {image: a}\n  two: {image: b}\n"
)


def _trust_problems(tmp_path: Path, policy: str, files: dict[str, bytes] | None = None) -> list[str]:
    d = tmp_path / "r"
    d.mkdir(parents=True, exist_ok=True)
    (d / "release.yaml").write_text(TRUST_RELEASE + policy)
    for name, data in (files or {}).items():
        (d / name).write_bytes(data)
    try:
        _, warnings = load_release(d)
    except ValidationError as exc:
        return [f"{p.severity} {p.path}: {p.message} | {p.fix}" for p in exc.problems]
    return [
        f"{w.severity} {w.path}: {w.message} | {w.fix}" for w in warnings if "no resources" not in w.message
    ]


def _public_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_no_trust_policy_is_a_warning_naming_the_fix(tmp_path: Path) -> None:
    (problem,) = _trust_problems(tmp_path, "")
    assert problem.startswith("warning $: no trust policy") and "trust: {default: {keys:" in problem


def test_a_trust_policy_resolves_per_image_with_the_default_and_cosign_type_names(tmp_path: Path) -> None:
    policy = (
        "trust:\n  default: {keys: [vendor.pub], attestations: [cyclonedx]}\n"
        "  images:\n    b: {exempt: a public base image nobody signs}\n"
    )
    assert _trust_problems(tmp_path, policy, {"vendor.pub": _public_pem()}) == []
    release, _ = load_release(tmp_path / "r")
    a, b = release.trust_rule("a"), release.trust_rule("b")
    assert a is not None and a.keys == ("vendor.pub",) and a.attestations == ("https://cyclonedx.org/bom",)
    assert b is not None and b.exempt and not b.keys
    assert release.trust_keys == ("vendor.pub",)


def test_a_trust_policy_names_each_wrong_part(tmp_path: Path) -> None:
    private = b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n"
    policy = (
        "trust:\n  images:\n    a: {keys: [missing.pub], attestations: [cyclonedxx]}\n"
        "    c: {keys: [private.key]}\n    b: {keys: [../outside.pub]}\n"
    )
    problems = "\n".join(_trust_problems(tmp_path, policy, {"private.key": private}))
    assert "$.trust.images.a.keys[0]: missing.pub: no such file" in problems
    assert "$.trust.images.a.attestations[0]: 'cyclonedxx' is not an attestation type" in problems
    assert "did you mean 'cyclonedx'?" in problems
    assert "$.trust.images.c: image 'c' is not defined under images" in problems
    assert "$.trust.images.b.keys[0]: ../outside.pub is outside the release directory" in problems
    assert "private.key: not a PEM public key" in problems and "never the private one" in problems


def test_a_trust_policy_without_a_default_must_cover_every_image(tmp_path: Path) -> None:
    problems = _trust_problems(
        tmp_path, "trust:\n  images:\n    a: {keys: [k.pub]}\n", {"k.pub": _public_pem()}
    )
    assert any("the policy has no rule for b" in p and "exempt: REASON" in p for p in problems), problems


def test_a_keyless_policy_needs_a_trusted_root_and_a_pattern_and_names_each_wrong_part(
    tmp_path: Path,
) -> None:
    policy = (
        "trust:\n  default: {keyless: {issuer: 'https://token.actions.githubusercontent.com', "
        "identity: '^https://github.com/acme/(api/'}}\n"
    )
    problems = "\n".join(_trust_problems(tmp_path / "one", policy))
    assert (
        "$.trust.default.keyless.identity: '^https://github.com/acme/(api/' is not a regular expression"
        in problems
    )
    assert "$.trust.default.keyless: a keyless rule needs trust.trustedRoot" in problems, problems
    policy = (
        "trust:\n  trustedRoot: trusted_root.json\n"
        "  default: {keyless: [{issuer: 'https://accounts.google.com', identity: '^ops@acme\\.example$'}]}\n"
    )
    problems = "\n".join(
        _trust_problems(tmp_path / "two", policy, {"trusted_root.json": b'{"mediaType": 1}'})
    )
    assert "$.trust.trustedRoot: trusted_root.json: not a Sigstore trusted root" in problems, problems
    problems = "\n".join(
        _trust_problems(tmp_path / "three", policy.replace("trusted_root.json", "../root.json"))
    )
    assert "$.trust.trustedRoot: ../root.json is outside the release directory" in problems, problems
    problems = "\n".join(_trust_problems(tmp_path / "four", policy.replace("https://accounts", "accounts")))
    assert "$.trust.default.keyless[0].issuer: 'accounts.google.com' is not valid here" in problems, problems


def test_a_keyless_policy_with_the_trusted_root_resolves_per_image(tmp_path: Path) -> None:
    root = Path(__file__).parent / "data" / "trusted_root.json"
    policy = (
        "trust:\n  trustedRoot: trusted_root.json\n"
        "  default: {keyless: {issuer: 'https://accounts.google.com', identity: '^ops@acme\\.example$'}}\n"
        "  images:\n    b: {keys: [k.pub], keyless: {issuer: 'https://x.example', identity: 'y'}}\n"
    )
    assert (
        _trust_problems(tmp_path, policy, {"trusted_root.json": root.read_bytes(), "k.pub": _public_pem()})
        == []
    )
    release, _ = load_release(tmp_path / "r")
    a, b = release.trust_rule("a"), release.trust_rule("b")
    assert a is not None and [(k.issuer, k.identity) for k in a.keyless] == [
        ("https://accounts.google.com", "^ops@acme\\.example$")
    ]
    assert b is not None and b.keys == ("k.pub",) and len(b.keyless) == 1
    assert release.trusted_root == "trusted_root.json"


def test_a_value_ending_in_a_newline_matches_no_pattern(tmp_path: Path) -> None:
    """JSON Schema's `$` is the end of the text (Python's also matches before a final newline): a
    lock digest, a key in an error's JSON path and what load.sh writes unquoted hold to the same."""
    from releaser.lock import load_lock_file
    from releaser.render.loadsh import _SAFE
    from releaser.yamlsource import json_path

    lock = (EXAMPLE / "release.lock.yaml").read_text()
    digest = next(w for w in lock.split() if w.startswith("sha256:"))
    (tmp_path / "release.lock.yaml").write_text(lock.replace(digest, f'"{digest}\\n"', 1))
    with pytest.raises(ValidationError) as info:
        load_lock_file(tmp_path / "release.lock.yaml")
    assert "is not a sha256 digest" in info.value.render()
    assert json_path(("services", "web\n", "ports")) == '$.services["web\\n"].ports'
    assert _SAFE.match("registry.local/acme/web:1.0") and not _SAFE.match("registry.local/acme/web:1.0\n")


def test_tcpao_sidecars_without_the_probe_image_are_warned_to_have_no_health(tmp_path: Path) -> None:
    d = tmp_path / "r"
    d.mkdir()
    text = (EXAMPLE / "release.yaml").read_text()
    (d / "release.yaml").write_text(text.replace("probe: {image: probe}\n", ""))
    _, warnings = load_release(d)
    (legs,) = [w for w in warnings if "have no health" in w.message]
    assert (legs.severity, legs.path) == ("warning", "$.services.collector.tcpao")
    assert "collector, speaker" in legs.message and "probe: {image: NAME}" in (legs.fix or "")
    # with it, each sidecar's leg is checked and nothing is said
    d2 = tmp_path / "r2"
    d2.mkdir()
    (d2 / "release.yaml").write_text(text)
    _, warnings = load_release(d2)
    assert not [w for w in warnings if "have no health" in w.message]
