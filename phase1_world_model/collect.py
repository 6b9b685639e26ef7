"""Collect Atari episodes with a random policy under DIAMOND's protocol, one compressed file per episode.

    python -m phase1_world_model.collect                                  # Breakout, 100 episodes (profile cpu)
    python -m phase1_world_model.collect data.game=Pong episodes=200 policy=random
    python -m phase1_world_model.collect profile=smoke                    # 2 short episodes, seconds
    python -m phase1_world_model.collect data.game=Breakout --verify           # check every file, collect nothing
    python -m phase1_world_model.collect data.game=Breakout repair=true        # re-collect corrupt files

Output: outputs/phase1/datasets/<Game>/ (or data.folder=<folder>): episode_000000.npz ... and index.json; the
format is described in storage.py and the README. Episode i is a function of (seed, i) alone, so the same
command continues an interrupted collection: finished episode files are kept, missing ones are played
(a leftover `.tmp` from a kill is ignored and removed), and the index is rebuilt from the files present.
"""
from __future__ import annotations

import sys

from common.config import cli
from common.errors import command
from phase1_world_model.config import CollectConfig
from phase1_world_model.recording import record

PROFILE_GROUP = "collect_profile"  # configs/phase1/collect_profile/: `profile=` on the command line


@command
def main(argv: list[str] | None = None) -> dict:
    argv = ["verify=true" if a == "--verify" else a for a in (sys.argv[1:] if argv is None else argv)]
    cfg = cli(CollectConfig, "phase1/collect", argv, __doc__, profile_group=PROFILE_GROUP)
    result = record(cfg)
    if cfg.verify and (result["corrupt"] or not result["exists"]):
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
