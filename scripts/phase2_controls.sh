#!/usr/bin/env bash
# Phase 2's comparison with its controls: every run warm-started from the same phase 1 run, 1500 steps of 4
# windows each (the cpu profile), changing one thing at a time, then `compare` over all of them.
#
#   bash scripts/phase2_controls.sh                  # the five runs ~3.5 h on 2 cores (~70 min a pair), compares ~1 h
#   bash scripts/phase2_controls.sh train.max_steps=300   # any override goes to every training command
#   ROOT=/tmp/p2 COMPARE_ARGS="max_episodes=1 multiples=[1] ablation_multiple=1" bash scripts/phase2_controls.sh train.max_steps=2  # smoke
#
# Runs (outputs/phase2/<name>/):
#   df-cpu            Diffusion Forcing, the cpu profile (levels up to sigma_max_train = 20, no clean-context windows)
#   tf-control-cpu    the equal-budget control: model.objective=teacher_forced, everything else as df-cpu
#   df-capped-cpu     DF with its training levels capped at the sampler's sigma_max (model.level_max=5)
#   df-clean-cpu      df-capped-cpu plus 10% of windows with clean context (model.clean_context=0.1)
#   full-sequence-cpu the full-sequence baseline (model.objective=full_sequence)
# Two runs train side by side, each with half the cores (THREADS=<n> to choose; two processes that each take every
# core slow each other several-fold); rerun after an interruption: finished runs are reused,
# interrupted ones resumed. Then `compare` plays every method against DF's control, and each variant against it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
root=${ROOT:-outputs}  # run.root of every command
logs=$root/phase2/logs
mkdir -p "$logs"
cores=$(nproc 2>/dev/null || echo 2)
threads=${THREADS:-$(( cores / 2 > 0 ? cores / 2 : 1 ))}  # per run: two train side by side

# shellcheck source=scripts/phase2_lib.sh
source scripts/phase2_lib.sh  # train <run name> <overrides...>

( train df-cpu "$@"; train df-capped-cpu model.level_max=5 "$@"; train full-sequence-cpu model.objective=full_sequence "$@" ) &
a=$!
( train tf-control-cpu model.objective=teacher_forced "$@"; train df-clean-cpu model.level_max=5 model.clean_context=0.1 "$@" ) &
b=$!
wait $a
wait $b

# df-cpu against every baseline with the ablations; each variant against the control alone (the same rollouts, so
# the baselines' rows would repeat df-cpu's), then one table of the three DF runs side by side
cmp() {  # cmp <DF run> <overrides...>
  local df=$1; shift
  echo "compare: $df -> $root/phase2/$df/compare/"
  # shellcheck disable=SC2086
  "$PY" -m phase2_diffusion_forcing.compare run.root="$root" run.threads="$threads" load="$root/phase2/$df" \
    control="$root/phase2/tf-control-cpu" "$@" ${COMPARE_ARGS:-} > "$logs/compare_$df.log" 2>&1
}
cmp df-cpu full_sequence="$root/phase2/full-sequence-cpu" &
a=$!
( for df in df-capped-cpu df-clean-cpu; do
    cmp "$df" full_sequence=none teacher_forced=none "ablate_stabilization=[]" "ablate_uncertainty=[]"
  done ) &
b=$!
wait $a
wait $b
results=$root/phase2/df-cpu/compare/results.json,$root/phase2/df-capped-cpu/compare/results.json
results=$results,$root/phase2/df-clean-cpu/compare/results.json
"$PY" -m phase2_diffusion_forcing.compare "variants=[$results]" > "$logs/variants.log" 2>&1
echo "done: tables in $root/phase2/<run>/compare/results.md and $root/phase2/df-cpu/compare/variants.md; publish"
echo "them with compare tables_from=$root/phase2/df-cpu/compare/results.json publish=true and compare variants=[$results] publish=true"
