"""Property tests: no release document, however broken, produces a traceback.

Random mutations of real documents must end in a Release or a ValidationError;
every Release that validates must plan and render without an exception.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from releaser import model as m
from releaser.errors import ReleaserError
from releaser.lock import Lock, LockedImage, repository_of
from releaser.plan import build_plan
from releaser.release import load_release
from releaser.render.compose import render_compose
from releaser.render.helm import render_helm
from releaser.yamlsource import parse_source

from .conftest import EXAMPLE, FIXTURES
from .support import fuzz

BASES = [yaml.safe_load((d / "release.yaml").read_text()) for d in (EXAMPLE, FIXTURES / "kitchen-sink")]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "web",
            "bus",
            "collector",
            "0.0.0.0:1790",
            "10.77.0.10",
            "http",
            "initiator",
            "terminator",
            "sha256:",
            "TCP",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A real document with values set, deleted and added at random paths (only values of the
    kinds release.yaml uses: tests/support/fuzz.py mutates more wildly)."""
    return fuzz.mutate(draw, draw(st.sampled_from(BASES)), values=values, gentle=False)


def _lock_for(release: m.Release) -> Lock:
    return Lock(
        release=release.name,
        file="synthetic",
        images=tuple(
            LockedImage(
                name=i.name,
                source=i.ref,
                repository=repository_of(i.ref),
                digest="sha256:" + hashlib.sha256(i.ref.encode()).hexdigest(),
                media_type="application/vnd.oci.image.manifest.v1+json",
                size=1,
            )
            for i in release.images
        ),
    )


def _load(text: str, tmp: Path) -> m.Release | None:
    (tmp / "release.yaml").write_text(text, encoding="utf-8")
    try:
        release, _ = load_release(tmp)
    except ReleaserError:
        return None
    return release


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=mutated())
def test_mutated_documents_never_raise_anything_but_releaser_errors(doc: Any, tmp_path: Path) -> None:
    release = _load(yaml.safe_dump(doc, allow_unicode=True), tmp_path)
    if release is not None:
        plan = build_plan(release, _lock_for(release))
        _assert_outputs_agree(plan, render_compose(plan), render_helm(plan))


def _assert_outputs_agree(plan: Any, compose: dict[str, bytes], chart: dict[str, bytes]) -> None:
    """Invariants of any rendering: every service in both outputs, every image by the locked digest and
    nothing else, the secret values never written, the same sidecar config in both."""
    doc = yaml.safe_load(compose["compose.yaml"])
    services = doc["services"]
    # every Compose service releaser writes is one the plan names (releaser.json, the airgap override)
    assert set(services) == set(plan.compose_containers())
    assert {n: svc["image"] for n, svc in services.items()} == {
        n: plan.image(i).pinned for n, i in plan.compose_containers().items()
    }
    pinned = plan.pinned_references()
    assert {svc["image"] for svc in services.values()} <= pinned
    assert all("@sha256:" in svc["image"] for svc in services.values())
    values = yaml.safe_load(chart["values.yaml"])
    assert set(values["services"]) == {s.name for s in plan.services}
    chart_images = {f"{i['registry']}/{i['repository']}@{i['digest']}" for i in values["images"].values()}
    assert chart_images == pinned  # the chart pins exactly the lock's images
    for s in plan.services:
        assert values["services"][s.name]["image"] == s.image
        assert services[s.name].get("read_only") is True and services[s.name].get("cap_drop") == ["ALL"]
        if s.sidecar:
            toml = f"tcpao/{s.sidecar.compose_config}"
            assert toml in compose and s.sidecar.key_secret not in compose[toml].decode()
    assert b"BEGIN PRIVATE KEY" not in b"".join([*compose.values(), *chart.values()])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_but_releaser_errors(text: str, tmp_path: Path) -> None:
    _load(text, tmp_path)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("{}[]:-&*!|>'\"#%@` \n\tab1")), max_size=80))
def test_yaml_syntax_soup_is_reported_not_raised(text: str) -> None:
    parse_source(text, "release.yaml")
