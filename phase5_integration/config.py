"""Phase 5 config schemas. Values live in configs/phase5/*.yaml; this file says what they mean.

`PlanConfig` is `python -m phase5_integration.plan`: one agent (random, sticky-random, or a planner over one world
model) playing real games; `AgentTrainConfig` is `python -m phase5_integration.train_agent`;
`IntegrationEvaluateConfig` is `python -m phase5_integration.evaluate`: the table over the agents that have played.
Testbed 2 (LIBERO): `ScorerTrainConfig` is `python -m phase5_integration.train_scorer`, `ChooseConfig` is
`python -m phase5_integration.choose`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from common.config import choice, require, require_together
from common.logger import LogConfig
from common.runs import RunConfig, TrainRunConfig
from common.trainer import TrainConfig
from phase1_world_model.config import AtariEnvConfig
from phase2_diffusion_forcing.config import SamplerConfig
from phase3_vla.config import DemoDataConfig
from phase4_uwm.config import PolicyEvalConfig

AGENTS = ("random", "sticky_random", "planner", "actor_critic")
MODELS = ("emulator", "diamond", "regressor", "df", "emulator_head")
METHODS = ("enumerate", "shooting", "cem")


@dataclass
class PlannerConfig:
    """Receding-horizon search in the world model (phase5_integration/planner.py has the value formula)."""

    method: str = "enumerate"  # enumerate (all A^H sequences) | shooting (random sequences) | cem
    horizon: int = 3  # H: imagined steps per candidate
    candidates: int = 64  # shooting / cem: sequences per iteration
    iterations: int = 3  # cem: refits of the sampling distribution
    elites: int = 8  # cem: best sequences the distribution is refit to
    smoothing: float = 0.1  # cem: weight of the previous distribution in the refit
    min_prob: float = 0.02  # cem: floor of every action's probability (keeps exploring)
    repeats: int = 1  # imagined futures per candidate (a stochastic model's values are averaged over them)
    gamma: float = 0.99  # discount per step
    life_penalty: float = 5.0  # value of losing a life, in (sign-clipped) reward units
    action_repeat: int = 1  # agent steps each planned action is held (macro-actions): lookahead = horizon x this
    replan_every: int = 1  # agent steps of each plan executed before planning again
    warm_start: bool = True  # shooting / cem: start from the previous plan (shifted by what was executed)
    max_enumerate: int = 4096  # enumerate refuses more sequences than this
    # enumerate: sequences whose value is within this of the best are ties, broken at random. A learned reward/end
    # head gives every sequence a slightly different value (its small life-loss probabilities), so with exact ties
    # (1e-6) a planner in a learned model can prefer never launching the ball; 0.05 (a twentieth of a brick, 1% of a
    # life) treats such differences as noise. Above ~0.009 it also ties an oracle's reward one step later.
    tie_tolerance: float = 1e-6

    def check(self) -> None:
        choice("method", self.method, METHODS)
        require(self.horizon >= 1, "horizon", self.horizon, "must be >= 1")
        require(self.candidates >= 2, "candidates", self.candidates, "must be >= 2")
        require(self.iterations >= 1, "iterations", self.iterations, "must be >= 1")
        require(1 <= self.elites <= self.candidates, "elites", self.elites, "must be in [1, candidates]")
        require(0 <= self.smoothing < 1, "smoothing", self.smoothing, "must be in [0, 1)")
        require(0 <= self.min_prob < 0.25, "min_prob", self.min_prob, "must be in [0, 0.25)")
        require(self.tie_tolerance >= 0, "tie_tolerance", self.tie_tolerance, "must be >= 0")
        require(self.repeats >= 1, "repeats", self.repeats, "must be >= 1")
        require(0 < self.gamma <= 1, "gamma", self.gamma, "must be in (0, 1]")
        require(self.life_penalty >= 0, "life_penalty", self.life_penalty, "must be >= 0")
        require(self.action_repeat >= 1, "action_repeat", self.action_repeat, "must be >= 1")
        require(self.replan_every >= 1, "replan_every", self.replan_every, "must be >= 1")


@dataclass
class ModelConfig:
    """Which world model the planner imagines with."""

    # emulator (the oracle: a copy of the real game) | diamond (phase 1 diffusion) | regressor (phase 1) | df (phase 2)
    #   | emulator_head (the diagnostic between them: the real game's frames, valued by the learned reward/end head)
    kind: str = "diamond"
    load: str = "latest"  # the run of that kind: a folder, latest (newest local run, else the release) or release
    # The phase 1 diffusion run whose reward/end head scores imagined transitions for every learned model (one
    # critic for all, so that models differ only in the frames they imagine); latest | release | a folder
    scorer: str = "latest"
    denoise_steps: int = 0  # diamond: Euler steps per frame; 0 = the model's own (3)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # df: its scheduling matrix, steps, stabilization

    def check(self) -> None:
        choice("kind", self.kind, MODELS)
        require(self.denoise_steps >= 0, "denoise_steps", self.denoise_steps, "must be >= 0 (0 = the model's own)")


@dataclass
class GameConfig:
    """The real game the agents are scored in: phase 1's protocol, fresh seeds."""

    game: str = "Breakout"  # must be the game the world models were trained on
    env: AtariEnvConfig = field(default_factory=AtariEnvConfig)  # DIAMOND's protocol (phase1_world_model/envs.py)
    episodes: int = 20  # real games per agent
    max_steps: int = 1000  # agent steps before a game is cut (counted as truncated; Breakout waits for FIRE)
    seed: int = 5000  # evaluation seed stream: game i uses SeedSequence([seed, i]); refused if it collides with a
    #   seed of the world model's training data set
    shard: str = ""  # "k/n": play only games i with i % n == k, so n processes (or sessions) share one arm's games

    def check(self) -> None:
        require(self.episodes >= 1, "episodes", self.episodes, "must be >= 1")
        require(self.max_steps >= 1, "max_steps", self.max_steps, "must be >= 1")
        self.shard_of()

    def shard_of(self) -> tuple[int, int]:
        """`shard` -> (k, n); (0, 1) when unset."""
        if not self.shard:
            return 0, 1
        try:
            k, n = (int(v) for v in self.shard.split("/"))
        except ValueError:
            k, n = -1, 0
        require(n >= 1 and 0 <= k < n, "shard", self.shard, 'must be "k/n" with 0 <= k < n, e.g. "0/2"')
        return k, n


