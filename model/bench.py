"""`replog bench model`: random-walk steps per second of the reference model."""

from __future__ import annotations

import random
import time

from model.arguments import Parser, integer
from model.config import Config, ConfigError
from model.machine import ReplicationModel, Scope


def random_walk_rate(
    model: ReplicationModel, seed: int, walks: int, steps_per_walk: int
) -> tuple[int, float]:
    """(steps taken, seconds): each step enumerates the enabled actions, picks one with
    a seeded RNG and applies it, exactly as the explorer's random mode does."""
    rng = random.Random(seed)
    steps = 0
    started = time.perf_counter()
    for _ in range(walks):
        state = model.initial_state()
        for _ in range(steps_per_walk):
            actions = model.enabled_actions(state)
            if not actions:
                break
            state = model.step(state, actions[rng.randrange(len(actions))])
            steps += 1
    return steps, time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = Parser(prog="replog bench model", description=__doc__)
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--brokers", type=integer(1, 8), default=3, metavar="N")
    parser.add_argument("--partitions", type=integer(1, 8), default=1, metavar="N")
    parser.add_argument("--walks", type=integer(1), default=4000, metavar="N")
    parser.add_argument("--steps", type=integer(1), default=50, metavar="N", help="steps per walk")
    parser.add_argument("--seed", type=integer(0), default=1, metavar="N")
    args = parser.parse_args(argv)
    scope = Scope(
        brokers=args.brokers,
        partitions=args.partitions,
        max_writes=10,
        max_retries=5,
        max_crashes=4,
        max_data_loss_crashes=2,
        max_elections=6,
        max_network_changes=4,
        max_clock_advances=4,
    )
    try:
        model = ReplicationModel(Config.parse(args.config), scope)
    except (ConfigError, ValueError) as error:
        parser.exit(2, f"replog bench model: {error}\n")
    steps, seconds = random_walk_rate(model, args.seed, args.walks, args.steps)
    print(
        f"model random walks: {args.brokers} brokers, {args.partitions} partition(s), "
        f"{args.walks} walks x {args.steps} steps, seed {args.seed}"
    )
    print(f"  {steps} steps in {seconds:.2f} s = {steps / seconds:,.0f} steps/s (target >= 50,000)")
    return 0
