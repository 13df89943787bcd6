"""One function per command. Each returns a result object and never prints.

The CLI (cli.py) parses arguments, calls these and prints the results, as text
or JSON. Errors are ReleaserError subclasses carrying their own fix.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EXIT_CHECK, EXIT_STALE, CheckError, LockError, Problem, UsageError, ValidationError
from .names import LOCK_FILE, RELEASE_FILE

if TYPE_CHECKING:
    from .plan import Plan

# Every pipeline stage is imported inside the function that runs it: a command pays only for the
# stages it uses (an airgap re-run needs neither jsonschema nor jinja2), which keeps start-up short.

# ------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True)
class InitResult:
    path: str
    next_steps: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "next": list(self.next_steps)}


@dataclass(frozen=True, kw_only=True)
class ValidateResult:
    release: str
    version: str
    services: tuple[str, ...]
    images: tuple[str, ...]
    lock: str  # current | missing
    warnings: tuple[Problem, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "version": self.version, "services": list(self.services),
                "images": list(self.images), "lock": self.lock, "warnings": [w.to_json() for w in self.warnings]}


@dataclass(frozen=True, kw_only=True)
class RenderResult:
    release: str
    compose_dir: str
    chart_dir: str
    written: tuple[str, ...]  # files whose content changed (or are new)
    unchanged: int
    removed: tuple[str, ...]
    images: tuple[str, ...]
    notes: tuple[str, ...]
    warnings: tuple[Problem, ...] = ()
    package: str | None = None
    package_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "compose": self.compose_dir, "chart": self.chart_dir,
                "written": list(self.written), "unchanged": self.unchanged, "removed": list(self.removed),
                "images": list(self.images), "notes": list(self.notes),
                "warnings": [w.to_json() for w in self.warnings], "package": self.package,
                "packageSha256": self.package_sha256}


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    release: str
    images: tuple[str, ...]  # the lock's pinned references, as every output names them
    sources: dict[str, int] = field(default_factory=dict)  # where images were collected -> how many refs

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "images": list(self.images), "sources": self.sources, "mismatches": []}


@dataclass(frozen=True, kw_only=True)
class LockResult:
    release: str
    path: str
    written: bool
    images: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "path": self.path, "written": self.written, "images": list(self.images)}


@dataclass(frozen=True, kw_only=True)
class RegistryOptions:
    """How to reach registries: TLS and credentials (docs/cli.md)."""

    insecure: bool = False  # skip TLS verification
    plain_http: bool = False  # speak HTTP (loopback registries fall back to it by themselves)
    ca_file: str | None = None
    creds: str | None = None  # USER:PASSWORD for every registry (else env / Docker config)
    chunk_mb: int = 256  # upload chunk: bigger blobs go in resumable PATCHes of this size

    def factory(self) -> Any:
        from .registry import Registry, credentials_for  # requests: only when a registry is needed

        cache: dict[str, Registry] = {}

        def registry_for(host: str) -> Registry:
            if host not in cache:
                cache[host] = Registry(host, credentials=credentials_for(host, explicit=self.creds),
                                       insecure=self.insecure, plain_http=True if self.plain_http else None,
                                       ca_file=self.ca_file, chunk_size=self.chunk_mb << 20)
            return cache[host]

        return registry_for


# ------------------------------------------------------------------- helpers


def _release_dir(directory: Path) -> Path:
    if directory.is_file() and directory.name == RELEASE_FILE:
        return directory.parent
    return directory


def load_plan(directory: Path) -> tuple[Plan, list[Problem]]:
    """release.yaml + lock -> Plan; raises ValidationError / LockError."""
    from .lock import read_lock
    from .plan import build_plan
    from .values import load_release

    directory = _release_dir(directory)
    release, warnings = load_release(directory)
    lock = read_lock(directory, release)
    return build_plan(release, lock), warnings


def render_files(plan: Plan) -> dict[str, dict[str, bytes]]:
    """Both outputs in memory: {'compose/<name>': files, 'charts/<name>': files}."""
    from .render.compose import render_compose
    from .render.helm import render_helm

    return {f"compose/{plan.name}": render_compose(plan), f"charts/{plan.name}": render_helm(plan)}


def _read_tree(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _write_tree_atomically(target: Path, files: dict[str, bytes]) -> None:
    """Write `files` to a temp dir beside `target`, then swap it in with renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the output is an ordinary directory
    try:
        for rel, content in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------ commands

