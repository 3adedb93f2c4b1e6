#!/usr/bin/env bash
# Installs the Debian packages lopt needs that are missing, and says which.
# Runs apt as root (or through sudo). Idempotent: does nothing when all are present.
set -euo pipefail
pkgs=(build-essential libopenblas-dev zlib1g-dev libomp-dev dataset-fashion-mnist
      python3-torch python3-numpy)
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
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
echo "deps: done" >&2
