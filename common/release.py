"""Releases: the trained cpu-profile models that ship with the repo, so nobody has to retrain before using them.

    python -m common.release outputs/phase1/cpu-diffusion            # -> releases/phase1/cpu-diffusion/
    python -m common.release outputs/phase1/cpu-diffusion --name diffusion-cpu --force
    python -m common.release --verify                                # check every release against its manifest
    python -m common.release --list
    python -m common.release --store-half releases/phase3/full-n50-cpu   # float32 weights -> float16, in place

A release is a flat folder `releases/<phase>/<name>/` holding what the run's `export/` holds (the EMA weights,
`config.yaml`, the phase's marker JSON that loaders look for, and any files beside them), plus:

    release.json   manifest: sha256 and size of every file, how the weights were stored, and provenance: the
                   exact command, git commit, when, the data set's identity and the machine it trained on
    metrics.json   the run's final logged metrics (the last value of every key of metrics.jsonl) and its
                   evaluation results (eval/*.json) when it has any

Weight files over 2 MB are stored in float16 by default (`--fp32` keeps them as trained): every phase's cpu
models are a few million parameters, so a release stays at a few MB (phase 4's 9M-parameter UWM, the largest, at
about 18 MB) and `releases/` under its 60 MB budget (`--store-half` converts a release made with `--fp32`). The largest
rounding error is recorded in the manifest. Loading converts back to the model's fp32 parameters.

`common.runs.resolve_run(phase, "latest")` falls back to a phase's release when there is no local run (saying so
on stderr), and `"release"` asks for it explicitly. Every use checks the files against the manifest first, so a
truncated or corrupt file is reported by name instead of loading garbage.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import sys
from pathlib import Path

from common.checkpoint import atomic_write
from common.runs import RELEASE_MANIFEST, ReleaseError, Run, releases_dir, sha256, verify_release

FORMAT = 1
MAX_RELEASE_BYTES = 20 * 1024 * 1024  # one release (phase 4's cpu UWM is 9.2M parameters: 18 MB in float16)
MAX_TOTAL_BYTES = 60 * 1000 * 1000  # all of releases/ (60 MB: what a clone should carry)
HALF_ABOVE_BYTES = 2 * 1024 * 1024  # smaller weight files (the FID-proxy classifier) stay float32: nothing to save
# Phase-specific steps run after the export files are copied: module with `prepare(run, out) -> dict` (the dict
# is merged into the provenance). Phase 3's policies point at a backbone folder and a base policy by path.
HOOKS = {"phase3": "phase3_vla.release_files"}


def _half(src: Path, dst: Path) -> dict:
    """Copy a safetensors file with its float32 tensors stored as float16 (others as they are)."""
    from safetensors.torch import load_file, save

    import torch

    tensors, worst, converted = {}, 0.0, 0
    for k, v in load_file(str(src)).items():
        if v.dtype == torch.float32:
            h = v.to(torch.float16)
            if not torch.isfinite(h).all():  # out of float16's range: keep this one as it is
                h = v
            else:
                worst = max(worst, float((h.float() - v).abs().max()) if v.numel() else 0.0)
                converted += v.numel()
            v = h
        tensors[k] = v.contiguous()
    atomic_write(dst, lambda f: f.write(save(tensors)))
    return {"dtype": "float16", "converted_parameters": converted, "max_abs_rounding_error": worst}


def store_half(folder: str | Path) -> dict:
    """Store an existing release's float32 weight files (over HALF_ABOVE_BYTES) in float16, in place, keeping its
    provenance and its "created" date (so which release a phase falls back to does not change); the manifest
    records what was converted, when, and the sha256 of the float32 files it replaced (the weights that anything
    measured before the conversion used). Returns the manifest's new "weights" entry."""
    folder = Path(folder)
    manifest = verify_release(folder)
    weights = manifest["weights"] if isinstance(manifest.get("weights"), dict) else {}
    todo = [rel for rel, f in manifest["files"].items() if rel.endswith(".safetensors") and rel not in weights
            and f["bytes"] > HALF_ABOVE_BYTES]
    if not todo:
        raise ReleaseError(f"{folder}: no float32 weight file over {HALF_ABOVE_BYTES / 2**20:.0f} MB left to convert")
    when = _dt.datetime.now().isoformat(timespec="seconds")
    for rel in todo:
        info = _half(folder / rel, folder / rel)  # read whole, then written atomically over itself
        info.update(converted=when, float32_sha256=manifest["files"][rel]["sha256"],
                    float32_bytes=manifest["files"][rel]["bytes"])
        weights[rel] = info
        manifest["files"][rel] = {"bytes": (folder / rel).stat().st_size, "sha256": sha256(folder / rel)}
    manifest["weights"] = weights
    atomic_write(folder / RELEASE_MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    verify_release(folder)
    return weights


def final_metrics(run: Path) -> dict:
    """The last value of every key in metrics.jsonl, with the step it was logged at; plus eval/*.json."""
    last: dict = {}
    path = run / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                for k, v in row.items():
                    if k not in ("step", "time"):
                        last[k] = {"value": v, "step": row.get("step")}
    evals = {p.stem: json.loads(p.read_text()) for p in sorted((run / "eval").glob("*.json"))} \
        if (run / "eval").is_dir() else {}
    return {"final": last, **({"eval": evals} if evals else {})}


def _data_identity(export: Path) -> dict:
    """The `data` entry of the phase's marker JSON(s) in export/ (each phase's training writes one): one data set's
    identity, or a list of them (a model trained on several, such as phase 4's tokenizer) as {"sets": [...]}."""
    for p in sorted(export.glob("*.json")):
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        data = d.get("data") if isinstance(d, dict) else None
        if isinstance(data, dict) and data:
            return data
        if isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
            return {"sets": data}
    return {}


def make_release(run_dir: str | Path, name: str = "", half: bool = True, force: bool = False,
                 out_root: Path | None = None) -> Path:
    """Copy a finished run's export/ into releases/<phase>/<name>/ with its manifest; returns the folder."""
    run_dir = Path(run_dir).resolve()
    export = run_dir / "export"
    if not (export / "config.yaml").exists():
        raise ReleaseError(f"{run_dir} is not a finished run: no export/config.yaml (train it to the end first)")
    phase = run_dir.parent.name
    if not phase.startswith("phase"):
        raise ReleaseError(f"{run_dir}: cannot tell its phase (runs live in <root>/<phase>/<name>/)")
    name = name or run_dir.name
    base = (out_root or releases_dir()) / phase
    final, tmp = base / name, base / f".{name}.tmp"
    if final.exists() and not force:
        raise ReleaseError(f"{final} exists; pass --force to replace it")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights: dict = {}
    for src in sorted(p for p in export.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
        dst = tmp / src.relative_to(export)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if half and src.suffix == ".safetensors" and src.stat().st_size > HALF_ABOVE_BYTES:
            weights[str(src.relative_to(export))] = _half(src, dst)
        else:
            shutil.copy2(src, dst)
    system = json.loads((run_dir / "system.json").read_text()) if (run_dir / "system.json").exists() else {}
    metrics = final_metrics(run_dir)
    trained = ""
    lines = [l for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()] \
        if (run_dir / "metrics.jsonl").exists() else []
    if lines:  # the wall-clock time of the last logged step
        t = json.loads(lines[-1]).get("time")
        trained = _dt.datetime.fromtimestamp(t).isoformat(timespec="seconds") if isinstance(t, (int, float)) else str(t)
    provenance = {
        "source_run": str(run_dir), "command": system.get("command", "unknown (run predates system.json)"),
        "git_commit": system.get("git_commit"), "git_dirty": system.get("git_dirty"),
        "trained": trained or system.get("started"), "data": _data_identity(export),
        "machine": {k: system.get(k) for k in ("cpu", "cpu_flags", "device", "threads", "processes", "torch", "python")},
        "precision": system.get("precision"), "precision_reason": system.get("precision_reason"),
    }
    if phase in HOOKS:
        import importlib
        provenance.update(importlib.import_module(HOOKS[phase]).prepare(Run(run_dir, phase), tmp) or {})
    atomic_write(tmp / "metrics.json", lambda f: f.write(json.dumps(metrics, indent=1).encode()))
    files = {str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(tmp.rglob("*")) if p.is_file()}
    total = sum(f["bytes"] for f in files.values())
    if total > MAX_RELEASE_BYTES:
        shutil.rmtree(tmp)
        raise ReleaseError(f"{run_dir} would make a {total / 2**20:.1f} MB release (limit {MAX_RELEASE_BYTES / 2**20:.0f} "
                           f"MB): releases are for the small cpu-profile models")
    manifest = {"format": FORMAT, "phase": phase, "name": name,
                "created": _dt.datetime.now().isoformat(timespec="seconds"), "files": files,
                "weights": weights or "as trained (float32)", "provenance": provenance}
    atomic_write(tmp / RELEASE_MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    all_bytes = sum(p.stat().st_size for p in (out_root or releases_dir()).rglob("*") if p.is_file())
    if all_bytes > MAX_TOTAL_BYTES:
        print(f"warning: releases/ now holds {all_bytes / 1e6:.1f} MB, over its {MAX_TOTAL_BYTES / 1e6:.0f} MB "
              f"budget", file=sys.stderr)
    return final


def all_releases(root: Path | None = None) -> list[Path]:
    root = root or releases_dir()
    return sorted(p.parent for p in root.glob(f"phase*/*/{RELEASE_MANIFEST}"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.release", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="?", help="a finished run folder (<root>/<phase>/<name>)")
    ap.add_argument("--name", default="", help="release name (default: the run's name)")
    ap.add_argument("--fp32", action="store_true", help="keep the weights in float32 (default: float16)")
    ap.add_argument("--force", action="store_true", help="replace an existing release of that name")
    ap.add_argument("--store-half", metavar="RELEASE", help="store an existing release's float32 weights in float16 "
                    "(in place; the manifest keeps the float32 sha256); re-measure what was measured on it")
    ap.add_argument("--verify", action="store_true", help="check every release against its manifest")
    ap.add_argument("--list", action="store_true", help="list the releases with size and provenance")
    a = ap.parse_args(argv)
    try:
        if a.verify or a.list:
            bad = 0
            for folder in all_releases():
                try:
                    m = verify_release(folder)
                    size = sum(f["bytes"] for f in m["files"].values())
                    p = m["provenance"]
                    print(f"ok   {folder.relative_to(releases_dir())}: {size / 2**20:.2f} MB, trained {p.get('trained')} "
                          f"at {str(p.get('git_commit'))[:10]}, {p.get('command')}")
                except ReleaseError as e:
                    bad += 1
                    print(f"BAD  {e}")
            total = sum(p.stat().st_size for p in releases_dir().rglob("*") if p.is_file())
            print(f"{len(all_releases())} release(s), {total / 1e6:.1f} MB in {releases_dir()} (budget "
                  f"{MAX_TOTAL_BYTES / 1e6:.0f} MB)")
            return 1 if bad else 0
        if a.store_half:
            for rel, w in store_half(a.store_half).items():
                print(f"release: {a.store_half}/{rel}: float16, largest rounding error {w['max_abs_rounding_error']:.3g}")
            return 0
        if not a.run:
            ap.error("name a run folder, or pass --verify / --list / --store-half")
        out = make_release(a.run, a.name, half=not a.fp32, force=a.force)
        m = json.loads((out / RELEASE_MANIFEST).read_text())
        print(f"release: {out} ({sum(f['bytes'] for f in m['files'].values()) / 2**20:.2f} MB, "
              f"{len(m['files'])} files)")
        return 0
    except ReleaseError as e:
        print(f"release: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
