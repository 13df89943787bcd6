"""The files a load writes beside the registry: values-airgap.yaml for the chart and
compose.airgap.yaml for Compose, both pointing at the target registry by the bundle's digests
(written by `releaser airgap --to`, and shown in load.sh with a placeholder host)."""

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
