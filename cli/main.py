"""`outage`: the one entry point. Wires settings, network, rules and the app together.

outage run                 the service: embedded broker unless OUTAGE_BROKER is set
outage replay ...          the correlators over a JSONL file, without Kafka
outage schema              JSON Schema of every inbound and derived event
outage topology check F    validate network files
outage topology import ... pandapower, OpenDSS or heating-network models to topology CSV
outage report ...          daily, handover and callback reports from ClickHouse
outage projections rebuild refill the ClickHouse tables from the event store
outage retention enforce   delete caller data past its retention (cron)
outage users / keys ...    who may log in, which systems may call the API
outage simulate / evaluate a storm with known answers, and its score
outage records ...         replay public records (NYC 311 heat complaints, Union Power outages)
outage scada run|check|points  SCADA connectors: control-system points to scada_signal events
"""

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cli import accounts, network_import, retention, scada
from correlators.correlator import Correlator
from correlators.replay import replay
from correlators.rules import CorrelationRules
from events.codec import EventRejected, decode_inbound, encode, json_schemas
from projections.reports import ReportError, report_day
from streams.settings import Settings
from topology.load import load_topologies
from topology.model import TopologyError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outage", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the service (embedded broker by default)")
    run.add_argument("--port", type=int, help="HTTP port (default: OUTAGE_WEB_PORT or 8080)")

    rep = commands.add_parser("replay", help="correlate a JSONL file of inbound events offline")
    rep.add_argument("--topology", action="append", required=True, type=Path, metavar="FILE")
    rep.add_argument("--events", required=True, type=Path, metavar="FILE.jsonl")
    rep.add_argument("--out", type=Path, metavar="derived.jsonl")
    rep.add_argument("--summary", type=Path, metavar="summary.json")
    rep.add_argument("--rules", type=Path, metavar="rules.toml")

    commands.add_parser("schema", help="print the JSON Schema of every event")

    topo = commands.add_parser("topology", help="network model tools")
    topo_commands = topo.add_subparsers(dest="topology_command", required=True)
    check = topo_commands.add_parser("check", help="validate network files")
    check.add_argument("files", nargs="+", type=Path)
    network_import.add_parser(topo_commands)

    report = commands.add_parser("report", help="reports from the ClickHouse projections")
    reports = report.add_subparsers(dest="report", required=True)
    day = reports.add_parser("daily", help="the day's report (UTC)")
    day.add_argument("--date", type=date.fromisoformat, help="YYYY-MM-DD (default: today)")
    day.add_argument("--chart", type=Path, metavar="FILE.png", help="also draw calls per hour")
    reports.add_parser("handover", help="what the incoming shift lead takes over")
    back = reports.add_parser("callbacks", help="callers of a restored incident, once each")
    back.add_argument("--incident", required=True)
    for sub in (day, reports.choices["handover"], back):
        sub.add_argument("--format", choices=["table", "csv", "json"], default="table")
        sub.add_argument(
            "--api", metavar="URL", help="ask a running service (e.g. http://127.0.0.1:8080)"
        )

    proj = commands.add_parser("projections", help="the ClickHouse read models")
    proj_commands = proj.add_subparsers(dest="projections_command", required=True)
    rebuild = proj_commands.add_parser(
        "rebuild", help="empty the tables and project the event store again"
    )
    rebuild.add_argument(
        "--derived",
        action="append",
        type=Path,
        default=[],
        metavar="derived.jsonl",
        help="incident-stream events exported by `outage replay --out` (instead of the broker)",
    )
    rebuild.add_argument(
        "--inbound",
        action="append",
        type=Path,
        default=[],
        metavar="events.jsonl",
        help="inbound events (calls, signals, works) to archive with them",
    )

    retention.add_parser(commands)
    accounts.add_parsers(commands)
    scada.add_parser(commands)

    sim = commands.add_parser("simulate", help="a seeded storm with known answers")
    sim.add_argument("--topology", action="append", required=True, type=Path, metavar="FILE")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--faults", type=int, default=5)
    sim.add_argument("--device", action="append", default=[], help="plant a fault here")
    sim.add_argument("--noise", type=int, default=10, help="unrelated individual calls")
    sim.add_argument("--call-share", type=float, default=0.4)
    sim.add_argument("--no-scada", action="store_true", help="no telemetry at all")
    sim.add_argument(
        "--telemetered-faults", type=int, default=0, help="random faults on telemetered devices"
    )
    sim.add_argument("--out", required=True, type=Path, metavar="storm.jsonl")
    sim.add_argument("--truth", required=True, type=Path, metavar="truth.json")

    ev = commands.add_parser("evaluate", help="replay a simulated storm and score it")
    ev.add_argument("--topology", action="append", type=Path, metavar="FILE")
    ev.add_argument("--events", type=Path, metavar="storm.jsonl")
    ev.add_argument("--truth", type=Path, metavar="truth.json")
    ev.add_argument(
        "--suite", action="store_true", help="the fixed scenario suite (docs/QUALITY.md)"
    )
    ev.add_argument(
        "--network",
        action="append",
        metavar="NAME",
        help="suite networks (default: heat-district, lv_schutterwald, mv_oberrhein; "
        "also heat-sample, power-sample)",
    )
    ev.add_argument("--rules", type=Path, metavar="rules.toml")
    ev.add_argument("--json", type=Path, metavar="score.json", help="also write the score")

    recs = commands.add_parser("records", help="replay public call and outage records")
    recs.add_argument("source", choices=("nyc311", "union-power"))
    recs.add_argument("files", nargs="+", type=Path)
    recs.add_argument("--rules", type=Path, metavar="rules.toml")
    recs.add_argument("--json", type=Path, metavar="summary.json")

    args = parser.parse_args(argv)
    try:
        if args.command == "schema":
            print(json.dumps(json_schemas(), indent=2))
            return 0
        if args.command == "topology" and args.topology_command == "import":
            return network_import.run_import(args)
        if args.command == "topology":
            return check_topology(args.files)
        if args.command == "replay":
            return run_replay(args)
        if args.command == "report":
            return run_report(args)
        if args.command == "projections":
            return run_rebuild(args)
        if args.command == "retention":
            return retention.run(args)
        if args.command == "scada":
            return scada.run(args)
        if args.command in ("users", "keys"):
            return accounts.run(args)
        if args.command == "simulate":
            return run_simulate(args)
        if args.command == "evaluate":
            return run_evaluate(args)
        if args.command == "records":
            return run_records(args)
        from streams.service import run_service  # imports faust: only when it is needed

        return run_service(port=args.port)
    except (TopologyError, ValueError, OSError, ReportError) as error:
        print(f"outage: {error}", file=sys.stderr)
        return 2