_INIT_TEMPLATE = "render/init/release.yaml"


def init_release(directory: Path, *, force: bool = False) -> InitResult:
    """Write a commented release.yaml to start from."""
    target = directory / RELEASE_FILE
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", fix="pass --force to overwrite it, or pick another directory")
    text = resources.files("releaser").joinpath(_INIT_TEMPLATE).read_text(encoding="utf-8")
    name = directory.resolve().name.lower()
    name = "".join(c if c.isalnum() else "-" for c in name).strip("-") or "my-release"
    if not name[0].isalpha():
        name = f"r-{name}"
    directory.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{RELEASE_FILE}.tmp")
    tmp.write_text(text.replace("__NAME__", name[:40].rstrip("-")), encoding="utf-8")
    tmp.replace(target)
    return InitResult(path=str(target), next_steps=(
        f"edit {target}",
        f"releaser validate {directory}",
        f"releaser lock {directory}   # resolves every image to a digest",
        f"releaser render {directory}"))


def lock_release(directory: Path, *, platforms: tuple[str, ...] = (), refresh: bool = False, check: bool = False,
                 registries: RegistryOptions | None = None) -> LockResult:
    """Resolve every image to a digest and write release.lock.yaml (or, with check, compare only)."""
    from .lock import Lock, load_lock_file, resolve_lock, stale_reasons, write_lock
    from .values import load_release

    directory = _release_dir(directory)
    release, _ = load_release(directory)
    previous: Lock | None = None
    if (directory / LOCK_FILE).exists():
        try:  # a stale lock still records what was pinned; a malformed one is replaced
            previous = load_lock_file(directory / LOCK_FILE)
        except ValidationError:
            previous = None
    factory = (registries or RegistryOptions()).factory()
    lock, report = resolve_lock(release, previous, factory, platforms=platforms, refresh=refresh or check)
    images = tuple({"name": r.name, "action": r.action, "pinned": r.pinned, "previous": r.previous} for r in report)
    path = directory / LOCK_FILE
    if check:
        moved = [f"image {r.name!r}: the lock pins {r.previous}, the registry now serves {r.pinned}"
                 for r in report if r.action == "changed"]
        if previous is None:
            moved.insert(0, "there is no lock yet")
        else:
            moved += stale_reasons(release, previous)
        if moved:
            raise LockError(f"{path} is not current:\n" + "\n".join(f"  - {x}" for x in moved),
                            fix=f"run `releaser lock {directory} --refresh`, then `releaser render`")
        return LockResult(release=release.name, path=str(path), written=False, images=images)
    write_lock(directory, lock)
    return LockResult(release=release.name, path=str(path), written=True, images=images)


def validate_release(directory: Path) -> ValidateResult:
    """Schema + semantic checks of release.yaml, and the lock's freshness when one exists."""
    from .lock import read_lock
    from .values import load_release

    directory = _release_dir(directory)
    release, warnings = load_release(directory)
    lock_state = "missing"
    if (directory / LOCK_FILE).exists():
        try:
            read_lock(directory, release)
            lock_state = "current"
        except LockError as exc:
            raise ValidationError([*warnings, Problem(file=str(directory / LOCK_FILE), line=None, path="$",
                                                      message=exc.message, fix=exc.fix)]) from exc
    else:
        warnings = [*warnings, Problem(file=str(directory / LOCK_FILE), line=None, path="$",
                                       message="no lock yet: render needs one", severity="warning",
                                       fix=f"run `releaser lock {directory}`")]
    return ValidateResult(release=release.name, version=release.version,
                          services=tuple(s.name for s in release.services),
                          images=tuple(i.name for i in release.images), lock=lock_state, warnings=tuple(warnings))


