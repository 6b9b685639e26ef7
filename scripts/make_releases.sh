#!/usr/bin/env bash
# Train every phase's cpu-profile models and export them to releases/ (python -m common.release).
#
#   bash scripts/make_releases.sh                 # all phases: ~5.5 h on 2 cores (bf16-capable CPU) for phases 0-3,
#                                                 # phases 4-5 about 1.5 h more on an AVX2 CPU (their READMEs)
#   bash scripts/make_releases.sh phase1 phase2   # only these (each later phase reuses the earlier runs)
#
# Rerun after an interruption: finished runs are reused, interrupted ones resumed (run.resume=true), then
# released again. Logs in outputs/releases-logs/. These are the commands recorded in each release's
# provenance; they use the profiles as they are, so a release is what `profile=cpu` gives.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
logs=outputs/releases-logs
mkdir -p "$logs"
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(phase0 phase1 phase2 phase3 phase4 phase5)
want() { [[ " ${phases[*]} " == *" $1 "* ]]; }

# train <phase> <run name> <module> <args...>: reuse a finished run, resume an interrupted one.
train() {
  local phase=$1 name=$2 module=$3; shift 3
  local dir=outputs/$phase/$name resume=()
  if [ -f "$dir/export/config.yaml" ] && ls "$dir"/export/*.json >/dev/null 2>&1; then
    echo "$phase/$name: finished, reused"; return 0
  fi
  ls "$dir"/checkpoints/step_*.pt >/dev/null 2>&1 && resume=(run.resume=true)
  echo "$phase/$name: $module $* ${resume[*]} -> $logs/$phase-$name.log"
  "$PY" -m "$module" "$@" run.name="$name" "${resume[@]}" log.progress=false > "$logs/$phase-$name.log" 2>&1
}
release() { "$PY" -m common.release "outputs/$1" --name "$2" --force "${@:3}"; }

if want phase0; then
  train phase0 classifier-fashion_mnist phase0_diffusion.classifier
  # The three models phase0_diffusion.experiments measures (exp-* are its run names), the two unconditional ones
  # side by side, one core each.
  train phase0 exp-ddpm phase0_diffusion.train profile=cpu diffusion.process=ddpm \
    model.unet.noise_embedding=sinusoidal run.threads=1 &
  a=$!
  train phase0 exp-edm phase0_diffusion.train profile=cpu run.threads=1 &
  b=$!
  wait $a; wait $b
  train phase0 exp-cond phase0_diffusion.train profile=cpu_cond
  release phase0/classifier-fashion_mnist classifier-fashion_mnist
  release phase0/exp-ddpm ddpm-cpu
  release phase0/exp-edm edm-cpu
  release phase0/exp-cond cond-cpu   # last: the newest phase 0 release is what `sample`/`evaluate` fall back to
fi
if want phase1; then
  "$PY" -m phase1_world_model.collect > "$logs/phase1-collect.log" 2>&1
  # The two models side by side, one core each (the README's timing).
  train phase1 diffusion-cpu phase1_world_model.train profile=cpu run.threads=1 &
  a=$!
  train phase1 regressor-cpu phase1_world_model.train profile=cpu model.kind=regressor run.threads=1 &
  b=$!
  wait $a; wait $b
  release phase1/diffusion-cpu diffusion-cpu
  release phase1/regressor-cpu regressor-cpu
fi
if want phase2; then
  train phase2 df-cpu phase2_diffusion_forcing.train profile=cpu init_from=outputs/phase1/diffusion-cpu
  release phase2/df-cpu df-cpu
fi
if want phase3; then
  # The experiments' protocol: demonstrations from sampled placements, the base run, then each method's
  # learning-rate sweep; the released finetunes are the runs the validation loss chose (full weights and the LoRA
  # adapter of rank 16 on lerobot's targets, 50 demonstrations), under their method's name.
  "$PY" -m phase3_vla.collect > "$logs/phase3-collect.log" 2>&1
  "$PY" -m phase3_vla.experiments "experiments.only=[lora,full]" experiments.train_only=true \
    > "$logs/phase3-experiments.log" 2>&1
  chosen() { "$PY" -m phase3_vla.experiments --plan | awk -v s="$1" '$1 == s {for (i = 1; i <= NF; i++) if ($i == "run") print $(i + 1)}' | head -1; }
  # The base in float32 (7 MB): it is exactly what the finetunes (and the LoRA adapter, merged into it) start from.
  # The full finetune in float16 (3.5 MB), within releases/' 60 MB budget; phase 3's README gives its success
  # re-measured in float16 beside the float32 run's.
  release phase3/base-cpu base-cpu --fp32
  release "phase3/$(chosen full)" full-n50-cpu
  release "phase3/$(chosen lora)" lora-r16-n50-cpu
fi
if want phase4; then
  # Phase 3's collection (made above, or by an earlier run), then the tokenizer and the UWM pretrained on the 9 base
  # tasks and finetuned on task 9, through phase 4's experiment chain (its run names and budgets). Only the finetuned
  # UWM ships (18 MB in float16): the base stays a local run, within releases/' size budget.
  [ -f outputs/phase3/demos/cpu/lerobot/new/meta/info.json ] ||
    "$PY" -m phase3_vla.collect > "$logs/phase3-collect.log" 2>&1
  PY="$PY" STAGES="tokenizer uwm" bash scripts/phase4_experiments.sh
  release phase4/tok-cpu tok-cpu
  release phase4/uwm-new-cpu uwm-new-cpu
fi
if want phase5; then
  # testbed 2's progress scorer on task 9's demonstrations (phase 3's collection)
  train phase5 scorer-cpu phase5_integration.train_scorer profile=cpu
  release phase5/scorer-cpu scorer-cpu
  # ... and the one that has also seen played episodes (the UWM's and the SmolVLA's, task 9's fixed states 25-49,
  # every episode recorded; phase 5 README, "Changed after these runs"), made by the experiment script
  PY="$PY" TESTBEDS=libero LIBERO_ARMS=" " ROLLOUT_ARMS=" " SCORER=outputs/phase5/scorer-cpu \
    UWM=outputs/phase4/uwm-new-cpu bash scripts/phase5_experiments.sh
  release phase5/scorer-rollouts-cpu scorer-rollouts-cpu
fi
"$PY" -m common.release --list
