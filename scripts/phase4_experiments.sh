#!/usr/bin/env bash
# Phase 4's experiments, in the order they depend on each other; rerun after an interruption: finished runs are
# reused, interrupted ones resumed, evaluated episodes kept (phase4_uwm.evaluate resumes), recorded arms skipped.
#
#   bash scripts/phase4_experiments.sh                 # everything at the cpu profile (many hours on 2 cores)
#   STAGES="data tokenizer uwm" bash scripts/phase4_experiments.sh      # only these stages
#   STAGES=data COLLECT_ARGS=workers=2 bash scripts/phase4_experiments.sh      # the collection on both cores, then
#   export STAGES=arms TRAIN_ARGS=run.threads=1 EVAL_ARGS=run.threads=1       # two arms at a time, one per core:
#   ARMS=policy bash scripts/phase4_experiments.sh & ARMS=dp-new bash scripts/phase4_experiments.sh; wait
#   ARMS=inverse bash scripts/phase4_experiments.sh & ARMS=diamond bash scripts/phase4_experiments.sh; wait
#   ARMS=uwm-new bash scripts/phase4_experiments.sh    # (each arm about 2 h on one core of a 2-core AVX2 EPYC)
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
#   arms        each arm of $ARMS trains what it needs, is evaluated (offline on the validation clips and/or LIBERO
#               policy success on 25 fixed states of task 9, the DDIM spacing chosen on base_val: leading) and
#               recorded: its evaluation is copied into $RECORDS (phase4_uwm/results/<run>/ at the cpu profile,
#               committed), so an arm is done once on any machine (FORCE=1 redoes recorded arms). The arms:
#       uwm-new     the finetuned UWM (its run, else the release uwm-new-cpu), all modes, beside the inverse-dynamics
#                   regressor (inverse-cpu) and DIAMOND-lite (diamond-cpu), which it trains first
#       dp-new      lerobot's Diffusion Policy from scratch on task 9's demonstrations (dp-new-cpu): policy only
#       policy      uwm-base-policy-cpu -> uwm-new-policy-cpu, the action loss alone, same budget ("joint training?")
#       dynamics    uwm-base-dynamics-cpu -> uwm-new-dynamics-cpu, the video loss alone (scored offline only)
#       small       uwm-base-small-cpu -> uwm-new-small-cpu: width 128, 4 blocks (scale)
#       n10         uwm-base-cpu -> uwm-new-n10-cpu: 10 of task 9's 50 demonstrations (scale)
#       n50         uwm-base-cpu -> uwm-new-n50-cpu: all 50, n10's control from the same base run (the released
#                   uwm-new-cpu was finetuned from an earlier uwm-base-cpu, lost with its machine)
#       chunk8, dp15  (only when named) the chunk-length control, evaluation only: the joint UWM (its run, else the
#                   release) replanning every 8 steps instead of playing its 16 actions open loop (uwm-new-chunk8-cpu),
#                   and the Diffusion Policy playing 15 actions per chunk, its most (horizon 16 - 2 observations + 1),
#                   instead of 8 (dp-new-chunk15-cpu); each in a folder of its own beside a copy of the run's config
#       seeds       (only when named) how far the sampled policy action MSE moves with the noise alone: the joint and
#                   the policy-only UWM's policy mode on the same 256 clips, noise seeds 0-4 (evaluations in
#                   seeds/<run>-s<k>/, recorded in $RECORDS/seeds/; the summary, with the clip-by-clip paired
#                   difference from the first run, in $RECORDS/seeds/objective.md; FORCE=1 redoes the evaluations)
#       seeds-data  (only when named) the same for the 10- and 50-demonstration finetunes of one base run (n10, n50:
#                   run them first): $RECORDS/seeds/data.md
#       seeds-rerun (only when named) the same for the joint recipe trained twice: the released uwm-new-cpu (from
#                   the first base run) and n50 (from a second base run of the same config): how far one training
#                   run moves, the yardstick of every one-run-per-arm comparison: $RECORDS/seeds/rerun.md (the seeds
#                   arms share their evaluations: a run scored for one is reused by another)
#       inverse, diamond  (only when named) train uwm-new's two baselines and nothing else: two processes train them
#                   side by side (ARMS=inverse & ARMS=diamond), then ARMS=uwm-new reuses them (never name the same
#                   arm or run in two processes at once: both would train the same run folder)
#               then phase4_uwm.compare: every arm evaluated or recorded so far, side by side
#   played      (only when named) uwm-new continued with and without played episodes (PLAYED=...): see below
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
root=${ROOT:-outputs}
demos=${DEMOS:-cpu}
profile=${PROFILE:-cpu}
stages=${STAGES:-"data tokenizer uwm arms"}
arms=${ARMS:-"uwm-new dp-new policy dynamics small n10 n50"}
records=${RECORDS:-}
[ -z "$records" ] && { [ "$profile" = cpu ] && [ "$root" = outputs ] && records=phase4_uwm/results || records=$root/phase4/records; }
logs=$root/phase4/logs
mkdir -p "$logs"
# one precision for every training and evaluation of the chain, so that it is never a difference between arms: fp32 at
# the cpu profile (tok-cpu and uwm-new-cpu, released and compared against, were trained in fp32 on an AVX2 CPU; on a
# bf16 CPU auto would pick bf16 for the arms), auto at any other profile. PRECISION=auto|bf16|fp32 overrides it.
precision=${PRECISION:-}
[ -z "$precision" ] && { [ "$profile" = cpu ] && precision=fp32 || precision=auto; }
common=(run.root="$root" data.demos="$demos" run.precision="$precision")
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
if [ -z "${TOK:-}" ] && ! has tokenizer && [ ! -f "$tok/export/tokenizer.json" ] && [ "$profile" = cpu ]; then
  tok=releases/phase4/tok-cpu  # no tokenizer run here and none asked for: the release (uwm-new-cpu's tokenizer)