def render_release(directory: Path, *, out: Path, package: Path | None = None) -> RenderResult:
    """Render compose/<name>/ and charts/<name>/ under `out`, each swapped in atomically;
    with `package`, also write the chart as a deterministic <name>-<version>.tgz there."""
    import hashlib

    from .render.helm import package_chart, render_helm

    plan, warnings = load_plan(directory)
    written: list[str] = []
    removed: list[str] = []
    unchanged = 0
    for sub, files in render_files(plan).items():
        target = out / sub
        before = _read_tree(target)
        for rel, content in files.items():
            if before.get(rel) == content:
                unchanged += 1
            else:
                written.append(f"{sub}/{rel}")
        removed += [f"{sub}/{rel}" for rel in sorted(set(before) - set(files))]
        if before != files:
            _write_tree_atomically(target, files)
    pkg_path = pkg_sha = None
    if package is not None:
        tgz = package_chart(plan, render_helm(plan), mtime=source_date_epoch())
        package.mkdir(parents=True, exist_ok=True)
        pkg = package / f"{plan.name}-{plan.version}.tgz"
        _atomic_write(pkg, tgz)
        pkg_path, pkg_sha = str(pkg), hashlib.sha256(tgz).hexdigest()
    return RenderResult(release=plan.name, compose_dir=str(out / "compose" / plan.name),
                        chart_dir=str(out / "charts" / plan.name), written=tuple(written), unchanged=unchanged,
                        removed=tuple(removed), images=tuple(sorted(plan.pinned_references())), notes=plan.notes,
                        warnings=tuple(warnings), package=pkg_path, package_sha256=pkg_sha)


def collect_compose_images(compose_text: bytes) -> list[tuple[str, str]]:
    """(service, image) for every service of a compose file."""
    import yaml

    doc = yaml.safe_load(compose_text) or {}
    return [(name, str(svc.get("image", ""))) for name, svc in sorted((doc.get("services") or {}).items())]


def collect_manifest_images(manifests: str) -> list[tuple[str, str]]:
    """('Kind/name container', image) for every container and init container in rendered manifests."""
    import yaml

    out = []
    for doc in yaml.safe_load_all(manifests):
        if not isinstance(doc, dict):
            continue
        spec = doc.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template", {}).get("spec") or (spec if doc.get("kind") == "Pod" else {})
        for key in ("initContainers", "containers"):
            for c in pod.get(key) or []:
                out.append((f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')} {c.get('name')}",
                            str(c.get("image", ""))))
    return out


def bundle_images(path: Path) -> list[tuple[str, str]]:
    """(where, repository@digest) for every image in a bundle's index.json (read from the head of
    the archive; the chart artifact is not an image)."""
    import json as _json

    from .bundle.archive import iter_members
    from .bundle.format import IMAGE_NAME, REF_NAME, SUBJECT
    from .lock import split_reference

    for member, reader in iter_members(path):
        if member.name == "index.json" and reader is not None:
            index = _json.loads(reader.read())
            out = []
            for entry in index.get("manifests", []):
                ann = entry.get("annotations", {})
                if ann.get(IMAGE_NAME) == "chart" or SUBJECT in ann:
                    continue  # the chart, and signatures/SBOMs attached to an image: not images that run
                registry, repo, _, _ = split_reference(ann.get(REF_NAME, ""))
                out.append((f"index.json {ann.get(IMAGE_NAME, '?')}", f"{registry}/{repo}@{entry['digest']}"))
            return out
        if member.name.startswith("blobs/"):
            break
    return []


