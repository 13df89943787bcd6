"""The fuzz suite: release files, locks, bundles and registry answers mutated at random, through
the CLI as a user runs it. Every case must end within the hang guard with a documented exit code
other than 70 (an internal error) and no traceback; every release document that validates must
render, and a sample of those renders must pass `docker compose config`, `helm template` on Helm 3
and 4 and kubernetes-validate, and say the same of each service in both (tests/support/agreement.py).

Bounded and derandomized for CI (tests/support/fuzz.py CASES); `make fuzz` runs the long version
with fresh seeds. The counts per target and exit code are printed at the end of the run
(docs/testing.md records them).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from releaser.cli import app
from releaser.errors import ReleaserError
from releaser.lock import Lock, LockedImage, LockedPlatform, lock_document, repository_of, split_reference
from releaser.release import load_release
from tests.support.agreement import check_outputs

from .conftest import EXAMPLE, FIXTURES
from .support import fuzz
from .support.bundles import PASS, World, members, repack, resigned
from .support.hostile import CONFIG, CONFIG_DIGEST, OCI_INDEX, OCI_MANIFEST, HostileRegistry

runner = CliRunner()
RELEASES = [yaml.safe_load((d / "release.yaml").read_text()) for d in (EXAMPLE, FIXTURES / "kitchen-sink")]
EXAMPLE_TEXT = (EXAMPLE / "release.yaml").read_bytes()
EXAMPLE_LOCK = yaml.safe_load((EXAMPLE / "release.lock.yaml").read_text())


def run(target: str, allowed: set[int], *args: str, env: dict[str, str] | None = None) -> int:
    """One CLI run as a case: within the hang guard, an allowed exit code, no traceback; counted."""
    with fuzz.no_hang():
        result = runner.invoke(app, [*args, "--json"], env={"RELEASER_KEY_PASSPHRASE": PASS, **(env or {})})
    out = result.output
    assert "Traceback" not in out, out
    assert result.exit_code in allowed, (result.exit_code, out)
    if result.exit_code:
        assert json.loads(result.stdout)["ok"] is False, out  # the envelope, on every exit path
    fuzz.record(target, f"exit {result.exit_code}")
    fuzz.STARTED.add(target)
    return result.exit_code


def _synthetic_lock(directory: Path) -> bool:
    """A lock that pins every image of the release in `directory` (False when it does not load)."""
    try:
        release, _ = load_release(directory)
    except ReleaserError:
        return False
    lock = Lock(release=release.name, file="release.lock.yaml", images=tuple(_pin(i) for i in release.images))
    (directory / "release.lock.yaml").write_text(yaml.safe_dump(lock_document(lock), sort_keys=False))
    return True


def _pin(image: Any) -> LockedImage:
    """What `lock` would pin for `image`: its own digest when the reference has one, an index of
    its platforms when it asks for several, a manifest of its one platform otherwise."""
    _, _, _, digest = split_reference(image.ref)
    digest = digest or "sha256:" + hashlib.sha256(image.ref.encode()).hexdigest()
    platforms = tuple(
        LockedPlatform(
            platform=p,
            digest="sha256:" + hashlib.sha256(p.encode()).hexdigest(),
            media_type=OCI_MANIFEST,
            size=1,
        )
        for p in image.platforms
    )
    return LockedImage(
        name=image.name,
        source=image.ref,
        repository=repository_of(image.ref),
        digest=digest,
        media_type=OCI_INDEX if len(platforms) > 1 else OCI_MANIFEST,
        size=1,
        platforms=platforms if len(platforms) > 1 else (),
        platform=image.platforms[0] if len(platforms) == 1 else None,
    )


class Sample:
    """Rendered outputs checked by the real tools, up to fuzz.sample_size() per run: `docker compose
    config`, `helm template` on Helm 3 and Helm 4, every manifest strictly valid for the newest
    Kubernetes, and the two outputs saying the same of each service (tests/support/agreement.py)."""

    done = 0

    @classmethod
    def check(cls, out: Path, compose_cmd: list[str], compose_env: dict[str, str], helms: list[str]) -> None:
        if cls.done >= fuzz.sample_size():
            return
        cls.done += 1
        check_outputs(out, compose_cmd, compose_env, helms)
        fuzz.record(
            "rendered outputs checked: compose config, helm template 3 + 4, kubernetes-validate, agreement",
            "passed",
        )


@st.composite
def release_documents(draw: st.DrawFn) -> Any:
    return fuzz.mutate(draw, draw(st.sampled_from(RELEASES)))


@fuzz.cases("release.yaml (structure)")
@given(doc=release_documents())
def test_release_documents(
    doc: Any, compose_cmd: list[str], compose_env: dict[str, str], helm3: str, helm4: str
) -> None:
    target = "release.yaml (structure)"
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "release.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
        if run(target, {0, 1, 3}, "validate", str(d)) != 0 or not _synthetic_lock(d):
            return
        code = run(target, {0}, "render", str(d), "--out-dir", str(d / "out"))  # what validates renders
        assert code == 0
        Sample.check(d / "out", compose_cmd, compose_env, [helm3, helm4])


@fuzz.cases("release.yaml (bytes)")
@given(text=fuzz.byte_edits(EXAMPLE_TEXT))
def test_release_bytes(text: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "release.yaml").write_bytes(text)
        run("release.yaml (bytes)", {0, 1, 3}, "validate", str(d))


@st.composite
def lock_documents(draw: st.DrawFn) -> Any:
    return fuzz.mutate(draw, EXAMPLE_LOCK)


@fuzz.cases("release.lock.yaml (structure)")
@given(doc=lock_documents())
def test_lock_documents(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "release.yaml").write_bytes(EXAMPLE_TEXT)
        (d / "release.lock.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
        target = "release.lock.yaml (structure)"
        if run(target, {0, 1, 3}, "validate", str(d)) == 0:
            run(target, {0, 1, 3}, "render", str(d), "--out-dir", str(d / "out"))


# ------------------------------------------------------------------ bundles

Members = list[tuple[tarfile.TarInfo, bytes]]


@pytest.fixture(scope="module")
def base(world: World) -> Members:
    """The world's bundle without its large layers (cases stay fast; a verified head then names
    them as missing)."""
    return [(m, d) for m, d in members(world.bundle) if len(d) < 1 << 20]


def _clone(info: tarfile.TarInfo) -> tarfile.TarInfo:
    c = tarfile.TarInfo(info.name)
    c.size, c.mode, c.type, c.linkname, c.pax_headers = info.size, info.mode, info.type, info.linkname, {}
    return c


@st.composite
def member_edits(draw: st.DrawFn, ms: Members) -> tuple[Members, bool]:
    out = [(_clone(m), d) for m, d in ms]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(out) - 1))
        info, data = out[i]
        op = draw(
            st.sampled_from(
                ["rename", "type", "drop", "duplicate", "swap", "metadata", "pax", "data", "json"]
            )
        )
        if op == "rename":
            info.name = draw(
                st.one_of(
                    st.text(min_size=1, max_size=40),
                    st.sampled_from(["../x", "/x", "./a", "a//b", "blobs/sha256/zz"]),
                )
            )
        elif op == "type":
            info.type = draw(
                st.sampled_from(
                    [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE]
                )
            )
            info.linkname = "/etc/passwd"
        elif op == "drop" and len(out) > 1:
            del out[i]
        elif op == "duplicate":
            out.insert(draw(st.integers(0, len(out))), (_clone(info), data))
        elif op == "swap":
            j = draw(st.integers(0, len(out) - 1))
            out[i], out[j] = out[j], out[i]
        elif op == "metadata":
            try:
                meta = json.loads(out[0][1])
            except ValueError:  # an earlier edit already made it something else
                continue
            out[0] = (out[0][0], json.dumps(fuzz.mutate(draw, meta, rounds=2)).encode())
        elif op == "pax":
            info.pax_headers = {
                draw(st.sampled_from(["path", "size", "linkpath", "comment", "x"])): draw(
                    st.text(max_size=30)
                )
            }
        elif op == "data":
            out[i] = (info, draw(fuzz.byte_edits(data, limit=4096)))
        elif op == "json" and data[:1] == b"{":
            try:
                doc = json.loads(data)
            except ValueError:
                continue
            out[i] = (info, json.dumps(fuzz.mutate(draw, doc, rounds=2)).encode())
    return out, draw(st.booleans())


@fuzz.cases("bundle (members)")
@given(data=st.data())
def test_crafted_bundles(data: st.DataObject, base: Members, world: World) -> None:
    ms, resign = data.draw(member_edits(base))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "b.tar.zst"
        try:
            (resigned if resign else lambda _w, m, o: repack(m, o))(world, ms, out)
        except (ValueError, KeyError, TypeError, tarfile.TarError, UnicodeError):
            return  # the crafting itself failed (tarfile refuses the header, or the head is no longer JSON)
        target = "bundle (members)"
        run(target, {0, 1}, "airgap", "verify", str(out), "--key", str(world.pub))
        run(target, {0, 1}, "airgap", "inspect", str(out))


@pytest.fixture(scope="module")
def small_bundle(base: Members, world: World, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return resigned(world, base, tmp_path_factory.mktemp("fuzz") / "small.tar.zst").read_bytes()


@fuzz.cases("bundle (bytes)")
@given(data=st.data())
def test_bundle_bytes(data: st.DataObject, small_bundle: bytes, world: World) -> None:
    edited = data.draw(fuzz.byte_edits(small_bundle, limit=64 << 10))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "b.tar.zst"
        out.write_bytes(edited)
        run("bundle (bytes)", {0, 1}, "airgap", "verify", str(out), "--key", str(world.pub))
        run("bundle (bytes)", {0, 1}, "airgap", "inspect", str(out))


# ------------------------------------------------------------------ registry answers


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileRegistry]:
    server = HostileRegistry().start()
    yield server
    server.stop()


GOOD = {
    "schemaVersion": 2,
    "mediaType": OCI_MANIFEST,
    "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": CONFIG_DIGEST,
        "size": len(CONFIG),
    },
    "layers": [],
}
INDEX = {
    "schemaVersion": 2,
    "mediaType": OCI_INDEX,
    "manifests": [
        {
            "mediaType": OCI_MANIFEST,
            "digest": "sha256:" + "a" * 64,
            "size": 10,
            "platform": {"os": "linux", "architecture": "amd64"},
        }
    ],
}


@st.composite
def answers(draw: st.DrawFn) -> tuple[int, dict[str, str], bytes]:
    """A registry's answer to every GET: a status, a content type, and a good, mutated, random
    JSON or random binary body."""
    kind = draw(st.sampled_from([OCI_MANIFEST, OCI_INDEX, "application/json", "text/html", ""]))
    shape = draw(st.sampled_from(["good", "mutated", "mutated", "value", "bytes"]))
    if shape == "good":
        body = json.dumps(draw(st.sampled_from([GOOD, INDEX]))).encode()
    elif shape == "mutated":
        body = json.dumps(fuzz.mutate(draw, draw(st.sampled_from([GOOD, INDEX])))).encode()
    elif shape == "value":
        body = json.dumps(draw(fuzz.values)).encode()
    else:
        body = draw(st.binary(max_size=200))
    code = draw(st.sampled_from([200, 200, 200, 201, 204, 301, 404, 500]))
    return code, {"Content-Type": kind} if kind else {}, body


@fuzz.cases("registry answers")
@given(answer=answers())
def test_registry_answers(answer: tuple[int, dict[str, str], bytes], hostile: HostileRegistry) -> None:
    hostile.scripted["fuzz"] = answer
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        doc = {
            "apiVersion": "releaser.dev/v1alpha1",
            "kind": "Release",
            "metadata": {"name": "fuzz", "version": "1.0.0"},
            "images": {"app": {"ref": f"{hostile.host}/fuzz/app:v1"}},
            "services": {"app": {"image": "app", "ports": [{"name": "http", "port": 8080}]}},
        }
        (d / "release.yaml").write_text(yaml.safe_dump(doc))
        env = {"RELEASER_REGISTRY_TIMEOUT": "2"}
        run("registry answers", {0, 1, 6}, "lock", str(d), env=env)


@pytest.fixture(scope="module", autouse=True)
def _every_target_ran_its_cases() -> Iterator[None]:
    """A property over zero cases checks nothing: every target that started ran at least half its
    cases through the CLI (the rest may be cases the crafting itself could not build)."""
    yield
    for target in fuzz.STARTED:
        ran = sum(n for (t, _), n in fuzz.COUNTS.items() if t == target)
        assert ran >= fuzz.case_count(target) // 2, (target, ran)
