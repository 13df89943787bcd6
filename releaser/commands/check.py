"""`releaser check`: the lock, the compose files, the chart, the Quadlet units (and the bundle) name the same digests."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import budgets
from ..bundle.archive import iter_members
from ..bundle.verify import inspect_head
from ..errors import EXIT_CHECK, EXIT_STALE, CheckError, InputError, MetadataError
from ..format import bundle_path
from ..format.records import parse_index
from ..fs import read_tree
from ..lock import split_reference
from ..pipeline import load_plan, render_files
from ..render.helm import LINT_VALUES
from ..render.helm_podman import PODMAN_VALUES
from ..tools import find_helm, helm_template


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """What `check` compared: the lock, the rendered compose files and chart (and a bundle) agree."""

    release: str
    images: tuple[str, ...]  # the lock's pinned references, as every output names them
    sources: dict[str, int] = field(default_factory=dict)  # where images were collected -> how many refs

    def to_json(self) -> dict[str, object]:
        """The command's --json result (keys pinned by tests, listed in docs/cli.md#json)."""
        return {
            "release": self.release,
            "images": list(self.images),
            "sources": self.sources,
            "mismatches": [],
        }


def collect_compose_images(compose_text: bytes) -> list[tuple[str, str]]:
    """(service, image) for every service of a compose file."""
    doc = yaml.safe_load(compose_text) or {}
    return [(name, str(svc.get("image", ""))) for name, svc in sorted((doc.get("services") or {}).items())]


def collect_quadlet_images(files: dict[str, bytes]) -> list[tuple[str, str]]:
    """(unit, image) for every `Image=` of the Quadlet container units in `files`."""
    out = []
    for rel, content in sorted(files.items()):
        if rel.endswith(".container"):
            out += [
                (rel, line.split("=", 1)[1].strip())
                for line in content.decode(errors="replace").splitlines()
                if line.startswith("Image=")
            ]
    return out


def _pod_spec(doc: dict[str, object]) -> dict[str, object]:
    spec = doc.get("spec") or {}
    assert isinstance(spec, dict)
    template = (spec.get("template") or {}).get("spec")
    job = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    found = template or job or (spec if doc.get("kind") == "Pod" else {})
    return found if isinstance(found, dict) else {}


def collect_manifest_images(manifests: str) -> list[tuple[str, str]]:
    """('Kind/name container', image) for every container and init container in rendered manifests."""
    out = []
    for doc in yaml.safe_load_all(manifests):
        if not isinstance(doc, dict):
            continue
        pod = _pod_spec(doc)
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for key in ("initContainers", "containers"):
            containers = pod.get(key) or []
            assert isinstance(containers, list)
            out += [(f"{name} {c.get('name')}", str(c.get("image", ""))) for c in containers]
    return out


def bundle_images(path: Path) -> list[tuple[str, str]]:
    """(where, repository@digest) for every image in a bundle's index.json (read from the head of
    the archive; the chart artifact is not an image). The bundle is not verified here: index.json
    is read within budgets.loads and parsed as the format defines, else InputError."""
    for member, reader in iter_members(path):
        if member.name == "index.json" and reader is not None:
            try:
                index = parse_index(budgets.loads(reader.read(budgets.MAX_JSON_BYTES + 1)))
            except ValueError as exc:
                raise InputError(
                    f"{path}: index.json is not readable JSON ({exc})",
                    fix=f"run `releaser airgap verify {path} --key PUB` for the full report",
                ) from None
            except MetadataError as exc:
                raise InputError(
                    f"{path}: {exc.message}",
                    fix=f"run `releaser airgap verify {path} --key PUB` for the full report",
                ) from None
            out = []
            for entry in index:
                if entry.image_name == "chart" or entry.subject is not None:
                    continue  # the chart, and signatures/SBOMs attached to an image: not images that run
                registry, repo, _, _ = split_reference(entry.ref_name)
                out.append((f"index.json {entry.image_name or '?'}", f"{registry}/{repo}@{entry.digest}"))
            return out
        if member.name.startswith("blobs/"):
            break
    return []


def _same_release(bundle: Path, name: str, version: str) -> None:
    """A bundle of another release (or version) is the wrong file, not a set of digest mismatches."""
    meta, _ = inspect_head(bundle, None)
    if (meta.name, meta.version) != (name, version):
        raise InputError(
            f"{bundle} is the bundle of {meta.name} {meta.version}, not of {name} {version}",
            fix=f"pass the bundle of {name} {version} (bundles/{name}-{version}.tar.zst), or check that release",
        )