def check_release(directory: Path, *, out: Path, helm: str | None = None, bundle: Path | None = None) -> CheckResult:
    """Prove compose, chart, bundle and lock name the same digests, and the committed outputs are current."""
    from .tools import find_helm, helm_template

    plan, _ = load_plan(directory)
    helm_bin = find_helm(helm)
    expected = plan.pinned_references()
    fresh = render_files(plan)
    mismatches: list[str] = []
    digest_problem = False
    sources: dict[str, int] = {}

    def compare(label: str, refs: list[tuple[str, str]]) -> None:
        nonlocal digest_problem
        sources[label] = len(refs)
        seen = set()
        for where, ref in refs:
            seen.add(ref)
            if "@sha256:" not in ref:
                digest_problem = True
                mismatches.append(f"{label}: {where} uses {ref!r}, which is not pinned by digest")
            elif ref not in expected:
                digest_problem = True
                mismatches.append(f"{label}: {where} uses {ref}, which the lock does not pin")
        for ref in sorted(expected - seen):
            digest_problem = True
            mismatches.append(f"{label}: never uses {ref} from the lock")

    def chart_images(files: dict[str, bytes], label: str) -> None:
        with tempfile.TemporaryDirectory(prefix="releaser-check-") as tmp:
            chart = Path(tmp) / plan.name
            for rel, content in files.items():
                (chart / rel).parent.mkdir(parents=True, exist_ok=True)
                (chart / rel).write_bytes(content)
            compare(label, collect_manifest_images(helm_template(chart, helm=helm_bin)))

    compose_key, chart_key = f"compose/{plan.name}", f"charts/{plan.name}"
    compare("compose (rendered)", collect_compose_images(fresh[compose_key]["compose.yaml"]))
    chart_images(fresh[chart_key], "chart (rendered)")
    for key in (compose_key, chart_key):
        committed = _read_tree(out / key)
        if not committed:
            mismatches.append(f"{out / key}: not rendered yet")
            continue
        for rel in sorted(set(fresh[key]) | set(committed)):
            if rel not in committed:
                mismatches.append(f"{out / key / rel}: missing (the release renders it)")
            elif rel not in fresh[key]:
                mismatches.append(f"{out / key / rel}: not part of the rendered output")
            elif committed[rel] != fresh[key][rel]:
                mismatches.append(f"{out / key / rel}: differs from what release.yaml and the lock render")
        if key == compose_key and "compose.yaml" in committed:
            compare("compose (committed)", collect_compose_images(committed["compose.yaml"]))
        if key == chart_key and "Chart.yaml" in committed:
            chart_images(committed, "chart (committed)")
    default_bundle = out / "bundles" / f"{plan.name}-{plan.version}.tar.zst"
    bundle = bundle or (default_bundle if default_bundle.exists() else None)
    if bundle is not None:
        if not bundle.exists():
            mismatches.append(f"{bundle}: no such bundle")
        else:
            compare(f"bundle {bundle.name}", bundle_images(bundle))
    if mismatches:
        raise CheckError(mismatches, exit_code=EXIT_CHECK if digest_problem else EXIT_STALE,
                         fix=f"run `releaser render {directory}` and commit the result; never edit digests by hand")
    return CheckResult(release=plan.name, images=tuple(sorted(expected)), sources=sources)


# ------------------------------------------------------------------ bundles


@dataclass(frozen=True, kw_only=True)
class KeygenResult:
    private_key: str
    public_key: str
    fingerprint: str

    def to_json(self) -> dict[str, Any]:
        return {"privateKey": self.private_key, "publicKey": self.public_key, "fingerprint": self.fingerprint}


def keygen(out: Path, *, passphrase_file: Path | None = None, force: bool = False) -> KeygenResult:
    """An ECDSA P-256 key pair: encrypted PKCS#8 private key, SubjectPublicKeyInfo PEM public key."""
    from .bundle.sign import generate_keypair, passphrase

    kp = generate_keypair(out, passphrase(passphrase_file), force=force)
    return KeygenResult(private_key=kp.private_key, public_key=kp.public_key, fingerprint=kp.fingerprint)


@dataclass(frozen=True, kw_only=True)
class BundleResult:
    path: str
    sha256: str
    size: int
    images: tuple[str, ...]
    blobs: int
    bytes_in: int
    fetched: int
    signer: str
    attachments: tuple[str, ...] = ()  # repository:sha256-<hex>.sig ... carried with the images

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "images": list(self.images),
                "blobs": self.blobs, "bytesIn": self.bytes_in, "fetched": self.fetched, "signer": self.signer,
                "attachments": list(self.attachments)}


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
                         fix="unset it, or set it to e.g. $(git log -1 --format=%ct)")
    return int(value)


