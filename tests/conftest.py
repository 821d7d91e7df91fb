"""Shared fixtures: the real embedded broker and a fresh data directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from driftline.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One real tansu broker for the whole test session."""
    with EmbeddedBroker() as running:
        yield running
