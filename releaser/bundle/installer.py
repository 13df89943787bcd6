"""The offline installer a bundle carries (installer/): releaser's own wheel, the wheels of every
runtime dependency for the CPython versions and Linux machines chosen, a hash-pinned
requirements.txt and install.sh, which makes a venv and installs with `pip --no-index`.

The dependency wheels are the ones releaser/installer/wheels.json pins (URL and sha256, written
by scripts/lock-installer.py from the versions the test suite runs): nothing is resolved at
bundle time. Each is taken from `RELEASER_INSTALLER_WHEELS` (a directory of wheels, for a
publisher without internet), else the cache, else downloaded, and always checked against its
sha256. releaser's own wheel is built here from the installed package, byte for byte the same
for the same version and SOURCE_DATE_EPOCH. docs/airgap.md#the-offline-installer.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import requests

from .. import __version__
from ..budgets import DEFAULT_TIMEOUT
from ..errors import DigestMismatch, InputError, RegistryError, UsageError
from ..fs import atomic_file

MAX_WHEEL = 256 << 20  # no wheel of ours is near this; a download past it is not a wheel of ours
DIR = "installer"


@dataclass(frozen=True, kw_only=True)
class Wheel:
    name: str
    version: str
    file: str
    url: str
    sha256: str
    targets: tuple[str, ...]  # cp311-x86_64 ...


@dataclass(frozen=True, kw_only=True)
class InstallerFile:
    """One member of installer/: in memory (`content`) or a verified file on disk (`path`)."""

    name: str  # installer/...
    sha256: str
    size: int
    content: bytes | None = None
    path: Path | None = None


@dataclass(frozen=True, kw_only=True)
class Pinned:
    requires: tuple[str, ...]  # name==version of releaser's direct dependencies (requirements/runtime.in)
    targets: tuple[tuple[str, str, str], ...]  # (cp311-x86_64, 3.11, x86_64)
    wheels: tuple[Wheel, ...]


def pinned() -> Pinned:
    """releaser/installer/wheels.json, typed (a file of the package: a wrong shape is a bug)."""
    doc = json.loads(
        resources.files("releaser").joinpath("installer/wheels.json").read_text(encoding="utf-8")
    )
    return Pinned(
        requires=tuple(str(r) for r in doc["requires"]),
        targets=tuple((str(t["target"]), str(t["python"]), str(t["machine"])) for t in doc["targets"]),
        wheels=tuple(
            Wheel(
                name=str(w["name"]),
                version=str(w["version"]),
                file=str(w["file"]),
                url=str(w["url"]),
                sha256=str(w["sha256"]),
                targets=tuple(str(t) for t in w["targets"]),
            )
            for w in doc["wheels"]
        ),
    )


def choose(pythons: tuple[str, ...] = (), machines: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The targets for these CPython versions and machines (empty: all of them); a version or
    machine no pinned wheel covers is a UsageError naming the ones that are."""
    known = pinned().targets
    all_pythons = sorted({p for _, p, _ in known})
    all_machines = sorted({m for _, _, m in known})
    for value, valid, option in ((pythons, all_pythons, "python"), (machines, all_machines, "machine")):
        for v in value:
            if v not in valid:
                raise UsageError(
                    f"--installer-{option} {v}: the installer has wheels for {', '.join(valid)}",
                    fix=f"choose among {', '.join(valid)}, or leave --installer-{option} out for all of them",
                )
    return tuple(t for t, p, m in known if (not pythons or p in pythons) and (not machines or m in machines))


def wheels(chosen: tuple[str, ...]) -> list[Wheel]:
    """The pinned wheels any of the `chosen` targets needs."""
    return [w for w in pinned().wheels if set(w.targets) & set(chosen)]


def _sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def fetch(wheel: Wheel, store: Path, session: requests.Session) -> Path:
    """The wheel as a verified file: from $RELEASER_INSTALLER_WHEELS, the store, or its URL."""
    local = os.environ.get("RELEASER_INSTALLER_WHEELS")
    for candidate in ([Path(local) / wheel.file] if local else []) + [store / wheel.file]:
        if candidate.is_file() and _sha256_file(candidate)[0] == wheel.sha256:
            return candidate
    target = store / wheel.file
    try:
        with session.get(wheel.url, stream=True, timeout=DEFAULT_TIMEOUT) as resp:
            resp.raise_for_status()
            with atomic_file(target, durable=False) as out:  # re-hashed whenever it is used
                h, size = hashlib.sha256(), 0
                for chunk in resp.iter_content(1 << 20):
                    size += len(chunk)
                    if size > MAX_WHEEL:
                        raise DigestMismatch(
                            f"{wheel.url}: more than {MAX_WHEEL >> 20} MiB, not the pinned wheel",
                            fix="check the proxy or mirror in between",
                        )
                    h.update(chunk)
                    out.write(chunk)
                if h.hexdigest() != wheel.sha256:
                    raise DigestMismatch(
                        f"{wheel.url}: sha256 {h.hexdigest()}, pinned {wheel.sha256} (releaser/installer/wheels.json)",
                        fix="check the proxy or mirror in between; the pinned wheel is the one the tests ran",
                    )
    except requests.RequestException as exc:
        raise RegistryError(
            f"cannot download {wheel.file} for the offline installer from {wheel.url} ({exc})",
            fix="connect to PyPI, or put the wheels in a directory and set RELEASER_INSTALLER_WHEELS to it "
            "(scripts/lock-installer.py lists them), or bundle with --no-installer",
        ) from exc
    except OSError as exc:  # after RequestException (an OSError too): the store refused the write
        raise InputError(
            f"{target}: {exc.strerror or exc}",
            fix="free space in the cache ($RELEASER_CACHE, else ~/.cache/releaser), or bundle with --no-installer",
        ) from exc
    return target


