"""Scripting helpers for driving the model through stories in tests."""

from model import client
from model.config import Config
from model.machine import Action, ReplicationModel, Scope
from model.state import KILL, State

A, B, C = 0, 1, 2
P = 0
GENEROUS = Scope(
    max_writes=10,
    max_retries=5,
    max_crashes=6,
    max_data_loss_crashes=6,
    max_elections=10,
    max_network_changes=6,
    max_clock_advances=6,
)


def model(*settings: str, scope: Scope = GENEROUS) -> ReplicationModel:
    return ReplicationModel(Config.parse(list(settings)), scope)


def do(m: ReplicationModel, state: State, *actions: Action) -> State:
    return client.apply(m, state, *actions)


def fetch_round(m: ReplicationModel, state: State, follower: int) -> State:
    """One fetch from `follower` to its leader and the response back."""
    leader = state.brokers[follower].views[P].leader
    return do(
        m, state, Action("fetch", follower, P), Action("handle_response", follower, P, leader)
    )


def crash(m, state, broker, kind=KILL):
    return do(m, state, Action("crash", broker, -1, kind))


def fail_over(m: ReplicationModel, state: State, dead: int, new_leader: int) -> State:
    """The controller fences a crashed broker and elects `new_leader`; all learn."""
    state = do(m, state, Action("fence", dead, P, new_leader))
    return client.replicate(m, state)


def tick(m, state):
    return do(m, state, Action("tick"))


def shrink(m, state, leader, follower):
    return do(m, state, Action("shrink_isr", leader, P, follower))


def log_values(state: State, broker: int) -> list[int]:
    return [record[1] for record in state.replicas[broker][P].log]