def bundle_release(directory: Path, *, key: Path, out: Path | None = None, passphrase_file: Path | None = None,
                   level: int = 3, threads: int = -1, cache_dir: Path | None = None, use_cache: bool = True,
                   attachments: bool = True, registries: RegistryOptions | None = None,
                   progress: Any = None) -> BundleResult:
    """Write bundles/<name>-<version>.tar.zst: images, chart, compose files, lock; signed."""
    import yaml

    from .bundle.cache import BlobCache, default_cache_dir
    from .bundle.sign import fingerprint, load_private_key, passphrase, sign
    from .bundle.write import assemble, checksums_and_metadata, write_archive
    from .lock import dump_lock, read_lock, split_reference
    from .plan import build_plan
    from .values import load_release

    if not 1 <= level <= 19:
        raise UsageError(f"--zstd-level {level} is out of range", fix="use 1 (fastest) to 19 (smallest); default 3")
    directory = _release_dir(directory)
    release, _ = load_release(directory)
    lock = read_lock(directory, release)
    plan = build_plan(release, lock)
    private = load_private_key(key, passphrase(passphrase_file))
    from cryptography.hazmat.primitives import serialization

    pub_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    mtime = source_date_epoch()
    factory = (registries or RegistryOptions()).factory()
    bp = assemble(plan, lock, directory, factory, mtime=mtime, attachments=attachments)
    lock_doc = yaml.safe_load(dump_lock(lock))
    entries, checksums, metadata = checksums_and_metadata(plan, lock_doc, bp, mtime=mtime,
                                                          signer_fingerprint=fingerprint(pub_pem))
    signature = sign(private, metadata)
    repo_hosts = {}
    for img in lock.images:
        registry_host, path, _, _ = split_reference(img.repository)
        repo_hosts[path] = registry_host
    target = out or Path("bundles") / f"{plan.name}-{plan.version}.tar.zst"
    cache = BlobCache(cache_dir or default_cache_dir()) if use_cache else None
    stats = write_archive(target, bp, entries, checksums=checksums, metadata=metadata, signature=signature,
                          registry_for=factory, repo_hosts=repo_hosts, cache=cache, level=level, threads=threads,
                          mtime=mtime, progress=progress)
    return BundleResult(path=str(target), sha256=stats.sha256, size=stats.size,
                        images=tuple(i["source"] for i in bp.images), blobs=stats.blobs, bytes_in=stats.bytes_in,
                        fetched=stats.fetched, signer=fingerprint(pub_pem),
                        attachments=tuple(f"{i['repository']}:{a['tag']}" for i in bp.images
                                          for a in i.get("attachments", [])))


@dataclass(frozen=True, kw_only=True)
class VerifyResult:
    path: str
    release: str
    version: str
    files: int
    bytes: int
    images: tuple[str, ...]
    signer: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "release": self.release, "version": self.version, "files": self.files,
                "bytes": self.bytes, "images": list(self.images), "signer": self.signer, "problems": []}


def verify_bundle_file(path: Path, *, key: Path) -> VerifyResult:
    """Verify signature, checksums, every file and every blob; raise listing every problem."""
    from .bundle.verify import verify_bundle

    v = verify_bundle(path, key)
    rel = v.metadata.get("release", {})
    return VerifyResult(path=str(path), release=rel.get("name", ""), version=rel.get("version", ""), files=v.files,
                        bytes=v.bytes, images=tuple(f"{i['repository']}@{i['digest']}" for i in v.metadata["images"]),
                        signer=v.signer)


@dataclass(frozen=True, kw_only=True)
class InspectedImage:
    name: str
    source: str
    reference: str  # repository@digest, as pinned
    media_type: str
    platforms: tuple[str, ...]
    attachments: tuple[str, ...] = ()  # tags: sha256-<hex>.sig ...

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "reference": self.reference,
                "mediaType": self.media_type, "platforms": list(self.platforms),
                "attachments": list(self.attachments)}


@dataclass(frozen=True, kw_only=True)
class InspectResult:
    path: str
    size: int  # of the bundle file
    release: str
    version: str
    tool: str
    format_version: int
    signer: str  # as recorded in releaser.json
    checked: bool  # signature + aggregate checksum verified with the given key
    files: int
    bytes: int  # of the listed files, uncompressed
    images: tuple[InspectedImage, ...]
    chart: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "release": self.release, "version": self.version,
                "tool": self.tool, "formatVersion": self.format_version, "signer": self.signer,
                "signatureChecked": self.checked, "files": self.files, "bytes": self.bytes,
                "images": [i.to_json() for i in self.images], "chart": self.chart}


