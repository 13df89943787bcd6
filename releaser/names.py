"""File names of a release directory (one definition for every stage; imports nothing)."""

RELEASE_FILE = "release.yaml"
LOCK_FILE = "release.lock.yaml"
PROBE_SUFFIX = "probe"  # Compose: the container `<service>-probe` runs that service's http/tcp check
