"""`outage retention enforce`: delete caller data past its retention, from cron or by hand.

Periods default to OUTAGE_RETENTION_CONTACT_DAYS and OUTAGE_RETENTION_CALL_DAYS. The store is
the one the other store commands use: OUTAGE_CLICKHOUSE_URL, else chDB in the data directory.
Exit 0 done (or nothing to do), 1 a deletion did not complete, 2 the store cannot be opened.
"""

import argparse
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from projections.retention import DEFAULT_TIMEOUT, RetentionError, enforce
from projections.store import Store, StoreUnavailable


def _days(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 day, not {value}")
    return value


def add_parser(commands: Any) -> None:
    """Add `retention enforce` to the top-level subcommands."""
    retention = commands.add_parser("retention", help="delete caller data past its retention")
    actions = retention.add_subparsers(dest="retention_command", required=True)
    run_it = actions.add_parser(
        "enforce", help="delete phone numbers and call rows older than their retention"
    )
    run_it.add_argument(
        "--contact-days",
        type=_days,
        metavar="N",
        help="keep phone numbers N days (default: OUTAGE_RETENTION_CONTACT_DAYS, 30)",
    )
    run_it.add_argument(
        "--call-days",
        type=_days,
        metavar="N",
        help="keep call rows N days (default: OUTAGE_RETENTION_CALL_DAYS, 400)",
    )
    run_it.add_argument("--dry-run", action="store_true", help="count what would go, delete none")
    run_it.add_argument("--json", action="store_true", help="print the result as JSON")
    run_it.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"longest wait for a deletion to finish (default {DEFAULT_TIMEOUT:g})",
    )


def run(args: argparse.Namespace) -> int:
    from projections.backends import open_store
    from streams.settings import Settings

    # The driver logs each failed connection with a traceback; the one line below says it all.
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)
    settings = Settings()
    contact_days = args.contact_days or settings.retention_contact_days
    call_days = args.call_days or settings.retention_call_days
    store: Store | None = None
    try:
        store = open_store(settings.clickhouse_url, settings.chdb_dir)
        store.migrate()
        result = enforce(
            store,
            datetime.now(UTC),
            contact_days,
            call_days,
            dry_run=args.dry_run,
            timeout=args.timeout,
        )
    except StoreUnavailable as error:
        print(f"outage retention: store unreachable, nothing deleted: {error}", file=sys.stderr)
        return 2
    except RetentionError as error:
        print(f"outage retention: {error}", file=sys.stderr)
        return 1
    except RuntimeError as error:
        if store is not None or settings.clickhouse_url:
            raise
        # chDB lets one process at a time have a directory: usually the running service.
        print(
            f"outage retention: cannot open chDB at {settings.chdb_dir} ({error}); it is "
            "probably held by the "
            "running service: stop it first, or use a ClickHouse server (OUTAGE_CLICKHOUSE_URL)",
            file=sys.stderr,
        )
        return 2
    finally:
        if store is not None:
            store.close()
    sys.stdout.write(result.to_json() + "\n" if args.json else result.to_table())
    return 0
