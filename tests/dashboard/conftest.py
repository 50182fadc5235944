"""Fixtures: a real Mosquitto (from the telemetry tests) and a dashboard on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from pumpctl.dashboard.layout import TopicLayout
from pumpctl.dashboard.server import Dashboard, DashboardConfig
from pumpctl.telemetry.urls import parse_mqtt_url
from tests.telemetry.broker import Mosquitto
from tests.telemetry.conftest import (  # noqa: F401  (fixtures used by name)
    auth_files,
    broker,
    broker_factory,
    secure_broker,
    tls_files,
)


@asynccontextmanager
async def running_dashboard(url: str, **options: Any) -> AsyncIterator[Dashboard]:
    """A dashboard subscribed to `url`, listening on a free loopback port, until the block
    ends; returns once it holds its broker subscription."""
    site = options.pop("site", None)
    target = parse_mqtt_url(url)
    config = DashboardConfig(target=target, layout=TopicLayout(target.prefix, site), port=0,
                             **options)
    dashboard = Dashboard(config)
    await dashboard.start()
    try:
        await asyncio.wait_for(dashboard.feed.ready.wait(), 15)
        yield dashboard
    finally:
        await dashboard.stop()


def subscriptions(mosquitto: Mosquitto, client_prefix: str) -> list[str]:
    """The broker's log lines for subscriptions made by clients whose id starts so."""
    return [line for line in mosquitto.log if f": {client_prefix}" in line and " 1 " in line]


DashboardFactory = Callable[..., Any]
