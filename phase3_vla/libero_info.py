"""Where LIBERO's assets and config are, the suite's tasks, and how fast the simulator steps here.

    python -m phase3_vla.libero_info            # assets, config, the 10 tasks, 20 steps without and with cameras
    python -m phase3_vla.libero_info --bench    # 100 steps each: env steps/s without cameras and with both at 128 px
"""
from __future__ import annotations

import sys
import time

import numpy as np

from common.errors import command
from phase3_vla.config import LiberoConfig
from phase3_vla.libero_env import make_env, prepare, prepared_setup, task_info


@command
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cfg = LiberoConfig()
    t0 = time.perf_counter()
    source = prepare(cfg)
    setup = prepared_setup()
    print(f"assets: {source}\nLIBERO config: {setup['config']}\nMUJOCO_GL={setup['gl']}")
    for t in task_info(cfg):
        print(f"  task {t['task_id']}: {t['instruction']}")
    steps = 100 if "--bench" in argv else 20
    for cameras in (False, True):
        t0 = time.perf_counter()
        env = make_env(cfg, 0, cameras=cameras)
        env.reset(init_state=0)
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            env.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))
        dt = time.perf_counter() - t0
        print(f"cameras={'agentview+wrist ' + str(cfg.image_size) + 'px' if cameras else 'off'}: build+reset "
              f"{built:.1f} s, {steps / dt:.1f} env steps/s over {steps} steps", flush=True)
        env.close()


if __name__ == "__main__":
    main()
