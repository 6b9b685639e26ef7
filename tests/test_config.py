"""Typed configs: bad keys, types and values fail early with one clear line naming the key.

Each case is checked twice: through `common.config.load_config` (raises ConfigError) and through the
real command line `python -m phase0_diffusion.train ...` (exit status 2, one line on stderr).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from common.config import CONFIG_DIR, ConfigError, load_config
from phase0_diffusion.config import SAMPLERS, Phase0Config

PROFILES = sorted(p.stem for p in (CONFIG_DIR / "phase0" / "profile").glob("*.yaml"))

# (overrides, key the error must name, fragments the message must contain)
BAD = {
    "unknown_key": (["train.lrr=1"], "train.lrr", ["train.lrr", "spelling"]),
    "unknown_key_added_with_plus": (["+train.lrr=1"], "train.lrr", ["train.lrr"]),
    "wrong_type": (["train.lr=abc"], "train.lr", ["train.lr", "abc"]),
    "out_of_range": (["train.lr=-1"], "train.lr", ["train.lr", "> 0"]),
    "bad_choice": (["sample.sampler=foo"], "sample.sampler", ["sample.sampler", "foo", *SAMPLERS]),
    "unknown_profile": (["profile=nope"], "profile", ["nope", *PROFILES]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_load_config_rejects(case: str):
    """load_config raises ConfigError whose key is the offending dotted path and whose message says
    what is allowed (allowed choices / profiles are listed)."""
    overrides, key, fragments = BAD[case]
    with pytest.raises(ConfigError) as err:
        load_config(Phase0Config, "phase0/train", ["profile=smoke", *overrides] if case != "unknown_profile"
                    else overrides)
    assert err.value.key == key
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))


@pytest.mark.parametrize("case", ["unknown_key", "wrong_type", "out_of_range", "bad_choice", "unknown_profile"])
def test_cli_rejects_with_exit_2_and_one_line(case: str, run_root: Path, train_cli):
    """The train entry point turns a config error into exit status 2 and a single stderr line (no
    traceback), before creating any run folder."""
    overrides, key, fragments = BAD[case]
    proc = train_cli(*overrides, f"run.root={run_root}", "run.name=bad", timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("config error: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (run_root / "phase0").exists()


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_composes_and_validates(profile: str):
    """Every file in configs/phase0/profile composes with the schema, passes validation, and records
    its own name in `profile`."""
    cfg = load_config(Phase0Config, "phase0/train", [f"profile={profile}"])
    assert cfg.profile == profile
    assert cfg.model.unet.in_channels == cfg.model.unet.out_channels


def test_expected_profiles_exist():
    """The profiles the docs and tests rely on are all present."""
    assert {"smoke", "cpu", "cpu_cond", "full"} <= set(PROFILES)


def test_overrides_are_applied_with_types():
    """Valid overrides land in the typed dataclasses (ints stay ints, lists become lists)."""
    cfg = load_config(Phase0Config, "phase0/train",
                      ["profile=smoke", "train.lr=3e-4", "train.max_steps=7", "model.unet.channels=[8,16]"])
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.train.max_steps == 7
    assert isinstance(cfg.train.max_steps, int) and list(cfg.model.unet.channels) == [8, 16]


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_channel_mismatch_with_dataset_exits_2(tmp_path: Path, capsys):
    """A 3-channel model on 1-channel MNIST stops with exit 2 and says which setting fixes it.

    (The schema accepts in_channels=3; only the data reveals the mismatch, so this is checked after
    loading, still before any run folder is created.)"""
    from phase0_diffusion.train import main

    data = tmp_path / "mnist"
    data.mkdir()
    rng = np.random.default_rng(0)
    _write_idx(data / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (8, 28, 28)))
    _write_idx(data / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 8))
    with pytest.raises(SystemExit) as exit_info:
        main(["profile=smoke", "data.name=mnist", f"data.root={data}", "model.unet.in_channels=3",
              "model.unet.out_channels=3", f"run.root={tmp_path / 'out'}", "run.name=mismatch"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "model.unet.in_channels" in err and "model.unet.in_channels=1" in err, err
    assert not (tmp_path / "out").exists()


def test_saved_config_with_a_removed_key_still_loads(tmp_path):
    """A run saved by an older version (a key the schema no longer has) loads with a warning."""
    import warnings

    from common.config import load_saved_config, to_dict
    from omegaconf import OmegaConf
    from phase0_diffusion.config import Phase0Config

    saved = to_dict(Phase0Config())
    saved["eval"]["old_key"] = "x"
    saved["train"]["lr"] = 5e-4
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(saved)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_saved_config(Phase0Config, path)
    assert cfg.train.lr == 5e-4 and isinstance(cfg, Phase0Config)
    assert any("eval.old_key" in str(w.message) for w in caught)


def test_a_command_rejects_keys_of_another_command(capsys):
    """Phase 3's commands share one schema; each reads only its sections, and a key of another is an error."""
    from phase3_vla import evaluate as evaluation
    with pytest.raises(SystemExit) as exc:
        evaluation.main(["train.lr=5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "train.lr" in err and "does not read train.*" in err and "eval.*" in err


def test_old_key_spellings_still_work_with_a_note(capsys):
    """One vocabulary: `load` is the run to load, `data.folder` the data set, `denoise_steps*` denoising steps,
    `frames` frames to generate; the old spellings are rewritten with a one-line note."""
    from common.config import cli
    from phase1_world_model.config import CollectConfig, EvaluateConfig, PlayConfig
    from phase2_diffusion_forcing.config import CompareConfig
    ev = cli(EvaluateConfig, "phase1/evaluate", ["diffusion=/x", "data_folder=/d", "steps=[1,2]", "steps_horizon=5"])
    assert (ev.load, ev.data.folder, ev.denoise_steps_sweep, ev.sweep_horizon) == ("/x", "/d", [1, 2], 5)
    pl = cli(PlayConfig, "phase1/play", ["steps=7", "data_folder=/d"])
    assert (pl.frames, pl.data.folder) == (7, "/d")
    co = cli(CollectConfig, "phase1/collect", ["game=Pong", "out=/o"], profile_group="collect_profile")
    assert (co.data.game, co.data.folder) == ("Pong", "/o")
    cmp = cli(CompareConfig, "phase2/compare", ["df=/y", "steps=5"])
    assert (cmp.load, cmp.denoise_steps) == ("/y", 5)
    err = capsys.readouterr().err
    for old, new in [("diffusion", "load"), ("steps", "frames"), ("game", "data.game"), ("df", "load")]:
        assert f"`{old}=` is now `{new}=`" in err


def test_phase0_unet_keys_moved_under_model_unet(tmp_path, capsys):
    """Phase 0's UNet settings are model.unet.* as in phases 1-2; `model.channels=` still works with a note, and a
    config saved with the old layout (the release, older runs) loads with its own values, not the defaults."""
    from common.config import cli, load_saved_config
    cfg = cli(Phase0Config, "phase0/train", ["profile=smoke", "model.channels=[8,16]"])
    assert list(cfg.model.unet.channels) == [8, 16]
    assert "`model.channels=` is now `model.unet.channels=`" in capsys.readouterr().err
    old = tmp_path / "config.yaml"
    old.write_text("model: {channels: [16, 32, 32], emb_dim: 128}\ntrain: {bf16: true}\n")
    saved = load_saved_config(Phase0Config, old)
    assert list(saved.model.unet.channels) == [16, 32, 32] and saved.model.unet.emb_dim == 128


def test_phase1_sampler_settings_live_apart_from_the_model(tmp_path, capsys):
    """The frame sampler (steps, solver) is `sampler.*`, not `model.*`: `model.steps=` still works with a note, a
    config saved with the old layout (phase 1's release, older runs) loads with its own values, and the model built
    from it samples with them."""
    from common.config import cli, load_saved_config
    from phase1_world_model.config import Phase1Config
    from phase1_world_model.model import WorldModel
    cfg = cli(Phase1Config, "phase1/train", ["profile=smoke", "model.steps=5", "model.solver=heun"])
    assert (cfg.sampler.steps, cfg.sampler.solver) == (5, "heun") and not hasattr(cfg.model, "steps")
    assert "`model.steps=` is now `sampler.steps=`" in capsys.readouterr().err
    old = tmp_path / "config.yaml"
    old.write_text("model: {steps: 7, solver: heun, context: 2}\n")
    saved = load_saved_config(Phase1Config, old)
    assert (saved.sampler.steps, saved.sampler.solver, saved.model.context) == (7, "heun", 2)
    model = WorldModel(saved.model, 4, (3, 16, 16), saved.sampler)
    assert len(model.sigmas()) == 7 + 1  # 7 levels and the final 0


def test_every_schema_a_yaml_names_is_one_class():
    """Hydra's config store is global: two entry points' schemas with one name would check a YAML against the
    wrong class, depending on which command ran first in the process (CI caught this once, in test order)."""
    import ast
    import re

    root = Path(__file__).resolve().parents[1]
    named = {m for p in (root / "configs").rglob("*.yaml") for m in re.findall(r"(\w+)_schema", p.read_text())}
    defined: dict[str, list[str]] = {}
    for path in root.glob("*/config.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                defined.setdefault(node.name, []).append(str(path.relative_to(root)))
    assert named, "no schema names found in configs/"
    missing = sorted(n for n in named if n not in defined)
    assert not missing, f"YAMLs name schemas no config.py defines: {missing}"
    clashes = {n: defined[n] for n in named if len(defined[n]) > 1}
    assert not clashes, f"schema names defined twice (rename one): {clashes}"
