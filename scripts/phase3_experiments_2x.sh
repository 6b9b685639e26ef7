#!/usr/bin/env bash
# Phase 3's experiments in two chains, one per CPU core, then the one results table.
#
#   bash scripts/phase3_experiments_2x.sh                 # cpu profile; logs in outputs/phase3/experiments/logs/
#   bash scripts/phase3_experiments_2x.sh profile=smoke data.demos=smoke   # any override goes to every command
#
# `python -m phase3_vla.experiments` plays the cells one after the other. After the base run (trained first,
# on all cores), every cell runs in one process with one thread (experiments.workers=1): finetuning a
# 1.8M-parameter policy and rendering LIBERO both gain little from a second core, so two chains side by side
# finish in about half the time. The main comparison comes first, then the harder condition, the learning
# curve and the ablations, so that an interrupted session keeps the cells that matter most. The chains never
# touch the same run:
#   A: LoRA's learning-rate sweep and cell, the learning curve, then the target and rank ablations;
#   B: the base model and zero-shot cells, full finetuning's sweep and cell, then (once A has chosen LoRA's
#      rate) the harder condition, the demo-count ablation and the noise check.
# The last command reuses every finished run and played episode and writes
# outputs/phase3/experiments/<profile>/results.md. Rerun the script after an interruption: finished runs and
# episodes are reused, interrupted runs resumed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
logs=outputs/phase3/experiments/logs
mkdir -p "$logs"
exp() { "$PY" -m phase3_vla.experiments "$@"; }
one=(run.threads=1 experiments.workers=1)

echo "base run (all cores) -> $logs/base_train.log"
exp "experiments.only=[base]" experiments.train_only=true log.progress=false "$@" > "$logs/base_train.log" 2>&1

echo "two chains, one core each -> $logs/chain_{a,b}_*.log"
rm -f "$logs/.lora_lr_chosen"
(
  exp "${one[@]}" "experiments.only=[lora]" "$@" > "$logs/chain_a_lora.log" 2>&1
  touch "$logs/.lora_lr_chosen"
  exp "${one[@]}" "experiments.only=[curve]" "$@" > "$logs/chain_a_curve.log" 2>&1
  exp "${one[@]}" "experiments.only=[targets]" "$@" > "$logs/chain_a_targets.log" 2>&1
  exp "${one[@]}" "experiments.only=[ranks]" "$@" > "$logs/chain_a_ranks.log" 2>&1
) &
a=$!
(
  exp "${one[@]}" "experiments.only=[base,zeroshot,full]" "$@" > "$logs/chain_b_base_full.log" 2>&1
  while [ ! -e "$logs/.lora_lr_chosen" ]; do
    kill -0 $a 2>/dev/null || { echo "chain A ended before choosing LoRA's learning rate"; exit 1; }
    sleep 20
  done
  exp "${one[@]}" "experiments.only=[harder]" "$@" > "$logs/chain_b_harder.log" 2>&1
  exp "${one[@]}" "experiments.only=[demos]" "$@" > "$logs/chain_b_demos.log" 2>&1
  exp "${one[@]}" "experiments.only=[noise]" "$@" > "$logs/chain_b_noise.log" 2>&1
) &
b=$!
status=0
wait $a || status=$?
wait $b || status=$?
if [ $status -ne 0 ]; then echo "a chain failed (exit $status): see $logs/"; exit $status; fi

echo "results table (reuses every run and episode)"
exp "${one[@]}" "$@" 2>&1 | tee "$logs/assemble.log" | grep -v '^  task '
