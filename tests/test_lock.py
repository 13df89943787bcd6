"""`releaser lock` against real registries (docker-registry 2.8), checked with skopeo.

Plain HTTP on loopback, self-signed TLS, htpasswd basic auth and bearer tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from releaser.cli import app

from .conftest import missing_component
from .support import credhelper, images
from .support.registry import PASSWORD, REFRESH_TOKEN, USER, RegistryServer

pytestmark = pytest.mark.registry

runner = CliRunner()
CREDS = f"{USER}:{PASSWORD}"


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False, env=env)
    return result.exit_code, result.output


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    gone = images.have_tools()
    if gone:
        missing_component(", ".join(gone))


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layout")
    # layout tags are unique; they are pushed under the repository's own tag
    images.build(root, "gobmp", "gobmp-v1", platforms=("amd64", "arm64"))
    images.build(root, "nats", "nats-v1")
    images.build(root, "gobmp", "gobmp-amd64-only", platforms=("amd64",))
    return root


def serve(tmp_path: Path, **kw: object) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path / "registry", **kw).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    yield from serve(tmp_path)


def release_dir(tmp_path: Path, host: str, *, platforms: list[str] | None = None) -> Path:
    d = tmp_path / "rel"
    d.mkdir(parents=True, exist_ok=True)
    gobmp: dict[str, object] = {"ref": f"{host}/bmp/gobmp:v1"}
    if platforms:
        gobmp["platforms"] = platforms
    doc = {
        "apiVersion": "releaser.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "locked", "version": "1.0.0"},
        "images": {"gobmp": gobmp, "nats": {"ref": f"{host}/library/nats:v1"}},
        "services": {
            "collector": {"image": "gobmp", "ports": [{"name": "bmp", "port": 11019}]},
            "bus": {"image": "nats", "ports": [{"name": "client", "port": 4222}]},
        },
    }
    (d / "release.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return d


def push_all(layout: Path, host: str, creds: str | None = None) -> None:
    images.push(layout, "gobmp-v1", f"{host}/bmp/gobmp:v1", creds=creds)
    images.push(layout, "nats-v1", f"{host}/library/nats:v1", creds=creds)


def test_lock_pins_index_and_children_as_skopeo_sees_them(
    registry: RegistryServer, layout: Path, tmp_path: Path, helm3: str
) -> None:
    push_all(layout, registry.host)
    d = release_dir(tmp_path, registry.host)
    code, out = cli("lock", str(d))
    assert code == 0, out
    lock = yaml.safe_load((d / "release.lock.yaml").read_text())
    g = lock["images"]["gobmp"]
    assert g["digest"] == images.skopeo_digest(f"{registry.host}/bmp/gobmp:v1")
    assert g["mediaType"] == images.OCI_INDEX
    assert sorted(g["platforms"]) == ["linux/amd64", "linux/arm64"]
    index = json.loads((layout / "blobs/sha256" / g["digest"].split(":")[1]).read_bytes())
    assert {m["digest"] for m in index["manifests"]} == {p["digest"] for p in g["platforms"].values()}
    assert lock["images"]["nats"]["platform"] == "linux/amd64"
    first = (d / "release.lock.yaml").read_bytes()
    # current pins are kept without a registry: stop it and lock again
    registry.stop()
    code, out = cli("lock", str(d), "--json")
    assert code == 0, out
    assert {i["action"] for i in json.loads(out)["result"]["images"]} == {"kept"}
    assert (d / "release.lock.yaml").read_bytes() == first
    # and render pins what the lock says
    out_dir = tmp_path / "out"
    assert cli("render", str(d), "--out-dir", str(out_dir))[0] == 0
    compose = (out_dir / "compose/locked/compose.yaml").read_text()
    assert f"{registry.host}/bmp/gobmp@{g['digest']}" in compose


def test_one_platform_repins_to_its_manifest_everywhere(
    registry: RegistryServer, layout: Path, tmp_path: Path
) -> None:
    push_all(layout, registry.host)
    d = release_dir(tmp_path, registry.host)
    code, out = cli("lock", str(d), "--platform", "linux/arm64")
    assert code == 3 and "images.nats): is a single linux/amd64 image; asked for linux/arm64" in out
    code, out = cli("lock", str(d), "--platform", "linux/amd64")
    assert code == 0, out
    g = yaml.safe_load((d / "release.lock.yaml").read_text())["images"]["gobmp"]
    index = json.loads(
        (
            layout / "blobs/sha256" / images.skopeo_digest(f"{registry.host}/bmp/gobmp:v1").split(":")[1]
        ).read_bytes()
    )
    arm = next(m for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
    assert (g["digest"], g["platform"], "platforms" in g) == (arm["digest"], "linux/amd64", False)
    # the one platform is kept: --check finds the lock current, --refresh re-reads that platform
    code, out = cli("lock", str(d), "--check")
    assert code == 0, out
    code, out = cli("lock", str(d), "--refresh")
    assert code == 0 and "changed" not in out, out
    assert yaml.safe_load((d / "release.lock.yaml").read_text())["images"]["gobmp"]["digest"] == arm["digest"]
    out_dir = tmp_path / "out"
    assert cli("render", str(d), "--out-dir", str(out_dir))[0] == 0
    assert f"gobmp@{arm['digest']}" in (out_dir / "compose/locked/compose.yaml").read_text()
    assert arm["digest"] in (out_dir / "charts/locked/values.yaml").read_text()


def test_missing_platform_is_named(registry: RegistryServer, layout: Path, tmp_path: Path) -> None:
    push_all(layout, registry.host)
    d = release_dir(tmp_path, registry.host, platforms=["linux/s390x"])
    code, out = cli("lock", str(d))
    assert code == 3
    assert "platform linux/s390x is not in the index (it has linux/amd64, linux/arm64)" in out


def test_a_moved_tag_fails_check_and_refresh_follows_it(
    registry: RegistryServer, layout: Path, tmp_path: Path
) -> None:
    push_all(layout, registry.host)
    d = release_dir(tmp_path, registry.host)
    assert cli("lock", str(d))[0] == 0
    assert cli("lock", str(d), "--check")[0] == 0
    moved = tmp_path / "moved"
    images.build(moved, "nats", "v1", extra={"etc/moved": b"new content\n"})
    images.push(moved, "v1", f"{registry.host}/library/nats:v1")
    code, out = cli("lock", str(d), "--check")
    assert code == 3 and "image 'nats': the lock pins" in out and "now serves" in out
    code, out = cli("lock", str(d), "--refresh")
    assert code == 0 and "changed  nats" in out
    assert yaml.safe_load((d / "release.lock.yaml").read_text())["images"]["nats"][
        "digest"
    ] == images.skopeo_digest(f"{registry.host}/library/nats:v1")


def test_a_platform_disappearing_is_refused(registry: RegistryServer, layout: Path, tmp_path: Path) -> None:
    push_all(layout, registry.host)
    d = release_dir(tmp_path, registry.host)
    assert cli("lock", str(d))[0] == 0
    before = (d / "release.lock.yaml").read_bytes()
    images.push(layout, "gobmp-amd64-only", f"{registry.host}/bmp/gobmp:v1")  # the tag now has amd64 only
    code, out = cli("lock", str(d), "--refresh")
    assert code == 3 and "linux/arm64" in out and "drop the others on purpose" in out
    assert (d / "release.lock.yaml").read_bytes() == before


def test_tls_needs_the_ca_or_insecure(tmp_path: Path, layout: Path) -> None:
    for server in serve(tmp_path, tls=True):
        push_all(layout, server.host)
        d = release_dir(tmp_path, server.host)
        code, out = cli("lock", str(d), "--refresh")
        assert code == 6 and "TLS with" in out and "--ca-file" in out
        code, out = cli("lock", str(d), "--refresh", "--ca-file", str(server.ca))
        assert code == 0, out
        code, out = cli("lock", str(d), "--refresh", "--insecure")
        assert code == 0, out


def test_tls_trusts_the_system_cas_and_certs_d_like_docker(tmp_path: Path, layout: Path) -> None:
    """An internal CA installed in the system store (OpenSSL's default paths, selected here by
    $SSL_CERT_FILE as OpenSSL and Go both honour it), or filed for the registry under certs.d
    as Docker and skopeo read it, is trusted without flags; --ca-file adds to them."""
    from .support.registry import self_signed

    for server in serve(tmp_path, tls=True):
        assert server.ca is not None
        push_all(layout, server.host)
        d = release_dir(tmp_path, server.host)
        nowhere = {"RELEASER_CERTS_D": str(tmp_path / "empty")}
        code, out = cli("lock", str(d), "--refresh", env=nowhere)
        assert code == 6 and "TLS with" in out, out
        code, out = cli("lock", str(d), "--refresh", env={**nowhere, "SSL_CERT_FILE": str(server.ca)})
        assert code == 0, out
        certs_d = tmp_path / "certs.d"
        (certs_d / server.host).mkdir(parents=True)
        (certs_d / server.host / "ca.crt").write_bytes(server.ca.read_bytes())
        code, out = cli("lock", str(d), "--refresh", env={"RELEASER_CERTS_D": str(certs_d)})
        assert code == 0, out
        other, _ = self_signed(tmp_path / "other-ca", ["elsewhere.invalid"])
        code, out = cli(
            "lock",
            str(d),
            "--refresh",
            "--ca-file",
            str(other),
            env={**nowhere, "SSL_CERT_FILE": str(server.ca)},
        )
        assert code == 0, out  # added to the system's CAs, not instead of them
        code, out = cli("lock", str(d), "--refresh", "--ca-file", str(tmp_path / "missing.pem"), env=nowhere)
        assert code == 6 and "missing.pem: no such file" in out, out


def test_a_registry_that_requires_a_client_certificate_gets_the_one_filed_in_certs_d(
    tmp_path: Path, layout: Path
) -> None:
    """Mutual TLS as Docker does it: certs.d/HOST/NAME.cert + NAME.key (+ ca.crt)."""
    for server in serve(tmp_path, tls=True, client_certs=True):
        assert server.ca is not None and server.client is not None
        client_cert, client_key = server.client
        images.push(
            layout,
            "gobmp-v1",
            f"{server.host}/bmp/gobmp:v1",
            cert_dir=_certs_dir(tmp_path / "skopeo-certs", server.ca, server.client),
        )
        images.push(
            layout,
            "nats-v1",
            f"{server.host}/library/nats:v1",
            cert_dir=_certs_dir(tmp_path / "skopeo-certs", server.ca, server.client),
        )
        d = release_dir(tmp_path, server.host)
        certs_d = tmp_path / "certs.d"
        (certs_d / server.host).mkdir(parents=True)
        (certs_d / server.host / "ca.crt").write_bytes(server.ca.read_bytes())
        code, out = cli("lock", str(d), env={"RELEASER_CERTS_D": str(certs_d)})
        assert code == 6 and "TLS with" in out and "wants a client certificate" in out, out  # no certificate
        (certs_d / server.host / "client.cert").write_bytes(client_cert.read_bytes())
        code, out = cli("lock", str(d), env={"RELEASER_CERTS_D": str(certs_d)})
        assert code == 6 and "client.cert: a client certificate without its key (client.key)" in out, out
        (certs_d / server.host / "client.key").write_bytes(client_key.read_bytes())
        code, out = cli("lock", str(d), env={"RELEASER_CERTS_D": str(certs_d)})
        assert code == 0, out
        lock = yaml.safe_load((d / "release.lock.yaml").read_text())
        assert lock["images"]["nats"]["digest"] == images.skopeo_digest(
            f"{server.host}/library/nats:v1",
            cert_dir=_certs_dir(tmp_path / "skopeo-certs", server.ca, server.client),
        )


def _certs_dir(d: Path, ca: Path, client: tuple[Path, Path]) -> Path:
    """The same files in the layout skopeo's --cert-dir reads (*.crt CAs, *.cert + *.key)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.crt").write_bytes(ca.read_bytes())
    (d / "client.cert").write_bytes(client[0].read_bytes())
    (d / "client.key").write_bytes(client[1].read_bytes())
    return d