class _Comparison:
    """Every image reference each output names, compared with the lock's."""

    def __init__(self, expected: set[str]) -> None:
        self.expected = expected
        self.mismatches: list[str] = []
        self.digest_problem = False
        self.sources: dict[str, int] = {}

    def stale(self, message: str) -> None:
        self.mismatches.append(message)

    def compare(self, label: str, refs: list[tuple[str, str]], *, complete: bool = True) -> None:
        """`complete`: the output runs the whole release, so each locked image must appear in it (the
        podman preset may leave out the probe image, which only some of its pods need)."""
        self.sources[label] = len(refs)
        seen = set()
        for where, ref in refs:
            seen.add(ref)
            if "@sha256:" not in ref:
                self._digest(f"{label}: {where} uses {ref!r}, which is not pinned by digest")
            elif ref not in self.expected:
                self._digest(f"{label}: {where} uses {ref}, which the lock does not pin")
        for ref in sorted(self.expected - seen) if complete else ():
            self._digest(f"{label}: never uses {ref} from the lock")

    def _digest(self, message: str) -> None:
        self.digest_problem = True
        self.mismatches.append(message)


def _chart_images(
    name: str, files: dict[str, bytes], helm: str, *, podman: bool = False
) -> list[tuple[str, str]]:
    """The images of `helm template` of the chart; `podman`: as its values-podman.yaml renders it."""
    with tempfile.TemporaryDirectory(prefix="releaser-check-") as tmp:
        chart = Path(tmp) / name
        for rel, content in files.items():
            (chart / rel).parent.mkdir(parents=True, exist_ok=True)
            (chart / rel).write_bytes(content)
        # the chart's placeholder site values (TCP-AO nodes), which it refuses to render without
        site = [chart / LINT_VALUES] if LINT_VALUES in files else []
        if podman:
            site = [chart / PODMAN_VALUES]
        return collect_manifest_images(helm_template(chart, helm=helm, values=site))


def _committed(c: _Comparison, root: Path, fresh: dict[str, bytes]) -> dict[str, bytes]:
    """The committed tree under `root`, each file compared with the fresh rendering."""
    committed = read_tree(root)
    if not committed:
        c.stale(f"{root}: not rendered yet")
        return committed
    for rel in sorted(set(fresh) | set(committed)):
        if rel not in committed:
            c.stale(f"{root / rel}: missing (the release renders it)")
        elif rel not in fresh:
            c.stale(f"{root / rel}: not part of the rendered output")
        elif committed[rel] != fresh[rel]:
            c.stale(f"{root / rel}: differs from what release.yaml and the lock render")
    return committed


def check_release(
    directory: Path, *, out: Path, helm: str | None = None, bundle: Path | None = None
) -> CheckResult:
    """Prove compose, chart, bundle and lock name the same digests, and the committed outputs are current."""
    plan, _ = load_plan(directory)
    helm_bin = find_helm(helm)
    expected = plan.pinned_references()
    fresh = render_files(plan)
    c = _Comparison(set(expected))
    compose_key, chart_key = f"compose/{plan.name}", f"charts/{plan.name}"
    quadlet_key = f"quadlet/{plan.name}"
    c.compare("compose (rendered)", collect_compose_images(fresh[compose_key]["compose.yaml"]))
    c.compare("chart (rendered)", _chart_images(plan.name, fresh[chart_key], helm_bin))
    c.compare(
        "chart under podman kube play (rendered)",
        _chart_images(plan.name, fresh[chart_key], helm_bin, podman=True),
        complete=False,
    )
    c.compare("quadlet (rendered)", collect_quadlet_images(fresh[quadlet_key]))
    committed = _committed(c, out / compose_key, fresh[compose_key])
    if "compose.yaml" in committed:
        c.compare("compose (committed)", collect_compose_images(committed["compose.yaml"]))
    committed = _committed(c, out / chart_key, fresh[chart_key])
    if "Chart.yaml" in committed:
        c.compare("chart (committed)", _chart_images(plan.name, committed, helm_bin))
    committed = _committed(c, out / quadlet_key, fresh[quadlet_key])
    if committed:
        c.compare("quadlet (committed)", collect_quadlet_images(committed))
    default_bundle = out / bundle_path(plan.name, plan.version)
    bundle = bundle or (default_bundle if default_bundle.exists() else None)
    if bundle is not None:
        if not bundle.exists():
            c.stale(f"{bundle}: no such bundle")
        else:
            _same_release(bundle, plan.name, plan.version)
            c.compare(f"bundle {bundle.name}", bundle_images(bundle))
    if c.mismatches:
        raise CheckError(
            c.mismatches,
            exit_code=EXIT_CHECK if c.digest_problem else EXIT_STALE,
            fix=f"run `releaser render {directory}` and commit the result; never edit digests by hand",
        )
    return CheckResult(release=plan.name, images=tuple(sorted(expected)), sources=c.sources)
