#!/usr/bin/env bash
# Phase 4's experiments, in the order they depend on each other; rerun after an interruption: finished runs are
# reused, interrupted ones resumed, evaluated episodes kept (phase4_uwm.evaluate resumes).
#
#   bash scripts/phase4_experiments.sh                 # everything at the cpu profile (many hours on 2 cores)
#   STAGES="data tokenizer uwm" bash scripts/phase4_experiments.sh      # only these stages
#   ROOT=/tmp/p4 DEMOS=smoke PROFILE=smoke EVAL_ARGS="parts=[policy] eval.episodes=1 eval.libero.max_steps=3" \
#     bash scripts/phase4_experiments.sh                # the whole chain at smoke scale (no validation demos: no offline part)
# COLLECT_ARGS are added to the collection's command, EVAL_ARGS to every evaluation's, TRAIN_ARGS to every training's
# (last, so they win; e.g. TRAIN_ARGS="run.threads=1" to share 2 cores with another job). TOK=<tokenizer run or
# release folder> replaces the tokenizer stage's run (e.g. TOK=releases/phase4/tok-cpu on a fresh clone).
#
# Stages (outputs/phase4/<name>/):
#   data        phase 3's collection (python -m phase3_vla.collect profile=$DEMOS), if not there
#   tokenizer   tok-cpu: the AutoencoderKL (its reconstruction PSNR is the ceiling of every frame metric)
#   uwm         uwm-base-cpu (9 base tasks) -> uwm-new-cpu (finetuned on task 9)
#   baselines   dp-new-cpu (Diffusion Policy from scratch on task 9), inverse-cpu, diamond-cpu (DIAMOND-lite)
#   ablations   uwm-base-policy-cpu / uwm-base-dynamics-cpu (one loss, same budget) -> their task-9 finetunes;
#               uwm-base-small-cpu (width 128, 4 blocks) and uwm-new-n10-cpu (10 demonstrations): scale
#   evaluate    offline (all modes + baselines) and LIBERO policy success (25 fixed states of task 9) per run, all
#               with the DDIM spacing chosen on base_val (leading); then phase4_uwm.compare: the runs side by side
#   played      (only when named) uwm-new continued with and without played episodes (PLAYED=...): see below
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
root=${ROOT:-outputs}
demos=${DEMOS:-cpu}
profile=${PROFILE:-cpu}
stages=${STAGES:-"data tokenizer uwm baselines ablations evaluate"}
logs=$root/phase4/logs
mkdir -p "$logs"
common=(run.root="$root" data.demos="$demos")
# finetuning on the new task: a third of pretraining's steps at the cpu profile (the paper: 20k after 100k)
ft=""
[ "$profile" = cpu ] && ft="train.max_steps=1000 train.warmup_steps=100"

has() { [[ " $stages " == *" $1 "* ]]; }

run() {  # run <module> <run name> <marker> <overrides...>: reuse a finished run, resume an interrupted one
  local module=$1 name=$2 marker=$3; shift 3
  local dir=$root/phase4/$name resume=()
  if [ -f "$dir/export/$marker" ]; then echo "phase4/$name: finished, reused"; return 0; fi
  ls "$dir"/checkpoints/step_*.pt >/dev/null 2>&1 && resume=(run.resume=true)
  echo "phase4/$name ($module) -> $logs/$name.log"
  # shellcheck disable=SC2086
  "$PY" -m "phase4_uwm.$module" profile="$profile" "${common[@]}" "$@" run.name="$name" "${resume[@]}" \
    log.progress=false ${TRAIN_ARGS:-} > "$logs/$name.log" 2>&1
}

if has data && [ ! -f "$root/phase3/demos/$demos/lerobot/new/meta/info.json" ]; then
  echo "phase3 collection ($demos) -> $logs/collect.log"
  # shellcheck disable=SC2086
  "$PY" -m phase3_vla.collect profile="$demos" run.root="$root" ${COLLECT_ARGS:-} > "$logs/collect.log" 2>&1
