"""Starting the service: the embedded broker when no broker is configured, then one worker.

The embedded Tansu is a child of this process: started before the worker, stopped after it.
"""

import sys
from typing import Any

import faust
import structlog

from correlators.correlator import Correlator
from correlators.rules import CorrelationRules
from streams import logs
from streams.app import Service, create_app
from streams.broker import EmbeddedBroker
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


def banner(settings: Settings, broker: str) -> str:
    base = f"http://{settings.web_host}:{settings.web_port}"
    return f"""
outage-correlator is ready
  broker     {broker}
  API        {base}/v1/incidents   (active incidents)
  lookup     {base}/v1/outages?address=12%20Birch%20Street
  health     {base}/health
Report a call:
  curl -s -X POST {base}/v1/calls -H 'content-type: application/json' -d '{{
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
    correlator = Correlator(topology, CorrelationRules.load(settings.rules))
    broker: EmbeddedBroker | None = None
    if settings.broker is None:
        broker = EmbeddedBroker(port=settings.broker_port or None, storage=settings.broker_storage)
        broker.start()
        settings = settings.model_copy(update={"broker": broker.bootstrap})
    log.info("service.starting", broker=settings.broker, nodes=len(topology))
    try:
        service = create_app(settings, correlator)
        worker: Any = _Worker(service.app, loglevel="WARNING", quiet=True, override_logging=False)
        worker.banner_text = banner(settings, str(settings.broker))
        worker.service = service
        worker.spinner = None  # its terminal escape codes would end up in log files
        worker.execute_from_commandline()
    finally:
        if broker is not None:
            broker.stop()
    return 0
