"""Nemeses: fault ops, their schedule, and how each one is carried out.

Every fault is an op of process "nemesis" with a start and an end, so a report can shade
when it was active and a checker can find the last heal:

| fault | start op (invoke value -> ok value) | end op |
|---|---|---|
| kill | `kill` one / minority / leader / controller -> nodes killed (SIGKILL) | `restart` |
| crash | `crash` same targets -> nodes killed, unsynced bytes dropped (power loss) | `restart` |
| pause | `pause` same targets -> nodes stopped (SIGSTOP) | `resume` (SIGCONT) |
| partition | `partition` halves / one / ring / bridge / inbound -> the cut links | `heal` |
| clock | `clock-bump` or `clock-strobe` one / minority / all -> skews | `clock-reset` |

After the campaign's time limit, `ending_ops` ends what is still active and one last
`heal` ("all") heals everything: the checkers take the reads after it as final reads.

Targets: `leader` is the leader of a partition of the workload's topic with the fewest
in-sync replicas (the most exposed one; ties at random), `controller` the leader of the
controller quorum. Partitions are computed over the
brokers and one more endpoint, "clients" (every client connection): `halves` splits
all of them in two, `one` cuts one broker from the other brokers (clients still reach
it: the zombie leader case), `ring` keeps each broker linked only to the majority
around it on a random ring (with 3 brokers no two majorities agree, so every broker
link is cut), `bridge` splits the brokers in two halves that one broker still joins,
`inbound` cuts the connections the other brokers open to one broker (a firewall rule on
its listener): they cannot fetch from it or reach its controller, while it still
reaches theirs and the clients still reach it. With a combined controller quorum of
three, `inbound` is the only partition that lets a leader shrink its ISR to itself:
any symmetric cut that keeps its followers away also keeps the controller majority away.

A kind may name one variant, `kill:leader`, `partition:inbound`, `clock:all`, to use
only that one. The schedule takes the kinds in rounds, each firing every kind once in a
shuffled order, on a timeline fixed when it starts (`schedule`). Faults do not overlap
unless `overlap` is set; then every cycle nests a fault inside another of an other kind,
the outer one of the two coming first in the `--nemesis` list
(`partition:inbound,crash:leader`: the leader's followers are cut off, then the leader
loses power while its ISR is only itself).

The process-specific actions sit behind `Faults`, so a simulated cluster can take the
same ops.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from jepsen_py.campaign import generator as g
from jepsen_py.campaign.scheduler import Completion

CLIENTS = "clients"
KINDS = ("kill", "pause", "partition", "clock", "crash")
# `crash` (a power loss) is not in the default set: a campaign of the four is the issue's
# promise, and Kafka without fsync does not promise to survive power loss of all replicas.
DEFAULT_KINDS = ("kill", "pause", "partition", "clock")
KILL_TARGETS = ("one", "minority", "leader", "controller")
PARTITION_KINDS = ("halves", "one", "ring", "bridge", "inbound")
CLOCK_TARGETS = ("one", "minority", "all")
VARIANTS = {
    "kill": KILL_TARGETS,
    "crash": KILL_TARGETS,
    "pause": KILL_TARGETS,
    "partition": PARTITION_KINDS,
    "clock": CLOCK_TARGETS,
}
CLOCK_SKEW_MIN_MS = 100
CLOCK_SKEW_MAX_MS = 300_000
STROBE_PERIOD_MS = 200
STROBE_DURATION_S_MAX = 3.0
INTERVAL_DEFAULT_S = 5.0
# Shorter faults barely register: a broker's session (3 s in a campaign) outlives them.
INTERVAL_MIN_S = 1.0
# A fault's end can outlast the quiet interval after it (a killed broker's restart takes
# seconds) and delay the next fault, possibly the round's last: the default interval
# leaves this many to spare after a round.
SPARE_INTERVALS = 1

Endpoint = int | str
Link = tuple[Endpoint, int]


class FaultError(RuntimeError):
    """A fault that could not be carried out (a broker that would not restart, say);
    the op ends `info` and the campaign goes on."""


class Faults(Protocol):
    """What a nemesis can do to a cluster. Brokers are `nodes`; a link (source, target)
    is every connection `source` (a broker or CLIENTS) opens to broker `target`."""

    nodes: tuple[int, ...]

    async def kill(self, node: int) -> dict[str, Any]:
        """SIGKILL; returns what shows the process is gone (its exit status)."""

    async def crash(self, node: int) -> dict[str, Any]:
        """SIGKILL, then drop what the node had not fsynced (a power loss); returns the
        exit status and how many bytes were lost."""

    async def restart(self, node: int) -> dict[str, Any]: ...

    async def pause(self, node: int) -> dict[str, Any]:
        """SIGSTOP; returns what shows the process is stopped."""

    async def resume(self, node: int) -> dict[str, Any]: ...

    async def cut(self, links: set[Link]) -> None:
        """Blackhole these links (both directions of each connection), healing others."""

    async def heal_network(self) -> None: ...

    async def adjust_clock(self, node: int, delta_ms: int, reset: bool) -> int:
        """Move the node's wall clock; returns its skew afterwards."""

    async def partition_leaders(self) -> dict[int, int]:
        """partition -> leader broker, as far as metadata knows right now."""

    async def in_sync_replicas(self) -> dict[int, tuple[int, ...]]:
        """partition -> its ISR, as far as metadata knows right now."""

    async def controller_leader(self) -> int | None: ...


