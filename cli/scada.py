"""`outage scada ...`: run a site's connector, check its config, generate point mappings.

    outage scada run --config scada.yaml      connect every source, publish to OUTAGE_BROKER
    outage scada check --config scada.yaml    validate the config against the network model
    outage scada points --topology net.csv    point mappings for every breaker (YAML to edit)

Exit 2 with the file and line when the config is wrong: nothing connects until it is right.
"""

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import yaml

from scada.config import ConfigError, SiteConfig, load
from topology.load import load_topologies

# Device kinds a breaker or switch with SCADA status usually sits on, by utility.
BREAKER_KINDS = ("substation", "feeder", "heat_source", "heat_substation")


def add_parser(commands: Any) -> None:
    """Add `scada run | check | points` to the top-level subcommands."""
    scada = commands.add_parser("scada", help="SCADA connectors (IEC 104, DNP3, OPC UA, MQTT)")
    actions = scada.add_subparsers(dest="scada_command", required=True)
    for name, text in (
        ("run", "connect every source of a site and publish its signals to the broker"),
        ("check", "validate a site config against the network model, connect nothing"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--config", required=True, type=Path, metavar="scada.yaml")
    points = actions.add_parser("points", help="generate point mappings from the network model")
    points.add_argument("--topology", action="append", required=True, type=Path, metavar="FILE")
    points.add_argument(
        "--kinds",
        default=",".join(BREAKER_KINDS),
        help=f"device kinds that get a breaker point (default: {','.join(BREAKER_KINDS)})",
    )
    points.add_argument(
        "--address",
        default="{device}",
        help="point address template: {device} and {index}, e.g. 'ns=2;s={device}.Status' "
        "(OPC UA), '{index}' (IEC 104 IOA or DNP3 'double:{index}')",
    )
    points.add_argument("--start", type=int, default=1, help="first {index} (default 1)")


def run(args: argparse.Namespace) -> int:
    from streams.settings import Settings

    settings = Settings()
    if args.scada_command == "points":
        return print_points(args)
    try:
        site = load(args.config, tuple(settings.topology))
    except ConfigError as error:
        print(f"outage: {error}", file=sys.stderr)
        return 2
    if args.scada_command == "check":
        points = sum(len(s.points) for s in site.sources)
        print(f"{args.config}: site {site.site}, {len(site.sources)} sources, {points} points: ok")
        return 0
    return run_connector(site, settings)


def run_connector(site: SiteConfig, settings: Any) -> int:
    from scada.runner import run_with_broker
    from streams import logs
    from streams.transport import kafka_client_options

    if not settings.broker:
        print(
            "outage: set OUTAGE_BROKER to the service's broker (host:port); "
            "`outage run` prints it when it starts",
            file=sys.stderr,
        )
        return 2
    logs.configure(settings.log_level, settings.log_format)
    bootstrap = ",".join(url.split("://", 1)[-1] for url in settings.broker_urls)
    options = kafka_client_options(settings)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a person stops it
        asyncio.run(
            run_with_broker(
                site, bootstrap, settings.partitions, options, settings.topic_replication
            )
        )
    return 0


def print_points(args: argparse.Namespace) -> int:
    """A `sources:` entry listing one breaker point per device of the chosen kinds."""
    topology = load_topologies(args.topology)
    kinds = {k.strip() for k in args.kinds.split(",") if k.strip()}
    devices = [node for node in topology.nodes.values() if node.kind in kinds]
    points = [
        {
            "point": args.address.format(device=node.id, index=index),
            "device": node.id,
            "kind": "breaker",
        }
        for index, node in enumerate(devices, start=args.start)
    ]
    header = (
        f"# {len(points)} breaker points from {', '.join(map(str, args.topology))} "
        f"(kinds {', '.join(sorted(kinds))}); paste under a source's `points:`\n"
    )
    sys.stdout.write(header + yaml.safe_dump(points, sort_keys=False))
    return 0
