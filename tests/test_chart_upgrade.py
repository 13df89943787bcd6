"""The chart upgrades cleanly from the previous version (what can be checked without a cluster,
on Helm 3 and 4): `helm template` of v1 and v2 of examples/platform differs only where the
release changed (the version, the re-pinned image, the changed config file and the checksum that
rolls its pods); selectors, a StatefulSet's immutable fields, Services' and PVCs' specs are equal;
generated secrets are looked up and kept, PVCs and secrets survive an uninstall, a changed Job is a
new Job (its name carries its spec) and a hook Job is replaced (before-hook-creation), so `helm
upgrade` never meets an immutable field."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from releaser.pipeline import load_plan, render_files

from .conftest import PLATFORM
from .test_chart import template

NEW_DIGEST = "sha256:" + "ab" * 32


def chart_of(directory: Path, out: Path) -> Path:
    plan, _ = load_plan(directory)
    chart = out / "charts" / plan.name
    for rel, content in render_files(plan)[f"charts/{plan.name}"].items():
        (chart / rel).parent.mkdir(parents=True, exist_ok=True)
        (chart / rel).write_bytes(content)
    return chart


def v2(tmp_path: Path) -> Path:
    """examples/platform 2.4.0: the API image re-pinned and its config file changed."""
    rel = tmp_path / "v2"
    shutil.copytree(PLATFORM, rel)
    text = (rel / "release.yaml").read_text().replace("version: 2.3.0", "version: 2.4.0", 1)
    (rel / "release.yaml").write_text(text)
    lock = yaml.safe_load((rel / "release.lock.yaml").read_text())
    lock["images"]["api"]["digest"] = NEW_DIGEST
    lock["images"]["api"].pop("platforms", None)
    (rel / "release.lock.yaml").write_text(yaml.safe_dump(lock, sort_keys=False))
    (rel / "config/api.yaml").write_text((rel / "config/api.yaml").read_text() + "# 2.4.0\n")
    return rel


def paths(a: Any, b: Any, at: str = "") -> list[str]:
    """JSON paths where `a` and `b` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b)) for p in paths(a.get(k), b.get(k), f"{at}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in paths(x, y, f"{at}[{i}]")]
    return [] if a == b else [at]


EXPECTED = (  # where v1 and v2 may differ, and why
    ".metadata.labels.helm.sh/chart",  # the chart version
    ".metadata.labels.app.kubernetes.io/version",
    ".spec.template.metadata.labels.app.kubernetes.io/version",
    ".spec.template.metadata.labels.helm.sh/chart",
    ".spec.template.metadata.annotations.checksum/config",  # the API's config file: its pods roll
    ".data.api.yaml",  # the ConfigMap holding it
    ".spec.template.spec.containers[0].image",  # the re-pinned API image (api and its migrate job)
    ".spec.template.spec.initContainers[0].image",
    ".metadata.name",  # a changed Job is a new Job: migrate-<hash of its spec and image>
    ".spec.template.spec.initContainers[0].args[1]",  # the API waits for that Job
    ".rules[0].resourceNames[0]",  # and may read that one
)


def by_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each object by kind and name; a Job by kind and service (its name carries a hash)."""
    return {
        (
            d["kind"],
            d["metadata"]["labels"]["app.kubernetes.io/component"]
            if d["kind"] == "Job"
            else d["metadata"]["name"],
        ): d
        for d in docs
    }


@pytest.mark.helm
def test_v1_and_v2_differ_only_where_the_release_changed(helm: str, tmp_path: Path) -> None:
    old = by_name(template(helm, chart_of(PLATFORM, tmp_path / "a")))
    new = by_name(template(helm, chart_of(v2(tmp_path), tmp_path / "b")))
    assert set(old) == set(new)
    changed: dict[tuple[str, str], list[str]] = {}
    for key in old:
        diff = paths(old[key], new[key])
        if key[0] == "Secret":  # generated: random at each render without a cluster (lookup finds none);
            diff = [p for p in diff if not p.startswith(".data.")]  # a real upgrade keeps it (below)
        unexpected = [p for p in diff if not p.startswith(EXPECTED)]
        assert not unexpected, (key, unexpected)
        if [p for p in diff if "helm.sh/chart" not in p and "version" not in p]:
            changed[key] = diff
    # what really changed: the API's Deployment (image, config checksum, the Job it waits for), its
    # migrate Job (image, so a new name), the Role naming it, the ConfigMap (the file); nothing else
    assert set(changed) == {
        ("Deployment", "api"),
        ("Job", "migrate"),
        ("Role", "api-jobs"),
        ("ConfigMap", "api-config"),
    }, changed
    assert old["Job", "migrate"]["metadata"]["name"] != new["Job", "migrate"]["metadata"]["name"]
    assert any(p.endswith("checksum/config") for p in changed["Deployment", "api"])
    images = [c["image"] for c in new["Deployment", "api"]["spec"]["template"]["spec"]["containers"]]
    assert any(i.endswith(NEW_DIGEST) for i in images)


@pytest.mark.helm
def test_nothing_helm_upgrade_cannot_change_in_place_changes(helm: str, tmp_path: Path) -> None:
    """Immutable fields are equal between versions, so `helm upgrade` patches instead of failing:
    workload selectors, a StatefulSet's serviceName, volumeClaimTemplates and podManagementPolicy;
    Services (clusterIP None for the headless one, selector, ports) and PVCs."""
    old = template(helm, chart_of(PLATFORM, tmp_path / "a"))
    new = template(helm, chart_of(v2(tmp_path), tmp_path / "b"))

    def immutable(docs: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
        out: dict[tuple[str, str], Any] = {}
        for d in docs:
            key, spec = (d["kind"], d["metadata"]["name"]), d.get("spec", {})
            if d["kind"] in ("Deployment", "DaemonSet"):
                out[key] = spec["selector"]
            elif d["kind"] == "StatefulSet":
                out[key] = (
                    spec["selector"],
                    spec["serviceName"],
                    spec.get("podManagementPolicy"),
                    [(c["metadata"], c["spec"]) for c in spec.get("volumeClaimTemplates", [])],
                )
            elif d["kind"] in ("Service", "PersistentVolumeClaim"):
                out[key] = spec
        return out

    before, after = immutable(old), immutable(new)
    assert before == after
    assert ("StatefulSet", "store") in before and ("Service", "store-headless") in before
    assert before["Service", "store-headless"]["clusterIP"] == "None"
    for selector in [v for k, v in before.items() if k[0] == "Deployment"]:
        assert not {"app.kubernetes.io/version", "helm.sh/chart"} & set(selector["matchLabels"])
    # a Job's template is immutable: a Job of the same name has the same template (the name carries
    # it), a hook Job is replaced, never patched
    jobs = [d for d in (*old, *new) if d["kind"] == "Job"]
    assert jobs
    for a in jobs:
        for b in jobs:
            if a["metadata"]["name"] == b["metadata"]["name"]:
                assert a["spec"]["template"]["spec"] == b["spec"]["template"]["spec"]
        hook = a["metadata"].get("annotations", {})
        if hook:
            assert "before-hook-creation" in hook["helm.sh/hook-delete-policy"]


def test_generated_secrets_and_volumes_are_kept_across_upgrades_and_uninstalls() -> None:
    templates = Path(__file__).parent.parent / "releaser/render/helm_chart/templates"
    secrets = (templates / "secrets.yaml").read_text()
    assert 'lookup "v1" "Secret"' in secrets and "helm.sh/resource-policy: keep" in secrets
    assert "helm.sh/resource-policy: keep" in (templates / "pvcs.yaml").read_text()