def parse_kinds(text: str) -> tuple[str, ...]:
    """`kill,partition:inbound` -> ("kill", "partition:inbound"); "none" or "" -> ();
    ValueError on unknown kinds or variants."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if names in ((), ("none",)):
        return ()
    for name in names:
        kind, _, variant = name.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown nemesis {kind} (choose from {', '.join(KINDS)})")
        if ":" in name and variant not in VARIANTS[kind]:
            raise ValueError(
                f"unknown variant {variant!r} of {kind} (choose from {', '.join(VARIANTS[kind])})"
            )
    return names


# ---- the schedule ------------------------------------------------------------------------


def _choose(f: str, values: tuple[Any, ...]) -> g.Gen:
    return g.limit(1, lambda ctx: {"f": f, "value": ctx.rng.choice(values)})


def _clock_start(targets: tuple[str, ...]) -> g.Gen:
    return g.limit(
        1,
        lambda ctx: {
            "f": ctx.rng.choice(("clock-bump", "clock-strobe")),
            "value": ctx.rng.choice(targets),
        },
    )


ENDS = {
    "kill": {"f": "restart", "value": "all"},
    "crash": {"f": "restart", "value": "all"},
    "pause": {"f": "resume", "value": "all"},
    "partition": {"f": "heal", "value": "network"},
    "clock": {"f": "clock-reset", "value": "all"},
}


def _fault(name: str) -> tuple[g.Gen, dict[str, Any]]:
    """The start op (a generator of one op) and the end op of `kind[:variant]`."""
    kind, _, variant = name.partition(":")
    values = (variant,) if variant else VARIANTS[kind]
    if kind == "clock":
        return _clock_start(values), ENDS[kind]
    return _choose(kind, values), ENDS[kind]


def fault_cycle(name: str, at_s: float, interval_s: float) -> g.Gen:
    """One fault of `kind[:variant]`: quiet until `at_s + interval_s`, start it, and end
    it `interval_s` after it started. A start delayed by an overrun before it keeps its
    full length; the quiet before the next cycle, fixed at `at_s + 2 * interval_s`, is
    shorter instead."""
    start, end = _fault(name)
    return g.seq(g.sleep_until(at_s + interval_s), start, g.sleep(interval_s), end)


def nested_cycle(outer: str, inner: str, at_s: float, interval_s: float) -> g.Gen:
    """Quiet until `at_s + interval_s`, then start `outer`; one interval later start
    `inner`; one more later end both, inner first."""
    (outer_start, outer_end), (inner_start, inner_end) = _fault(outer), _fault(inner)
    return g.seq(
        g.sleep_until(at_s + interval_s),
        outer_start,
        g.sleep(interval_s),
        inner_start,
        g.sleep(interval_s),
        inner_end,
        outer_end,
    )


def _kind(name: str) -> str:
    return name.partition(":")[0]


def overlap_pairs(kinds: tuple[str, ...], rng: random.Random) -> list[tuple[str, str]]:
    """One round of nested faults: pairs of names of different kinds that together
    name every one of `kinds` at least once (once each where the kinds allow), the
    earlier in `kinds` outside, in shuffled order; [] when all are of one kind.

    Names go in a shuffled order grouped by kind, the most numerous kind first, and the
    first `half` of them pair with the rest position by position: no kind spans `half`
    positions, so partners differ. Names left over (a kind with more than half the
    names) pair with a random name of another kind."""
    count = Counter(_kind(name) for name in kinds)
    if len(count) < 2:
        return []
    rank = {kind: rng.random() for kind in count}
    order = list(kinds)
    rng.shuffle(order)
    order.sort(key=lambda name: (-count[_kind(name)], rank[_kind(name)]))
    half = pairs_per_round(kinds)
    front, back = order[:half], order[half:]
    partners = [
        back[i] if i < len(back) else rng.choice([o for o in kinds if _kind(o) != _kind(name)])
        for i, name in enumerate(front)
    ]
    position = {name: i for i, name in enumerate(kinds)}
    pairs = [
        (a, b) if position[a] < position[b] else (b, a)
        for a, b in zip(front, partners, strict=True)
    ]
    rng.shuffle(pairs)
    return pairs


def pairs_per_round(kinds: tuple[str, ...]) -> int:
    """How many nested pairs `overlap_pairs` makes of `kinds` (with two kinds or more)."""
    largest = max(Counter(_kind(name) for name in kinds).values(), default=0)
    return max(largest, (len(kinds) + 1) // 2)


def round_intervals(kinds: tuple[str, ...], overlap: bool) -> int:
    """Nemesis intervals one round of `schedule` takes, a round being what fires every
    kind: a quiet interval and a fault interval per kind; with overlap, per pair a quiet
    one, the outer fault alone and both together."""
    if not kinds:
        return 0
    if overlap and len({_kind(name) for name in kinds}) > 1:
        return 3 * pairs_per_round(kinds)
    return 2 * len(kinds)


def fitting_interval_s(kinds: tuple[str, ...], time_limit_s: float, overlap: bool) -> float:
    """The default --nemesis-interval: INTERVAL_DEFAULT_S, or shorter so that one round
    and SPARE_INTERVALS more fit in the time limit, but not below INTERVAL_MIN_S
    (`round_fits` then says no)."""
    slots = round_intervals(kinds, overlap)
    if not slots:
        return INTERVAL_DEFAULT_S
    # Whole milliseconds, so the replay command prints the interval short and exact;
    # rounded up, so the spare interval's end, where the next round would start a fault,
    # is not a hair before the time limit.
    fitting_s = math.ceil(time_limit_s / (slots + SPARE_INTERVALS) * 1000) / 1000
    return max(INTERVAL_MIN_S, min(INTERVAL_DEFAULT_S, fitting_s))


def round_fits(
    kinds: tuple[str, ...], interval_s: float, time_limit_s: float, overlap: bool
) -> bool:
    """Whether one round of faults (every requested kind) fits in the time limit."""
    return round_intervals(kinds, overlap) * interval_s <= time_limit_s


def schedule(kinds: tuple[str, ...], interval_s: float, overlap: bool = False) -> g.Gen:
    """Quiet for `interval_s`, then a fault for `interval_s`, forever, the kinds taken
    in rounds: each round fires every kind once, in an order shuffled per round, so a
    run as long as `round_intervals` intervals fires all of them whatever the seed.
    With `overlap` a round is `overlap_pairs`: nested pairs (see `nested_cycle`).

    Every cycle starts on a timeline fixed when the schedule starts: an op that takes
    longer than its interval (a restart takes seconds) shortens the quiet gap after it
    rather than delaying every later fault."""
    if not kinds:
        return g.Nothing()

    def fault_round(origin_s: float, rng: random.Random, number: int) -> list[g.Gen]:
        pairs = overlap_pairs(kinds, rng) if overlap else []
        if pairs:
            first = number * pairs_per_round(kinds)
            return [
                nested_cycle(a, b, origin_s + 3 * interval_s * (first + i), interval_s)
                for i, (a, b) in enumerate(pairs)
            ]
        order = list(kinds)
        rng.shuffle(order)
        first = number * len(order)
        return [
            fault_cycle(name, origin_s + 2 * interval_s * (first + i), interval_s)
            for i, name in enumerate(order)
        ]

    return g.nemesis(
        g.anchored(
            lambda origin_s: g.rounds(lambda rng, number: fault_round(origin_s, rng, number))
        )
    )


# ---- partitions as plain data --------------------------------------------------------------


def grudge_links(components: list[list[Endpoint]]) -> set[Link]:
    """Links between different components (a broker-to-broker link cut both ways)."""
    side = {member: index for index, part in enumerate(components) for member in part}
    return {
        (source, target)
        for source in side
        for target in side
        if isinstance(target, int) and source != target and side[source] != side[target]
    }


def halves(nodes: tuple[int, ...], rng: random.Random) -> list[list[Endpoint]]:
    members: list[Endpoint] = [*nodes, CLIENTS]
    rng.shuffle(members)
    cut = len(members) // 2
    return [members[:cut], members[cut:]]


def isolate_one(nodes: tuple[int, ...], rng: random.Random) -> set[Link]:
    lonely = rng.choice(nodes)
    others = [n for n in nodes if n != lonely]
    return {(lonely, n) for n in others} | {(n, lonely) for n in others}


def majorities_ring(nodes: tuple[int, ...], rng: random.Random) -> set[Link]:
    """Each broker keeps the links to brokers inside its own majority on a shuffled ring,
    where both ends see each other."""
    ring = list(nodes)
    rng.shuffle(ring)
    count, majority = len(ring), len(ring) // 2 + 1
    view = {
        ring[i]: {
            ring[(i + step) % count] for step in range(-((majority - 1) // 2), majority // 2 + 1)
        }
        for i in range(count)
    }
    return {(a, b) for a in ring for b in ring if a != b and not (b in view[a] and a in view[b])}


def bridge(nodes: tuple[int, ...], rng: random.Random) -> set[Link]:
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    middle = len(shuffled) // 2
    left, right = shuffled[:middle], shuffled[middle + 1 :]
    return {(a, b) for a in left for b in right} | {(b, a) for a in left for b in right}


def inbound(nodes: tuple[int, ...], rng: random.Random) -> set[Link]:
    """The links every other broker opens to one broker; its own links stay."""
    lonely = rng.choice(nodes)
    return {(n, lonely) for n in nodes if n != lonely}


def partition_links(kind: str, nodes: tuple[int, ...], rng: random.Random) -> set[Link]:
    if kind == "halves":
        return grudge_links(halves(nodes, rng))
    cutters = {"one": isolate_one, "ring": majorities_ring, "bridge": bridge, "inbound": inbound}
    return cutters[kind](nodes, rng)


# ---- carrying faults out ---------------------------------------------------------------------


@dataclass
class FaultState:
    killed: set[int] = field(default_factory=set)
    crashed: set[int] = field(default_factory=set)
    paused: set[int] = field(default_factory=set)
    skewed: set[int] = field(default_factory=set)
    cut: set[Link] = field(default_factory=set)

    def active(self) -> list[str]:
        """Short descriptions of what is active, for the progress line."""
        active = [f"{name} {sorted(nodes)}" for name, nodes in self._nodes() if nodes]
        if self.cut:
            active.append(f"partition ({len(self.cut)} links cut)")
        return active

    def _nodes(self) -> list[tuple[str, set[int]]]:
        return [
            ("kill", self.killed - self.crashed),
            ("crash", self.crashed),
            ("pause", self.paused),
            ("clock", self.skewed),
        ]


class Nemesis:
    """Turns fault ops into `Faults` calls; what it did is the ok completion's value."""

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self.faults = faults
        self.rng = rng
        self.state = FaultState()

    async def invoke(self, f: str, value: Any) -> Completion:
        handlers = {
            "kill": self._kill,
            "crash": self._crash,
            "restart": self._restart,
            "pause": self._pause,
            "resume": self._resume,
            "partition": self._partition,
            "heal": self._heal,
            "clock-bump": self._clock_bump,
            "clock-strobe": self._clock_strobe,
            "clock-reset": self._clock_reset,
        }
        try:
            return Completion("ok", await handlers[f](value))
        except FaultError as error:
            return Completion("info", None, str(error))

    def ending_ops(self) -> list[dict[str, Any]]:
        """Ops that end every active fault, then the final heal of everything."""
        ends = [
            ("resume", self.state.paused),
            ("restart", self.state.killed),
            ("heal", self.state.cut),
            ("clock-reset", self.state.skewed),
        ]
        ops = [{"f": f, "value": "all" if f != "heal" else "network"} for f, what in ends if what]
        return [*ops, {"f": "heal", "value": "all"}]

    async def _targets(self, target: str) -> list[int]:
        up = [n for n in self.faults.nodes if n not in self.state.killed | self.state.paused]
        if not up:
            return []
        if target == "leader":
            leaders = await self._exposed_leaders(up)
            return [self.rng.choice(leaders)] if leaders else [self.rng.choice(up)]
        if target == "controller":
            leader = await self.faults.controller_leader()
            return [leader] if leader in up else [self.rng.choice(up)]
        if target == "all":
            return up
        size = 1 if target == "one" else max(1, (len(self.faults.nodes) - 1) // 2)
        return sorted(self.rng.sample(up, min(size, len(up))))

    async def _exposed_leaders(self, up: list[int]) -> list[int]:
        """The live leaders of the partitions with the fewest in-sync replicas."""
        leaders = await self.faults.partition_leaders()
        isrs = await self.faults.in_sync_replicas()
        sizes = {p: len(isrs.get(p, ())) for p, leader in leaders.items() if leader in up}
        if not sizes:
            return []
        fewest = min(sizes.values())
        return sorted({leaders[p] for p, size in sizes.items() if size == fewest})

    async def _kill(self, target: str) -> dict[str, Any]:
        nodes = await self._targets(target)
        processes = {}
        for node in nodes:
            processes[str(node)] = await self.faults.kill(node)
            self.state.killed.add(node)
        return {"target": target, "nodes": nodes, "processes": processes}

    async def _crash(self, target: str) -> dict[str, Any]:
        nodes = await self._targets(target)
        processes = {}
        for node in nodes:
            processes[str(node)] = await self.faults.crash(node)
            self.state.killed.add(node)
            self.state.crashed.add(node)
        return {"target": target, "nodes": nodes, "processes": processes}

    async def _restart(self, _: Any) -> dict[str, Any]:
        nodes = sorted(self.state.killed)
        processes = {}
        for node in nodes:
            processes[str(node)] = await self.faults.restart(node)
            self.state.killed.discard(node)
            self.state.crashed.discard(node)
            self.state.skewed.discard(node)
        return {"nodes": nodes, "processes": processes}

    async def _pause(self, target: str) -> dict[str, Any]:
        nodes = await self._targets(target)
        processes = {}
        for node in nodes:
            processes[str(node)] = await self.faults.pause(node)
            self.state.paused.add(node)
        return {"target": target, "nodes": nodes, "processes": processes}

    async def _resume(self, _: Any) -> dict[str, Any]:
        nodes = sorted(self.state.paused)
        processes = {}
        for node in nodes:
            processes[str(node)] = await self.faults.resume(node)
            self.state.paused.discard(node)
        return {"nodes": nodes, "processes": processes}

    async def _partition(self, kind: str) -> dict[str, Any]:
        links = partition_links(kind, self.faults.nodes, self.rng)
        await self.faults.cut(links)
        self.state.cut = links
        return {"kind": kind, "cut": sorted([str(a), str(b)] for a, b in links)}

    async def _heal(self, scope: str) -> dict[str, Any]:
        healed: dict[str, Any] = {"links": len(self.state.cut)}
        await self.faults.heal_network()
        self.state.cut = set()
        if scope == "all":
            healed["resumed"] = (await self._resume(None))["nodes"]
            healed["restarted"] = (await self._restart(None))["nodes"]
            healed["clocks"] = (await self._clock_reset(None))["skew_ms"]
        return healed

    def _skew_ms(self) -> int:
        magnitude = math.exp(
            self.rng.uniform(math.log(CLOCK_SKEW_MIN_MS), math.log(CLOCK_SKEW_MAX_MS))
        )
        return int(magnitude) * self.rng.choice((-1, 1))

    async def _clock_bump(self, target: str) -> dict[str, Any]:
        skews = {}
        for node in await self._targets(target):
            skews[str(node)] = await self.faults.adjust_clock(node, self._skew_ms(), False)
            self.state.skewed.add(node)
        return {"target": target, "skew_ms": skews}

    async def _clock_strobe(self, target: str) -> dict[str, Any]:
        """Flip the targets' clocks back and forth every STROBE_PERIOD_MS for a while."""
        nodes = await self._targets(target)
        delta_ms = self._skew_ms()
        flips = int(STROBE_DURATION_S_MAX * 1000 / STROBE_PERIOD_MS)
        for flip in range(flips):
            step_ms = delta_ms if flip % 2 == 0 else -delta_ms
            for node in nodes:
                await self.faults.adjust_clock(node, step_ms, False)
                self.state.skewed.add(node)
            await trio.sleep(STROBE_PERIOD_MS / 1000)
        return {"target": target, "nodes": nodes, "delta_ms": delta_ms, "flips": flips}

    async def _clock_reset(self, _: Any) -> dict[str, Any]:
        skews = {}
        for node in sorted(self.state.skewed):
            if node not in self.state.killed | self.state.paused:
                skews[str(node)] = await self.faults.adjust_clock(node, 0, True)
        self.state.skewed = set()
        return {"skew_ms": skews}
