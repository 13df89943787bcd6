"""The target registry of a load: `--to HOST[:PORT][/PREFIX]` parsed once, and the one spelling of
where an image or the chart lives under it (imports only errors)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

# repository names, OCI distribution spec v1.1 ("Definitions"); clients (docker, containerd, helm)
# refuse anything else even where a registry stores it
_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
_HOST = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(:[0-9]{1,5})?"
)
CHARTS = "charts"  # the chart's repository under the prefix: charts/<name>, as Helm pushes it


def _suggest(prefix: str) -> str:
    """A valid prefix close to `prefix` (lowercased, other characters turned into '-')."""
    parts = [re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in prefix.split("/")]
    return "/".join(p for p in parts if p) or "airgap"


@dataclass(frozen=True, kw_only=True)
class Target:
    host: str
    prefix: str  # "" or "some/path"

    @classmethod
    def parse(cls, value: str) -> Target:
        value = value.strip().removeprefix("docker://").rstrip("/")
        if "://" in value or not value or value.startswith("/"):
            raise UsageError(
                f"--to {value!r} is not HOST[:PORT][/PREFIX]", fix="e.g. --to registry.local:5000/airgap"
            )
        host, _, prefix = value.partition("/")
        if not _HOST.fullmatch(host):
            raise UsageError(
                f"--to {value!r}: {host!r} is not a registry HOST[:PORT]",
                fix="a host name or IP address, then an optional :PORT, e.g. --to registry.local:5000",
            )
        if prefix and not _NAME.fullmatch(prefix):
            raise UsageError(
                f"--to {value!r}: the prefix {prefix!r} is not a valid repository path (OCI "
                "distribution spec: lowercase letters and digits, separated by '.', '_', '__', "
                "'-' or '/')",
                fix=f"e.g. --to {host}/{_suggest(prefix)}",
            )
        return cls(host=host, prefix=prefix)

    def repo(self, path: str) -> str:
        """The repository `path` (an image's path, or charts/<name>) under the prefix."""
        return f"{self.prefix}/{path}" if self.prefix else path

    def ref(self, repo: str, reference: str) -> str:
        """HOST/REPO@DIGEST or HOST/REPO:TAG for a repository already under the prefix."""
        sep = "@" if reference.startswith("sha256:") else ":"
        return f"{self.host}/{repo}{sep}{reference}"

    def image(self, path: str, digest: str) -> str:
        """Where an image of the bundle is pulled from: HOST/PREFIX/PATH@DIGEST."""
        return self.ref(self.repo(path), digest)

    def chart_repo(self, name: str) -> str:
        """The chart's repository under the prefix: PREFIX/charts/NAME."""
        return self.repo(f"{CHARTS}/{name}")

    def chart_url(self, name: str) -> str:
        """What `helm install` takes: oci://HOST/PREFIX/charts/NAME."""
        return f"oci://{self.host}/{self.chart_repo(name)}"

    @property
    def registry_value(self) -> str:
        """HOST/PREFIX: the chart's global.imageRegistry."""
        return f"{self.host}/{self.prefix}" if self.prefix else self.host
