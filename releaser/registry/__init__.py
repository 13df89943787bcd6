"""The OCI distribution client.

Our own client, on requests: it sends each manifest with its own media type and exact
bytes, streams blob uploads (one PUT, or resumable PATCHes from the registry's upload
status) without holding a blob in memory, mounts blobs across repositories, asks for a push
scope when it pushes, reads credentials as `docker login` leaves them, and retries only
transient faults, a bounded number of times. An auth failure stops at once and says how to
log in. (oras-py 0.2.43 reads a whole blob into memory to upload it and has neither resumable
uploads nor mounts, so it is not used; docs/architecture.md.)

| module | what |
|---|---|
| client.py | `Registry` (one host: requests, retries, manifests, blobs, mounts, catalog, tags), `RegistryOptions` (one client per host), the timeout |
| auth.py | WWW-Authenticate challenges; credentials from --creds, $RELEASER_REGISTRY_AUTH, Docker's config and its helpers |
| tls.py | loopback hosts, per-registry CAs and client certificates (certs.d), the system's CA bundle |
| manifests.py | `Manifest` and `Descriptor` (exact bytes, checked shapes), `sha256_digest` |

Everything else imports the names below from `releaser.registry`, never a module of it.
"""

from ..errors import RegistryError
from .auth import Challenge, Credentials, credentials_for, parse_auth_header
from .client import Registry, RegistryFor, RegistryOptions, registry_timeout
from .manifests import Descriptor, Manifest, sha256_digest
from .tls import is_loopback, system_trust, trust_for

__all__ = [
    "Challenge",
    "Credentials",
    "Descriptor",
    "Manifest",
    "Registry",
    "RegistryError",
    "RegistryFor",
    "RegistryOptions",
    "credentials_for",
    "is_loopback",
    "parse_auth_header",
    "registry_timeout",
    "sha256_digest",
    "system_trust",
    "trust_for",
]
