"""ClickHouse over TLS for real: Debian's clickhouse-server 18.16 with a throwaway CA.

The openssl CLI makes a CA, a server certificate for 127.0.0.1 signed by it, and a second,
unrelated CA; the server gets a `tcp_port_secure` next to its plain port. The store is opened
through `open_store` and OUTAGE_CLICKHOUSE_URL's query parameters, as a worker would.
"""

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from projections.backends import open_store
from projections.local_server import MISSING, ClickHouseServer, server_binary
from projections.store import StoreUnavailable
from streams.broker import free_port

pytestmark = pytest.mark.integration

# Added to the config of projections.local_server: the secure native port and its certificate.
TLS_CONFIG = """  <tcp_port_secure>{secure_port}</tcp_port_secure>
  <openSSL>
    <server>
      <certificateFile>{cert}</certificateFile>
      <privateKeyFile>{key}</privateKeyFile>
      <verificationMode>none</verificationMode>
      <loadDefaultCAFile>false</loadDefaultCAFile>
      <cacheSessions>true</cacheSessions>
      <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
      <preferServerCiphers>true</preferServerCiphers>
    </server>
  </openSSL>
</yandex>
"""


@dataclass
class Pki:
    ca: Path  # signed the server certificate
    other_ca: Path  # signed nothing the server has


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated second CA."""
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE"]
    ca_ext += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    for name in ("ca", "other-ca"):
        _openssl(
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=outage test {name}"),
            *ca_ext,
            cwd=directory,
        )
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key"),
        *("-out", "server.csr", "-subj", "/CN=127.0.0.1"),
        cwd=directory,
    )
    _openssl(
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "2", "-out", "server.pem", "-extfile", "server.ext"),
        cwd=directory,
    )
    return Pki(ca=directory / "ca.pem", other_ca=directory / "other-ca.pem")


class TlsClickHouseServer(ClickHouseServer):
    """The test server of projections.local_server with a TLS native port added."""

    def __init__(self, binary: str, directory: Path) -> None:
        super().__init__(binary, directory)
        self.pki = make_pki(directory)
        self.secure_port = free_port()
        config = self.config.read_text(encoding="utf-8")
        tls = TLS_CONFIG.format(
            secure_port=self.secure_port,
            cert=directory / "server.pem",
            key=directory / "server.key",
        )
        self.config.write_text(config.replace("</yandex>\n", tls), encoding="utf-8")

    def secure_url(self, query: str, host: str = "127.0.0.1") -> str:
        """OUTAGE_CLICKHOUSE_URL of the secure port, database `default`, with `query`."""
        return f"clickhouse://{host}:{self.secure_port}/default?{query}"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsClickHouseServer]:
    """clickhouse-server with a secure port whose certificate a throwaway CA signed."""
    binary = server_binary()
    if binary is None or shutil.which("openssl") is None:
        reason = MISSING if binary is None else "the openssl CLI is not installed"
        if os.environ.get("CI") or os.environ.get("OUTAGE_REQUIRE_CLICKHOUSE"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = TlsClickHouseServer(binary, tmp_path_factory.mktemp("clickhouse-tls"))
    server.start()  # waits on the plain port; the secure one opens with it
    try:
        yield server
    finally:
        server.stop()


def query_one(url: str) -> object:
    store = open_store(url, Path("unused-chdb"))
    try:
        return store.query("SELECT 1 AS ok")
    finally:
        store.close()


def test_query_over_tls_with_the_right_ca(tls_server: TlsClickHouseServer) -> None:
    """secure=true with ca_certs of the signing CA connects and queries over TLS."""
    url = tls_server.secure_url(f"secure=true&ca_certs={tls_server.pki.ca}&verify=true")
    assert query_one(url) == [{"ok": 1}]


def test_clickhouses_scheme_is_tls(tls_server: TlsClickHouseServer) -> None:
    """clickhouses:// means secure=true: it connects to the TLS port with the CA."""
    url = tls_server.secure_url(f"ca_certs={tls_server.pki.ca}").replace(
        "clickhouse://", "clickhouses://"
    )
    assert query_one(url) == [{"ok": 1}]


def test_store_migrates_and_writes_over_tls(tls_server: TlsClickHouseServer) -> None:
    """The whole store works over TLS: migrations applied, a row written and read back."""
    store = open_store(
        f"clickhouse://127.0.0.1:{tls_server.secure_port}/tls_test?secure=true"
        f"&ca_certs={tls_server.pki.ca}",
        Path("unused-chdb"),
    )
    try:
        assert store.migrate()
        assert store.query("SELECT count() AS n FROM schema_migrations")[0]["n"] >= 1
    finally:
        store.command("DROP DATABASE IF EXISTS tls_test")
        store.close()


def test_wrong_ca_is_refused_with_a_clear_error(tls_server: TlsClickHouseServer) -> None:
    """With verify on, a CA that did not sign the server certificate fails the handshake."""
    url = tls_server.secure_url(f"secure=true&ca_certs={tls_server.pki.other_ca}")
    with pytest.raises(StoreUnavailable) as error:
        query_one(url)
    assert "TLS handshake failed" in str(error.value)
    assert "OUTAGE_CLICKHOUSE_URL" in str(error.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error.value)


def test_default_trust_does_not_accept_a_private_ca(tls_server: TlsClickHouseServer) -> None:
    """secure=true without ca_certs trusts public CAs only: a private CA's cert is refused."""
    with pytest.raises(StoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        query_one(tls_server.secure_url("secure=true"))


def test_host_name_is_checked(tls_server: TlsClickHouseServer) -> None:
    """The right CA is not enough: the certificate must name the host connected to."""
    url = tls_server.secure_url(f"secure=true&ca_certs={tls_server.pki.ca}", host="localhost")
    with pytest.raises(StoreUnavailable, match="Hostname mismatch"):
        query_one(url)


def test_verify_false_skips_the_certificate_check(tls_server: TlsClickHouseServer) -> None:
    """verify=false connects whatever the certificate (test set-ups only, never production)."""
    assert query_one(tls_server.secure_url("secure=true&verify=false")) == [{"ok": 1}]


def test_plain_client_on_the_tls_port_fails(tls_server: TlsClickHouseServer) -> None:
    """Without secure=true nothing is sent in the clear to the TLS port: it fails."""
    with pytest.raises(StoreUnavailable):
        query_one(f"clickhouse://127.0.0.1:{tls_server.secure_port}/default")
