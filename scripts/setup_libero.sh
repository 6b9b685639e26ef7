#!/usr/bin/env bash
# Off-screen rendering for LIBERO/MuJoCo on machines without a display (phase 3).
# MuJoCo renders through EGL (Mesa's llvmpipe on a CPU, the vendor's EGL on a GPU) or OSMesa; Debian
# packages them as libegl1 + libgl1-mesa-dri (EGL) and libosmesa6 (OSMesa). Where we are root with
# apt-get we install the missing ones; elsewhere we say what to do. Never fails the set-up.
# Then, if the venv exists, it reports where phase 3 finds the LIBERO assets.
set -u
packages=(libegl1 libgl1-mesa-dri libosmesa6)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done 2>/dev/null
if ! command -v dpkg >/dev/null; then
  echo "libero: not a Debian-like system; MuJoCo needs an EGL or OSMesa library for off-screen rendering"
  echo "        (e.g. Mesa's libEGL + swrast/llvmpipe driver, or libOSMesa). Choose it with MUJOCO_GL=egl|osmesa."
elif [ ${#missing[@]} -eq 0 ]; then
  echo "libero: GL libraries present (${packages[*]})"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "libero: installing ${missing[*]} for off-screen rendering ..."
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
     || { apt-get update -q >/dev/null 2>&1 \
          && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }; then
    echo "libero: installed ${missing[*]}"
  else
    echo "libero: apt-get could not install ${missing[*]}; rendering may fail. Install them by hand:"
    echo "        apt-get install ${missing[*]}"
  fi
else
  echo "libero: missing ${missing[*]} (needed for off-screen rendering of LIBERO with MUJOCO_GL=egl or osmesa)."
  echo "        Install them with: sudo apt-get install ${missing[*]}"
  echo "        Tests and commands that render will fail with a message naming MUJOCO_GL until then."
fi
py=.venv/bin/python
if [ -x "$py" ]; then
  "$py" - <<'PY' 2>/dev/null || echo "libero: could not check the LIBERO assets (phase3_vla not importable yet)"
from phase3_vla.libero_env import AssetsNotFoundError, resolve_assets
try:
    print(f"libero: assets at {resolve_assets()}")
except AssetsNotFoundError as e:
    print(f"libero: {e}")
PY
fi
exit 0
