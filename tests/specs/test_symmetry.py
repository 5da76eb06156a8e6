import itertools
import random

from model.config import Config
from model.machine import ReplicationModel, Scope
from specs.symmetry import (
    broker_keys,
    canonical,
    compose,
    inverse,
    permute,
    permute_action,
)

MODEL = ReplicationModel(Config(), Scope(max_writes=3, max_crashes=2, max_network_changes=2))


def random_states(count, seed=7, steps=25):
    rng = random.Random(seed)
    for _ in range(count):
        state = MODEL.initial_state()
        for _ in range(rng.randrange(steps)):
            actions = MODEL.enabled_actions(state)
            if not actions:
                break
            state = MODEL.step(state, actions[rng.randrange(len(actions))])
        yield state


def test_permutation_round_trips():
    for state in random_states(40):
        for perm in itertools.permutations(range(3)):
            assert permute(permute(state, perm), inverse(perm)) == state


def test_canonical_is_a_relabeling_and_equal_for_relabeled_states():
    for state in random_states(40):
        key, perm = canonical(state)
        assert key == permute(state, perm)
        for other in itertools.permutations(range(3)):
            relabeled = permute(state, other)
            assert canonical(relabeled)[0] == key or _tied(state)


def _tied(state):
    return len(set(broker_keys(state))) < 3


def test_model_commutes_with_relabeling():
    """Relabeling brokers before or after a step gives the same state: the symmetry
    the explorer relies on."""
    for state in random_states(30, seed=11):
        for perm in ((1, 0, 2), (2, 1, 0), (1, 2, 0)):
            moved = permute(state, perm)
            for action in MODEL.enabled_actions(state):
                assert MODEL.step(moved, permute_action(action, perm)) == permute(
                    MODEL.step(state, action), perm
                ), action


def test_compose_applies_first_then_second():
    a, b = (1, 2, 0), (2, 0, 1)
    state = next(random_states(1, steps=12))
    assert permute(permute(state, a), b) == permute(state, compose(a, b))
