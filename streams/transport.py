"""Transport security towards Kafka: from Settings to aiokafka client options and faust credentials.

    OUTAGE_KAFKA_SECURITY_PROTOCOL  PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    OUTAGE_KAFKA_SASL_MECHANISM     PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (SASL_* only)
    OUTAGE_KAFKA_SASL_USERNAME / OUTAGE_KAFKA_SASL_PASSWORD          (SASL_* only)
    OUTAGE_KAFKA_SSL_CAFILE         CA bundle of the brokers (unset: the system CAs)
    OUTAGE_KAFKA_SSL_CERTFILE / OUTAGE_KAFKA_SSL_KEYFILE             client cert (mTLS)

`kafka_client_options` gives the keyword arguments for every plain aiokafka client
(AIOKafkaConsumer, AIOKafkaProducer, AIOKafkaAdminClient); `kafka_credentials` gives faust's
`broker_credentials`, which faust-streaming 0.15.3 turns into the same arguments for its own
clients (`credentials_to_aiokafka_auth` in faust/transport/drivers/aiokafka.py). Both check the
combination first and raise ValueError naming the OUTAGE_* variable at fault, so a worker
stops at start instead of retrying a connection that can never work. PLAINTEXT gives `{}` and
None: the clients are built exactly as before.
"""

import ssl
from pathlib import Path
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context

from streams.settings import Settings

SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")


def check_kafka_transport(settings: Settings) -> None:
    """Raise ValueError, naming the variable, if the Kafka transport settings do not fit."""
    protocol = settings.kafka_security_protocol
    sasl_set = [
        name
        for name, value in (
            ("OUTAGE_KAFKA_SASL_USERNAME", settings.kafka_sasl_username),
            ("OUTAGE_KAFKA_SASL_PASSWORD", settings.kafka_sasl_password),
        )
        if value is not None
    ]
    files = {
        "OUTAGE_KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "OUTAGE_KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "OUTAGE_KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
    }
    # A setting that would be silently ignored usually means the protocol was forgotten:
    # refuse, rather than talk in the clear to a broker the operator meant to secure.
    if protocol in SASL_PROTOCOLS:
        password = settings.kafka_sasl_password
        if not settings.kafka_sasl_username:
            raise ValueError(f"OUTAGE_KAFKA_SASL_USERNAME is required with {protocol}")
        if password is None or not password.get_secret_value():
            raise ValueError(f"OUTAGE_KAFKA_SASL_PASSWORD is required with {protocol}")
    elif sasl_set:
        raise ValueError(
            f"{' and '.join(sasl_set)} set, but OUTAGE_KAFKA_SECURITY_PROTOCOL={protocol} "
            "does not authenticate: use SASL_SSL (or SASL_PLAINTEXT)"
        )
    if protocol not in TLS_PROTOCOLS:
        given = [name for name, path in files.items() if path is not None]
        if given:
            raise ValueError(
                f"{' and '.join(given)} set, but OUTAGE_KAFKA_SECURITY_PROTOCOL={protocol} "
                "does not use TLS: use SSL or SASL_SSL"
            )
        return
    certfile, keyfile = settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile
    if (certfile is None) != (keyfile is None):
        missing, given_name = (
            ("OUTAGE_KAFKA_SSL_KEYFILE", "OUTAGE_KAFKA_SSL_CERTFILE")
            if keyfile is None
            else ("OUTAGE_KAFKA_SSL_CERTFILE", "OUTAGE_KAFKA_SSL_KEYFILE")
        )
        raise ValueError(f"{missing} is required with {given_name} (client certificate, mTLS)")
    for name, path in files.items():
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{name}={path}: no such file")


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The client TLS context (hostname checked, CA and client cert loaded), or None."""
    check_kafka_transport(settings)
    if settings.kafka_security_protocol not in TLS_PROTOCOLS:
        return None
    cafile, certfile = settings.kafka_ssl_cafile, settings.kafka_ssl_certfile
    try:
        context = create_ssl_context(cafile=str(cafile) if cafile else None)
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"OUTAGE_KAFKA_SSL_CAFILE={cafile}: not a CA bundle: {error}") from None
    if certfile is not None:
        keyfile = settings.kafka_ssl_keyfile
        try:
            # A password callback, so that an encrypted key fails here instead of OpenSSL
            # prompting on a terminal a service does not have.
            context.load_cert_chain(str(certfile), str(keyfile), _no_key_password)
        except (ssl.SSLError, OSError) as error:
            raise ValueError(
                f"OUTAGE_KAFKA_SSL_CERTFILE={certfile} / OUTAGE_KAFKA_SSL_KEYFILE={keyfile}: "
                f"cannot load the client certificate and key: {error}"
            ) from None
    return context


def _no_key_password() -> str:
    raise ValueError(
        "OUTAGE_KAFKA_SSL_KEYFILE is encrypted; give an unencrypted key "
        "(readable by the service user only)"
    )


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for AIOKafkaConsumer/Producer/AdminClient ({} for PLAINTEXT).

    The same keys and values faust derives from `kafka_credentials`, so the worker's own
    clients and the plain ones connect alike.
    """
    context = kafka_ssl_context(settings)
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    if protocol == "SSL":
        return {"security_protocol": "SSL", "ssl_context": context}
    password = settings.kafka_sasl_password
    assert password is not None  # checked above
    return {
        "security_protocol": protocol,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": password.get_secret_value(),
        "ssl_context": context,
    }


def kafka_credentials(settings: Settings) -> Any:
    """faust's `broker_credentials`: SASLCredentials, SSLCredentials, or None for PLAINTEXT."""
    context = kafka_ssl_context(settings)
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        # Pass the context: SSLCredentials() without one cannot build its own in 0.15.3.
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password
    assert password is not None  # checked above
    # faust makes it SASL_SSL when given a context, SASL_PLAINTEXT without one.
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value(),
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )
