"""Who the client is to a registry: WWW-Authenticate challenges (RFC 7235), and credentials as
`docker login` leaves them (Docker's config.json, its credential helpers) or as given
($RELEASER_REGISTRY_AUTH, --creds). A password is never printed.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import AuthError


@dataclass(frozen=True, kw_only=True)
class Challenge:
    """The parameters of a WWW-Authenticate challenge (RFC 7235 auth-params)."""

    scheme: str
    realm: str | None = None
    service: str | None = None
    scope: str | None = None


# auth-param = token "=" ( token / quoted-string ), RFC 7235 section 2.1 (quoted-pair unescaped below)
_AUTH_PARAM = re.compile(r'([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_auth_header(header: str) -> Challenge:
    """Scheme, realm, service and scope of a WWW-Authenticate header, e.g.
    `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"`."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for m in _AUTH_PARAM.finditer(rest):
        quoted, bare = m.group(2), m.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params.setdefault(m.group(1).lower(), value)
    return Challenge(
        scheme=scheme.lower(),
        realm=params.get("realm"),
        service=params.get("service"),
        scope=params.get("scope"),
    )


@dataclass(frozen=True, kw_only=True)
class Credentials:
    username: str
    password: str
    identity_token: str | None = None  # an OAuth2 refresh token from `docker login` (Username "<token>")
    origin: str = ""  # where they came from, for messages: "--creds", "$RELEASER_REGISTRY_AUTH", a config key

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(username={self.username!r}, password=***, origin={self.origin!r})"


# Docker Hub: images are named docker.io/..., the API is served at registry-1.docker.io, and
# `docker login` files the credentials under the legacy index URL.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT = 30.0


def api_host(host: str) -> str:
    """The host:port that serves the registry API for a registry named `host`."""
    return DOCKER_HUB_API if host in (DOCKER_HUB, "index.docker.io") else host


def docker_config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"


def _config_keys(host: str) -> list[str]:
    """The keys `docker login HOST` may have used for `host` in the config file."""
    if api_host(host) == DOCKER_HUB_API:
        return [
            DOCKER_HUB_CONFIG_KEY,
            "index.docker.io",
            DOCKER_HUB,
            DOCKER_HUB_API,
            f"https://{DOCKER_HUB_API}",
        ]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"]


def _from_secret(user: str, secret: str, origin: str) -> Credentials:
    if user == "<token>":  # what docker stores for an identity (refresh) token
        return Credentials(username="", password="", identity_token=secret, origin=origin)
    return Credentials(username=user, password=secret, origin=origin)


