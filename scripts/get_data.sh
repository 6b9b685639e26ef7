#!/usr/bin/env bash
# Make Fashion-MNIST available offline. Debian packages it as `dataset-fashion-mnist`
# (IDX files under /usr/share/datasets/fashion-mnist). Never fails the set-up: it says what to do instead.
set -u
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  echo "data: Fashion-MNIST found at $dir"; exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "data: installing Debian's dataset-fashion-mnist ..."
  if apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
     || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; then
    echo "data: Fashion-MNIST installed at $dir"; exit 0
  fi
  echo "data: apt-get could not install dataset-fashion-mnist."
fi
cat <<MSG
data: Fashion-MNIST is not installed, so 'make demo' and the phase 0 CPU profile have no data yet.
      Any one of these works:
        - sudo apt-get install dataset-fashion-mnist          (Debian/Ubuntu; files land in $dir)
        - copy the four standard IDX files (train-images-idx3-ubyte.gz, ...) into data/fashion_mnist/
        - export WM_DATA_DIR=/path/holding/fashion_mnist/
        - on a machine with internet: python -m phase0_diffusion.train data.download=true
      The test suite does not need it.
MSG
exit 0
