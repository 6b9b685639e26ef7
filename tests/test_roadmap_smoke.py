"""`make roadmap-smoke` (scripts/roadmap_smoke.py): every built phase's main pipeline at smoke scale, each phase
finding the earlier phases' artefacts through the resolver, in one command. Run as a subprocess, as a user runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_phases_chain_at_smoke_scale(tmp_path):
    env = {**os.environ, "WM_RELEASES": str(tmp_path / "no-releases")}  # only what the chain itself made
    proc = subprocess.run([sys.executable, "scripts/roadmap_smoke.py", "--root", str(tmp_path / "chain")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    summary = proc.stdout.split("roadmap smoke under", 1)[1].splitlines()[1:]
    status = {line.split(":")[0]: line for line in summary if line.startswith("phase ")}
    for n in range(6):
        assert status[f"phase {n}"].startswith(f"phase {n}: ok"), status
    # phase 5 planned with phase 1's and phase 2's models, found as "latest" under the same run.root
    assert "DIAMOND-lite (phase 1, found as latest), DF (phase 2, found as latest)" in status["phase 5"]
    # and in LIBERO with phase 4's UWM, found as "latest" too
    assert "the UWM (phase 4, found as latest) chose among 2 imagined chunks" in status["phase 5"]
    # phase 4 trained on phase 3's demonstrations, its tokenizer found as "latest" under the same run.root
    assert "tokenizer found as latest" in status["phase 4"] and "played 1 LIBERO episode" in status["phase 4"]
    # phase 2 warm-started from phase 1's run, found as "latest" under the same run.root
    assert "warm-started from diffusion" in status["phase 2"]
    assert (tmp_path / "chain" / "phase2" / "df" / "export" / "diffusion_forcing.json").exists()