fi
tok=${TOK:-$root/phase4/tok-$profile}  # TOK=releases/phase4/tok-cpu: the released tokenizer, no retraining
has tokenizer && run train_tokenizer "tok-$profile" tokenizer.json
if has uwm; then
  run train "uwm-base-$profile" uwm.json tokenizer="$tok"
  run train "uwm-new-$profile" uwm.json tokenizer="$tok" data.split=new init_from="$root/phase4/uwm-base-$profile" $ft
fi
if has baselines; then
  run train_dp "dp-new-$profile" diffusion_policy.json
  run train_inverse "inverse-$profile" inverse_regressor.json
  run train_diamond "diamond-$profile" diamond_lite.json
fi
if has ablations; then
  for obj in policy dynamics; do
    run train "uwm-base-$obj-$profile" uwm.json tokenizer="$tok" objective=$obj
    run train "uwm-new-$obj-$profile" uwm.json tokenizer="$tok" objective=$obj data.split=new \
      init_from="$root/phase4/uwm-base-$obj-$profile" $ft
  done
  run train "uwm-base-small-$profile" uwm.json tokenizer="$tok" model.width=128 model.depth=4
  run train "uwm-new-small-$profile" uwm.json tokenizer="$tok" model.width=128 model.depth=4 data.split=new \
    init_from="$root/phase4/uwm-base-small-$profile" $ft
  run train "uwm-new-n10-$profile" uwm.json tokenizer="$tok" data.split=new data.episodes=10 \
    init_from="$root/phase4/uwm-base-$profile" $ft
fi
# played (not in the default stages; phase 5's PLAYED_ARMS runs it): uwm-new-played-<profile> continues uwm-new on the
# task-9 demonstrations plus the played episodes in PLAYED (comma-separated evaluation folders recorded with actions,
# failures included, their actions not imitated), uwm-new-more-<profile> the same steps on the demonstrations
# alone: the equal-budget control
if has played; then
  run train "uwm-new-more-$profile" uwm.json tokenizer="$tok" data.split=new init_from="$root/phase4/uwm-new-$profile" $ft
  run train "uwm-new-played-$profile" uwm.json tokenizer="$tok" data.split=new init_from="$root/phase4/uwm-new-$profile" \
    "data.played=[${PLAYED:?PLAYED=<evaluation folders with recorded actions>}]" $ft
fi
if has evaluate; then
  ev=(run.root="$root" data.demos="$demos")
  read -r -a extra <<< "${EVAL_ARGS:-}"
  base="$root/phase4"
  echo "evaluate uwm-new-$profile (offline with baselines, policy) -> $logs/evaluate_uwm-new.log"
  "$PY" -m phase4_uwm.evaluate load="$base/uwm-new-$profile" "${ev[@]}" timestep_spacing=leading \
    inverse_regressor="$base/inverse-$profile" forward_baseline="$base/diamond-$profile" "${extra[@]}" \
    > "$logs/evaluate_uwm-new.log" 2>&1
  echo "evaluate dp-new-$profile (policy) -> $logs/evaluate_dp-new.log"
  "$PY" -m phase4_uwm.evaluate method=diffusion_policy load="$base/dp-new-$profile" "parts=[policy]" "${ev[@]}" \
    "${extra[@]}" > "$logs/evaluate_dp-new.log" 2>&1
  for name in uwm-new-policy uwm-new-dynamics uwm-new-small uwm-new-n10; do
    [ -f "$base/$name-$profile/export/uwm.json" ] || continue
    parts="[offline,policy]"
    [ "$name" = uwm-new-dynamics ] && parts="[offline]"  # no action loss: its policy mode was never trained
    echo "evaluate $name-$profile -> $logs/evaluate_$name.log"
    "$PY" -m phase4_uwm.evaluate load="$base/$name-$profile" "parts=$parts" "${ev[@]}" timestep_spacing=leading \
      "${extra[@]}" > "$logs/evaluate_$name.log" 2>&1
  done
  names=(uwm-new dp-new uwm-new-policy uwm-new-dynamics uwm-new-small uwm-new-n10)
  "$PY" -m phase4_uwm.compare run.root="$root" "runs=[$(IFS=,; echo "${names[*]/%/-$profile}")]"
fi
echo "done: results in $root/phase4/<run>/evaluate/results.md"
