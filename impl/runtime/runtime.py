"""Everything a broker or client touches outside itself, injected as one value."""

from __future__ import annotations

import random
from dataclasses import dataclass

from impl.runtime.clock import Clock
from impl.runtime.fs import FileSystem, RealFileSystem
from impl.runtime.net import Address, Network, TcpNetwork


@dataclass
class Runtime:
    clock: Clock
    rng: random.Random
    net: Network
    fs: FileSystem


def real_runtime(
    seed: int | None = None, link_map: dict[Address, Address] | None = None
) -> Runtime:
    """Loopback TCP, real files, the machine's wall clock (read inside `trio.run`)."""
    return Runtime(Clock(), random.Random(seed), TcpNetwork(link_map), RealFileSystem())
