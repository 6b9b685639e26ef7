#!/usr/bin/env bash
# Phase 3's experiments two at a time, one per CPU core, then the one results table.
#
#   bash scripts/phase3_experiments_2x.sh                 # cpu profile; logs in outputs/phase3/experiments/logs/
#   bash scripts/phase3_experiments_2x.sh profile=smoke data.demos=smoke   # any override goes to every command
#
# `python -m phase3_vla.experiments` plays the cells one after the other. After the base run (trained
# first, on all cores), every cell is one process with one thread: finetuning a 1.8M-parameter policy and
# rendering LIBERO both gain little from a second core, so two cells side by side finish in about half the
# time. The cells are split so that the two chains never touch the same run (the ablations' shared point,
# LoRA r=16 on 50 demos, is experiment 2's run, in chain A only); the last command reuses every finished
# run and played episode and writes outputs/phase3/experiments/<profile>/results.md. Rerun the script
# after an interruption: finished runs and episodes are reused, interrupted runs resumed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
logs=outputs/phase3/experiments/logs
mkdir -p "$logs"
exp() { "$PY" -m phase3_vla.experiments "$@"; }

echo "base run (all cores) -> $logs/base_train.log"
exp "experiments.only=[base]" experiments.train_only=true "$@" > "$logs/base_train.log" 2>&1

echo "two chains, one core each -> $logs/chain_{a,b}_*.log"
(
  exp run.threads=1 "experiments.only=[lora,full]" "$@" > "$logs/chain_a_main.log" 2>&1
  exp run.threads=1 "experiments.only=[ranks]" "experiments.ranks=[4,64]" "$@" > "$logs/chain_a_ranks.log" 2>&1
) &
a=$!
(
  exp run.threads=1 "experiments.only=[base,zeroshot]" "$@" > "$logs/chain_b_base.log" 2>&1
  exp run.threads=1 "experiments.only=[demos]" "experiments.demos=[5,10,25]" "$@" > "$logs/chain_b_demos.log" 2>&1
) &
b=$!
status=0
wait $a || status=$?
wait $b || status=$?
if [ $status -ne 0 ]; then echo "a chain failed (exit $status): see $logs/"; exit $status; fi

echo "results table (reuses every run and episode)"
exp run.threads=1 "$@" 2>&1 | tee "$logs/assemble.log" | grep -v '^  task '
