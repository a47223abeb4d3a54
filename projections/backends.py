"""Choosing the store: a ClickHouse server URL in production, else chDB in the data directory.

    clickhouse://user:password@host:9000/outage                ClickHouseServerStore, plain TCP
    clickhouse://user:password@host:9440/outage?secure=true    ... over TLS (clickhouses://
                                                               is the same), with optional
        ca_certs=/path/ca.pem   CA bundle the server certificate must chain to (default: the
                                certifi bundle of public CAs)
        verify=false            no certificate or host name check: test set-ups only
    (unset)                                                    ChdbStore(<data dir>/chdb)

Any other query parameter is refused: a misspelt `secure` must not silently mean plain TCP.
The backend modules are imported only when chosen: chDB is large, and a production worker
never needs it.
"""

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from projections.store import Store

URL_VARIABLE = "OUTAGE_CLICKHOUSE_URL"
QUERY_PARAMETERS = ("secure", "ca_certs", "verify")
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def server_options(clickhouse_url: str) -> dict[str, Any]:
    """The ClickHouseServerStore arguments a clickhouse:// URL stands for; ValueError if wrong.

    Messages name the URL's parts, never the URL itself: it may hold a password.
    """
    url = urlparse(clickhouse_url)
    if url.scheme not in ("clickhouse", "clickhouses"):
        raise ValueError(f"{URL_VARIABLE} must start with clickhouse://, not {url.scheme!r}")
    query = parse_qs(url.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        raise ValueError(
            f"{URL_VARIABLE}: unknown query parameter(s) {', '.join(unknown)} "
            f"(known: {', '.join(QUERY_PARAMETERS)})"
        )
    repeated = sorted(name for name, values in query.items() if len(values) > 1)
    if repeated:
        raise ValueError(f"{URL_VARIABLE}: query parameter(s) {', '.join(repeated)} given twice")
    given = {name: values[0] for name, values in query.items()}
    secure = url.scheme == "clickhouses"
    if "secure" in given:
        if secure and not _flag("secure", given["secure"]):
            raise ValueError(f"{URL_VARIABLE}: clickhouses:// with secure=false; pick one")
        secure = _flag("secure", given["secure"])
    options: dict[str, Any] = {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or (9440 if secure else 9000),
        "database": url.path.lstrip("/") or "outage",
        "user": unquote(url.username or "default"),
        "password": unquote(url.password or ""),
        "secure": secure,
    }
    tls_only = [name for name in ("ca_certs", "verify") if name in given]
    if tls_only and not secure:
        raise ValueError(
            f"{URL_VARIABLE}: {' and '.join(tls_only)} only apply to TLS; "
            "add secure=true (or use clickhouses://)"
        )
    verify = _flag("verify", given["verify"]) if "verify" in given else True
    ca_certs = given.get("ca_certs")
    if ca_certs is not None:
        if not verify:
            raise ValueError(f"{URL_VARIABLE}: ca_certs with verify=false; the CA would be unused")
        if not Path(ca_certs).is_file():
            raise ValueError(f"{URL_VARIABLE}: ca_certs={ca_certs}: no such file")
        options["ca_certs"] = ca_certs
    if secure:
        options["verify"] = verify
    return options


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"{URL_VARIABLE}: {name}={value!r}; use true or false")


def open_store(clickhouse_url: str | None, chdb_path: Path) -> Store:
    if not clickhouse_url:
        from projections.chdb_store import ChdbStore

        chdb_path.mkdir(parents=True, exist_ok=True)
        return ChdbStore(str(chdb_path))
    options = server_options(clickhouse_url)
    from projections.clickhouse_server import ClickHouseServerStore

    return ClickHouseServerStore(**options)
