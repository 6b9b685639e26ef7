#!/usr/bin/env bash
# Phase 2, issue 13: is "capping DF's training levels at the sampler's range gives the better game state" a property
# of the recipe or of one training run? Two training seeds of each recipe, everything else as in
# scripts/phase2_controls.sh (same warm start, 1500 steps of 4 windows, the cpu profile):
#
#   df-cpu              seed 0, levels up to sigma = 20: the released run (releases/phase2/df-cpu), not retrained
#   df-capped-cpu       seed 0, model.level_max=5 (its first run was lost with its machine: trained again)
#   df-cpu-s1           seed 1 (run.seed=1)
#   df-capped-cpu-s1    seed 1, model.level_max=5
#
# Each is compared alone (no baselines, no ablations) on the same 40 rollouts as the published comparison (same
# held-out episodes, starts, horizons to 8x the window and sampling seed 0), its results.json written to
# phase2_diffusion_forcing/results/seeds/<run>/ (committed, so the table can be remade without the runs), then one
# table of the four df_ar rows: compare variants=[...] out=<that folder>.
#
#   bash scripts/phase2_seeds.sh          # ~3.5 h of training on 2 cores (two at a time), then ~40 min per compare
#   ROOT=/tmp/p2 OUT=/tmp/p2/seeds COMPARE_ARGS="max_episodes=1 multiples=[1] ablation_multiple=1" \
#     bash scripts/phase2_seeds.sh train.max_steps=2      # smoke: any override goes to every training command
# Rerun after an interruption: finished runs and comparisons are reused, interrupted runs resumed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
root=${ROOT:-outputs}
out=${OUT:-phase2_diffusion_forcing/results/seeds}
df0=${DF:-release:df-cpu}  # the seed-0 uncapped run
logs=$root/phase2/logs
mkdir -p "$logs" "$out"
cores=$(nproc 2>/dev/null || echo 2)
threads=${THREADS:-$(( cores / 2 > 0 ? cores / 2 : 1 ))}

[ -f "$root/phase1/datasets/Breakout/index.json" ] || "$PY" -m phase1_world_model.collect run.root="$root" \
  > "$logs/collect.log" 2>&1

# shellcheck source=scripts/phase2_lib.sh
source scripts/phase2_lib.sh  # train <run name> <overrides...>
cmp() {  # cmp <label> <load>: one DF run alone on the published comparison's rollouts
  local label=$1 load=$2
  if [ -f "$out/$label/results.json" ]; then echo "compare $label: done, reused"; return 0; fi
  echo "compare $label -> $out/$label/"
  # shellcheck disable=SC2086
  "$PY" -m phase2_diffusion_forcing.compare run.root="$root" run.threads="$threads" load="$load" control=none \
    teacher_forced=none full_sequence=none "ablate_stabilization=[]" "ablate_uncertainty=[]" videos=0 \
    out="$out/$label" ${COMPARE_ARGS:-} > "$logs/compare_seeds_$label.log" 2>&1
}

( train df-capped-cpu model.level_max=5 "$@"; cmp df-capped-cpu "$root/phase2/df-capped-cpu"
  cmp df-cpu "$df0" ) &
a=$!
( train df-cpu-s1 run.seed=1 "$@"; train df-capped-cpu-s1 run.seed=1 model.level_max=5 "$@"
  cmp df-cpu-s1 "$root/phase2/df-cpu-s1" ) &
b=$!
wait $a
wait $b
cmp df-capped-cpu-s1 "$root/phase2/df-capped-cpu-s1"
results=$out/df-cpu/results.json,$out/df-capped-cpu/results.json,$out/df-cpu-s1/results.json
results=$results,$out/df-capped-cpu-s1/results.json
"$PY" -m phase2_diffusion_forcing.compare "variants=[$results]" out="$out" > "$logs/variants_seeds.log" 2>&1
echo "done: $out/variants.md (the four df_ar rows side by side)"
