#!/usr/bin/env bash
# Phase 5: every arm of the README's experiment plan, then the tables. Resumable: each Breakout agent's games.jsonl
# keeps finished games and each LIBERO arm its finished episodes, so rerunning plays only the missing ones.
#
#   bash scripts/phase5_experiments.sh                    # the cpu profile: 20 games per agent
#   ROOT=/tmp/p5 PROFILE=smoke bash scripts/phase5_experiments.sh
#   ARMS="random oracle diamond" bash scripts/phase5_experiments.sh   # a subset
#   ARGS="run.threads=1" bash scripts/phase5_experiments.sh   # extra overrides for every command (last, so they win)
#   RESULTS=phase5_integration/results ARMS=diamond-x4-tol0.05 SHARD=0/2 ...   # the games kept in the repo (commit
#                                                     # them); SHARD=k/n: this process plays games i % n == k
#   TESTBEDS=libero LIBERO_ARMS="first world_model" bash scripts/phase5_experiments.sh   # testbed 2 only, two arms
#   TESTBEDS=libero LIBERO_ARMS="vla-first vla-world_model-k4" ...   # phase 3's SmolVLA proposes (VLA=<run>)
#   TESTBEDS=libero LIBERO_ARMS=" " ROLLOUT_ARMS="simulator world_model" ...  # a scorer trained on played failures too
#   TESTBEDS=libero SCORER=releases/phase5/scorer-cpu bash scripts/phase5_experiments.sh  # the released scorer
#   TESTBEDS=libero LIBERO_ARMS=" " PLAYED_ARMS="vla-world_model-k8" TOK=releases/phase4/tok-cpu ...  # a UWM that
#                                                     # has seen failures (below), against its equal-budget control
# Testbed 2 needs phase 4's finetuned UWM (STAGES="data tokenizer uwm" bash scripts/phase4_experiments.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
root=${ROOT:-outputs}
profile=${PROFILE:-cpu}
testbeds=${TESTBEDS:-"breakout libero"}
arms=${ARMS:-"random sticky_random oracle oracle-h2x4 oracle-h2x6 oracle-x4-r12 oracle-x4 oracle-x4-tol0.05 emulator_head-x4-tol0.05 regressor-x4-tol0.05 diamond-x4-tol0.05 df-x4-tol0.05 actor_critic"}
larms=${LIBERO_ARMS:-"first world_model pixel_goal simulator world_model-k4 simulator-k4 vla-first vla-world_model vla-simulator"}
logs=$root/phase5/logs
mkdir -p "$logs"

play() {  # play <arm> <overrides...>
  local arm=$1; shift
  echo "phase5 $arm -> $logs/$arm.log"
  # shellcheck disable=SC2086
  local extra=(); [ -n "${RESULTS:-}" ] && extra+=(results="$RESULTS"); [ -n "${SHARD:-}" ] && extra+=(game.shard="$SHARD")
  "$PY" -m phase5_integration.plan profile="$profile" run.root="$root" "$@" "${extra[@]}" ${ARGS:-} \
    > "$logs/$arm${SHARD:+-shard${SHARD/\//of}}.log" 2>&1
}
[[ " $testbeds " == *" breakout "* ]] || arms=""
for arm in $arms; do
  case $arm in
    random|sticky_random) play "$arm" agent="$arm" ;;
    # <model>[-h<H>][x<k>][-r<n>][-tol<v>]: model oracle (the emulator), diamond, regressor or df; -h<H> the horizon
    # (default 3); x<k> macro-actions: each planned action held k agent steps, replanning every k steps (oracle-x4:
    # H = 3 actions held 4 steps each, 12 steps ahead; diamond-h2x4: H = 2, 8 steps ahead); -r<n> replans every n
    # agent steps instead (diamond-x4-r12 executes whole plans: a third of the decisions of diamond-x4); -tol<v>
    # values within v of the best are ties (planner.tie_tolerance; regressor-x4-tol0.05); emulator_head: the real
    # game's frames valued by the learned reward/end head (the diagnostic between the oracle and a learned model)
    oracle*|diamond*|regressor*|df*|emulator_head*)
      m=${arm%%-*} o=()
      [[ $arm =~ -h([0-9]+) ]] && o+=(planner.horizon="${BASH_REMATCH[1]}")
      [[ $arm =~ x([0-9]+) ]] && o+=(planner.action_repeat="${BASH_REMATCH[1]}" planner.replan_every="${BASH_REMATCH[1]}")
      [[ $arm =~ -r([0-9]+) ]] && o+=(planner.replan_every="${BASH_REMATCH[1]}")
      [[ $arm =~ -tol([0-9.]+) ]] && o+=(planner.tie_tolerance="${BASH_REMATCH[1]}")
      [ "$m" = oracle ] && m=emulator
      play "$arm" model.kind="$m" "${o[@]}" ;;
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
[ -n "$arms" ] && "$PY" -m phase5_integration.evaluate run.root="$root" ${RESULTS:+results="$RESULTS"} | tee "$logs/evaluate.log"

