"""The files a load writes beside the registry: values-airgap.yaml for the chart,
compose.airgap.yaml for Compose and registries-airgap.conf for podman (the Quadlet units), each
pointing at the target registry by the bundle's digests (written by `releaser airgap --to`, and
shown in load.sh with a placeholder host)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import MetadataError
from ..format.records import BundledImage
from ..target import Target
from ..yamlout import dump


def airgap_values(name: str, target: Target) -> bytes:
    """values-airgap.yaml for release `name`: the chart's registry override; digests stay those of
    values.yaml."""
    doc = {"global": {"imageRegistry": target.registry_value}}
    header = (
        f"# values-airgap.yaml for {name}: pull every image from {target.registry_value},\n"
        "# by the same digests the chart pins (written by `releaser airgap --to`).\n"
    )
    return (header + dump(doc)).encode()


def compose_override(compose: Mapping[str, str], images: Sequence[BundledImage], target: Target) -> bytes:
    """compose.airgap.yaml: every service's image from the private registry, same digest.
    `compose`: service -> image name, as releaser.json records it."""
    by_name = {i.name: i for i in images}
    services: dict[str, dict[str, str]] = {}
    for svc, image in sorted(compose.items()):
        pin = by_name.get(image)
        if pin is None:
            raise MetadataError(path=f"$.compose.{svc}", expected="the name of one of $.images", got=image)
        services[svc] = {"image": target.image(pin.path, pin.digest)}
    header = (
        "# compose.airgap.yaml: use with -f compose.yaml -f compose.airgap.yaml; images come from\n"
        f"# {target.registry_value} by the same digests (written by `releaser airgap --to`).\n"
    )
    return (header + dump({"services": services})).encode()


REGISTRIES_CONF = "registries-airgap.conf"


def registries_airgap(
    name: str, images: Sequence[BundledImage], target: Target, *, plain_http: bool
) -> bytes:
    """registries-airgap.conf, a containers-registries.conf(5) drop-in: podman pulls each of the
    release's repositories from the private registry instead (`location`), so the Quadlet units'
    references, digests included, stay as rendered. `plain_http`: the target speaks HTTP."""
    lines = [
        f"# registries-airgap.conf for {name}: podman pulls its images from {target.registry_value}, by",
        "# the same digests (written by `releaser airgap --to`). Install it as",
        f"# /etc/containers/registries.conf.d/50-{name}-airgap.conf (rootless: ~/.config/containers/registries.conf.d/).",
    ]
    seen: set[str] = set()
    for image in sorted(images, key=lambda i: i.repository):
        if image.repository in seen:
            continue
        seen.add(image.repository)
        lines += ["", "[[registry]]", f'prefix = "{image.repository}"']
        lines.append(f'location = "{target.host}/{target.repo(image.path)}"')
        if plain_http:
            lines.append("insecure = true")
    return ("\n".join(lines) + "\n").encode()
