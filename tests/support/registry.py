"""Real OCI registries for tests: Debian's docker-registry (distribution 2.8) on loopback.

Plain HTTP, self-signed TLS, htpasswd basic auth, or bearer tokens from a small
token server issuing ES256 JWTs with an x5c header. Each test gets its own
registry and storage; `kill()` and `start()` simulate a crash and a restart on
the same storage.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
USER, PASSWORD = "releaser", "s3cret-test-only"
# What `docker login` stores as "identitytoken" for a token service that hands out OAuth2
# refresh tokens; the token server accepts it in a refresh_token grant.
REFRESH_TOKEN = "refresh-test-only-5d1e0c"


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range (32768-60999 here), so that no
    client connection of a test running beside this one (the suite runs on several workers) takes it
    between now and when the test binds it; never the same one twice in a process."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 32000)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free port between 20000 and 32000")


def self_signed(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """A self-signed EC certificate for `names` (DNS names and IPs)."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    crt, pem = directory / "cert.pem", directory / "key.pem"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return crt, pem


class TokenServer:
    """Issues registry bearer tokens (ES256 JWT, x5c) for any requested scope: on GET to
    USER:PASSWORD (basic), on POST to an OAuth2 refresh_token grant of REFRESH_TOKEN
    (distribution's "OAuth2 token authentication")."""

    def __init__(self, directory: Path, service: str) -> None:
        self.service = service
        self.issuer = "releaser-test-issuer"
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "releaser test token signer")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .sign(self.key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        self.bundle = directory / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.port = free_port()
        self.requests: list[str] = []  # scopes asked for
        self.grants: list[str] = []  # OAuth2 grant types POSTed
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, code: int, doc: dict[str, str]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode())
                grant = form.get("grant_type", [""])[0]
                server.grants.append(grant)
                if (
                    grant != "refresh_token"
                    or form.get("refresh_token") != [REFRESH_TOKEN]
                    or not form.get("client_id")
                ):
                    self._json(401, {"error": "invalid_grant"})
                    return
                scopes = " ".join(form.get("scope", [])).split()
                server.requests.extend(scopes)
                self._json(200, {"access_token": server.issue(scopes), "refresh_token": REFRESH_TOKEN})

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                scopes = parse_qs(urlparse(self.path).query).get("scope", [])
                server.requests.extend(scopes)
                body = json.dumps({"token": server.issue(scopes)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def issue(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {
            "alg": "ES256",
            "typ": "JWT",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": USER,
            "aud": self.service,
            "exp": now + 600,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }

        def b64(d: bytes) -> str:
            return base64.urlsafe_b64encode(d).rstrip(b"=").decode()

        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def close(self) -> None:
        self.httpd.shutdown()


class RegistryServer:
    """docker-registry serving on 127.0.0.1:<free port> from a private directory."""

    def __init__(
        self, directory: Path, *, tls: bool = False, auth: str | None = None, client_certs: bool = False
    ) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.storage = directory / "storage"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tls = tls
        self.auth = auth  # None | "htpasswd" | "token"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token: TokenServer | None = None
        self.ca: Path | None = None
        self.client: tuple[Path, Path] | None = None  # (certificate, key) the registry requires (mutual TLS)
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": uuid.uuid4().hex},
        }
        if tls:
            self.ca, key = self_signed(directory / "tls", ["registry.local", "127.0.0.1", "localhost"])
            cfg["http"]["tls"] = {"certificate": str(self.ca), "key": str(key)}
            if client_certs:  # a self-signed client certificate that is its own CA
                self.client = self_signed(directory / "client", ["releaser-test-client"])
                cfg["http"]["tls"]["clientcas"] = [str(self.client[0])]
        if auth == "htpasswd":
            htpasswd = directory / "htpasswd"
            subprocess.run(
                ["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True, capture_output=True
            )
            cfg["auth"] = {"htpasswd": {"realm": "releaser-test", "path": str(htpasswd)}}
        elif auth == "token":
            self.token = TokenServer(directory / "token", "releaser-test-registry")
            cfg["auth"] = {
                "token": {
                    "realm": self.token.realm,
                    "service": self.token.service,
                    "issuer": self.token.issuer,
                    "rootcertbundle": str(self.token.bundle),
                }
            }
        self.config = directory / "config.yml"
        directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(cfg))  # JSON is YAML

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self) -> RegistryServer:
        from ..conftest import needs_service

        needs_service("a registry (docker-registry)")
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "registry.log", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    requests.get(
                        f"{self.url}/v2/",
                        timeout=1,
                        verify=False,
                        cert=tuple(map(str, self.client)) if self.client else None,
                    )
                return self
            except requests.RequestException:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"docker-registry exited: {(self.dir / 'registry.log').read_text()}"
                    ) from None
                time.sleep(0.02)
        raise RuntimeError("docker-registry did not answer within 10 s")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.token:
            self.token.close()

    def snapshot(self) -> dict[str, bytes]:
        """Every file of the registry's storage (to prove 'left unchanged')."""
        if not self.storage.exists():
            return {}
        return {
            str(p.relative_to(self.storage)): p.read_bytes()
            for p in sorted(self.storage.rglob("*"))
            if p.is_file() and "_uploads" not in p.parts
        }
