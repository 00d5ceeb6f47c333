#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite.
# System packages come from Debian (apt-get) when missing; Python ones from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in openssh-server qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
           dataset-fashion-mnist postgresql; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing system packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# torch first and pinned: 2.13.0 is the CPU wheel on these machines; the project's
# range admits it, so the next line installs no other torch.
python3 -m pip install -q --disable-pip-version-check torch==2.13.0
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

export OMP_WAIT_POLICY=passive
# Hypothesis draws the same examples on every run here (tests/conftest.py); set
# HYPOTHESIS_PROFILE=default to explore new ones.
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
python3 -m pytest -n 2 --dist loadgroup -q "$@"
