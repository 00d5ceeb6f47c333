#!/usr/bin/env bash
# Install pattune and run its main job on the bundled Fashion-MNIST example.
set -euo pipefail
cd "$(dirname "$0")/.."
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
python3 -m pip install -q --disable-pip-version-check torch==2.13.0
python3 -m pip install -q --disable-pip-version-check -e .
export OMP_WAIT_POLICY=passive
pattune prune --out out/example