@dataclass
class PlanConfig:
    """`python -m phase5_integration.plan`: one agent plays `game.episodes` real games (resumable)."""

    run: RunConfig = field(default_factory=RunConfig)  # run.root: where results go, and where runs are found
    # random | sticky_random (the data's collection policy, repeat 0.75) | planner | actor_critic (trained in imagination)
    agent: str = "planner"
    agent_load: str = "latest"  # agent=actor_critic: its train_agent run (a folder, latest, or release)
    greedy: bool = False  # agent=actor_critic: take the most likely action instead of sampling the policy
    model: ModelConfig = field(default_factory=ModelConfig)  # planner: which world model
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    game: GameConfig = field(default_factory=GameConfig)
    name: str = ""  # results folder <results>/<game>/<name>; "" = from agent, model and method
    # where arms' games go: "" = <run.root>/phase5; the published games are kept in the repo under
    #   phase5_integration/results (outputs/ may not survive a machine; a few KB of games.jsonl per arm do)
    results: str = ""
    video: int = 1  # games recorded as video (the first ones): real frames beside the planner's imagined future
    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu | full

    def check(self) -> None:
        choice("agent", self.agent, AGENTS)
        require(self.video >= 0, "video", self.video, "must be >= 0")

    def arm_name(self) -> str:
        if self.name:
            return self.name
        if self.agent == "actor_critic":
            return f"actor_critic{'-greedy' if self.greedy else ''}"
        if self.agent != "planner":
            return self.agent
        p = self.planner
        k = f"x{p.action_repeat}" if p.action_repeat > 1 else ""
        r = f"-r{p.replan_every}" if p.replan_every > 1 else ""
        t = f"-tol{p.tie_tolerance:g}" if p.tie_tolerance != PlannerConfig.tie_tolerance else ""
        return f"plan-{self.model.kind}-{p.method}-h{p.horizon}{k}{r}{t}"