def check_topology(files: list[Path]) -> int:
    topology = load_topologies(files)
    roots = topology.roots()
    print(f"{len(topology)} nodes in {len(roots)} correlation domain(s): {', '.join(roots[:10])}")
    for kind, count in topology.kinds().items():
        print(f"  {kind:16} {count}")
    return 0


def read_events(path: Path, rejected: list[dict[str, Any]]) -> Iterator[Any]:
    """Inbound events of a JSONL file; a bad line is reported, never fatal."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield decode_inbound(line)
            except EventRejected as error:
                rejected.append({"line": number, "reason": error.reason})


def run_replay(args: argparse.Namespace) -> int:
    topology = load_topologies(args.topology)
    # The service's key, when there is one: reporter hashes then equal the live stream's.
    key = Settings().existing_analytics_key()
    correlator = Correlator(topology, CorrelationRules.load(args.rules), reporter_key=key)
    bad_lines: list[dict[str, Any]] = []
    result = replay(correlator, read_events(args.events, bad_lines))
    if args.out:
        with args.out.open("wb") as out:
            for event in result.derived:
                out.write(encode(event) + b"\n")
    summary = result.summary()
    summary["rejected"] = bad_lines + summary["rejected"]
    if args.summary:
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    incidents = summary["incidents"]
    attached = sum(len(i["call_ids"]) for i in incidents if i["state"] != "merged")
    print(
        f"{len(result.derived)} derived events, {len(incidents)} incidents, "
        f"{attached} calls attached, {len(summary['rejected'])} rejected",
        file=sys.stderr,
    )
    for item in summary["rejected"][:20]:
        print(f"  rejected: {item}", file=sys.stderr)
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from simulation.storm import Storm, simulate

    topology = load_topologies(args.topology)
    storm = Storm(
        seed=args.seed,
        faults=args.faults,
        telemetered_faults=args.telemetered_faults,
        devices=tuple(args.device),
        noise_calls=args.noise,
        call_share=args.call_share,
        scada=not args.no_scada,
    )
    events, truth = simulate(topology, storm)
    with args.out.open("wb") as out:
        for event in events:
            out.write(encode(event) + b"\n")
    args.truth.write_text(truth.model_dump_json(indent=2) + "\n")
    calls = sum(len(f.call_ids) for f in truth.faults)
    print(
        f"{len(events)} events: {len(truth.faults)} faults, {calls} of their calls, "
        f"{len(truth.noise_call_ids)} noise calls",
        file=sys.stderr,
    )
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from simulation.evaluate import evaluate
    from simulation.storm import Truth
    from simulation.suite import NETWORKS, run_suite, table

    if args.suite:
        rows = run_suite(CorrelationRules.load(args.rules), tuple(args.network or NETWORKS))
        sys.stdout.write(table(rows))
        if args.json:
            args.json.write_text(json.dumps([r.model_dump() for r in rows], indent=2) + "\n")
        return 0
    if not (args.topology and args.events and args.truth):
        raise ValueError("evaluate needs --topology, --events and --truth (or --suite)")
    topology = load_topologies(args.topology)
    correlator = Correlator(topology, CorrelationRules.load(args.rules))
    bad: list[dict[str, Any]] = []
    events = list(read_events(args.events, bad))
    if bad:
        raise ValueError(f"{args.events}: {len(bad)} bad line(s), first: {bad[0]}")
    score = evaluate(correlator, events, Truth.model_validate_json(args.truth.read_text()))
    sys.stdout.write(score.table())
    if args.json:
        args.json.write_text(score.model_dump_json(indent=2) + "\n")
    return 0


def run_records(args: argparse.Namespace) -> int:
    from records.report import replay_nyc311, replay_union_power

    if args.source == "nyc311":
        summary = replay_nyc311(args.files, CorrelationRules.load(args.rules))
    else:
        summary = replay_union_power(args.files, args.rules and CorrelationRules.load(args.rules))
    print(summary.table())
    if args.json:
        args.json.write_text(summary.model_dump_json(indent=2))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from streams.settings import Settings

    if args.report == "daily" and args.date:
        report_day(args.date, datetime.now(UTC).date())  # as the service: a 2, not a traceback
    settings = Settings()
    if args.api:
        sys.stdout.write(report_from_api(args, args.api))
        return 0
    try:
        made = report_from_store(args, settings)
    except RuntimeError as error:
        if settings.clickhouse_url:
            raise
        # chDB allows one process per directory: the running service has it. Ask the service.
        api = f"http://{settings.web_host}:{settings.web_port}"
        print(f"outage: {settings.chdb_dir} is in use ({error}); asking {api}", file=sys.stderr)
        sys.stdout.write(report_from_api(args, api))
        return 0
    sys.stdout.write(made.render(args.format))
    return 0


def report_from_store(args: argparse.Namespace, settings: Any) -> Any:
    from projections.backends import open_store
    from projections.chart import calls_per_hour_png
    from projections.reports import callbacks, daily, handover

    store = open_store(settings.clickhouse_url, settings.chdb_dir)
    try:
        store.migrate()
        if args.report == "daily":
            rules = CorrelationRules.load(settings.rules)
            day = args.date or datetime.now(UTC).date()
            made = daily(store, day, rules.handling_deadlines(), datetime.now(UTC))
            if args.chart and made.chart:
                calls_per_hour_png(made.chart, args.chart)
                print(f"chart written to {args.chart}", file=sys.stderr)
            return made
        if args.report == "handover":
            return handover(store, datetime.now(UTC))
        return callbacks(store, args.incident)
    finally:
        store.close()


def report_from_api(args: argparse.Namespace, api: str) -> str:
    """The same report from a running service's HTTP API."""
    import urllib.error
    import urllib.parse
    import urllib.request

    query: dict[str, str] = {"format": args.format}
    if args.report == "daily" and args.date:
        query["date"] = args.date.isoformat()
    if args.report == "callbacks":
        query["incident"] = args.incident
    url = f"{api.rstrip('/')}/v1/reports/{args.report}?{urllib.parse.urlencode(query)}"
    key = Settings().api_key
    if key is None:
        raise ValueError(
            "asking the service needs OUTAGE_API_KEY: a key with the shift_lead role "
            "(`outage keys create reports --roles shift_lead` prints one)"
        )
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=60
        ) as response:
            text: str = response.read().decode()
    except urllib.error.HTTPError as error:
        raise ValueError(json.loads(error.read() or b"{}").get("error", str(error))) from None
    except urllib.error.URLError as error:
        raise ValueError(f"cannot reach the service at {api}: {error.reason}") from None
    if args.report == "daily" and args.chart:
        chart = urllib.request.Request(
            url.replace(f"format={args.format}", "format=png"), headers=headers
        )
        with urllib.request.urlopen(chart, timeout=60) as png:
            args.chart.write_bytes(png.read())
        print(f"chart written to {args.chart}", file=sys.stderr)
    return text


def run_rebuild(args: argparse.Namespace) -> int:
    from projections.backends import open_store
    from projections.rows import Projector
    from projections.sink import Sink
    from streams.rebuild import rebuild_from_broker, rebuild_from_files
    from streams.settings import Settings

    settings = Settings()
    topology = load_topologies(settings.topology)
    sink = Sink(
        open_store=lambda: open_store(settings.clickhouse_url, settings.chdb_dir),
        projector=Projector(topology, settings.analytics_key()),
    )
    try:
        if args.derived or args.inbound:
            rows = rebuild_from_files(sink, args.inbound, args.derived)
        elif settings.broker:
            rows = rebuild_from_broker(sink, settings.broker)
        else:
            raise ValueError(
                "nothing to rebuild from: set OUTAGE_BROKER to read the topics, "
                "or give --derived/--inbound files"
            )
    finally:
        sink.close()
    print(f"rebuilt: {rows} rows written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