def own_wheel(mtime: int) -> bytes:
    """releaser's wheel, built from the running package: its files (no bytecode) and the
    dist-info pip needs (METADATA with the pinned Requires-Dist, entry_points.txt, WHEEL, RECORD).
    Nothing is read from how releaser was installed (a wheel, an editable checkout)."""
    root = Path(str(resources.files("releaser")))
    tag = f"releaser-{__version__}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files[f"releaser/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    files[f"{tag}/METADATA"] = "".join(
        [
            "Metadata-Version: 2.1\nName: releaser\n",
            f"Version: {__version__}\n",
            "Summary: One release.yaml -> a Compose quickstart, a Helm chart and a signed airgap bundle\n",
            "License: Apache-2.0\nRequires-Python: >=3.11\n",
            *(f"Requires-Dist: {r}\n" for r in pinned().requires),
        ]
    ).encode()
    files[f"{tag}/entry_points.txt"] = b"[console_scripts]\nreleaser = releaser.cli:main\n"
    files[f"{tag}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: releaser\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()
    )
    files[f"{tag}/RECORD"] = (record + f"{tag}/RECORD,,\n").encode()
    date = _zip_date(mtime)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=date)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _zip_date(mtime: int) -> tuple[int, int, int, int, int, int]:
    import time

    t = time.gmtime(max(mtime, 315532800))  # zip cannot say anything before 1980
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def requirements(own: bytes, chosen: list[Wheel]) -> bytes:
    """requirements.txt for `pip install --require-hashes`: every package pinned, with the hash of
    each of its wheels in the bundle (pip picks the one for the machine and Python it runs on)."""
    lines = [f"releaser=={__version__} --hash=sha256:{hashlib.sha256(own).hexdigest()}"]
    by_name: dict[tuple[str, str], list[str]] = {}
    for w in chosen:
        by_name.setdefault((w.name, w.version), []).append(w.sha256)
    for (name, version), hashes in sorted(by_name.items()):
        lines.append(f"{name}=={version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(hashes)))
    return ("\n".join(lines) + "\n").encode()


def install_sh(chosen: tuple[str, ...]) -> bytes:
    text = resources.files("releaser").joinpath("render/airgap/install.sh").read_text(encoding="utf-8")
    pythons = sorted({t.split("-")[0] for t in chosen}, key=lambda p: int(p[3:]), reverse=True)
    versions = " ".join(f"{p[2]}.{p[3:]}" for p in pythons)
    machines = " ".join(sorted({t.split("-", 1)[1] for t in chosen}))
    return (
        text.replace("@VERSION@", __version__)
        .replace("@PYTHONS@", versions)
        .replace("@MACHINES@", machines)
        .encode()
    )


def installer_files(
    store: Path, *, mtime: int, pythons: tuple[str, ...] = (), machines: tuple[str, ...] = ()
) -> list[InstallerFile]:
    """Every member of installer/, wheels verified on disk, in archive order."""
    chosen = choose(pythons, machines)
    pinned = wheels(chosen)
    own = own_wheel(mtime)
    out = [
        _memory(f"{DIR}/install.sh", install_sh(chosen)),
        _memory(f"{DIR}/requirements.txt", requirements(own, pinned)),
        _memory(f"{DIR}/wheels/releaser-{__version__}-py3-none-any.whl", own),
    ]
    with requests.Session() as session:
        for w in pinned:
            path = fetch(w, store, session)
            out.append(
                InstallerFile(
                    name=f"{DIR}/wheels/{w.file}", sha256=w.sha256, size=path.stat().st_size, path=path
                )
            )
    return out


def _memory(name: str, content: bytes) -> InstallerFile:
    return InstallerFile(
        name=name, sha256=hashlib.sha256(content).hexdigest(), size=len(content), content=content
    )
