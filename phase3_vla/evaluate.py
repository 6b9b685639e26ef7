"""Success rate of a trained policy in LIBERO-Object, from the suite's fixed initial states.

    python -m phase3_vla.evaluate                                       # base-cpu on the new task (9): states 0-24, 2 processes
    python -m phase3_vla.evaluate load=base-cpu eval.tasks=[0,1,2,3,4,5,6,7,8] eval.episodes=3
    python -m phase3_vla.evaluate load=lora-r16-n50-cpu                # a LoRA run: the adapter on its base
    python -m phase3_vla.evaluate load=outputs/phase3/base-cpu/snapshots/step_003000/policy   # a snapshot
    python -m phase3_vla.evaluate load=release:lora-r16-n50-cpu        # a released model (releases/phase3/); with no
                                                                    # local base-cpu run, the default falls back to its release
    python -m phase3_vla.evaluate eval.libero.perturb=0.08              # the harder condition: target and basket moved
    python -m phase3_vla.evaluate eval.n_action_steps=10                # re-plan every 10 steps instead of every chunk
    python -m phase3_vla.evaluate load=<lerobot-train's pretrained_model> eval.check_starts=false
    python -m phase3_vla.evaluate profile=smoke                         # 1 short episode

Episodes of a task start from LIBERO's fixed initial states eval.first_state .. first_state + episodes - 1 (the
same states for every run, so runs compare on equal terms), then lerobot's 10 no-op settle steps
(libero.num_steps_wait), and run until the task's own success check fires or libero.max_steps (280 for
LIBERO-Object, lerobot's limit) control steps have passed. Before anything is played, the states are checked
against every training start of the policy (its run's demonstrations, and its base run's for a finetune; the
runs record them): evaluating on a state a demonstration started from is refused, naming the states
(phase3_vla.starts). With eval.libero.perturb=d the target item and the basket are then moved by d/2..d metres
(a harder held-out condition whose starts really differ). The policy acts as in lerobot's eval loop: the
observation (both cameras rotated upright + lerobot's 8-d state, exactly what the datasets store) goes through
the run's preprocessor, `select_action` pops the next action of the current chunk and predicts a new chunk
every `n_action_steps` steps, the postprocessor unnormalizes it, and the 7-d action is applied. Cameras render
at the size of the policy's training images. eval.workers processes play the episodes (one per core).

Writes into <run>/eval/ (eval-n_action_steps<k>/, eval-perturb<d>/ for those settings; or eval.out):
episodes/task_TT_ep_EEE.json per episode (EEE = the fixed state; success, steps, failure reason and diagnostics:
how high the item was lifted, its final distance from the basket, seconds), media/task_TT_ep_EEE.mp4/.gif for
the first eval.videos episodes per task (agent view | wrist), and results.json + results.md: successes per task
with Wilson 95% intervals. Episodes already played with the same settings and the same weights are reused, so
an interrupted evaluation continues where it stopped and evaluations of different task lists add up.
"""
from __future__ import annotations


from common.config import cli
from common.errors import command
from phase3_vla.config import READS, Phase3Config
from phase3_vla.rollouts import evaluate


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(Phase3Config, "phase3/evaluate", argv, __doc__, reads=READS["evaluate"])
    return evaluate(cfg)


if __name__ == "__main__":
    main()