fi
has tokenizer && run train_tokenizer "tok-$profile" tokenizer.json
if has uwm; then
  run train "uwm-base-$profile" uwm.json tokenizer="$tok"
  run train "uwm-new-$profile" uwm.json tokenizer="$tok" data.split=new init_from="$root/phase4/uwm-base-$profile" $ft
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
if has arms; then
  base=$root/phase4
  read -r -a extra <<< "${EVAL_ARGS:-}"
  recorded() { [ -z "${FORCE:-}" ] && [ -f "$records/$1/evaluate/results.json" ]; }
  evaluate() {  # evaluate <run name> <evaluate overrides...>: evaluate the run, then record its evaluation
    local name=$1; shift
    echo "evaluate $name -> $logs/evaluate_$name.log"
    "$PY" -m phase4_uwm.evaluate "${common[@]}" "$@" "${extra[@]}" \
      > "$logs/evaluate_$name.log" 2>&1
    "$PY" -m phase4_uwm.compare run.root="$root" "runs=[$name]" records="$records" keep=true \
      > "$logs/record_$name.log" 2>&1
    echo "$name: recorded in $records/$name/"
  }
  ablation() {  # ablation <arm> <parts> <overrides...>: base run on the 9 tasks -> finetune on task 9 -> evaluate
    local arm=$1 parts=$2; shift 2
    run train "uwm-base-$arm-$profile" uwm.json tokenizer="$tok" "$@"
    run train "uwm-new-$arm-$profile" uwm.json tokenizer="$tok" "$@" data.split=new \
      init_from="$base/uwm-base-$arm-$profile" $ft
    evaluate "uwm-new-$arm-$profile" load="$base/uwm-new-$arm-$profile" "parts=$parts" timestep_spacing=leading
  }
  joint() {  # the finetuned joint UWM to evaluate: its run if finished, else (cpu profile) the release; sets load, config
    load=$base/uwm-new-$profile config=$base/uwm-new-$profile/config.yaml
    [ -f "$load/export/uwm.json" ] && return 0
    [ "$profile" = cpu ] || { echo "no finished $load: run STAGES=uwm first" >&2; exit 2; }
    load=release:uwm-new-cpu config=releases/phase4/uwm-new-cpu/config.yaml
  }
  seeds_of() {  # seeds_of <summary name> <run>...: each run's policy mode on the validation clips at noise seeds 0-4
    local group=$1 r s out runs=(); shift
    for r in "$@"; do
      if [ "$r" = uwm-new ]; then joint; else load=$base/$r-$profile; fi
      for s in 0 1 2 3 4; do
        out=$base/seeds/$r-$profile-s$s
        if [ -n "${FORCE:-}" ] || [ ! -f "$out/results.json" ]; then
          echo "evaluate $r-$profile, noise seed $s -> $logs/seeds_$r-s$s.log"
          "$PY" -m phase4_uwm.evaluate "${common[@]}" load="$load" "parts=[offline]" "offline.modes=[policy]" \
            offline.seed=$s offline.figure_clips=0 offline.video_stride=0 timestep_spacing=leading out="$out" \
            "${extra[@]}" > "$logs/seeds_$r-s$s.log" 2>&1
        fi
        mkdir -p "$records/seeds/$r-$profile-s$s" && cp "$out"/results.{json,md} "$records/seeds/$r-$profile-s$s/"
      done
      runs+=("$r-$profile")
    done
    "$PY" -c 'import sys; from phase4_uwm.compare import seed_summary as s; print(s(sys.argv[1], sys.argv[3:], sys.argv[2]))' \
      "$records/seeds" "$group" "${runs[@]}"
  }
  for arm in $arms; do
    case $arm in uwm-new) name=uwm-new-$profile ;; dp-new) name=dp-new-$profile ;; dp15) name=dp-new-chunk15-$profile ;;
      *) name=uwm-new-$arm-$profile ;; esac
    if [[ $arm != inverse && $arm != diamond && $arm != seeds* ]] && recorded "$name"; then
      echo "$name: recorded in $records/$name/, skipped (FORCE=1 redoes it)"; continue
    fi
    case $arm in
      inverse) run train_inverse "inverse-$profile" inverse_regressor.json ;;  # uwm-new's baselines alone, so that
      diamond) run train_diamond "diamond-$profile" diamond_lite.json ;;      # two processes can train them at once
      uwm-new)
        run train_inverse "inverse-$profile" inverse_regressor.json
        run train_diamond "diamond-$profile" diamond_lite.json
        joint
        if [[ $load == release:* ]]; then  # evaluated under the run's name, beside its config
          mkdir -p "$base/uwm-new-$profile/evaluate"
          cp "$config" "$base/uwm-new-$profile/config.yaml"
          extra_out=(out="$base/uwm-new-$profile/evaluate")
        else
          extra_out=()
        fi
        evaluate "$name" load="$load" "${extra_out[@]}" timestep_spacing=leading \
          inverse_regressor="$base/inverse-$profile" forward_baseline="$base/diamond-$profile" ;;
      dp-new)
        run train_dp "dp-new-$profile" diffusion_policy.json
        evaluate "$name" method=diffusion_policy load="$base/dp-new-$profile" "parts=[policy]" ;;
      policy) ablation policy "[offline,policy]" objective=policy ;;
      dynamics) ablation dynamics "[offline]" objective=dynamics ;;  # no action loss: its policy mode never trained
      small) ablation small "[offline,policy]" model.width=128 model.depth=4 ;;
      n10)
        run train "uwm-base-$profile" uwm.json tokenizer="$tok"
        run train "uwm-new-n10-$profile" uwm.json tokenizer="$tok" data.split=new data.episodes=10 \
          init_from="$base/uwm-base-$profile" $ft
        evaluate "$name" load="$base/uwm-new-n10-$profile" "parts=[offline,policy]" timestep_spacing=leading ;;
      n50)
        run train "uwm-base-$profile" uwm.json tokenizer="$tok"
        run train "uwm-new-n50-$profile" uwm.json tokenizer="$tok" data.split=new init_from="$base/uwm-base-$profile" $ft
        evaluate "$name" load="$base/uwm-new-n50-$profile" "parts=[offline,policy]" timestep_spacing=leading ;;
      chunk8)
        joint
        mkdir -p "$base/$name/evaluate" && cp "$config" "$base/$name/config.yaml"
        evaluate "$name" load="$load" out="$base/$name/evaluate" "parts=[policy]" eval.n_action_steps=8 \
          timestep_spacing=leading ;;
      dp15)
        run train_dp "dp-new-$profile" diffusion_policy.json
        mkdir -p "$base/$name/evaluate" && cp "$base/dp-new-$profile/config.yaml" "$base/$name/config.yaml"
        evaluate "$name" method=diffusion_policy load="$base/dp-new-$profile" out="$base/$name/evaluate" \
          "parts=[policy]" eval.n_action_steps=15 ;;
      seeds) seeds_of objective uwm-new uwm-new-policy ;;
      seeds-data) seeds_of data uwm-new-n10 uwm-new-n50 ;;
      seeds-rerun) seeds_of rerun uwm-new uwm-new-n50 ;;
      *) echo "unknown arm $arm (ARMS: uwm-new dp-new policy dynamics small n10 n50; inverse, diamond, chunk8, dp15, seeds, seeds-data, seeds-rerun)" >&2
         exit 2 ;;
    esac
  done
  names=(uwm-new dp-new uwm-new-policy uwm-new-dynamics uwm-new-small uwm-new-n10 uwm-new-n50 uwm-new-chunk8 dp-new-chunk15)
  "$PY" -m phase4_uwm.compare run.root="$root" records="$records" "runs=[$(IFS=,; echo "${names[*]/%/-$profile}")]" \
    > "$logs/compare.log" 2>&1 || true
  echo "side by side: $root/phase4/compare.md (publish: python -m phase4_uwm.compare publish=true)"
fi
echo "done: evaluations in $root/phase4/<run>/evaluate/, records in $records/"