@dataclass
class ActorCriticConfig:
    """The agent trained in imagination (phase5_integration/actor_critic.py) and its objective."""

    channels: list[int] = field(default_factory=lambda: [32, 64, 64, 128])  # stride-2 conv widths over K stacked frames
    hidden: int = 512  # width of the layer the policy and value heads read
    horizon: int = 15  # H: imagined steps per training rollout (DIAMOND: 15)
    gamma: float = 0.985  # discount (DIAMOND: 0.985)
    lam: float = 0.95  # lambda of the lambda-returns (DIAMOND: 0.95)
    entropy_weight: float = 0.001  # eta: entropy bonus (DIAMOND: 0.001)
    critic_weight: float = 1.0  # weight of the value loss

    def check(self) -> None:
        require(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "channels", self.channels,
                "must be a non-empty list of positive widths")
        require(self.horizon >= 1, "horizon", self.horizon, "must be >= 1")
        require(0 < self.gamma <= 1, "gamma", self.gamma, "must be in (0, 1]")
        require(0 <= self.lam <= 1, "lam", self.lam, "must be in [0, 1]")
        require(self.entropy_weight >= 0, "entropy_weight", self.entropy_weight, "must be >= 0")


@dataclass
class AgentTrainConfig:
    """`python -m phase5_integration.train_agent`: an actor-critic trained only inside phase 1's world model."""

    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=16, lr=1e-4, warmup_steps=0,
                                                                   ema_decay=0.0, max_steps=600))
    log: LogConfig = field(default_factory=LogConfig)
    agent: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    world: str = "latest"  # the phase 1 diffusion run to imagine in (with its reward/end head): folder, latest, release
    denoise_steps: int = 0  # Euler steps per imagined frame; 0 = the world model's own (3)
    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu | full

    def check(self) -> None:
        require(self.denoise_steps >= 0, "denoise_steps", self.denoise_steps, "must be >= 0 (0 = the model's own)")


@dataclass
class IntegrationEvaluateConfig:
    """`python -m phase5_integration.evaluate`: the table over every agent that has played (plan's results)."""

    run: RunConfig = field(default_factory=RunConfig)
    testbed: str = "breakout"  # breakout (plan's games) | libero (choose's arms, <run.root>/phase5/LIBERO/<arm>/)
    game: str = "Breakout"  # breakout: results of which game: <results>/<game>/<agent>/
    results: str = ""  # breakout: where plan wrote the games ("" = <run.root>/phase5; the published: phase5_integration/results)
    arms: list[str] = field(default_factory=list)  # result folders to include, in this order; [] = all found
    publish: bool = False  # write the table into phase5_integration/README.md's results block (one per testbed)

    def check(self) -> None:
        choice("testbed", self.testbed, ("breakout", "libero"))


# ------------------------------------------------------------------------------------------------ testbed 2: LIBERO
CHOOSERS = ("first", "world_model", "pixel_goal", "simulator")
PROPOSERS = ("uwm", "vla")


