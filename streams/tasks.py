"""Background tasks of the worker that must outlive their own failures."""

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("outage")


async def keep_running(name: str, run: Callable[[], Awaitable[None]], pause: float = 1.0) -> None:
    """Run `run()` again after any failure: in faust a crashed task stops the whole worker."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(f"{name}.restarting")
            await asyncio.sleep(pause)
