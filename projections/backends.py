"""Choosing the store: a ClickHouse server URL in production, else chDB in the data directory.

    clickhouse://user:password@host:9000/outage?secure=true   ClickHouseServerStore
    (unset)                                                   ChdbStore(<data dir>/chdb)

The backend modules are imported only when chosen: chDB is large, and a production worker
never needs it.
"""

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from projections.store import Store


def open_store(clickhouse_url: str | None, chdb_path: Path) -> Store:
    if not clickhouse_url:
        from projections.chdb_store import ChdbStore

        chdb_path.mkdir(parents=True, exist_ok=True)
        return ChdbStore(str(chdb_path))
    url = urlparse(clickhouse_url)
    if url.scheme not in ("clickhouse", "clickhouses"):
        raise ValueError(f"OUTAGE_CLICKHOUSE_URL must start with clickhouse://, not {url.scheme!r}")
    options = parse_qs(url.query)
    secure = url.scheme == "clickhouses" or options.get("secure", ["false"])[0] in ("1", "true")
    from projections.clickhouse_server import ClickHouseServerStore

    return ClickHouseServerStore(
        host=url.hostname or "127.0.0.1",
        port=url.port or (9440 if secure else 9000),
        database=url.path.lstrip("/") or "outage",
        user=unquote(url.username or "default"),
        password=unquote(url.password or ""),
        secure=secure,
    )
