"""Names every stage shares: files of a release directory, Compose containers releaser adds (imports nothing)."""

RELEASE_FILE = "release.yaml"
LOCK_FILE = "release.lock.yaml"
PROBE_SUFFIX = "probe"  # Compose: the container `<service>-probe` runs that service's http/tcp check
VOLUMES_SUFFIX = (
    "volumes"  # Compose: the run-once container `<service>-volumes` that owns its volumes to its user
)
SIDECAR_SUFFIX = "tcpao"  # Compose: the TCP-AO proxy `<service>-tcpao`; its leg probe `<service>-tcpao-probe`
