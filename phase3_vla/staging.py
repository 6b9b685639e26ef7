"""Per-attempt staging files of a demonstration collection: written by workers, read to build the datasets.

A collection folder (default `outputs/phase3/demos/<profile>/`) holds

    staging/task_03/attempt_0007.npz          a successful attempt: the whole demonstration
    staging/task_03/attempt_0008.failed.json  a failed attempt: why, and how long it ran (counted, not kept)
    lerobot/base/, lerobot/new/               the LeRobotDatasets assembled from the staged demonstrations
    media/, stats.md, summary.json            video and statistics written by collect

An .npz holds, for a demonstration of T control steps (frame t = what the expert saw before action t):

    agentview  uint8   (T, H, W, 3)  agent-view camera, rotated upright (lerobot's LIBERO convention)
    wrist      uint8   (T, H, W, 3)  wrist camera, rotated upright
    state      float32 (T, 8)        eef position, eef axis-angle, 2 gripper joints (lerobot's LIBERO state)
    action     float32 (T, 7)        the expert's delta action, in [-1, 1]
    meta       str                   JSON: format version, task, attempt, start (phase3_vla.starts.StartRecord:
                                     placement seed, simulator state, object poses), instruction, settings

Every file is written with `common.checkpoint.atomic_write` (temporary sibling + rename), so a kill at any
moment leaves the finished attempts intact and at most a `.tmp` that is ignored and later removed. Every
reader goes through `load_demo` / `scan`, which check all of the above and name a bad file.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.checkpoint import atomic_write, read_npz
from common.errors import UserError

FORMAT_VERSION = 2  # 2: demonstrations start from sampled placements and record their start
DEMO_RE = re.compile(r"^attempt_(\d{4,})\.npz$")
FAILED_RE = re.compile(r"^attempt_(\d{4,})\.failed\.json$")
TASK_RE = re.compile(r"^task_(\d{2})$")
META_KEYS = ("format_version", "task_id", "attempt", "start", "instruction", "task_name", "steps", "settings")
# Test hook: "<task>:<attempt>" = SIGKILL this process halfway through writing that attempt's file;
# "<task>:<attempt>:after" = kill the whole process group right after the file is complete.
FAULT_ENV = "WM_FAULT_KILL_AT_ATTEMPT"


class CorruptStagedFileError(UserError, RuntimeError):
    """A staged file cannot be read or does not follow the format; the message names the file."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"corrupt staged file {self.path}: {reason}")


@dataclass
class Demo:
    agentview: np.ndarray
    wrist: np.ndarray
    state: np.ndarray
    action: np.ndarray
    meta: dict

    @property
    def length(self) -> int:
        return len(self.action)


def task_dir(staging: Path, task_id: int) -> Path:
    return Path(staging) / f"task_{task_id:02d}"


def demo_path(staging: Path, task_id: int, attempt: int) -> Path:
    return task_dir(staging, task_id) / f"attempt_{attempt:04d}.npz"


def failed_path(staging: Path, task_id: int, attempt: int) -> Path:
    return task_dir(staging, task_id) / f"attempt_{attempt:04d}.failed.json"


def _validate(d: Demo, path: Path) -> None:
    T = len(d.action)
    if T < 1:
        raise CorruptStagedFileError(path, "no steps")
    for name in ("agentview", "wrist"):
        a = getattr(d, name)
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[0] != T or a.shape[3] != 3:
            raise CorruptStagedFileError(path, f"{name} is {a.dtype} {a.shape}, expected uint8 ({T}, H, W, 3)")
    if d.agentview.shape != d.wrist.shape:
        raise CorruptStagedFileError(path, f"agentview {d.agentview.shape} and wrist {d.wrist.shape} differ")
    for name, dim in (("state", 8), ("action", 7)):
        a = getattr(d, name)
        if a.dtype != np.float32 or a.shape != (T, dim):
            raise CorruptStagedFileError(path, f"{name} is {a.dtype} {a.shape}, expected float32 ({T}, {dim})")
        if not np.isfinite(a).all():
            raise CorruptStagedFileError(path, f"{name} holds NaN or inf")
    missing = [k for k in META_KEYS if k not in d.meta]
    if missing:
        raise CorruptStagedFileError(path, f"meta lacks {', '.join(missing)}")
    if d.meta["format_version"] != FORMAT_VERSION:
        raise CorruptStagedFileError(path, f"format_version {d.meta['format_version']}, this code reads {FORMAT_VERSION}")
    if d.meta["steps"] != T:
        raise CorruptStagedFileError(path, f"meta says {d.meta['steps']} steps, the arrays hold {T}")
    from phase3_vla.starts import StartRecord

    try:
        StartRecord(**d.meta["start"])
    except Exception as e:
        raise CorruptStagedFileError(path, f"meta's start record is invalid ({type(e).__name__}: {e})") from None