def test_basic_auth(tmp_path: Path, layout: Path) -> None:
    for server in serve(tmp_path, auth="htpasswd"):
        push_all(layout, server.host, CREDS)
        d = release_dir(tmp_path, server.host)
        started = time.monotonic()
        code, out = cli("lock", str(d))
        assert code == 7, out
        assert f"{server.host} requires a login" in out and f"docker login {server.host}" in out
        code, out = cli("lock", str(d), "--creds", f"{USER}:wrong")
        assert code == 7 and "refused" in out
        assert time.monotonic() - started < 5  # auth errors are not retried
        assert "wrong" not in out
        code, out = cli("lock", str(d), "--creds", CREDS)
        assert code == 0, out
        assert PASSWORD not in out


def test_bearer_token_auth_and_docker_config(tmp_path: Path, layout: Path) -> None:
    for server in serve(tmp_path, auth="token"):
        push_all(layout, server.host, CREDS)
        d = release_dir(tmp_path, server.host)
        code, out = cli("lock", str(d))
        assert code == 7 and "token service refused anonymous access" in out
        cfg = tmp_path / "docker"
        cfg.mkdir()
        import base64

        auth = base64.b64encode(CREDS.encode()).decode()
        (cfg / "config.json").write_text(json.dumps({"auths": {server.host: {"auth": auth}}}))
        code, out = cli("lock", str(d), env={"DOCKER_CONFIG": str(cfg)})
        assert code == 0, out
        assert server.token is not None
        assert "repository:bmp/gobmp:pull" in server.token.requests


