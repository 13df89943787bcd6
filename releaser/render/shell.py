"""Shell lines the rendered docs give a site to run, written once.

Each is safe under `set -euo pipefail`: every command in a pipeline reads all of its input, so
none dies of SIGPIPE when the next stops reading (`tr </dev/urandom | head -c N` does, exit 141).
"""

from __future__ import annotations

# 4,096 random bytes hold about 990 alphanumeric characters; a generated secret is at most 256
# (release.schema.json), so the odds of coming up short are below 10^-100.
_RANDOM_BYTES = 4096


def random_alnum(length: int) -> str:
    """A pipeline that writes `length` random characters of A-Za-z0-9 and no newline."""
    return f"head -c {_RANDOM_BYTES} /dev/urandom | tr -dc A-Za-z0-9 | cut -c1-{length} | tr -d '\\n'"