def _from_helper(helper: str, host: str, cfg: Path, key: str) -> Credentials | None:
    """Run `docker-credential-<helper> get` (the Docker credential helper protocol: the server
    URL on stdin, {"Username", "Secret"} on stdout). None when it has nothing for `host`."""
    import shutil
    import subprocess

    program = f"docker-credential-{helper}"
    where = f"{cfg} ({key} {helper!r})"
    fix = (
        f"install {program} (or fix {cfg}), pass --creds USER:PASSWORD, or set "
        f"RELEASER_REGISTRY_AUTH={host}=USER:PASSWORD"
    )
    path = shutil.which(program)
    if path is None:
        raise AuthError(
            f"{where} names a credential helper for {host}, but {program} is not on PATH", fix=fix
        )
    server = DOCKER_HUB_CONFIG_KEY if api_host(host) == DOCKER_HUB_API else host
    try:
        proc = subprocess.run(
            [path, "get"], input=server, capture_output=True, text=True, timeout=HELPER_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise AuthError(
            f"{program} get did not answer within {HELPER_TIMEOUT:.0f} s for {host} "
            "(is it waiting for a keyring or a passphrase prompt?)",
            fix=fix,
        ) from None
    if proc.returncode != 0:
        said = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        if said and "credentials not found" in said[0].lower():
            return None
        # The first line only, cut: a helper's error says what went wrong, never the secret.
        raise AuthError(
            f"{program} get failed for {host} (exit {proc.returncode}): "
            f"{(said[0] if said else 'no message')[:200]}",
            fix=fix,
        )
    try:
        doc = json.loads(proc.stdout)
        user, secret = str(doc["Username"]), str(doc["Secret"])
    except (ValueError, KeyError, TypeError):
        raise AuthError(
            f'{program} get answered for {host} with something other than {{"Username": ..., "Secret": ...}}',
            fix=fix,
        ) from None
    return _from_secret(user, secret, f"{program}") if secret else None


def _from_docker_config(host: str) -> Credentials | None:
    """What Docker itself would use for `host`: the `credHelpers` entry for it, else the
    `credsStore` helper, else an `auths` entry (auth, username/password or identitytoken)."""
    cfg = docker_config_path()
    if not cfg.exists():
        return None
    try:
        doc = json.loads(cfg.read_text())
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        raise AuthError(
            f"{cfg}: cannot read the Docker config file ({exc})",
            fix=f"fix or remove {cfg}, or pass --creds USER:PASSWORD",
        ) from None
    keys = _config_keys(host)
    helpers = doc.get("credHelpers") or {}
    for key in keys:
        if isinstance(helpers, dict) and helpers.get(key):
            return _from_helper(str(helpers[key]), host, cfg, "credHelpers")
    if doc.get("credsStore"):
        found = _from_helper(str(doc["credsStore"]), host, cfg, "credsStore")
        if found:
            return found
    auths = doc.get("auths") or {}
    for key in keys:
        entry = auths.get(key) if isinstance(auths, dict) else None
        if not isinstance(entry, dict):
            continue
        origin = f"{cfg} (auths.{key})"
        if entry.get("identitytoken"):
            return Credentials(
                username="", password="", identity_token=str(entry["identitytoken"]), origin=origin
            )
        if entry.get("auth"):
            try:
                user, sep, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                sep = ""
            if not sep:  # never echo the value
                raise AuthError(
                    f"{origin}: `auth` is not base64 of USER:PASSWORD",
                    fix=f"log in again with `docker login {host}`",
                )
            return Credentials(username=user, password=pw, origin=origin)
        if entry.get("username") and entry.get("password"):
            return Credentials(
                username=str(entry["username"]), password=str(entry["password"]), origin=origin
            )
    return None


def credentials_for(host: str, *, explicit: str | None = None) -> Credentials | None:
    """Credentials for `host`: an explicit USER:PASSWORD, then $RELEASER_REGISTRY_AUTH
    (host=USER:PASSWORD[,host=...]), then the Docker config file as Docker reads it
    (credential helpers, credsStore, auths with auth or an identity token)."""
    if explicit:
        user, sep, pw = explicit.partition(":")
        if not sep or not user:  # never echo the value: it may be a password
            raise AuthError(
                "--creds / $RELEASER_CREDS is not USER:PASSWORD",
                fix="pass --creds USER:PASSWORD, or log in with `docker login HOST`",
            )
        origin = "$RELEASER_CREDS" if os.environ.get("RELEASER_CREDS") == explicit else "--creds"
        return Credentials(username=user, password=pw, origin=origin)
    env = os.environ.get("RELEASER_REGISTRY_AUTH", "")
    for item in filter(None, (x.strip() for x in env.split(","))):
        h, _, cred = item.partition("=")
        if h == host and ":" not in cred:
            raise AuthError(
                f"$RELEASER_REGISTRY_AUTH has an entry for {host} that is not {host}=USER:PASSWORD",
                fix=f"write it as {host}=USER:PASSWORD (several entries separated by commas)",
            )
        if h == host:
            user, _, pw = cred.partition(":")
            return Credentials(username=user, password=pw, origin="$RELEASER_REGISTRY_AUTH")
    return _from_docker_config(host)
