"""Recording Atari episodes under DIAMOND's protocol into a data set (the library behind
`python -m phase1_world_model.collect`): one compressed file per episode plus index.json (format in storage.py).

Episode i is a function of (seed, i) alone, so `record` continues an interrupted collection (finished episode
files are kept, missing ones are played, a leftover `.tmp` from a kill is removed, the index is rebuilt from the
files present) and `ensure_dataset` re-creates a model's training data from its recorded identity.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common.checkpoint import atomic_write
from common.config import ConfigError, settings_mismatch
from common.errors import UserError
from phase1_world_model.config import AtariEnvConfig, CollectConfig, DataSourceConfig
from phase1_world_model.envs import canonical_game, make_atari, protocol
from phase1_world_model.policies import make_policy
from common.runs import ArtifactNotFoundError
from phase1_world_model.storage import (FORMAT_VERSION, CorruptDatasetError, CorruptEpisodeError, Episode,
                                        dataset_dir, dataset_identity, encode_episode, episode_name, find_dataset,
                                        scan, write_index)

# Test hook: SIGKILL this process halfway through writing the file of this episode number.
FAULT_ENV = "WM_FAULT_KILL_AT_EPISODE"


class CollectError(UserError, RuntimeError):
    """The output folder holds episodes made with other settings; the message names a file and the keys."""


def episode_rngs(seed: int, episode: int) -> tuple[int, np.random.Generator]:
    """(env seed, policy generator) of one episode, derived from (seed, episode) only.

    Why per episode and not one stream: episode i must not depend on which episodes were played before it
    in this process, or a resumed collection would differ from an uninterrupted one.
    """
    env_ss, policy_ss = np.random.SeedSequence([seed, episode]).spawn(2)
    return int(env_ss.generate_state(1)[0]), np.random.default_rng(policy_ss)


def play_episode(env, policy, env_seed: int, max_steps: int = 0) -> tuple[Episode, float]:
    """Reset with `env_seed` and act until the game ends or `max_steps` steps; returns (episode, seconds).

    The meta of the returned episode holds only the episode-level facts (env seed, no-ops); the caller adds
    the rest. Alignment: the action chosen while frames[t] is on screen is stored at actions[t], and the
    observation that step returns becomes frames[t+1].
    """
    t0 = time.perf_counter()
    obs, info = env.reset(seed=env_seed)
    ale = getattr(env.unwrapped, "ale", None)  # the RAM is recorded where the env has an emulator
    noops = int(info.get("noops", 0))
    frames, actions, rewards, terminated, truncated, life_loss = [obs], [], [], [], [], []
    ram = [ale.getRAM().copy()] if ale is not None else None
    while True:
        action = policy.act()
        obs, reward, term, trunc, info = env.step(action)
        trunc = bool(trunc or (max_steps and len(actions) + 1 >= max_steps and not term))
        frames.append(obs)
        if ram is not None:
            ram.append(ale.getRAM().copy())
        actions.append(action)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        life_loss.append(info["life_loss"])
        if term or trunc:
            break
    ep = Episode(frames=np.stack(frames).astype(np.uint8), actions=np.array(actions, np.int64),
                 rewards=np.array(rewards, np.float32), terminated=np.array(terminated, bool),
                 truncated=np.array(truncated, bool), life_loss=np.array(life_loss, bool),
                 meta={"env_seed": env_seed, "noops": noops},
                 ram=None if ram is None else np.stack(ram).astype(np.uint8))
    return ep, time.perf_counter() - t0


def _write(path: Path, data: bytes, episode: int) -> None:
    """atomic_write of the bytes, with the kill-during-write fault injection used by the resume test."""
    def write(f):
        if os.environ.get(FAULT_ENV) == str(episode):
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        f.write(data)
    atomic_write(path, write)


def _verify_report(out: Path, found: dict, corrupt: list[CorruptEpisodeError]) -> dict:
    """`verify=true`: print what is in the folder and every corrupt file; collect nothing."""
    if not out.is_dir():
        print(f"verify {out}: the folder does not exist")
    else:
        print(f"verify {out}: {len(found) + len(corrupt)} episode file(s), {len(found)} ok, {len(corrupt)} corrupt")
    for e in corrupt:
        print(f"  CORRUPT {e.path.name}: {e.reason}")
    return {"out": str(out), "exists": out.is_dir(), "ok": sorted(found), "corrupt": [e.path.name for e in corrupt]}


def _check_existing(out: Path, found: dict, corrupt: list[CorruptEpisodeError], settings: dict,
                    repair: bool) -> None:
    """Before adding to a folder: corrupt files stop the run (or are deleted with repair), and every kept
    episode must have been made with these settings, or the data set would silently mix two protocols."""
    if corrupt and not repair:
        raise CorruptDatasetError(out, corrupt, "Collect them again with the same command plus repair=true "
                                  "(episodes are reproducible from their seed), or delete them.")
    for e in corrupt:
        print(f"repair: deleting {e.path.name} ({e.reason}); it will be collected again")
        e.path.unlink()
    keys = ("format_version", "protocol", "collection")
    for i, (_, meta) in found.items():
        diff = settings_mismatch({k: meta[k] for k in keys}, {k: settings[k] for k in keys})
        if diff:
            raise CollectError(f"{out / episode_name(i)} was collected with other settings: {'; '.join(diff)}. "
                               f"Use the same settings to continue it, or another folder (data.folder=...).")


def record(cfg: CollectConfig) -> dict:
    """Collect (or verify) the data set described by cfg; returns what happened, for tests and scripts."""
    try:
        game = canonical_game(cfg.data.game)
    except ValueError as e:
        raise ConfigError("data.game", cfg.data.game, str(e).split(": ", 1)[-1]) from None
    out = dataset_dir(game, cfg.run.root, cfg.data.folder)
    env = make_atari(game, cfg.env)
    meanings = list(env.unwrapped.get_action_meanings())
    settings = {"format_version": FORMAT_VERSION, "protocol": protocol(game, cfg.env),
                "collection": {"policy": cfg.policy, "repeat_prob": cfg.repeat_prob if cfg.policy == "sticky_random"
                               else None, "seed": cfg.run.seed, "max_steps": cfg.max_steps},
                "action_meanings": meanings}
    header = {"game": game, **settings, "num_actions": len(meanings)}

    found, corrupt = scan(out)
    if cfg.verify:
        return _verify_report(out, found, corrupt)
    _check_existing(out, found, corrupt, settings, cfg.repair)

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.tmp"):  # half-written files of a killed run; the rename never happened
        stale.unlink(missing_ok=True)
    entries = {i: entry for i, (entry, _) in found.items()}
    todo = [i for i in range(cfg.episodes) if i not in entries]
    print(f"collect {game} -> {out}: {len(entries)} episode(s) present, {len(todo)} to play "
          f"({cfg.policy}{f' p={cfg.repeat_prob}' if cfg.policy == 'sticky_random' else ''}, seed {cfg.run.seed}, "
          f"{len(meanings)} actions: {' '.join(meanings)})", flush=True)

    t_start, play_seconds, steps = time.perf_counter(), 0.0, 0
    for n, i in enumerate(todo, 1):
        env_seed, rng = episode_rngs(cfg.run.seed, i)
        ep, seconds = play_episode(env, make_policy(cfg.policy, len(meanings), rng, cfg.repeat_prob),
                                   env_seed, cfg.max_steps)
        ep.meta = {**settings, "episode": i, "env_seed": env_seed, "noops": ep.meta["noops"]}
        _write(out / episode_name(i), encode_episode(ep), i)
        entries[i] = ep.summary(episode_name(i))
        # The index after every episode: an interrupted collection still leaves a usable data set.
        write_index(out, header, list(entries.values()), cfg.test_fraction)
        play_seconds += seconds
        steps += ep.length
        if cfg.progress_every and (n % cfg.progress_every == 0 or n == len(todo)):
            print(f"  episode {i}: {ep.length} steps, return {ep.rewards.sum():g}; {n}/{len(todo)} done, "
                  f"{steps / (time.perf_counter() - t_start):.0f} steps/s", flush=True)
    index = write_index(out, header, list(entries.values()), cfg.test_fraction)
    wall = time.perf_counter() - t_start
    total = index["totals"]
    print(f"collected {len(todo)} episode(s), {steps} steps in {wall:.1f} s: "
          f"{steps / wall if wall > 0 else 0:.0f} steps/s overall, "
          f"{steps / play_seconds if play_seconds > 0 else 0:.0f} steps/s in the env (the rest is compression "
          f"and writing). Data set: {total['train']['episodes']} train / {total['test']['episodes']} test "
          f"episodes, {total['train']['steps'] + total['test']['steps']} steps, in {out}")
    env.close()
    return {"out": str(out), "collected": todo, "kept": sorted(found), "steps": steps, "seconds": wall,
            "steps_per_second": steps / wall if wall > 0 else 0.0,
            "env_steps_per_second": steps / play_seconds if play_seconds > 0 else 0.0}


def ensure_dataset(identity: dict, root: str = "outputs", folder: str = "") -> Path:
    """The data set a model was trained on (its recorded `dataset_identity`), collected here if it is missing:
    episode i is a function of (seed, i), so the same settings make the same episodes. The index digest is
    compared with the recorded one; a mismatch (another ale-py, say) is reported, not hidden."""
    game = identity["game"]
    try:
        path = find_dataset(game, root, folder)
    except ArtifactNotFoundError:
        c, p = identity["collection"], identity["protocol"]
        print(f"note: the {game} data set is not at {dataset_dir(game, root, folder)}; collecting it with the "
              f"recorded settings ({identity['episodes']} episodes, seed {c['seed']}, {c['policy']})", flush=True)
        env = AtariEnvConfig(**{k: p[k] for k in ("frame_skip", "max_pool", "noop_max", "size",
                                                  "repeat_action_probability", "full_action_space", "max_frames")})
        cfg = CollectConfig(data=DataSourceConfig(game=game, folder=folder), episodes=identity["episodes"],
                            policy=c["policy"], repeat_prob=c["repeat_prob"] if c["repeat_prob"] is not None else 0.75,
                            max_steps=c["max_steps"], test_fraction=identity["test_fraction"], env=env,
                            progress_every=0)
        cfg = replace(cfg, run=replace(cfg.run, root=str(root), seed=c["seed"]))
        path = Path(record(cfg)["out"])
    want = identity.get("index_sha256")
    got = dataset_identity(path)["index_sha256"]
    if want and got != want:
        print(f"warning: {path} differs from the data set the model was trained on (index digest {got}, recorded "
              f"{want}); results on it are not comparable with the recorded ones", file=sys.stderr, flush=True)
    return path


