"""The registry client itself: one host, requests with bounded retries of transient faults, byte-exact
manifests, streamed and resumable blob uploads, mounts, the catalog and tags; `RegistryOptions`
makes one client per host.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from .. import budgets
from ..budgets import BROKEN_ANSWER as _BROKEN_ANSWER
from ..budgets import json_object
from ..errors import AuthError, DigestMismatch, InputError, RegistryError
from ..mediatypes import INDEX_TYPES, MANIFEST_TYPES
from ..readers import OpenReader, Reader
from .auth import Credentials, api_host, credentials_for, parse_auth_header
from .manifests import ACCEPT, Descriptor, Manifest, sha256_digest
from .tls import client_cert_for, is_loopback, trust_for

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
CHUNK = 1 << 20
UPLOAD_CHUNK = 256 << 20  # blobs up to this go in one streamed PUT; bigger ones in resumable PATCHes


class _Session(requests.Session):
    """A requests session that reads the environment's proxy and CA settings ($HTTPS_PROXY,
    $NO_PROXY, $REQUESTS_CA_BUNDLE, ...) once per origin rather than on every request, where they
    cost a third of the client's time per small request. They are the same all run long, and
    requests matches them by scheme and host only, so the answer is the same as asking each time."""

    def __init__(self) -> None:
        super().__init__()
        self._settings: dict[tuple[object, ...], dict[str, Any]] = {}

    def merge_environment_settings(  # type: ignore[override]
        self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        if proxies:  # never the case here: computed as requests does
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        key = (*urlsplit(url)[:2], stream, verify, cert)
        got: Any = self._settings.get(key)
        if got is None:
            got = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._settings[key] = got
        return {**got, "proxies": dict(got["proxies"])}  # requests may edit the proxies it is given


class Registry:
    """One registry host. Thread-safe for concurrent blob transfers."""

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        insecure: bool = False,
        plain_http: bool | None = None,
        ca_file: str | None = None,
        retries: int = 4,
        backoff: float = 0.25,
        timeout: float = budgets.DEFAULT_TIMEOUT,
        chunk_size: int = UPLOAD_CHUNK,
    ) -> None:
        self.host = host
        self.chunk_size = chunk_size
        self.credentials = credentials
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.session = _Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=16, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["User-Agent"] = "releaser"
        self.session.max_redirects = budgets.MAX_REDIRECTS
        # Passed on every call: requests lets $REQUESTS_CA_BUNDLE override a session-level setting.
        self.verify: bool | str = False if insecure else trust_for(host, ca_file)
        self.cert = client_cert_for(host)  # mutual TLS: sent to the registry, never to its token service
        if insecure:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._insecure = insecure
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic = False
        self.no_referrers_api = False  # the registry answered a referrers request with 404/400/405
        self._lock = threading.Lock()
        if plain_http is None:
            plain_http = self._probe_plain_http() if is_loopback(host) else False
        self.base = f"{'http' if plain_http else 'https'}://{api_host(host)}"

    # ------------------------------------------------------------ plumbing

    def _probe_plain_http(self) -> bool:
        """Loopback registries may speak plain HTTP: use it only when HTTPS does not answer and
        plain HTTP does. A TLS server that refuses the handshake (it wants a client certificate,
        say) is still TLS: the real request then reports why."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # only asking whether TLS answers at all
                self.session.get(f"https://{self.host}/v2/", timeout=5, verify=False, cert=self.cert)
            return False
        except (requests.exceptions.SSLError, requests.exceptions.ConnectionError):
            pass
        try:
            resp = self.session.get(f"http://{self.host}/v2/", timeout=5)
        except requests.RequestException:
            return True  # nothing answers either way: the real request names the registry as unreachable
        # Go's TLS servers answer plain HTTP with exactly this
        return not (resp.status_code == 400 and "HTTP request to an HTTPS server" in resp.text)

    def login_hint(self) -> str:
        return (
            f"log in with `docker login {self.host}` (the Docker config file is read), pass "
            f"--creds USER:PASSWORD, or set RELEASER_REGISTRY_AUTH={self.host}=USER:PASSWORD"
        )

    def _who(self) -> str:
        """Whose credentials, and from where (never their value)."""
        c = self.credentials
        if c is None:
            return "anonymous access"
        what = "the identity token" if c.identity_token else f"the credentials of {c.username!r}"
        return f"{what} from {c.origin}" if c.origin else what

    def _scope(self, repo: str, push: bool) -> str:
        return f"repository:{repo}:{'pull,push' if push else 'pull'}"

    def _auth_header(self, scope: str) -> dict[str, str]:
        with self._lock:
            token = self._tokens.get(scope)
            if token is None and scope.endswith(":pull"):
                token = self._tokens.get(scope + ",push")
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self.credentials and not self.credentials.identity_token:
            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def _authenticate(self, challenge: str, scope: str) -> None:
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not self.credentials or self.credentials.identity_token:
                have = (
                    f" (the identity token from {self.credentials.origin} is for token services only)"
                    if self.credentials
                    else ""
                )
                raise AuthError(f"{self.host} requires a login{have}", fix=self.login_hint())
            self._basic = (
                True  # idempotent: concurrent calls may all arrive here; a 401 after it is a refusal
            )
            return
        if scheme != "bearer":
            raise AuthError(f"{self.host} asks for unsupported auth scheme {scheme!r}", fix=self.login_hint())
        h = parse_auth_header(challenge)
        if not h.realm:
            raise AuthError(f"{self.host} sent a bearer challenge without a realm", fix=self.login_hint())
        # The challenge names exactly the scopes this call needs (a cross-repository mount also needs
        # pull on the source repository); ask for all of them, plus our own.
        scopes = sorted({scope, *(h.scope or "").split()} - {""})
        params: dict[str, Any] = {"service": h.service or "", "scope": scopes}
        creds = self.credentials
        try:
            if creds and creds.identity_token:
                # An identity token is an OAuth2 refresh token: POSTed to the realm (distribution
                # token spec, "OAuth2 token authentication"), never sent as a password.
                resp = self.session.post(
                    h.realm,
                    data={
                        "grant_type": "refresh_token",
                        "client_id": "releaser",
                        "refresh_token": creds.identity_token,
                        "service": h.service or "",
                        "scope": " ".join(scopes),
                    },
                    timeout=self.timeout,
                    verify=self.verify,
                    stream=True,
                )
            else:
                auth = (creds.username, creds.password) if creds else None
                resp = self.session.get(
                    h.realm, params=params, auth=auth, timeout=self.timeout, verify=self.verify, stream=True
                )
            self._read_whole(resp, "GET" if resp.request.method == "GET" else "POST", h.realm)
        except requests.exceptions.TooManyRedirects as exc:
            raise RegistryError(
                f"token service {h.realm} for {self.host} redirected more than {budgets.MAX_REDIRECTS} times",
                fix="a redirect loop: check the registry's auth configuration",
            ) from exc
        except requests.RequestException as exc:
            raise RegistryError(
                f"token service {h.realm} for {self.host} is unreachable: {exc}",
                fix="check the registry's auth configuration and your network",
            ) from exc
        if resp.status_code in (400, 401, 403) and creds and creds.identity_token:
            raise AuthError(
                f"{self.host}: the token service refused the identity token from {creds.origin} for "
                f"{scope} (expired or revoked?)",
                fix=self.login_hint(),
            )
        if resp.status_code in (401, 403):
            raise AuthError(
                f"{self.host}: the token service refused {self._who()} for {scope}", fix=self.login_hint()
            )
        if resp.status_code != 200:
            raise RegistryError(
                f"{self.host}: token service answered {resp.status_code}", fix=self.login_hint()
            )
        body = json_object(resp.content, f"{self.host}: the token service's answer")
        token = body.get("token") or body.get("access_token")
        if not token or not isinstance(token, str):
            raise AuthError(f"{self.host}: the token service returned no token", fix=self.login_hint())
        with self._lock:
            self._tokens[scope] = token

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        repo: str,
        push: bool = False,
        ok: tuple[int, ...] = (200,),
        data: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        params: dict[str, str] | None = None,
        retry_body: bool = True,
    ) -> requests.Response:
        """One registry call with auth and bounded retries of transient faults only. Without
        `stream`, the body is read here within budgets.MAX_ANSWER_BYTES and the timeout (`.content`
        and `.json()` then work as usual); with it, read it with `paced`."""
        url = path_or_url if path_or_url.startswith("http") else f"{self.base}{path_or_url}"
        scope = self._scope(repo, push)
        attempt = 0
        authed = 0
        while True:
            hdrs = {**(headers or {}), **self._auth_header(scope)}
            try:
                resp = self.session.request(
                    method,
                    url,
                    data=data,
                    headers=hdrs,
                    stream=True,
                    params=params,
                    timeout=self.timeout,
                    allow_redirects=True,
                    verify=self.verify,
                    cert=self.cert if url.startswith(self.base) else None,
                )
            except requests.exceptions.SSLError as exc:
                text = str(exc).lower()
                if self.cert is None and (
                    "certificate required" in text or "bad certificate" in text or "handshake failure" in text
                ):
                    fix = (
                        f"the registry wants a client certificate: file it as client.cert + client.key under "
                        f"/etc/docker/certs.d/{self.host}/ (or $RELEASER_CERTS_D/{self.host}/)"
                    )
                else:
                    fix = (
                        f"trust the registry's CA: add it to the system store, file it as "
                        f"/etc/docker/certs.d/{self.host}/ca.crt, or pass --ca-file; --insecure skips "
                        "verification (never in production)"
                    )
                raise RegistryError(f"TLS with {self.host} failed: {exc}", fix=fix) from exc
            except requests.exceptions.ReadTimeout as exc:
                # it takes connections but does not answer: once more, then say so (not 5 x the timeout)
                if attempt >= min(1, self.retries) or not retry_body:
                    raise RegistryError(
                        f"{self.host} accepted the connection but did not answer within "
                        f"{self.timeout:g} s ({attempt + 1} attempt(s)): {method} {url}",
                        fix="check the registry's health and logs (it may be overloaded or "
                        "hung); re-run to resume where it stopped",
                    ) from exc
                attempt += 1
                continue
            except requests.exceptions.TooManyRedirects as exc:
                raise RegistryError(
                    f"{self.host} redirected {method} {url} more than {budgets.MAX_REDIRECTS} times",
                    fix="a redirect loop: check the registry's storage and proxy configuration",
                ) from exc
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                if attempt >= self.retries or not retry_body:
                    raise RegistryError(
                        f"{self.host} is unreachable ({type(exc).__name__}) after {attempt + 1} "
                        f"attempt(s): {method} {url}",
                        fix="check the address and that the registry is running; re-run to "
                        "resume where it stopped",
                    ) from exc
                self._sleep(attempt, None)
                attempt += 1
                continue
            except requests.RequestException as exc:  # an invalid redirect, an unknown scheme
                raise RegistryError(
                    f"{self.host}: {method} {url} failed: {exc}",
                    fix="check the registry address; a proxy may be answering instead",
                ) from exc
            if not stream:
                self._read_whole(resp, method, url)
            challenge = resp.headers.get("WWW-Authenticate", "") if resp.status_code == 401 else ""
            wider = authed == 1 and 'scope="' in challenge and scope not in challenge.split('scope="', 1)[1]
            if resp.status_code == 401 and (not authed or wider):
                resp.close()
                self._authenticate(challenge, scope)
                authed += 1
                continue
            if resp.status_code in (401, 403):
                resp.close()
                what = "push to" if push else "pull from"
                raise AuthError(
                    f"{self.host} refused {self._who()} to {what} {repo} ({resp.status_code})",
                    fix=self.login_hint(),
                )
            if resp.status_code in TRANSIENT_STATUS and attempt < self.retries and retry_body:
                retry_after = resp.headers.get("Retry-After")
                resp.close()
                self._sleep(attempt, retry_after)
                attempt += 1
                continue
            if resp.status_code not in ok:
                return self._fail(resp, method, url)
            return resp

    def _read_whole(self, resp: requests.Response, method: str, url: str) -> None:
        """Read a whole answer into `resp` within budgets.MAX_ANSWER_BYTES and one timeout."""
        if method == "HEAD":  # its Content-Length is the resource's; it has no body
            resp.raw.read()  # nothing: ends the answer, so the connection goes back to the pool
            resp._content = b""
            resp._content_consumed = True  # type: ignore[attr-defined]  # requests would otherwise close the connection
            resp.close()
            return
        what = f"{method} {url}"
        parts = list(
            self.paced(resp, what, limit=budgets.MAX_ANSWER_BYTES, over="an answer may have", whole=True)
        )
        resp._content = b"".join(parts)  # what requests itself sets when it reads a body

    def paced(
        self,
        resp: requests.Response,
        what: str,
        *,
        limit: int | None,
        over: str,
        chunk: int = CHUNK,
        whole: bool = False,
    ) -> Iterator[bytes]:
        """The body of `resp` as it arrives: at most `limit` bytes, and never slower than
        budgets.MIN_RATE over a whole timeout (a server that trickles is a stalled server); a
        `whole` answer (one read into memory) within one timeout. Closes `resp` at the end."""
        declared = resp.headers.get("Content-Length", "")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            resp.close()
            raise RegistryError(
                f"{self.host}: the answer to {what} is {declared} bytes, more than the {limit} {over}",
                fix=_BROKEN_ANSWER,
            )
        got = 0
        started = window_start = time.monotonic()
        window_got = 0
        try:
            while part := resp.raw.read1(chunk, decode_content=True):
                got += len(part)
                if limit is not None and got > limit:
                    raise RegistryError(
                        f"{self.host}: the answer to {what} goes on past the {limit} bytes {over}",
                        fix=_BROKEN_ANSWER,
                    )
                window_got += len(part)
                if whole and time.monotonic() - started > self.timeout:
                    raise RegistryError(
                        f"{self.host}: the answer to {what} took over {self.timeout:g} s to arrive",
                        fix="the registry or a proxy in between is stalling; check its health and logs",
                    )
                if (now := time.monotonic()) - window_start >= self.timeout:
                    if window_got < budgets.MIN_RATE * self.timeout:
                        raise RegistryError(
                            f"{self.host}: the answer to {what} is arriving at {window_got / (now - window_start):.0f} "
                            f"bytes/s, below {budgets.MIN_RATE} bytes/s for {self.timeout:g} s",
                            fix="the registry or a proxy in between is stalling; check its health and "
                            "logs, then re-run (a load resumes where it stopped)",
                        )
                    window_start, window_got = now, 0
                yield part
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RegistryError(
                f"{self.host}: the answer to {what} was cut off ({type(exc).__name__})",
                fix="check the registry's health and the network; re-run to resume where it stopped",
            ) from exc
        finally:
            resp.close()

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * (2**attempt) * (1 + random.random() / 2)  # jitter, not crypto
        if retry_after and retry_after.isdigit():
            delay = min(float(retry_after), 30.0)
        time.sleep(delay)

    def _fail(self, resp: requests.Response, method: str, url: str) -> requests.Response:
        detail = ""
        codes: tuple[str, ...] = ()
        try:
            errors = budgets.loads(resp.content).get("errors", [])
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)[:500]
            codes = tuple(str(e.get("code")) for e in errors)
        except (ValueError, AttributeError, TypeError):  # not the distribution spec's error shape
            detail = resp.content[:200].decode("utf-8", "replace")
        resp.close()
        error = RegistryError(
            f"{self.host}: {method} {url.split(self.host, 1)[-1]} answered {resp.status_code}"
            + (f" ({detail})" if detail else ""),
            fix="check the repository name and your access rights",
        )
        error.codes = codes
        raise error

    # --------------------------------------------------------------- reads

    def ping(self) -> None:
        self.request("GET", "/v2/", repo="", ok=(200,))

    def get_manifest(self, repo: str, reference: str) -> Manifest:
        """Manifest or index by tag or digest, bytes exactly as served, digest verified."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", repo=repo, headers={"Accept": ACCEPT})
        content = resp.content
        digest = sha256_digest(content)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(
                f"{self.host}/{repo}@{reference}: the registry served content hashing to {digest}",
                fix="the registry's storage is corrupt or something rewrote the manifest",
            )
        served = resp.headers.get("Docker-Content-Digest")
        if served and served != digest:
            raise DigestMismatch(
                f"{self.host}/{repo}:{reference}: Docker-Content-Digest {served} but the content "
                f"hashes to {digest}",
                fix="a proxy may be rewriting manifests; bypass it",
            )
        origin = f"{self.host}/{repo}@{digest}"
        doc = json_object(content, f"{self.host}/{repo}:{reference}: the manifest")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in (*INDEX_TYPES, *MANIFEST_TYPES):
            declared = doc.get("mediaType")
            media_type = declared if isinstance(declared, str) else media_type
        return Manifest(
            descriptor=Descriptor(media_type=media_type, digest=digest, size=len(content)),
            content=content,
            origin=origin,
        )

    def manifest_exists(self, repo: str, digest: str) -> bool:
        resp = self.request(
            "HEAD", f"/v2/{repo}/manifests/{digest}", repo=repo, ok=(200, 404), headers={"Accept": ACCEPT}
        )
        return resp.status_code == 200

    def tag_digest(self, repo: str, tag: str) -> str | None:
        """The digest a tag points at (HEAD), or None when the tag does not exist."""
        resp = self.request(
            "HEAD", f"/v2/{repo}/manifests/{tag}", repo=repo, ok=(200, 404), headers={"Accept": ACCEPT}
        )
        return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, ok=(200, 404))
        return resp.status_code == 200

    def blob_first_byte(self, repo: str, digest: str) -> bytes:
        """The first byte of a blob (a ranged GET; a registry that ignores the range sends the
        whole body, of which one byte is read before the connection is closed)."""
        resp = self.open_blob(repo, digest, first_byte=True)
        try:
            return next(self.paced(resp, f"GET blob {repo}@{digest}", limit=None, over="", chunk=1), b"")
        finally:
            resp.close()

    def open_blob(self, repo: str, digest: str, *, first_byte: bool = False) -> requests.Response:
        """A streaming response for a blob (or, asked for its `first_byte`, a ranged one); the
        caller hashes while reading."""
        url = f"/v2/{repo}/blobs/{digest}"
        if first_byte:
            return self.request(
                "GET", url, repo=repo, stream=True, ok=(200, 206), headers={"Range": "bytes=0-0"}
            )
        return self.request("GET", url, repo=repo, stream=True)

    def iter_blob(self, repo: str, digest: str, size: int | None, chunk: int = CHUNK) -> Iterator[bytes]:
        """Stream a blob of `size` bytes (None: as many as come), verifying its digest at the
        end (raises DigestMismatch); never more than `size` bytes, never stalled (`paced`)."""
        from ..workers import HashBeside

        # checked beside the stream (the caller compresses while this hashes); one chunk's worth inline
        h = HashBeside(inline=size is not None and size <= chunk)
        what = f"GET blob {repo}@{digest}"
        try:
            resp = self.open_blob(repo, digest)
            for part in self.paced(resp, what, limit=size, over="its descriptor gives", chunk=chunk):
                h.update(part)
                yield part
        finally:
            h.close()
        if "sha256:" + h.hexdigest() != digest:
            raise DigestMismatch(
                f"{self.host}/{repo} blob {digest} arrived hashing to sha256:{h.hexdigest()}",
                fix="re-run; if it persists the registry's storage is corrupt",
            )

    # -------------------------------------------------------------- writes

    def mount_blob(self, repo: str, digest: str, source_repo: str) -> bool:
        """Cross-repository mount; True when the registry linked it without a transfer."""
        resp = self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            repo=repo,
            push=True,
            ok=(201, 202),
            params={"mount": digest, "from": source_repo},
        )
        if resp.status_code == 201:
            return True
        self._cancel(resp, repo)
        return False

    def _cancel(self, resp: requests.Response, repo: str) -> None:
        loc = resp.headers.get("Location")
        if loc:
            with contextlib.suppress(RegistryError):  # an abandoned session expires on its own
                self.request(
                    "DELETE",
                    urljoin(self.base, loc),
                    repo=repo,
                    push=True,
                    ok=(204, 404, 200),
                    retry_body=False,
                )

    def push_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        open_stream: Callable[[], OpenReader],
        *,
        progress: Callable[[int], None] | None = None,
        state_file: Path | None = None,
        known_missing: bool = False,
    ) -> str:
        """Upload one blob unless the registry has it. Returns 'exists', 'pushed' or 'resumed'.

        `open_stream` gives a fresh reader positioned at byte 0 (it may be called again on resume).
        With `state_file`, the upload location is remembered so an interrupted push resumes
        from the registry's reported offset instead of starting over. `known_missing`: the
        caller has just asked (saves a HEAD).
        """
        if not known_missing and self.blob_exists(repo, digest):
            if progress:
                progress(size)
            return "exists"
        location, offset = None, 0
        if state_file and state_file.exists():
            location = state_file.read_text().strip() or None
            if location:
                offset = self._upload_offset(repo, location) or 0
                if not offset:  # nothing to resume from: the session is gone, empty or inconsistent
                    location, offset = None, 0
                    state_file.unlink(missing_ok=True)
        result = "resumed" if location else "pushed"
        if location is None:
            resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, push=True, ok=(202,))
            location = urljoin(self.base + "/", resp.headers["Location"])
            resp.close()
            # the state file is written only after a chunk is acknowledged: a session is worth
            # resuming exactly at a boundary the registry confirmed
        if progress and offset:
            progress(offset)
        with open_stream() as stream:
            _skip(stream, offset)
            if size <= self.chunk_size and offset == 0:
                data = _CountingReader(stream, progress, size)
                resp = self.request(
                    "PUT",
                    location,
                    repo=repo,
                    push=True,
                    ok=(201,),
                    data=data,
                    params={"digest": digest},
                    headers={"Content-Type": "application/octet-stream"},
                    retry_body=False,
                )
            else:
                location = self._patch_chunks(repo, location, stream, offset, size, progress, state_file)
                resp = self.request(
                    "PUT",
                    location,
                    repo=repo,
                    push=True,
                    ok=(201,),
                    params={"digest": digest},
                    headers={"Content-Length": "0"},
                    retry_body=False,
                )
        resp.close()
        if state_file and state_file.exists():
            state_file.unlink()
        return result

    def _upload_offset(self, repo: str, location: str) -> int | None:
        """Bytes the registry holds for an upload session, or None if the session is gone."""
        try:
            resp = self.request("GET", location, repo=repo, push=True, ok=(204, 404))
        except RegistryError:
            return None
        if resp.status_code == 404:
            return None
        rng = resp.headers.get("Range", "")
        try:
            start, end = (int(x) for x in rng.split("-", 1))
        except ValueError:
            return 0
        return end + 1 if end > start else 0  # "0-0" is what distribution says for an empty session

    def _patch_chunks(
        self,
        repo: str,
        location: str,
        stream: Reader,
        offset: int,
        size: int,
        progress: Callable[[int], None] | None,
        state_file: Path | None,
    ) -> str:
        while offset < size:
            n = min(self.chunk_size, size - offset)
            chunk = _CountingReader(_Limited(stream, n), None, n)  # streamed, never held whole
            end = offset + n - 1
            resp = self.request(
                "PATCH",
                location,
                repo=repo,
                push=True,
                ok=(202,),
                data=chunk,
                headers={"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{end}"},
                retry_body=False,
            )
            location = urljoin(self.base + "/", resp.headers.get("Location", location))
            resp.close()
            if state_file:
                state_file.write_text(location)
            offset = end + 1
            if progress:
                progress(n)
        return location

    def put_manifest(self, repo: str, reference: str, content: bytes, media_type: str) -> str:
        """PUT a manifest byte for byte with its own media type; returns its digest."""
        digest = sha256_digest(content)
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            push=True,
            ok=(201,),
            data=content,
            headers={"Content-Type": media_type},
        )
        served = resp.headers.get("Docker-Content-Digest")
        resp.close()
        if served and served != digest:
            raise DigestMismatch(
                f"{self.host}/{repo}:{reference}: stored as {served}, expected {digest}",
                fix="the registry rewrote the manifest; use a registry that stores bytes as sent",
            )
        return digest

    def catalog(self, limit: int = budgets.MAX_CATALOG) -> list[str]:
        """Every repository the registry lists (`/v2/_catalog`, followed page by page), at most
        `limit` of them (RegistryError beyond: a registry that never ends its list)."""
        out: list[str] = []
        last = ""
        while True:
            params = {"n": "1000", **({"last": last} if last else {})}
            resp = self.request("GET", "/v2/_catalog", repo="", ok=(200, 404), params=params)
            if resp.status_code == 404:
                raise RegistryError(
                    f"{self.host}: the registry does not list its repositories (/v2/_catalog: 404)",
                    fix="name the repositories with --repository (or --bundle B for a release's own)",
                )
            page = json_object(resp.content, f"{self.host}: the repository list").get("repositories") or []
            if not isinstance(page, list) or not all(isinstance(r, str) for r in page):
                raise RegistryError(
                    f"{self.host}: the repository list is not a list of names", fix=_BROKEN_ANSWER
                )
            out += page
            if len(out) > limit:
                raise RegistryError(
                    f"{self.host}: lists more than {limit} repositories",
                    fix="name the repositories with --repository (or --bundle B for a release's own)",
                )
            if not page or "next" not in resp.headers.get("Link", "") or page[-1] == last:
                return out
            last = page[-1]

    def tags_if_few(self, repo: str, most: int = 1000) -> set[str] | None:
        """The repository's tags in one request, when it has at most `most` of them; None when the
        registry will not list them (403, 404, an answer out of shape) or has more: the caller then
        asks for each tag it wants by name. One listing instead of a HEAD per candidate tag is what
        keeps the attachments of many small images cheap to find."""
        try:
            resp = self.request(
                "GET", f"/v2/{repo}/tags/list", repo=repo, ok=(200, 403, 404), params={"n": str(most)}
            )
            if resp.status_code != 200 or "next" in resp.headers.get("Link", ""):
                return None
            tags = json_object(resp.content, f"{self.host}/{repo}: the tag list").get("tags") or []
        except RegistryError:
            return None
        if not isinstance(tags, list) or len(tags) >= most or not all(isinstance(t, str) for t in tags):
            return None
        return set(tags)

    def referrers(
        self, repo: str, digest: str, most: int = budgets.MAX_REFERRERS
    ) -> list[dict[str, Any]] | None:
        """The descriptors of the manifests whose `subject` is `digest`, through the OCI referrers
        API (distribution spec 1.1), every page of it; None when the registry has no such API (it
        answers 404, 400 or 405, or something that is no index: the caller reads the referrers tag
        schema instead). RegistryError past `most` descriptors (each is one more request)."""
        if self.no_referrers_api:  # it said so once: one request per registry, not per image
            return None
        path = f"/v2/{repo}/referrers/{digest}"
        out: list[dict[str, Any]] = []
        for _ in range(most + 1):  # pages
            resp = self.request(
                "GET", path, repo=repo, ok=(200, 400, 404, 405), headers={"Accept": INDEX_TYPES[0]}
            )
            if resp.status_code != 200:
                # a registry with the API answers 200 (an empty index) for any digest (spec 1.1)
                self.no_referrers_api = self.no_referrers_api or not out
                return out or None
            try:
                doc = json_object(resp.content, f"{self.host}/{repo}: the referrers of {digest}")
            except RegistryError:
                return out or None
            entries = doc.get("manifests")
            if not isinstance(entries, list):
                return out or None
            index = Manifest(
                descriptor=Descriptor(media_type=INDEX_TYPES[0], digest="", size=len(resp.content)),
                content=resp.content,
                origin=f"{self.host}/{repo}: the referrers of {digest}",
            )
            out += index.children()
            if len(out) > most:
                raise RegistryError(
                    f"{self.host}/{repo}: {digest} has more than {most} referrers, more than are read under "
                    "one digest",
                    fix=f"remove the stale signatures and attestations attached to {digest} (cosign clean)",
                )
            nxt = _next_link(resp.headers.get("Link", ""))
            if nxt is None:
                return out
            if not nxt.startswith("/") and urlsplit(nxt).netloc != urlsplit(self.base).netloc:
                return out  # a page elsewhere is not followed (nor sent our credentials)
            path = nxt
        return out

    def tags(self, repo: str) -> list[str]:
        resp = self.request("GET", f"/v2/{repo}/tags/list", repo=repo, ok=(200, 404))
        if resp.status_code == 404:
            return []
        tags = json_object(resp.content, f"{self.host}/{repo}: the tag list").get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise RegistryError(
                f"{self.host}/{repo}: the tag list is not a list of names", fix=_BROKEN_ANSWER
            )
        return tags


class _CountingReader:
    """File-like wrapper reporting progress as requests reads the body."""

    def __init__(self, stream: Reader, progress: Callable[[int], None] | None, length: int) -> None:
        self.stream = stream
        self.progress = progress
        self.length = length

    def __len__(self) -> int:  # lets requests send Content-Length instead of chunked encoding
        return self.length

    def read(self, n: int = -1) -> bytes:
        # At least CHUNK at a time: urllib3 asks for 16 KiB, and each read costs a trip through
        # the decompressor, the progress display and sendall (32,000 of them per 500 MB).
        # urllib3 sends whatever read() returns, so a bigger block is only fewer round trips.
        data = self.stream.read(max(n, CHUNK) if n and n > 0 else CHUNK)
        if data and self.progress:
            self.progress(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.read(CHUNK)
            if not data:
                return
            yield data


class _Limited:
    """At most `n` bytes of `stream`; running short is an error (a truncated source)."""

    def __init__(self, stream: Reader, n: int) -> None:
        self.stream = stream
        self.left = n

    def read(self, k: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.stream.read(min(k if k and k > 0 else CHUNK, self.left))
        if not data:
            raise RegistryError(
                f"blob source ended {self.left} bytes early", fix="the bundle is truncated; verify it again"
            )
        self.left -= len(data)
        return data


def _skip(stream: Reader, n: int) -> None:
    if n <= 0:
        return
    seek = getattr(stream, "seek", None)  # a file skips without reading; a tar member reads
    if seek is not None:
        try:
            seek(n, os.SEEK_CUR)
            return
        except (OSError, ValueError):
            pass
    while n > 0:
        part = stream.read(min(n, CHUNK))
        if not part:
            break
        n -= len(part)


RegistryFor = Callable[[str], Registry]


def registry_timeout() -> float:
    """Seconds to wait for a registry ($RELEASER_REGISTRY_TIMEOUT, else budgets.DEFAULT_TIMEOUT):
    to connect, for each read, for a whole small answer, and the window over which a body must
    keep moving at budgets.MIN_RATE."""
    raw = os.environ.get("RELEASER_REGISTRY_TIMEOUT", "")
    try:
        value = float(raw) if raw else budgets.DEFAULT_TIMEOUT
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise InputError(
            f"RELEASER_REGISTRY_TIMEOUT={raw!r} is not a number of seconds",
            fix="set it to seconds between 0 and 3600, e.g. RELEASER_REGISTRY_TIMEOUT=120, or unset it",
        )
    return value


@dataclass(frozen=True, kw_only=True)
class RegistryOptions:
    """How to reach registries: TLS and credentials (docs/cli.md), one client per host."""

    insecure: bool = False  # skip TLS verification
    plain_http: bool = False  # speak HTTP (loopback registries fall back to it by themselves)
    ca_file: str | None = None
    creds: str | None = None  # USER:PASSWORD for every registry (else env / Docker config)
    chunk_mb: int = 256  # upload chunk: bigger blobs go in resumable PATCHes of this size

    def factory(self) -> RegistryFor:
        """host -> its Registry client, made once per host."""
        cache: dict[str, Registry] = {}
        lock = threading.Lock()

        def registry_for(host: str) -> Registry:
            with lock:
                if host not in cache:
                    cache[host] = Registry(
                        host,
                        credentials=credentials_for(host, explicit=self.creds),
                        insecure=self.insecure,
                        plain_http=True if self.plain_http else None,
                        ca_file=self.ca_file,
                        chunk_size=self.chunk_mb << 20,
                        timeout=registry_timeout(),
                    )
                return cache[host]

        return registry_for


def _next_link(header: str) -> str | None:
    """The target of a `Link: <...>; rel="next"` header (pagination), or None."""
    for part in header.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") and target.strip().startswith("<"):
            return target.strip()[1:-1]
    return None