def inspect_bundle_file(path: Path, *, key: Path | None = None) -> InspectResult:
    """What a bundle holds, from its signed metadata alone (the first three members): release,
    images with their pinned digests and platforms, chart, signer. With `key`, the signature and
    aggregate checksum are checked (not the files: that is verify_bundle_file)."""
    from .bundle.verify import inspect_head

    meta, checked = inspect_head(path, key)
    locked = (meta.get("lock") or {}).get("images") or {}
    images = []
    for i in meta["images"]:
        pin = locked.get(i.get("name"), {})
        platforms = tuple(pin.get("platforms") or ()) or ((pin["platform"],) if pin.get("platform") else ())
        images.append(InspectedImage(name=i.get("name", ""), source=i.get("source", ""),
                                     reference=f"{i.get('repository', '')}@{i.get('digest', '')}",
                                     media_type=i.get("mediaType", ""), platforms=platforms,
                                     attachments=tuple(a.get("tag", "") for a in i.get("attachments", []))))
    sums = meta.get("checksums") or {}
    chart = meta.get("chart") or {}
    return InspectResult(path=str(path), size=path.stat().st_size, release=meta["release"].get("name", ""),
                         version=meta["release"].get("version", ""), tool=meta.get("tool", ""),
                         format_version=meta.get("formatVersion", 0), signer=meta.get("signer", ""),
                         checked=checked, files=sums.get("files", 0), bytes=sums.get("bytes", 0),
                         images=tuple(images), chart={k: chart.get(k, "") for k in ("ref", "digest", "path")})


@dataclass(frozen=True, kw_only=True)
class AirgapResult:
    target: str
    release: str
    version: str
    images: tuple[str, ...]
    chart: str
    values_file: str
    compose_override: str
    helm_install: str
    stats: dict[str, Any]
    dry_run: bool = False
    plan: dict[str, Any] | None = None  # --dry-run: what the load would write (LoadPlan.to_json)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "release": self.release, "version": self.version, "images": list(self.images),
                "chart": self.chart, "valuesFile": self.values_file, "composeOverride": self.compose_override,
                "helmInstall": self.helm_install, "stats": self.stats, "dryRun": self.dry_run, "plan": self.plan}


def airgap_load(path: Path, *, to: str, key: Path, out: Path = Path("."), registries: RegistryOptions | None = None,
                concurrency: int = 8, state_dir: Path | None = None, progress: Any = None,
                dry_run: bool = False) -> AirgapResult:
    """Verify the bundle, then load it into the registry `to` (HOST[:PORT][/PREFIX]). With
    `dry_run`, verify it whole and ask the registry what the load would write; write nothing."""
    from .bundle.cache import default_cache_dir
    from .bundle.load import LoadStats, Target, already_loaded, plan_changes, push_bundle
    from .bundle.verify import verify_bundle, verify_head

    target = Target.parse(to)
    opts = registries or RegistryOptions()
    registry = opts.factory()(target.host)
    if dry_run:
        v = verify_bundle(path, key)  # every problem, as a load would find them
        plan = plan_changes(v, target, registry, concurrency)
        return _airgap_result(v.metadata, target, registry, out, LoadStats(verified="every file and blob"),
                              dry_run=True, plan=plan.to_json())
    # Fast path for a re-run: if the signed metadata verifies and the target already holds every
    # signed digest under its tag, nothing would be written, so the full pass is not needed.
    meta = verify_head(path, key)
    if meta is not None and already_loaded(meta, target, registry, concurrency):
        stats = LoadStats(verified="signature and metadata; every signed digest already in the target")
    else:
        v = verify_bundle(path, key)  # raises, listing every problem, before anything is written
        meta = v.metadata
        stats = push_bundle(path, v, target, registry, state_dir=state_dir or default_cache_dir() / "uploads",
                            concurrency=concurrency, progress=progress)
    return _airgap_result(meta, target, registry, out, stats)


def _airgap_result(meta: dict[str, Any], target: Any, registry: Any, out: Path, stats: Any, *,
                   dry_run: bool = False, plan: dict[str, Any] | None = None) -> AirgapResult:
    """Write the airgap values and compose override (not in a dry run) and say how to install."""
    from dataclasses import asdict

    from .bundle.load import airgap_values, compose_override
    from .lock import split_reference

    name, version = meta["release"]["name"], meta["release"]["version"]
    values_path = out / "values-airgap.yaml"
    override_path = out / "compose.airgap.yaml"
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(values_path, airgap_values(meta, target))
        _atomic_write(override_path, compose_override(meta, target))
    images = []
    for i in meta["images"]:
        _, p, _, _ = split_reference(i["repository"])
        images.append(f"{target.host}/{target.repo(p)}@{i['digest']}")
    chart_ref = f"oci://{target.host}/{target.repo('charts')}/{name}"
    plain = " --plain-http" if registry.base.startswith("http://") else ""
    helm = f"helm install {name} {chart_ref} --version {version} -f {values_path}{plain}"
    return AirgapResult(target=target.registry_value, release=name, version=version, images=tuple(images),
                        chart=f"{chart_ref}:{version}", values_file=str(values_path),
                        compose_override=str(override_path), helm_install=helm, stats=asdict(stats),
                        dry_run=dry_run, plan=plan)