if [[ " $testbeds " == *" libero "* ]]; then
  uwm=${UWM:-$root/phase4/uwm-new-$profile}
  scorer=${SCORER:-$root/phase5/scorer-$profile}  # SCORER=releases/phase5/scorer-cpu skips training one
  if [ ! -f "$scorer/export/progress_scorer.json" ] && [ ! -f "$scorer/progress_scorer.json" ]; then
    echo "phase5 train_scorer -> $logs/train_scorer.log"
    # shellcheck disable=SC2086
    "$PY" -m phase5_integration.train_scorer profile="$profile" run.root="$root" run.name="scorer-$profile" \
      log.progress=false ${ARGS:-} > "$logs/train_scorer.log" 2>&1
  fi
  # choose_arm <[vla-|uwmp-]<choice>[-k<K>]> <scorer> [tag]: vla- = phase 3's SmolVLA proposes (VLA=<run>);
  # uwmp- = uwm-new (phase 4's) proposes whichever UWM imagines (the proposals fixed while the imaginer changes)
  choose_arm() {
    local a=$1 k=() p=() t=() log=$logs/libero_$1${3:+-$3}.log
    [[ $a == vla-* ]] && { p=(proposer=vla vla="${VLA:-release:full-n50-cpu}"); a=${a#vla-}; }
    [[ $a == uwmp-* ]] && { p=(proposer_uwm="$root/phase4/uwm-new-$profile"); a=${a#uwmp-}; }
    [[ $a == *-k* ]] && k=(proposals="${a##*-k}")
    [ -n "${3:-}" ] && t=(tag="$3")
    echo "phase5 LIBERO $1 ${3:+($3) }-> $log"
    # shellcheck disable=SC2086
    "$PY" -m phase5_integration.choose profile="$profile" run.root="$root" uwm="$uwm" scorer="$2" \
      choose="${a%-k*}" "${k[@]}" "${p[@]}" "${t[@]}" ${ARGS:-} > "$log" 2>&1
  }
  for arm in $larms; do choose_arm "$arm" "$scorer"; done
  play_states() {  # play_states <uwm|vla> <out> <log>: the UWM or the SmolVLA plays task 9 from fixed states 25-49
    # (never the evaluation's 0-24), every episode recorded (video and actions)
    local states=(eval.tasks=[9] eval.first_state=25 eval.episodes=25 eval.videos=-1)
    [ "$profile" = smoke ] && states=(eval.tasks=[9] eval.first_state=25 eval.episodes=2 eval.videos=-1
                                      eval.libero.max_steps=6)
    echo "phase5 $1 plays states 25-49 -> $3"
    if [ "$1" = uwm ]; then
      # shellcheck disable=SC2086
      "$PY" -m phase4_uwm.evaluate load="$uwm" parts=[policy] "${states[@]}" timestep_spacing=leading \
        out="$2" run.root="$root" ${ARGS:-} > "$3" 2>&1
    else
      # shellcheck disable=SC2086
      "$PY" -m phase3_vla.evaluate load="${VLA:-release:full-n50-cpu}" "${states[@]}" eval.out="$2" \
        run.root="$root" ${ARGS:-} > "$3" 2>&1
    fi
  }
  # A scorer that has seen failures: the UWM and the SmolVLA play task 9 from fixed states 25-49 (never the
  # evaluation's 0-24; the scorer's record then refuses them as evaluation states), every episode recorded; the
  # scorer trains on the demonstrations and those episodes; ROLLOUT_ARMS play again with it (tag rscorer).
  if [ -n "${ROLLOUT_ARMS:-}" ]; then
    rdir=$root/phase5/rollouts
    play_states uwm "$rdir/uwm" "$logs/rollouts_uwm.log"
    play_states vla "$rdir/vla" "$logs/rollouts_vla.log"
    rscorer=$root/phase5/scorer-rollouts-$profile
    if [ ! -f "$rscorer/export/progress_scorer.json" ]; then
      echo "phase5 train_scorer (rollouts) -> $logs/train_scorer_rollouts.log"
      # shellcheck disable=SC2086
      "$PY" -m phase5_integration.train_scorer profile="$profile" run.root="$root" run.name="scorer-rollouts-$profile" \
        "rollouts=[$rdir/uwm,$rdir/vla]" compare="$scorer" log.progress=false ${ARGS:-} \
        > "$logs/train_scorer_rollouts.log" 2>&1
    fi
    for arm in $ROLLOUT_ARMS; do choose_arm "$arm" "$rscorer" rscorer; done
  fi
  # The lever the report names: a UWM that has seen failing chunks' futures. The UWM plays states 25-49 again with
  # its actions recorded (played/uwm); uwm-new continues on the demonstrations plus those episodes (uwm-new-played)
  # and, the equal-budget control, on the demonstrations alone (uwm-new-more); PLAYED_ARMS play with each as the
  # imagining world model (tags played-rscorer and more-rscorer); the proposals stay fixed with the SmolVLA (vla-)
  # or uwm-new (uwmp-) proposing: PLAYED_ARMS="vla-world_model-k8 uwmp-world_model-k8".
  if [ -n "${PLAYED_ARMS:-}" ]; then
    pdir=$root/phase5/played
    play_states uwm "$pdir/uwm" "$logs/played_uwm.log"
    echo "phase4 uwm-new-more / uwm-new-played -> $root/phase4/logs/"
    STAGES=played PLAYED="$pdir/uwm" ROOT="$root" PROFILE="$profile" TRAIN_ARGS="${ARGS:-}" \
      bash scripts/phase4_experiments.sh
    rscorer=$root/phase5/scorer-rollouts-$profile
    for arm in $PLAYED_ARMS; do
      for which in more played; do
        uwm=$root/phase4/uwm-new-$which-$profile choose_arm "$arm" "$rscorer" "$which-rscorer"
      done
    done
  fi
  if ls "$root"/phase5/LIBERO/*/summary.json >/dev/null 2>&1; then
    "$PY" -m phase5_integration.evaluate run.root="$root" testbed=libero | tee "$logs/evaluate_libero.log"
  fi
fi
