#!/usr/bin/env bash
# Install pattune and run its main job: a short tune of the bundled Fashion-MNIST example
# on this machine, then the export of the best configuration to out/quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in dataset-fashion-mnist gcc; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check torch==2.13.0
python3 -m pip install -q --disable-pip-version-check -e .
export OMP_WAIT_POLICY=passive
mkdir -p out
pattune tune --trials 8 --study quickstart --storage sqlite:///out/pattune.db
# A short retraining schedule (2 epochs of ADMM, 2 of masked retraining); the default is 4 + 6.
pattune export --study quickstart --storage sqlite:///out/pattune.db --out out/quickstart \
  --admm-epochs 2 --retrain-epochs 2
