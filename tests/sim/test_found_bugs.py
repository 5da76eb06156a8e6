"""B4 end to end: an acks=all write appended by a leader that loses its leadership while
waiting for the followers is answered NOT_LEADER_OR_FOLLOWER, and the client must call
its outcome unknown, not failed (only the simulator stages this reliably)."""

from __future__ import annotations

import trio

from impl.client import OutcomeUnknown, Producer
from impl.client.admin import create_topics, wait_for_leaders
from impl.sim.cluster import SimCluster
from impl.sim.guard import run
from model.config import Config

TOPIC = "jepsen"
SEED = 21
CLIENT = Config.parse(
    ["acks=all", "retries=0", "request.timeout.ms=60000", "delivery.timeout.ms=120000"]
)


async def _scenario() -> tuple[BaseException | None, int, int, dict]:
    async with trio.open_nursery() as nursery:
        cluster = SimCluster(3, seed=SEED, config=("min.insync.replicas=2",), topic=TOPIC)
        await cluster.start(nursery)
        await cluster.wait_for_brokers()
        runtime = cluster.runtime()
        await create_topics(runtime, cluster.bootstrap, [(TOPIC, 1, 3, {})])
        await wait_for_leaders(runtime, cluster.bootstrap, [TOPIC])
        old = (await cluster.partition_leaders())[0]
        async with Producer(cluster.runtime(), cluster.bootstrap, CLIENT) as producer:
            await (await producer.send(TOPIC, b"warm-up", partition=0)).wait()
            others = [n for n in cluster.nodes if n != old]
            # The leader keeps its clients but loses its followers and the controller.
            await cluster.cut({(old, n) for n in others} | {(n, old) for n in others})
            delivery = await producer.send(TOPIC, b"in-doubt", partition=0)
            with trio.fail_after(60):
                while (await cluster.partition_leaders()).get(0, old) == old:
                    await trio.sleep(0.1)
            new = (await cluster.partition_leaders())[0]
            await cluster.heal_network()
            error = None
            try:
                await delivery.wait()
            except OutcomeUnknown as unknown:
                error = unknown
        states = cluster.partition_state(TOPIC, 0)
        await cluster.stop()
        nursery.cancel_scope.cancel()
    return error, old, new, states


def test_not_leader_after_an_acks_all_append_is_an_unknown_outcome():
    error, old, new, states = run(_scenario, seed=SEED)
    assert new != old
    assert error is not None, "the in-doubt write was acknowledged or failed definitely"
    assert "NOT_LEADER_OR_FOLLOWER" in str(error), error
    assert states[old].leader == new
