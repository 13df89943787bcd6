"""The files of a stack: written with their modes, the .env a user writes, the secret files the plan
asks for, a bundle's compose files (verified first), the URLs a stack serves."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..budgets import MAX_JSON_BYTES
from ..bundle.archive import iter_members
from ..bundle.verify import verify_bundle, verify_head
from ..errors import ReleaserError
from ..fs import atomic_write
from ..plan import Plan
from ..tcpao import CMAC_KEY_BYTES
from . import secrets as sec
from .stack import ComposeFile, ServiceState


def write_file(path: Path, content: bytes, mode: int = 0o644) -> None:
    atomic_write(path, content, mode=mode)


def secret_specs(plan: Plan, spec: ComposeFile) -> list[sec.SecretSpec]:
    lengths = {s.name: s.length for s in plan.generated_secrets}
    cmac = plan.aes_key_secrets  # 16 bytes: RFC 5926's AES-128-CMAC-96
    out = []
    for name, services in sorted(spec.secret_consumers.items()):
        consumers = tuple((svc, *spec.users.get(svc, (0, 0))) for svc in services)
        provided = name not in lengths
        out.append(
            sec.SecretSpec(
                name=name,
                length=lengths.get(name) or (CMAC_KEY_BYTES[0] if name in cmac else sec.TCPAO_KEY_LENGTH),
                consumers=consumers,
                provided=provided,
            )
        )
    return out


def dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose .env file (comments and blanks skipped)."""
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                out[key.strip()] = value.strip().strip("'\"")
    return out


def urls(plan: Plan, states: list[ServiceState]) -> list[tuple[str, str]]:
    out = []
    by_service = {s.service: s for s in states}
    for svc in plan.services:
        st = by_service.get(svc.name)
        for p in (p for p in svc.ports if p.compose_published):
            published = [
                x for x in (st.ports if st else ()) if x.endswith(f"->{p.port}/{p.protocol.lower()}")
            ]
            for x in published:
                host = x.split("->")[0]
                host = host.replace("0.0.0.0", "127.0.0.1")
                scheme = "http://" if "http" in p.name or p.port in (80, 8080) else ""
                out.append((f"{svc.name}.{p.name}", f"{scheme}{host}"))
    return out


def bundle_files(bundle: Path, key: Path, tmp: Path) -> tuple[dict[str, bytes], Path]:
    """The compose files and the release (release.yaml + lock) out of a bundle whose signed
    head verifies; each member's sha256 is checked against the signed checksums.txt."""
    meta = verify_head(bundle, key)
    if meta is None:
        verify_bundle(bundle, key)  # raises with every problem listed
        meta = verify_head(bundle, key)
    assert meta is not None
    name = meta.name
    compose_prefix = f"compose/{name}/"
    wanted: dict[str, bytes] = {}
    sums: dict[str, str] = {}
    for info, reader in iter_members(bundle):
        if reader is None:
            continue
        # small files, checked against the signed checksums below; one over the budget cannot match
        if info.name == "checksums.txt":
            for line in reader.read(MAX_JSON_BYTES + 1).decode("utf-8", "replace").splitlines():
                digest, _, member = line.partition("  ")
                sums[member] = digest
        elif info.name.startswith((compose_prefix, "release/")):
            wanted[info.name] = reader.read(MAX_JSON_BYTES + 1)
    problems = [m for m, data in wanted.items() if sums.get(m) != hashlib.sha256(data).hexdigest()]
    if problems or not any(m.startswith(compose_prefix) for m in wanted):
        raise ReleaserError(
            f"{bundle}: {', '.join(problems) or 'compose files'} do not match the signed checksums",
            fix=f"run `releaser airgap verify {bundle} --key {key}` for the full report",
        )
    release_dir = tmp / "release"
    release_dir.mkdir()
    for m, data in wanted.items():
        if m.startswith("release/"):  # release.yaml, the lock and the config files it names
            dest = (release_dir / m.split("/", 1)[1]).resolve()
            if dest.is_relative_to(release_dir.resolve()):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
    files = {m[len(compose_prefix) :]: data for m, data in wanted.items() if m.startswith(compose_prefix)}
    return files, release_dir
