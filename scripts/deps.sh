#!/usr/bin/env bash
# Installs the Debian packages lopt needs that are missing, and says which.
# Runs apt as root (or through sudo). Idempotent: does nothing when all are present.
#   scripts/deps.sh       everything: build, data, PyTorch and Open MPI (tests and benchmarks)
#                         and clang with its libFuzzer runtime (make fuzz)
#   scripts/deps.sh run   only what building and running lopt needs (make demo)
set -euo pipefail
pkgs=(build-essential libopenblas-dev zlib1g-dev libomp-dev dataset-fashion-mnist)
case "${1:-all}" in
  all) pkgs+=(python3-torch python3-numpy libopenmpi-dev openmpi-bin clang libclang-rt-dev) ;;
  run) ;;
  *) echo "usage: scripts/deps.sh [all|run]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { $sudo apt-get update -qq && \
       $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -20 "$log" >&2
  echo "deps: apt-get failed (log above)" >&2
  exit 1
fi
rm -f "$log"
echo "deps: done" >&2
