"""Starting the service: the embedded broker when no broker is configured, then one worker.

The embedded Tansu is a child of this process: started before the worker, stopped after it.
"""

import sys
from typing import Any

import faust
import structlog

from access.roles import ROLES
from access.store import AccessError, AccessStore, new_password
from correlators.correlator import Correlator
from correlators.rules import CorrelationRules
from streams import logs
from streams.app import Service, create_app
from streams.broker import EmbeddedBroker
from streams.s3server import LocalS3
from streams.settings import Settings
from topology.load import load_topologies

log = structlog.get_logger("outage")


class _Worker(faust.Worker):
    """A faust worker that says where to reach the service once it is ready."""

    banner_text = ""
    service: Service | None = None

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        if self.service is not None:
            self.service.ready = True
        print(self.banner_text, file=sys.stderr, flush=True)


def first_admin(settings: Settings) -> str:
    """Make user 'admin' when no enabled admin exists; say how to log in either way."""
    store = AccessStore(settings.access_path)
    if store.has_admin() or not settings.bootstrap_admin:
        return "  log in     with your user (`outage users add NAME --roles ...` makes one)"
    password = new_password()
    try:
        # Every role, so the first person can try everything; give others only what they need.
        store.add_user("admin", password, frozenset(ROLES))
    except AccessError as error:  # e.g. a disabled 'admin' exists: leave it to a person
        return f"  log in     no enabled admin ({error}); `outage users add` makes one"
    saved = settings.data_dir / "initial-admin-password"
    saved.write_text(password + "\n")
    saved.chmod(0o600)
    log.info("access.first_admin", user="admin", password_file=str(saved))
    return (
        f"  log in     user admin, password {password}  (also in {saved}; change it with\n"
        "             `outage users passwd admin`, add people with `outage users add`)"
    )


def banner(settings: Settings, broker: str, login: str) -> str:
    base = f"http://{settings.web_host}:{settings.web_port}"
    return f"""
outage-correlator is ready
  broker     {broker}
  start      {base}/login
{login}
  API        {base}/openapi.json   (every call needs a login or an API key)
  health     {base}/health
Report a call with an API key (`outage keys create crm --roles agent` prints one):
  curl -s -X POST {base}/v1/calls -H "Authorization: Bearer $KEY" \\
    -H 'content-type: application/json' -d '{{
    "type": "call_reported", "schema_version": 1, "event_id": "call-1",
    "occurred_at": "'"$(date -u +%FT%TZ)"'", "utility": "heat",
    "premise_id": "P-HSUB1-B2-01", "symptom": "no_heat", "scope": "whole_building"}}'
Stop with Ctrl-C.
"""


def run_service(port: int | None = None, settings: Settings | None = None) -> int:
    settings = settings or Settings()
    if port:
        settings = settings.model_copy(update={"web_port": port})
    logs.configure(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    topology = load_topologies(settings.topology)
    # Callers' numbers on the incident stream are keyed hashes (see caller_key).
    correlator = Correlator(
        topology, CorrelationRules.load(settings.rules), reporter_key=settings.analytics_key()
    )
    broker: EmbeddedBroker | None = None
    if settings.broker is None and settings.kafka_security_protocol != "PLAINTEXT":
        # The embedded broker speaks plain text only: never fall back to it silently.
        raise SystemExit(
            "outage: OUTAGE_KAFKA_SECURITY_PROTOCOL is set but OUTAGE_BROKER is not; "
            "the embedded broker has no TLS or SASL"
        )
    s3: LocalS3 | None = None
    if settings.broker is None:
        storage, tansu_env = settings.broker_storage, {}
        if storage == "durable":
            # Records the broker accepted are kept in DATA_DIR/broker across restarts.
            s3 = LocalS3(settings.data_dir / "broker").start()
            storage, tansu_env = s3.storage, s3.tansu_env()
        broker = EmbeddedBroker(
            port=settings.broker_port or None, storage=storage, extra_env=tansu_env
        )
        try:
            broker.start()
        except BaseException:
            if s3 is not None:
                s3.stop()
            raise
        settings = settings.model_copy(update={"broker": broker.bootstrap})
    log.info(
        "service.starting",
        broker=settings.broker,
        storage=settings.broker_storage,
        nodes=len(topology),
    )
    try:
        service = create_app(settings, correlator)
        worker: Any = _Worker(service.app, loglevel="WARNING", quiet=True, override_logging=False)
        worker.banner_text = banner(settings, str(settings.broker), first_admin(settings))
        worker.service = service
        worker.spinner = None  # its terminal escape codes would end up in log files
        worker.execute_from_commandline()
    finally:
        if broker is not None:
            broker.stop()  # first the broker, then the storage it writes to
        if s3 is not None:
            s3.stop()
    return 0
