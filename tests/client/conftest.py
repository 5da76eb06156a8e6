"""One broker process per test module, on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_support import SINGLE_BROKER_CONFIG

from impl.broker.process import BrokerProcess, start_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("broker")
    process = start_broker(0, root / "data", config=SINGLE_BROKER_CONFIG)
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log_path.read_text()[-2000:]
