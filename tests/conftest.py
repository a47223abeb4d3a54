"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker (memory storage, free port) shared by the whole test session."""
    with EmbeddedBroker() as embedded:
        yield embedded
