"""Transport settings: Kafka TLS/SASL options and credentials, and the ClickHouse URL's TLS part."""

import asyncio
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism

from projections.backends import open_store, server_options
from streams.settings import Settings
from streams.transport import (
    check_kafka_transport,
    kafka_client_options,
    kafka_credentials,
    kafka_ssl_context,
)

# Throwaway test material (EC P-256, made with the openssl CLI for these tests only): a
# self-signed certificate that serves as CA and as client certificate, its key, an unrelated
# key, and the first key encrypted with a password.
CERT = """-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUGMCeQ3VSag2ZbwLjnPzJ0MMfgLEwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQb3V0YWdlIHVuaXQgdGVzdDAgFw0yNjExMjUwNDM0MzZaGA8y
MTI2MTEwMTA0MzQzNlowGzEZMBcGA1UEAwwQb3V0YWdlIHVuaXQgdGVzdDBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABATUmvwaTPwILmEQhZRXDgJc1ryCkZPVktbj
pWdqwJylJxA7FgLZOayNRFs9/kwoDWwo7omX63OqEFF25jlqE4ijUzBRMB0GA1Ud
DgQWBBTyz7hCGpnxi/XHF2L+MiiQ1NIuKjAfBgNVHSMEGDAWgBTyz7hCGpnxi/XH
F2L+MiiQ1NIuKjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQDA
yDOJVFgMkTFhpjyWGqirI8ukCE9Fj7wqsX0B2aCNkQIgMAdaqaaMIwHbyzL7aQYd
2P7jN+iM74w3YbqjOfA2ePw=
-----END CERTIFICATE-----
"""
KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgS03h13fg+CyW4bfO
xd3MNpVrjvnuv1xNLIzQgCdOJZChRANCAAQE1Jr8Gkz8CC5hEIWUVw4CXNa8gpGT
1ZLW46VnasCcpScQOxYC2TmsjURbPf5MKA1sKO6Jl+tzqhBRduY5ahOI
-----END PRIVATE KEY-----
"""
OTHER_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgkvV1py1Oh+n5v6zn
XqIOI9e4HQ9EKZ5Vt/Bg5NnR2wihRANCAAQqwyoH64/0W6a6ax4hskVrUypcyi+R
aX4WevS4KzvaBDWYxbPWFK7tkFdGJfLBPdhY44EhfXqw9GrKHrJo1Und
-----END PRIVATE KEY-----
"""
ENCRYPTED_KEY = """-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjvpjoJPln7tAICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEELF+BWfEFmik7biWaOrJSogEgZDo
CIxUjBAMK1SKg5a6R97tLzunoPSRbjxPnO4R0wuE0adKRqWSBg5x1tROC7u6Erlq
ejjctptNGstJsPfj4T95N+rdDAIPyGE0dy2I7VlZhJYceKYIF2w6k+b+k/N2Y7gq
qFkCl8zkxDk4xvFXghvzBlpVyB3GoGf2s0XeRt+lDZOnk5HHDAXd4BRxvJL6sTU=
-----END ENCRYPTED PRIVATE KEY-----
"""
PASSWORD = "correct horse battery staple"


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, Path]:
    """The test PEM files on disk: ca, cert, key, other_key, encrypted_key."""
    files = {
        "ca": CERT,
        "cert": CERT,
        "key": KEY,
        "other_key": OTHER_KEY,
        "encrypted_key": ENCRYPTED_KEY,
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_text(text)
    return paths


@pytest.fixture(autouse=True)
def no_outage_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings() here see only what a test sets, not the developer's OUTAGE_* variables."""
    for name in list(os.environ):
        if name.startswith("OUTAGE_"):
            monkeypatch.delenv(name)


def kafka(**values: Any) -> Settings:
    return Settings(**{f"kafka_{name}": value for name, value in values.items()})


def sasl(protocol: str, mechanism: str = "SCRAM-SHA-512", **values: Any) -> Settings:
    return kafka(
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username="outage-worker",
        sasl_password=PASSWORD,
        **values,
    )


def without_context(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options with the SSL context replaced by whether there is one (contexts differ)."""
    return {**options, "ssl_context": options.get("ssl_context") is not None}


# --------------------------------------------------------------------------- mapping


def test_plaintext_adds_nothing() -> None:
    """The default (PLAINTEXT): no client keywords and no faust credentials, as before."""
    settings = Settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert kafka_client_options(settings) == {}
    assert kafka_credentials(settings) is None
    assert kafka_ssl_context(settings) is None


def test_ssl_with_ca_verifies_the_broker(pem: dict[str, Path]) -> None:
    """SSL: a context that requires a certificate chaining to the CA file and checks host names."""
    options = kafka_client_options(kafka(security_protocol="SSL", ssl_cafile=pem["ca"]))
    assert options.keys() == {"security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert ["outage unit test" in str(c["subject"]) for c in context.get_ca_certs()] == [True]


def test_ssl_without_ca_still_verifies() -> None:
    """SSL without a CA file trusts the system CAs; verification is never switched off."""
    context = kafka_ssl_context(kafka(security_protocol="SSL"))
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_mutual_tls_loads_the_client_certificate(pem: dict[str, Path]) -> None:
    """SSL with certfile and keyfile (mTLS) builds a context and faust SSLCredentials."""
    settings = kafka(
        security_protocol="SSL",
        ssl_cafile=pem["ca"],
        ssl_certfile=pem["cert"],
        ssl_keyfile=pem["key"],
    )
    assert kafka_client_options(settings)["security_protocol"] == "SSL"
    credentials = kafka_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol is AuthProtocol.SSL
    assert credentials.context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_ssl_scram_sha_512(pem: dict[str, Path]) -> None:
    """SASL_SSL with SCRAM-SHA-512: mechanism, user, password and a TLS context for aiokafka."""
    settings = sasl("SASL_SSL", "SCRAM-SHA-512", ssl_cafile=pem["ca"])
    options = kafka_client_options(settings)
    assert without_context(options) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "outage-worker",
        "sasl_plain_password": PASSWORD,
        "ssl_context": True,
    }
    credentials = kafka_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_512
    assert PASSWORD not in repr(credentials)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_has_no_tls(mechanism: str) -> None:
    """SASL_PLAINTEXT: the mechanism and credentials, no SSL context, faust's SASL_PLAINTEXT."""
    settings = sasl("SASL_PLAINTEXT", mechanism)
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == mechanism
    assert options["ssl_context"] is None
    credentials = kafka_credentials(settings)
    assert credentials.protocol is AuthProtocol.SASL_PLAINTEXT
    assert credentials.mechanism is SASLMechanism(mechanism)


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SSL", "SCRAM-SHA-512"),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
        ("SASL_SSL", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
    ],
)
def test_faust_maps_credentials_to_the_same_options(
    protocol: str, mechanism: str, pem: dict[str, Path]
) -> None:
    """faust's own mapping of our credentials equals our plain-client options, key by key."""
    tls: dict[str, Any] = {"ssl_cafile": pem["ca"]} if "SSL" in protocol else {}
    settings = (
        kafka(security_protocol=protocol, **tls)
        if protocol == "SSL"
        else sasl(protocol, mechanism, **tls)
    )
    from_faust = credentials_to_aiokafka_auth(kafka_credentials(settings))
    assert without_context(from_faust) == without_context(kafka_client_options(settings))


def test_faust_app_takes_the_credentials(pem: dict[str, Path]) -> None:
    """faust.App accepts broker_credentials=kafka_credentials(...) and keeps them in its conf."""
    credentials = kafka_credentials(sasl("SASL_SSL", ssl_cafile=pem["ca"]))
    app = faust.App("transport-test", broker="kafka://127.0.0.1:9", broker_credentials=credentials)
    assert app.conf.broker_credentials is credentials


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_every_aiokafka_client_accepts_the_options(protocol: str, pem: dict[str, Path]) -> None:
    """Consumer, producer and admin client are built with the options (aiokafka checks them)."""
    tls: dict[str, Any] = {"ssl_cafile": pem["ca"]} if "SSL" in protocol else {}
    settings = (
        sasl(protocol, **tls)
        if protocol.startswith("SASL")
        else kafka(**tls, security_protocol=protocol)
    )
    options = kafka_client_options(settings)

    async def build() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", **options)
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", **options)
        admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9", **options)
        assert consumer._client._security_protocol == protocol
        assert producer.client._security_protocol == protocol
        assert admin._client._security_protocol == protocol
        await producer.stop()
        await consumer.stop()

    asyncio.run(build())


def test_environment_variables_drive_the_mapping(
    monkeypatch: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    """The documented OUTAGE_KAFKA_* variables reach the options (SASL_SSL, SCRAM-SHA-512)."""
    monkeypatch.setenv("OUTAGE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("OUTAGE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("OUTAGE_KAFKA_SASL_USERNAME", "outage-worker")
    monkeypatch.setenv("OUTAGE_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("OUTAGE_KAFKA_SSL_CAFILE", str(pem["ca"]))
    options = kafka_client_options(Settings())
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_plain_password"] == PASSWORD
    assert options["ssl_context"].get_ca_certs()


def test_service_builds_the_options_once(pem: dict[str, Path]) -> None:
    """Service.kafka_options is computed once: every plain client shares one SSL context."""
    from streams.app import Service

    service = Service(app=None, settings=kafka(security_protocol="SSL"), correlator=None)  # type: ignore[arg-type]
    assert service.kafka_options is service.kafka_options
    assert service.kafka_options["security_protocol"] == "SSL"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("values", "variable", "reason"),
    [
        ({"security_protocol": "SASL_SSL", "sasl_password": "x"}, "SASL_USERNAME", "required"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"}, "SASL_PASSWORD", "requ"),
        (
            {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": ""},
            "SASL_PASSWORD",
            "required",
        ),
        ({"security_protocol": "SSL", "sasl_username": "u"}, "SASL_USERNAME", "authenticate"),
        ({"sasl_password": "x"}, "SASL_PASSWORD", "does not authenticate"),
    ],
)
def test_sasl_settings_are_checked(values: dict[str, Any], variable: str, reason: str) -> None:
    """SASL_* needs a user and a password; SASL values without SASL_* are refused, not ignored."""
    with pytest.raises(ValueError, match=f"OUTAGE_KAFKA_{variable}.*{reason}"):
        kafka_client_options(kafka(**values))


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_tls_files_without_tls_are_refused(protocol: str, pem: dict[str, Path]) -> None:
    """A CA or client certificate with a protocol without TLS is an error, not plain text."""
    settings = (
        sasl(protocol, ssl_cafile=pem["ca"])
        if protocol.startswith("SASL")
        else kafka(security_protocol=protocol, ssl_cafile=pem["ca"])
    )
    with pytest.raises(ValueError, match=r"OUTAGE_KAFKA_SSL_CAFILE set.*does not use TLS"):
        kafka_credentials(settings)


def test_certfile_without_keyfile_is_refused(pem: dict[str, Path]) -> None:
    """mTLS needs both halves: a certificate without its key names OUTAGE_KAFKA_SSL_KEYFILE."""
    with pytest.raises(ValueError, match="OUTAGE_KAFKA_SSL_KEYFILE is required"):
        kafka_client_options(kafka(security_protocol="SSL", ssl_certfile=pem["cert"]))


def test_keyfile_without_certfile_is_refused(pem: dict[str, Path]) -> None:
    """A key without its certificate names OUTAGE_KAFKA_SSL_CERTFILE."""
    with pytest.raises(ValueError, match="OUTAGE_KAFKA_SSL_CERTFILE is required"):
        kafka_client_options(kafka(security_protocol="SSL", ssl_keyfile=pem["key"]))


@pytest.mark.parametrize("variable", ["cafile", "certfile", "keyfile"])
def test_missing_files_are_named(variable: str, pem: dict[str, Path], tmp_path: Path) -> None:
    """A path that does not exist fails at start, naming the variable and the path."""
    files = {"cafile": pem["ca"], "certfile": pem["cert"], "keyfile": pem["key"]}
    files[variable] = tmp_path / "nowhere.pem"
    settings = kafka(security_protocol="SSL", **{f"ssl_{k}": v for k, v in files.items()})
    with pytest.raises(ValueError, match=f"OUTAGE_KAFKA_SSL_{variable.upper()}=.*no such file"):
        kafka_client_options(settings)


def test_ca_file_that_is_no_certificate_is_refused(pem: dict[str, Path]) -> None:
    """A CA file without a certificate in it names OUTAGE_KAFKA_SSL_CAFILE."""
    with pytest.raises(ValueError, match=r"OUTAGE_KAFKA_SSL_CAFILE=.*not a CA bundle"):
        kafka_client_options(kafka(security_protocol="SSL", ssl_cafile=pem["key"]))


def test_key_of_another_certificate_is_refused(pem: dict[str, Path]) -> None:
    """A key that does not belong to the certificate is an error naming both variables."""
    settings = kafka(
        security_protocol="SSL", ssl_certfile=pem["cert"], ssl_keyfile=pem["other_key"]
    )
    with pytest.raises(ValueError, match=r"OUTAGE_KAFKA_SSL_CERTFILE=.*OUTAGE_KAFKA_SSL_KEYFILE="):
        kafka_client_options(settings)


def test_encrypted_key_fails_instead_of_prompting(pem: dict[str, Path]) -> None:
    """An encrypted key raises at start; OpenSSL never prompts on a terminal for a password."""
    settings = kafka(
        security_protocol="SSL", ssl_certfile=pem["cert"], ssl_keyfile=pem["encrypted_key"]
    )
    with pytest.raises(ValueError, match="OUTAGE_KAFKA_SSL_KEYFILE is encrypted"):
        kafka_client_options(settings)


def test_errors_never_show_the_password() -> None:
    """Validation messages name variables, never the SASL password's value."""
    with pytest.raises(ValueError) as error:
        check_kafka_transport(kafka(security_protocol="SSL", sasl_password=PASSWORD))
    assert PASSWORD not in str(error.value)


# --------------------------------------------------------------------------- ClickHouse URL


def test_plain_url_is_unchanged() -> None:
    """Without TLS parameters the store gets exactly the options it always got."""
    assert server_options("clickhouse://outage:pw@ch.internal:9000/analytics") == {
        "host": "ch.internal",
        "port": 9000,
        "database": "analytics",
        "user": "outage",
        "password": "pw",
        "secure": False,
    }


def test_secure_url_verifies_by_default() -> None:
    """secure=true: TLS on port 9440 by default, certificate verification on."""
    options = server_options("clickhouse://ch.internal/outage?secure=true")
    assert (options["secure"], options["port"], options["verify"]) == (True, 9440, True)
    assert "ca_certs" not in options


def test_ca_certs_and_verify_are_passed(pem: dict[str, Path]) -> None:
    """ca_certs and verify=true reach the driver options; clickhouses:// means secure."""
    options = server_options(f"clickhouses://ch.internal:9440/outage?ca_certs={pem['ca']}&verify=1")
    assert options["secure"] is True
    assert options["ca_certs"] == str(pem["ca"])
    assert options["verify"] is True


def test_verify_false_is_passed() -> None:
    """verify=false switches the check off (test set-ups only)."""
    assert server_options("clickhouse://h/db?secure=true&verify=false")["verify"] is False


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "clickhouse://h/db?secure=true&sslmode=require&tls=1",
            "unknown query parameter.*sslmode, tls",
        ),
        ("clickhouse://h/db?secure=true&secure=false", "secure given twice"),
        ("clickhouse://h/db?secure=maybe", "secure='maybe'; use true or false"),
        ("clickhouse://h/db?ca_certs=/etc/ssl/ca.pem", "ca_certs only apply to TLS"),
        ("clickhouse://h/db?verify=true", "verify only apply to TLS"),
        ("clickhouses://h/db?secure=false", "clickhouses:// with secure=false"),
        (
            "clickhouse://h/db?secure=true&ca_certs=/nowhere/ca.pem",
            "ca_certs=/nowhere/ca.pem: no such",
        ),
        ("postgres://h/db", "must start with clickhouse://"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    """Unknown, repeated, contradictory or malformed URL options raise a ValueError saying which."""
    with pytest.raises(ValueError, match=f"OUTAGE_CLICKHOUSE_URL.*{message}"):
        server_options(url)


def test_ca_certs_with_verify_false_is_refused(pem: dict[str, Path]) -> None:
    """A CA with verify=false would go unused: refused as contradictory."""
    with pytest.raises(ValueError, match="ca_certs with verify=false"):
        server_options(f"clickhouse://h/db?secure=true&verify=false&ca_certs={pem['ca']}")


def test_url_errors_never_show_the_password() -> None:
    """The URL may hold the password: messages name parameters, never repeat the URL."""
    with pytest.raises(ValueError) as error:
        server_options(f"clickhouse://outage:{PASSWORD}@h/db?bogus=1")
    assert PASSWORD not in str(error.value)


def test_open_store_hands_tls_options_to_the_driver(pem: dict[str, Path], tmp_path: Path) -> None:
    """open_store builds the server store with secure, verify and ca_certs (it connects lazily)."""
    store = open_store(f"clickhouse://127.0.0.1:9/db?secure=true&ca_certs={pem['ca']}", tmp_path)
    try:
        options = store._options  # type: ignore[attr-defined]
        assert (options["secure"], options["verify"], options["ca_certs"]) == (
            True,
            True,
            str(pem["ca"]),
        )
    finally:
        store.close()
