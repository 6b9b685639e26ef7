"""Where episodes start, and the check that no evaluation episode starts where a training demonstration did.

LIBERO gives every task 50 fixed initial states (the benchmark's evaluation states). Demonstrations are
collected from *sampled* placements instead (the task's own placement regions, the way LIBERO's datasets were
made; phase3_vla.libero_env's `reset(placement_seed=...)`), and evaluation plays only the fixed states.

Identity is decided exactly, on the full simulator state vector (110 numbers for LIBERO-Object: time, joint
positions and velocities of the robot and every object) from which an episode starts, before lerobot's settle
steps. A pose tolerance would not do: in LIBERO-Object the target item starts at the same spot in most fixed
states and in sampled placements alike (only the basket and the distractors move, by 1-2 cm;
`python -m phase3_vla.libero_info --starts` measures it), so "close" would call every placement a copy.

Every demonstration records its start (`StartRecord`: task, how it was drawn, the state vector and its digest,
every object's pose); the data sets carry them in `meta/starts.json`; `check_disjoint` refuses an evaluation
whose (task, fixed state) equals any training start, naming the states.

    from phase3_vla.starts import read_starts, check_disjoint, fixed_states
    train = read_starts(dataset_folder)                        # [StartRecord] of every episode
    check_disjoint(train, {9: range(25)}, fixed_states)        # ContaminationError if one is shared
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from common.checkpoint import atomic_write
from common.errors import DataError, UserError

STARTS_FILE = "starts.json"  # in a LeRobotDataset's meta/ folder


class ContaminationError(UserError, ValueError):
    """An evaluation episode would start from a state a training demonstration started from."""


@dataclass
class StartRecord:
    """How one episode started. `kind` is "sampled" (drawn by the task's placement sampler from `seed`) or
    "fixed" (LIBERO's fixed initial state number `seed`)."""

    task_id: int
    kind: str
    seed: int
    state: list[float]  # the simulator state vector (MuJoCo's flattened state) before the settle steps
    digest: str = ""  # sha256 of the float64 state vector: equal digests = the same start
    poses: dict[str, list[float]] = field(default_factory=dict)  # object -> [x, y, z, qw, qx, qy, qz]
    episode_index: int = -1  # the episode in its data set (-1 before it is written)

    def __post_init__(self):
        if not self.state:  # a digest-only record (what a trained run keeps of its demonstrations)
            if len(self.digest) != 64:
                raise DataError(f"start record of task {self.task_id} ({self.kind} {self.seed}) has neither a state "
                                "vector nor a digest")
            return
        want = state_digest(self.state)
        if self.digest and self.digest != want:
            raise DataError(f"start record of task {self.task_id} ({self.kind} {self.seed}): digest {self.digest} "
                            f"does not match its state vector ({want})")
        self.digest = want


def state_digest(state) -> str:
    return hashlib.sha256(np.asarray(state, dtype=np.float64).tobytes()).hexdigest()


def placement_seed(seed: int, task_id: int, attempt: int) -> int:
    """The placement sampler's seed of attempt `attempt` of a task: a function of (seed, task, attempt) only,
    kept below 2**31 (robosuite seeds numpy's legacy RNG)."""
    return int(np.random.SeedSequence([seed, task_id, attempt, 0x5EED]).generate_state(1)[0] % (2 ** 31 - 1))


def write_starts(root: Path, records: Iterable[StartRecord]) -> Path:
    """`<root>/meta/starts.json`: one record per episode, in episode order (floats written exactly: JSON
    keeps a float64's shortest round-tripping repr)."""
    rows = []
    for i, r in enumerate(records):
        r.episode_index = i
        rows.append(asdict(r))
    path = Path(root) / "meta" / STARTS_FILE
    atomic_write(path, lambda f: f.write(json.dumps({"version": 1, "episodes": rows}).encode()))
    return path


def read_starts(root: Path, episodes: Iterable[int] | None = None) -> list[StartRecord]:
    """The start of every episode of a data set (or of the listed ones). A data set without the file was
    collected before starts were recorded: the contamination check cannot run, so this is an error."""
    path = Path(root) / "meta" / STARTS_FILE
    if not path.exists():
        raise DataError(f"{path} does not exist: the data set {root} does not record where its demonstrations "
                        "started, so evaluation cannot be checked against it. Collect it again with: python -m "
                        "phase3_vla.collect (the current collect records the starts)")
    try:
        rows = json.loads(path.read_text())["episodes"]
        records = [StartRecord(**r) for r in rows]
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path} is unreadable ({type(e).__name__}: {e}); collect the data set again") from None
    if [r.episode_index for r in records] != list(range(len(records))):
        raise DataError(f"{path}: episode indices are not 0..{len(records) - 1} in order")
    if episodes is not None:
        wanted = list(episodes)
        bad = [e for e in wanted if not 0 <= e < len(records)]
        if bad:
            raise DataError(f"{path} has {len(records)} episodes; asked for {bad[:5]}")
        records = [records[e] for e in wanted]
    return records


def fixed_states(task_id: int, suite: str = "libero_object") -> np.ndarray:
    """LIBERO's fixed initial states of a task, (50, state size) float64 (from LIBERO's init files)."""
    from phase3_vla.config import LiberoConfig
    from phase3_vla.libero_env import get_suite

    states = get_suite(LiberoConfig(suite=suite)).get_task_init_states(task_id)
    return np.asarray(states, dtype=np.float64)


def check_disjoint(train: Iterable[StartRecord], evaluation: Mapping[int, Iterable[int]],
                   fixed: Callable[[int], np.ndarray] = fixed_states, where: str = "") -> int:
    """Raise ContaminationError if an evaluation episode (task -> fixed state indices) starts from the exact
    state of a training demonstration; returns how many (task, state) pairs were checked."""
    by_task: dict[int, dict[str, StartRecord]] = {}
    for r in train:
        by_task.setdefault(r.task_id, {})[r.digest] = r
    shared, checked = [], 0
    for task, states in evaluation.items():
        table = fixed(task)
        seen = by_task.get(task, {})
        for i in states:
            checked += 1
            hit = seen.get(state_digest(table[i]))
            if hit is not None:
                shared.append(f"task {task} state {i} (= training episode {hit.episode_index}, {hit.kind} {hit.seed})")
    if shared:
        raise ContaminationError(
            f"{len(shared)} evaluation start(s) are training starts{' of ' + where if where else ''}: "
            + "; ".join(shared[:8]) + (" ..." if len(shared) > 8 else "")
            + ". Evaluate on other states (eval.first_state=...), or collect demonstrations from sampled "
              "placements (python -m phase3_vla.collect).")
    return checked


def spread(records: Iterable[StartRecord]) -> dict[str, dict[str, list[float]]]:
    """Per object: min and max of x and y (metres) over the records' start poses."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in records:
        for name, p in r.poses.items():
            s = out.setdefault(name, {"x": [p[0], p[0]], "y": [p[1], p[1]]})
            for k, v in (("x", p[0]), ("y", p[1])):
                s[k] = [min(s[k][0], v), max(s[k][1], v)]
    return out
