"""A private Sigstore instance for the keyless tests, every service the real one, built from its Go
module by scripts/build_go_tools.py: Fulcio (the certificate authority, an ephemeral CA), TesseraCT
(the certificate transparency log Fulcio submits each certificate to, POSIX storage), Rekor v2 (the
transparency log of signatures, rekor-tiles on POSIX storage) and the timestamp authority (an
in-memory signer). The one stand-in is the identity provider: a small OpenID Connect issuer here
(discovery document, JWKS, RS256 tokens) whose tokens Fulcio checks as it checks any issuer's.

`cosign trusted-root create` and `cosign signing-config create` (cosign 3) describe the instance
the way the public one is described, so that cosign signs against it and releaser verifies
against the trusted root, offline.
"""

from __future__ import annotations

import base64
import ctypes
import fcntl
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..conftest import TOOLS

BIN = TOOLS / "bin"
SERVICES = ("fulcio", "tesseract", "rekor-server", "timestamp-server")
AUDIENCE = "sigstore"


def missing() -> list[str]:
    return [n for n in (*SERVICES, "cosign3") if not (BIN / n).exists()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process goes, however it goes (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """An OpenID Connect issuer on 127.0.0.1: discovery, JWKS, and tokens for any subject."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        numbers = self.key.public_key().public_numbers()
        jwks = {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": "k1",
                    "use": "sig",
                    "alg": "RS256",
                    "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": _b64url(numbers.e.to_bytes(3, "big")),
                }
            ]
        }
        discovery = {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/keys",
            "authorization_endpoint": f"{self.url}/auth",
            "token_endpoint": f"{self.url}/token",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        pages = {
            "/.well-known/openid-configuration": json.dumps(discovery).encode(),
            "/keys": json.dumps(jwks).encode(),
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body or b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, email: str) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "kid": "k1", "typ": "JWT"}
        claims = {
            "iss": self.url,
            "sub": email,
            "aud": AUDIENCE,
            "email": email,
            "email_verified": True,
            "iat": now,
            "nbf": now - 60,
            "exp": now + 600,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(sig)}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the service exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url}: no answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _fulcio_ca() -> tuple[bytes, bytes]:
    """A root CA and an intermediate with the code-signing usage Fulcio needs to issue from it (PEM:
    the chain, the intermediate first; the intermediate's private key)."""
    now = datetime.now(UTC) - timedelta(minutes=5)

    def cert(subject: str, key: Any, issuer: Any, issuer_key: Any, eku: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "releaser tests"),
                        x509.NameAttribute(NameOID.COMMON_NAME, subject),
                    ]
                )
            )
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None if not eku else 0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
        )
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    root_key = ec.generate_private_key(ec.SECP384R1())
    root_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "releaser tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, "releaser-tests-fulcio-root"),
        ]
    )
    root = cert("releaser-tests-fulcio-root", root_key, root_name, root_key, False)
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter = cert("releaser-tests-fulcio-intermediate", inter_key, root.subject, root_key, True)
    pem = serialization.Encoding.PEM
    key = inter_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return inter.public_bytes(pem) + root.public_bytes(pem), key