def test_docker_config_credential_helpers_and_identity_tokens(
    tmp_path: Path, layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `docker login` leaves behind, read as Docker reads it: a credHelpers entry, a
    credsStore (a real helper, docker-credential-pass), an identity token (OAuth2 refresh
    grant to the token service). Secrets never appear in the output."""
    gone = credhelper.missing()
    if gone:
        missing_component(", ".join(gone))
    from releaser.registry import credentials_for

    for server in serve(tmp_path, auth="token"):
        assert server.token is not None
        push_all(layout, server.host, CREDS)
        d = release_dir(tmp_path, server.host)
        cfg = tmp_path / "docker"
        cfg.mkdir()
        conf = cfg / "config.json"
        outputs = []
        with credhelper.pass_store(tmp_path / "pass") as penv:
            env = {"DOCKER_CONFIG": str(cfg), **penv}
            credhelper.store(penv, server.host, USER, PASSWORD)
            # a helper for this one registry (as `gcloud auth configure-docker` writes it)
            conf.write_text(json.dumps({"credHelpers": {server.host: "pass"}}))
            code, out = cli("lock", str(d), env=env)
            outputs.append(out)
            assert code == 0, out
            # the default store (Docker Desktop, osxkeychain, pass): auths holds only a placeholder
            conf.write_text(json.dumps({"credsStore": "pass", "auths": {server.host: {}}}))
            code, out = cli("lock", str(d), "--refresh", env=env)
            outputs.append(out)
            assert code == 0, out
            assert server.token.grants == []  # both were USER:PASSWORD, sent to the token service by GET
            # an identity token kept by the helper
            credhelper.store(penv, server.host, "<token>", REFRESH_TOKEN)
            code, out = cli("lock", str(d), "--refresh", env=env)
            outputs.append(out)
            assert code == 0 and set(server.token.grants) == {"refresh_token"}, out
            # Docker Hub: the helper is asked for the index URL `docker login` files it under
            credhelper.store(penv, "https://index.docker.io/v1/", "hubuser", "hub-secret")
            monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
            for k, v in penv.items():
                monkeypatch.setenv(k, v)
            hub = credentials_for("docker.io")
            assert hub is not None and (hub.username, hub.password) == ("hubuser", "hub-secret")
            # a helper that is not installed: named, with the file and the fix; not anonymous
            conf.write_text(json.dumps({"credHelpers": {server.host: "nosuch"}}))
            code, out = cli("lock", str(d), "--refresh", env=env)
            outputs.append(out)
            assert code == 7 and "docker-credential-nosuch is not on PATH" in out and str(conf) in out, out
        # an identity token in auths (what `docker login` writes without a helper)
        conf.write_text(json.dumps({"auths": {server.host: {"identitytoken": REFRESH_TOKEN}}}))
        code, out = cli("lock", str(d), "--refresh", env={"DOCKER_CONFIG": str(cfg)})
        outputs.append(out)
        assert code == 0 and server.token.grants[-1] == "refresh_token", out
        conf.write_text(json.dumps({"auths": {server.host: {"identitytoken": "revoked-refresh-token"}}}))
        code, out = cli("lock", str(d), "--refresh", env={"DOCKER_CONFIG": str(cfg)})
        outputs.append(out)
        assert code == 7 and f"refused the identity token from {conf} (auths.{server.host})" in out, out
        for out in outputs:
            assert PASSWORD not in out and REFRESH_TOKEN not in out and "revoked-refresh-token" not in out


def test_docker_hub_names_reach_its_api_host_with_what_docker_login_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    from releaser.registry import Registry, credentials_for

    # images are named docker.io/library/nats; the API is registry-1.docker.io (no request is made here)
    assert Registry("docker.io").base == "https://registry-1.docker.io"
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:hub-secret").decode()}
                }
            }
        )
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    creds = credentials_for("docker.io")
    assert creds is not None and (creds.username, creds.password) == ("hubuser", "hub-secret")
    assert "hub-secret" not in repr(creds)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(Exception, match="cannot read the Docker config file") as exc:
        credentials_for("docker.io")
    assert type(exc.value).__name__ == "AuthError"


def test_unreachable_registry_is_named(tmp_path: Path) -> None:
    d = release_dir(tmp_path, "127.0.0.1:9")  # discard port: nothing listens
    code, out = cli("lock", str(d))
    assert code == 6 and "127.0.0.1:9 is unreachable" in out
    assert (
        "error: images." in out and "(127.0.0.1:9/" in out and "in release.yaml" in out
    )  # which image asked


def test_a_registry_that_stopped_answering_is_tried_twice_then_named() -> None:
    from releaser.registry import Registry, RegistryError

    from .support.faults import BlackHole

    hole = BlackHole()
    try:
        started = time.monotonic()
        with pytest.raises(RegistryError) as err:
            Registry(hole.host, plain_http=True, timeout=0.5).get_manifest("bmp/gobmp", "v1")
        assert "accepted the connection but did not answer within 0.5 s (2 attempt(s))" in err.value.message
        assert time.monotonic() - started < 3  # not five times the timeout
        assert len(hole.conns) <= 2
    finally:
        hole.close()


def test_transient_faults_are_retried_a_bounded_number_of_times(
    registry: RegistryServer, layout: Path, tmp_path: Path
) -> None:
    from .support.faults import Answer503First

    push_all(layout, registry.host)
    flaky = Answer503First(registry.port, 2)
    try:
        d = release_dir(tmp_path, flaky.host)  # the release names the proxy: its answers are the registry's
        code, out = cli("lock", str(d), "--plain-http")  # no TLS probe: every request the proxy sees is ours
        assert code == 0, out
        assert flaky.served == 2
    finally:
        flaky.close()
    broken = Answer503First(registry.port, 1000)
    try:
        d = release_dir(tmp_path / "b", broken.host)
        started = time.monotonic()
        code, out = cli("lock", str(d), "--plain-http")
        assert code == 6 and "answered 503" in out, out
        assert broken.served == 5  # one try and four retries, then it stops
        assert time.monotonic() - started < 15
    finally:
        broken.close()


def test_malformed_credentials_are_named_without_echoing_them(tmp_path: Path) -> None:
    d = release_dir(tmp_path, "127.0.0.1:9")
    code, out = cli("lock", str(d), "--creds", "just-a-token-value")
    assert code == 7 and "is not USER:PASSWORD" in out and "just-a-token-value" not in out
    code, out = cli("lock", str(d), env={"RELEASER_REGISTRY_AUTH": "127.0.0.1:9=no-colon-secret"})
    assert code == 7 and "127.0.0.1:9=USER:PASSWORD" in out and "no-colon-secret" not in out


def test_the_www_authenticate_parser_reads_what_registries_send() -> None:
    from releaser.registry import parse_auth_header

    h = parse_auth_header(
        'Bearer realm="https://auth.example/token?a=1,b=2",service="registry.example",'
        'scope="repository:a/b:pull,push repository:c:pull"'
    )
    assert (h.scheme, h.realm, h.service) == (
        "bearer",
        "https://auth.example/token?a=1,b=2",
        "registry.example",
    )
    assert h.scope == "repository:a/b:pull,push repository:c:pull"  # commas and spaces inside quotes kept
    h = parse_auth_header('BEARER Realm=https://a/t, Service=reg, error="insufficient_scope", x="a\\"b"')
    assert (h.scheme, h.realm, h.service, h.scope) == (
        "bearer",
        "https://a/t",
        "reg",
        None,
    )  # bare tokens, any case
    assert parse_auth_header('Basic realm="Registry Realm"').scheme == "basic"


def test_requests_to_one_registry_share_one_connection(
    registry: RegistryServer, layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEADs, misses (404), manifests and blobs one after another all go over one kept-alive
    connection: a new TCP connection per request doubled the cost of each small request."""
    import urllib3.connection

    from releaser.registry import Registry

    push_all(layout, registry.host)
    client = Registry(registry.host)
    m = client.get_manifest("library/nats", "v1")
    config = m.json()["config"]["digest"]
    connects = []
    connect = urllib3.connection.HTTPConnection.connect
    monkeypatch.setattr(
        urllib3.connection.HTTPConnection, "connect", lambda self: connects.append(1) or connect(self)
    )
    for _ in range(5):
        assert client.blob_exists("library/nats", config)
        assert not client.blob_exists("library/nats", "sha256:" + "0" * 64)
        assert client.tag_digest("library/nats", "no-such-tag") is None
        assert client.manifest_exists("library/nats", m.descriptor.digest)
        assert b"".join(client.iter_blob("library/nats", config, None))
    assert len(connects) == 0, f"{len(connects)} new connections for 25 requests after the first"


def test_the_environments_proxy_settings_are_followed(
    registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$HTTP_PROXY and $NO_PROXY are read (once per origin): a dead proxy makes the registry
    unreachable through it; naming the registry in $NO_PROXY goes around it."""
    from releaser.errors import RegistryError
    from releaser.registry import Registry

    for name in (
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # discard: nothing answers there
    through = Registry(registry.host, plain_http=True, retries=0)
    with pytest.raises(RegistryError, match="unreachable"):
        through.ping()
    with pytest.raises(RegistryError, match="unreachable"):
        through.ping()  # the settings remembered for the origin still name the proxy
    monkeypatch.setenv("NO_PROXY", registry.host.split(":")[0])
    Registry(registry.host, plain_http=True).ping()


def test_the_referrers_api_is_read_page_by_page_within_its_budget_and_asked_once_where_it_is_missing(
    registry: RegistryServer,
) -> None:
    """A registry without the referrers API (distribution 2.8: 404) is asked once, not once per
    image; one with it is read page by page (Link: rel="next"), a page on another host is not
    followed, and more referrers than the budget stop the read naming the digest."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from releaser.errors import RegistryError
    from releaser.registry import Registry

    digest = "sha256:" + "ab" * 32
    missing = Registry(registry.host)
    assert missing.referrers("library/nats", digest) is None
    assert missing.no_referrers_api and missing.referrers("library/nats", "sha256:" + "cd" * 32) is None
    asked: list[str] = []

    class Paged(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            page = int(self.path.split("page=")[1]) if "page=" in self.path else 0
            manifests = [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": 1,
                    "digest": f"sha256:{page:02d}{i:062d}",
                }
                for i in range(400)
            ]
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": manifests,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            self.send_header("Content-Length", str(len(body)))
            nxt = (
                f"</v2/acme/app/referrers/{digest}?page={page + 1}>"
                if page < 1
                else "<http://elsewhere.example/v2/x>"
            )
            self.send_header("Link", f'{nxt}; rel="next"')
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Paged)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        paged = Registry(f"127.0.0.1:{server.server_address[1]}")
        listed = paged.referrers("acme/app", digest)
        pages = [a for a in asked if "/referrers/" in a]
        assert listed is not None and len(listed) == 800 and len(pages) == 2, (len(listed or ()), asked)
        with pytest.raises(RegistryError, match=f"{digest} has more than 500 referrers") as err:
            paged.referrers("acme/app", digest, most=500)
        assert "cosign clean" in (err.value.fix or "")
    finally:
        server.shutdown()
        server.server_close()