@dataclass
class ScorerTrainConfig:
    """`python -m phase5_integration.train_scorer`: the progress scorer of testbed 2 (phase5_integration/
    libero_choice.py): one frame's latents (both cameras, phase 4's frozen tokenizer) -> t / (T - 1) of its
    demonstration, BCE on the soft target; scored at the end on the split's held-out demonstrations."""

    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu
    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=64, lr=1e-3, warmup_steps=50,
                                                                   schedule="cosine", weight_decay=1e-4,
                                                                   ema_decay=0.99, max_steps=1500))
    log: LogConfig = field(default_factory=LogConfig)
    data: DemoDataConfig = field(default_factory=DemoDataConfig)  # phase 3's collection
    split: str = "new"  # the task the chooser will act in: new (task 9) or base
    tokenizer: str = "latest"  # phase 4's tokenizer run (must be the one the UWM used: `choose` checks its scale)
    width: int = 64  # first conv width of the scorer
    # Played episodes that join the demonstrations: evaluation folders (episodes/*.json + media/*.mp4, as phase 3's
    # and phase 4's evaluate and phase 5's choose write them, every episode recorded: eval.videos=-1). Successes
    # are targeted like demonstrations, failures 0 at every frame; every 5th episode is held out to measure the
    # scorer on failures. Their start states are recorded, so no arm can then be evaluated on them.
    rollouts: list[str] = field(default_factory=list)
    # Another trained scorer (run folder, latest, release) measured on the same held-out demonstrations and played
    # episodes as this one, side by side in its record (e.g. the demonstrations-only scorer); "" = none
    compare: str = ""

    def check(self) -> None:
        choice("split", self.split, ("base", "new"))
        require(self.width >= 8, "width", self.width, "must be >= 8")


@dataclass
class ChooseConfig:
    """`python -m phase5_integration.choose`: one arm of testbed 2 plays LIBERO's held-out initial states."""

    run: RunConfig = field(default_factory=RunConfig)
    # phase 4's UWM (the world model, and the proposer unless proposer=vla): a run folder, latest or release
    uwm: str = "latest"
    proposer: str = "uwm"  # who proposes the K chunks: uwm (its policy mode) | vla (phase 3's SmolVLA, `vla`)
    # proposer=uwm: another UWM whose policy mode proposes while `uwm` imagines (a run folder, latest or release);
    # "" = `uwm` does both. Keeps the proposals fixed while the imagining model changes (arm names get `uwmp-`)
    proposer_uwm: str = ""
    # the SmolVLA that proposes when proposer=vla: a phase 3 run name or folder, `release` or `release:<name>`
    vla: str = "release:full-n50-cpu"
    scorer: str = "latest"  # the progress scorer (a train_scorer run folder, latest or release); unused by first
    choose: str = "world_model"  # first (the proposer alone) | world_model | pixel_goal | simulator (the ceiling)
    proposals: int = 8  # K chunks proposed per decision (choose=first plays one)
    denoise_steps: int = 0  # DDIM steps of the policy and forward modes; 0 = the model's
    # DDIM timesteps of both modes: trailing | leading; "" = the model's (phase 4 chose leading on base_val clips)
    timestep_spacing: str = ""
    data: DemoDataConfig = field(default_factory=DemoDataConfig)  # pixel_goal: the training demonstrations' goal frame
    eval: PolicyEvalConfig = field(default_factory=PolicyEvalConfig)  # tasks, fixed states, episodes, LIBERO settings
    name: str = ""  # results folder <run.root>/phase5/LIBERO/<name>; "" = [vla-]<choose>[-k<K>][-<tag>]
    tag: str = ""  # appended to the default name (e.g. the scorer: tag=rscorer for one trained with rollouts)
    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu

    def check(self) -> None:
        choice("choose", self.choose, CHOOSERS)
        choice("proposer", self.proposer, PROPOSERS)
        require_together(not self.proposer_uwm or self.proposer == "uwm",
                         {"proposer_uwm": self.proposer_uwm, "proposer": self.proposer},
                         "proposer_uwm names the UWM that proposes, so only with proposer=uwm: drop one of the two")
        require(self.proposals >= 1, "proposals", self.proposals, "must be >= 1")
        require(self.denoise_steps >= 0, "denoise_steps", self.denoise_steps, "must be >= 0 (0 = the model's)")
        if self.timestep_spacing:
            choice("timestep_spacing", self.timestep_spacing, ("trailing", "leading"))

    def arm_name(self) -> str:
        prefix = "uwmp-" if self.proposer_uwm else "" if self.proposer == "uwm" else f"{self.proposer}-"
        base = prefix + (self.choose if self.choose == "first" else f"{self.choose}-k{self.proposals}")
        return self.name or (f"{base}-{self.tag}" if self.tag else base)
