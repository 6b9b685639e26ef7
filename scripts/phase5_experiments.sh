#!/usr/bin/env bash
# Phase 5, testbed 1 (Breakout): every agent of the README's experiment plan, then the table. Resumable: each
# agent's games.jsonl keeps finished games, so rerunning after an interruption plays only the missing ones.
#
#   bash scripts/phase5_experiments.sh                    # the cpu profile: 20 games per agent
#   ROOT=/tmp/p5 PROFILE=smoke bash scripts/phase5_experiments.sh
#   ARMS="random oracle diamond" bash scripts/phase5_experiments.sh   # a subset
#   ARGS="run.threads=1" bash scripts/phase5_experiments.sh   # extra overrides for every command (last, so they win)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
root=${ROOT:-outputs}
profile=${PROFILE:-cpu}
arms=${ARMS:-"random sticky_random oracle oracle-x4 diamond-x4 regressor-x4 df-x4 actor_critic"}
logs=$root/phase5/logs
mkdir -p "$logs"

play() {  # play <arm> <overrides...>
  local arm=$1; shift
  echo "phase5 $arm -> $logs/$arm.log"
  # shellcheck disable=SC2086
  "$PY" -m phase5_integration.plan profile="$profile" run.root="$root" "$@" ${ARGS:-} > "$logs/$arm.log" 2>&1
}
for arm in $arms; do
  case $arm in
    random|sticky_random) play "$arm" agent="$arm" ;;
    oracle) play "$arm" model.kind=emulator ;;
    diamond|regressor|df) play "$arm" model.kind="$arm" ;;
    oracle-h2) play "$arm" model.kind=emulator planner.horizon=2 ;;
    diamond-h2) play "$arm" model.kind=diamond planner.horizon=2 ;;
    # macro-actions: 3 planned actions held 4 steps each (12 steps ahead), replanning every 4 steps
    oracle-x4) play "$arm" model.kind=emulator planner.action_repeat=4 planner.replan_every=4 ;;
    diamond-x4|regressor-x4|df-x4) play "$arm" model.kind="${arm%-x4}" planner.action_repeat=4 planner.replan_every=4 ;;
    actor_critic)  # train in imagination first (resumed if interrupted), then play the real game
      run=$root/phase5/agent-$profile
      if [ ! -f "$run/export/actor_critic.json" ]; then
        resume=(); ls "$run"/checkpoints/step_*.pt >/dev/null 2>&1 && resume=(run.resume=true)
        echo "phase5 train_agent -> $logs/train_agent.log"
        "$PY" -m phase5_integration.train_agent profile="$profile" run.root="$root" run.name="agent-$profile" \
          "${resume[@]}" log.progress=false ${ARGS:-} > "$logs/train_agent.log" 2>&1
      fi
      play "$arm" agent=actor_critic agent_load="$run" ;;
    *) echo "unknown arm $arm" >&2; exit 2 ;;
  esac
done
"$PY" -m phase5_integration.evaluate run.root="$root" | tee "$logs/evaluate.log"