def encode_demo(d: Demo) -> bytes:
    """Compressed .npz bytes of a demonstration (checked first, so a bad one is never written)."""
    _validate(d, Path("<new demonstration>"))
    buf = io.BytesIO()
    np.savez_compressed(buf, agentview=d.agentview, wrist=d.wrist, state=d.state, action=d.action,
                        meta=np.array(json.dumps(d.meta, sort_keys=True)))
    return buf.getvalue()


def _fault(path: Path, task_id: int, attempt: int) -> str:
    spec = os.environ.get(FAULT_ENV, "")
    parts = spec.split(":")
    if len(parts) >= 2 and parts[:2] == [str(task_id), str(attempt)]:
        return parts[2] if len(parts) > 2 else "during"
    return ""


def write_staged(path: Path, data: bytes, task_id: int, attempt: int) -> None:
    """atomic_write of the bytes, with the kill faults used by the resume tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fault = _fault(path, task_id, attempt)

    def write(f):
        if fault == "during":
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        f.write(data)
    atomic_write(path, write)
    if fault == "after":  # as if the machine went down right after this attempt was kept
        os.killpg(os.getpgid(0), signal.SIGKILL)


def save_demo(staging: Path, d: Demo) -> Path:
    path = demo_path(staging, d.meta["task_id"], d.meta["attempt"])
    write_staged(path, encode_demo(d), d.meta["task_id"], d.meta["attempt"])
    return path


def save_failure(staging: Path, record: dict) -> Path:
    path = failed_path(staging, record["task_id"], record["attempt"])
    write_staged(path, json.dumps(record, sort_keys=True).encode(), record["task_id"], record["attempt"])
    return path


def load_demo(path: Path) -> Demo:
    """Read and check one staged demonstration; CorruptStagedFileError names the file and the problem."""
    path = Path(path)
    arrays, meta = read_npz(path, ("agentview", "wrist", "state", "action"), CorruptStagedFileError)
    d = Demo(meta=meta, **arrays)
    _validate(d, path)
    return d


def load_failure(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise CorruptStagedFileError(path, f"unreadable ({type(e).__name__}: {e})") from None
    missing = [k for k in ("task_id", "attempt", "start", "steps", "failure", "settings") if k not in record]
    if missing:
        raise CorruptStagedFileError(path, f"lacks {', '.join(missing)}")
    return record


@dataclass
class Staged:
    """What a staging folder holds: {task: {attempt: meta}} of demos, {task: {attempt: record}} of failures."""

    demos: dict[int, dict[int, dict]]
    failures: dict[int, dict[int, dict]]
    corrupt: list[CorruptStagedFileError]
    leftovers: list[Path]  # .tmp files of interrupted writes

    def done(self, task_id: int) -> dict[int, bool]:
        """{attempt: succeeded} of the finished attempts of a task."""
        return {**{a: False for a in self.failures.get(task_id, {})}, **{a: True for a in self.demos.get(task_id, {})}}


def scan(staging: Path, read_arrays: bool = True) -> Staged:
    """Every staged file, checked (`read_arrays=False` reads only the metadata of demonstrations: fast)."""
    out = Staged({}, {}, [], [])
    staging = Path(staging)
    if not staging.is_dir():
        return out
    for tdir in sorted(p for p in staging.iterdir() if p.is_dir() and TASK_RE.match(p.name)):
        task_id = int(TASK_RE.match(tdir.name).group(1))
        for p in sorted(tdir.iterdir()):
            if p.name.endswith(".tmp"):
                out.leftovers.append(p)
                continue
            try:
                if m := DEMO_RE.match(p.name):
                    meta = load_demo(p).meta if read_arrays else _read_meta(p)
                    store = out.demos
                elif m := FAILED_RE.match(p.name):
                    meta = load_failure(p)
                    store = out.failures
                else:
                    continue
                attempt = int(m.group(1))
                if meta["task_id"] != task_id or meta["attempt"] != attempt:
                    raise CorruptStagedFileError(p, f"holds task {meta['task_id']} attempt {meta['attempt']}, "
                                                    f"not task {task_id} attempt {attempt} (renamed?)")
                store.setdefault(task_id, {})[attempt] = meta
            except CorruptStagedFileError as e:
                out.corrupt.append(e)
    for t in set(out.demos) & set(out.failures):
        for a in set(out.demos[t]) & set(out.failures[t]):
            out.corrupt.append(CorruptStagedFileError(failed_path(staging, t, a),
                                                      "the same attempt is also staged as a success"))
    return out


def _read_meta(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
    except Exception as e:
        raise CorruptStagedFileError(path, f"unreadable ({type(e).__name__}: {e})") from None
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise CorruptStagedFileError(path, f"meta lacks {', '.join(missing)}")
    return meta