def _atomic_write(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


# ------------------------------------------------------------------ doctor


@dataclass(frozen=True, kw_only=True)
class DoctorResult:
    checks: tuple[Any, ...]

    def to_json(self) -> dict[str, Any]:
        return {"checks": [c.to_json() for c in self.checks]}


def doctor(directory: Path | None = None, *, engine: str | None = None, skip: tuple[str, ...] = (),
           bind_address: str = "127.0.0.1") -> DoctorResult:
    """Host prerequisites of the Compose quickstart; raises PreflightError when any check fails."""
    from .errors import PreflightError
    from .quickstart.doctor import ENGINES, run_checks

    if engine is not None and engine not in ENGINES:
        raise UsageError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}", fix="pick one of them")
    ports: list[tuple[str, int, str, str | None]] = []
    registries: list[str] = []
    subnet: str | None = None
    own: frozenset[str] = frozenset()
    tcpao = False
    if directory is not None:
        try:  # with a current lock: exactly what the quickstart would check
            from .quickstart.doctor import detect_engine
            from .quickstart.lifecycle import DEFAULT_DIR, _own_bridges, host_ports, registries_to_pull

            plan, _ = load_plan(directory)
            ports = host_ports(plan, DEFAULT_DIR)
            tcpao = any(s.sidecar for s in plan.services)
            found, _ = detect_engine(engine)
            registries = registries_to_pull(plan, found) if found else []
            subnet = plan.subnet
            own = _own_bridges(found.kind if found else None, plan.name) if subnet else frozenset()
        except LockError:  # no lock yet: the release's own ports, no registry check
            from .values import load_release

            release, _ = load_release(_release_dir(directory))
            tcpao = any(s.tcpao for s in release.services)
            for s in release.services:
                for p in s.ports:
                    if s.host_network and not s.tcpao:
                        ports.append((f"{s.name}.{p.name} (host network)", p.port, p.protocol, "0.0.0.0"))
                    elif p.exposure == "public":
                        ports.append((f"{s.name}.{p.name}", p.host_port or p.port, p.protocol, None))
    checks = run_checks(ports=ports, tcpao=tcpao, engine=engine, skip=frozenset(skip), bind_address=bind_address,
                        disk_path=directory or Path("."), registries=registries, subnet=subnet,
                        own_interfaces=own)
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise PreflightError(failed, checks)
    return DoctorResult(checks=tuple(checks))


# ------------------------------------------------------------------ quickstart (releaser/quickstart/lifecycle.py)


def quickstart_up(source: Path, **kwargs: Any) -> Any:
    """Preflight, compose files, secrets, `compose up -d`, wait until every service is ready."""
    from .quickstart.lifecycle import up

    return up(source, **kwargs)


def quickstart_status(stack: Path) -> Any:
    from .quickstart.lifecycle import status

    return status(stack)


def quickstart_logs(stack: Path, service: str | None = None, **kwargs: Any) -> None:
    from .quickstart.lifecycle import logs

    logs(stack, service, **kwargs)


def quickstart_down(stack: Path) -> Any:
    from .quickstart.lifecycle import down

    return down(stack)


def quickstart_backup(stack: Path, *, out: Path, **kwargs: Any) -> Any:
    from .quickstart.lifecycle import backup

    return backup(stack, out=out, **kwargs)


def quickstart_restore(archive: Path, stack: Path, **kwargs: Any) -> Any:
    from .quickstart.lifecycle import restore

    return restore(archive, stack, **kwargs)


def quickstart_reset(stack: Path, *, yes: bool = False) -> Any:
    from .quickstart.lifecycle import reset

    return reset(stack, yes=yes)