def _pem_public(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


class PrivateSigstore:
    """Fulcio, TesseraCT, Rekor v2 and a TSA on 127.0.0.1, with the issuer above. `trusted_root` and
    `signing_config` are the files cosign and releaser are given."""

    def __init__(self, work: Path) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stopped = False
        self.issuer = Issuer()
        self.start = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _run(self, name: str, *args: str | Path) -> subprocess.Popen[bytes]:
        log = self.work / f"{name}.log"
        proc = subprocess.Popen(
            [str(BIN / name), *map(str, args)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.work,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.procs.append(proc)
        return proc

    def _start(self) -> None:
        w = self.work
        # the CA Fulcio issues from: a root and an intermediate, as the public instance has
        chain_pem, key_pem = _fulcio_ca()
        (w / "fulcio-chain.pem").write_bytes(chain_pem)  # the intermediate first, then the root
        (w / "fulcio-ca.key").write_bytes(key_pem)
        fulcio_port, ct_port = _free_port(), _free_port()
        (w / "fulcio.json").write_text(
            json.dumps(
                {
                    "OIDCIssuers": {
                        self.issuer.url: {"IssuerURL": self.issuer.url, "ClientID": AUDIENCE, "Type": "email"}
                    }
                }
            )
        )
        self.ct_url, self.ct_origin = f"http://127.0.0.1:{ct_port}", "ct.releaser.test"
        fulcio = self._run(
            "fulcio", "serve", "--ca", "fileca", "--fileca-cert", w / "fulcio-chain.pem",
            "--fileca-key", w / "fulcio-ca.key", "--fileca-key-passwd", "unused", "--fileca-watch=false",
            "--config-path", w / "fulcio.json",
            "--host", "127.0.0.1", "--port", fulcio_port, "--grpc-host", "127.0.0.1",
            "--grpc-port", _free_port(), "--metrics-port", _free_port(),
            "--legacy-unix-domain-socket", w / "fulcio.sock",
            "--ct-log-url", self.ct_url, "--ct-log-origin", self.ct_origin, "--log_type", "dev",
        )  # fmt: skip
        self.fulcio_url = f"http://127.0.0.1:{fulcio_port}"
        _wait(f"{self.fulcio_url}/api/v2/trustBundle", fulcio, w / "fulcio.log")

        ct_key = ec.generate_private_key(ec.SECP256R1())
        (w / "ct.key").write_bytes(
            ct_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        (w / "ct.pub").write_bytes(_pem_public(ct_key))
        (w / "ct").mkdir()
        ct = self._run(
            "tesseract", f"--private_key={w / 'ct.key'}", f"--origin={self.ct_origin}",
            f"--storage_dir={w / 'ct'}", f"--roots_pem_file={w / 'fulcio-chain.pem'}",
            f"--http_endpoint=127.0.0.1:{ct_port}",
        )  # fmt: skip
        _wait(f"{self.ct_url}/ct/v1/get-roots", ct, w / "tesseract.log")

        rekor_key = ed25519.Ed25519PrivateKey.generate()
        (w / "rekor.key").write_bytes(
            rekor_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (w / "rekor.pub").write_bytes(_pem_public(rekor_key))
        (w / "rekor").mkdir()
        rekor_port = _free_port()
        # verifiers name the log's checkpoint key by the host of its URL (sigstore-go: url.Hostname())
        self.rekor_origin = "127.0.0.1"
        rekor = self._run(
            "rekor-server", "serve", "--hostname", self.rekor_origin, "--storage-dir", w / "rekor",
            "--signer-filepath", w / "rekor.key", "--http-address", "127.0.0.1", "--http-port", rekor_port,
            "--grpc-address", "127.0.0.1", "--grpc-port", _free_port(),
            "--http-metrics-port", _free_port(), "--checkpoint-interval", "1s",
        )  # fmt: skip
        self.rekor_url = f"http://127.0.0.1:{rekor_port}"
        _wait(f"{self.rekor_url}/healthz", rekor, w / "rekor-server.log")

        # the timestamp authority serves its metrics on :2112, always (pkg/server/prometheus.go):
        # one instance on the host at a time
        self.lock = (Path("/tmp") / "releaser-tests-tsa-2112.lock").open("w")
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "another private Sigstore of the tests has held port 2112 for 10 minutes "
                        "(/tmp/releaser-tests-tsa-2112.lock; `fuser` names it)"
                    ) from None
                time.sleep(0.5)
        tsa_port = _free_port()
        tsa = self._run(
            "timestamp-server", "serve", "--host", "127.0.0.1", "--port", tsa_port,
            "--timestamp-signer", "memory", "--disable-ntp-monitoring",
        )  # fmt: skip
        self.tsa_url = f"http://127.0.0.1:{tsa_port}"
        _wait(f"{self.tsa_url}/ping", tsa, w / "timestamp-server.log")
        with urllib.request.urlopen(f"{self.tsa_url}/api/v1/timestamp/certchain", timeout=10) as r:
            (w / "tsa-chain.pem").write_bytes(r.read())

        cosign = str(BIN / "cosign3")
        self.trusted_root = w / "trusted_root.json"
        subprocess.run(
            [
                cosign, "trusted-root", "create",
                "--fulcio", f"url={self.fulcio_url},certificate-chain={w / 'fulcio-chain.pem'},start-time={self.start}",
                "--ctfe", f"url={self.ct_url},public-key={w / 'ct.pub'},start-time={self.start},origin={self.ct_origin}",
                "--rekor", f"url={self.rekor_url},public-key={w / 'rekor.pub'},start-time={self.start},origin={self.rekor_origin}",
                "--tsa", f"url={self.tsa_url}/api/v1/timestamp,certificate-chain={w / 'tsa-chain.pem'},start-time={self.start}",
                "--out", str(self.trusted_root),
            ],
            check=True, capture_output=True, env=self.env,
        )  # fmt: skip
        self.signing_config = w / "signing_config.json"
        spec = f"api-version={{}},start-time={self.start},operator=releaser-tests"
        subprocess.run(
            [
                cosign, "signing-config", "create",
                "--fulcio", f"url={self.fulcio_url},{spec.format(1)}",
                "--rekor", f"url={self.rekor_url},{spec.format(2)}", "--rekor-config", "ANY",
                "--tsa", f"url={self.tsa_url}/api/v1/timestamp,{spec.format(1)}", "--tsa-config", "ANY",
                "--oidc-provider", f"url={self.issuer.url},{spec.format(1)}",
                "--out", str(self.signing_config),
            ],
            check=True, capture_output=True, env=self.env,
        )  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.work / "home"), "TUF_ROOT": str(self.work / "tuf")}

    def keyless_flags(self, email: str) -> list[str]:
        """cosign 3 `sign`/`attest` flags that sign as `email` through this instance."""
        return [
            "--identity-token", self.issuer.token(email),
            "--signing-config", str(self.signing_config),
            "--trusted-root", str(self.trusted_root),
        ]  # fmt: skip

    def stop(self) -> None:
        """Stop every service (again: nothing)."""
        if self.stopped:
            return
        self.stopped = True
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.issuer.stop()
        if getattr(self, "lock", None) is not None:
            self.lock.close()  # and with it the flock
        shutil.rmtree(self.work / "home", ignore_errors=True)
