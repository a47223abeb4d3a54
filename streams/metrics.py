"""Prometheus metrics of one worker (GET /metrics); filled in by the scale-out work (issue 9)."""

from typing import Any


def register(service: Any, api: Any) -> None:
    """Add the metrics endpoint to the worker's API (nothing yet)."""
