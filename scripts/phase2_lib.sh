# Sourced by phase 2's experiment scripts (scripts/phase2_controls.sh, scripts/phase2_seeds.sh); expects PY, root,
# logs and threads to be set.
train() {  # train <run name> <overrides...>: reuse a finished run, resume an interrupted one
  local name=$1; shift
  local dir=$root/phase2/$name resume=()
  if ls "$dir"/export/*.json >/dev/null 2>&1; then echo "phase2/$name: finished, reused"; return 0; fi
  ls "$dir"/checkpoints/step_*.pt >/dev/null 2>&1 && resume=(run.resume=true)
  echo "phase2/$name -> $logs/$name.log"
  "$PY" -m phase2_diffusion_forcing.train profile=cpu run.root="$root" run.threads="$threads" "$@" run.name="$name" \
    "${resume[@]}" log.progress=false > "$logs/$name.log" 2>&1
}
