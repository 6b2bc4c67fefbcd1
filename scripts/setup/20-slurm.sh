#!/usr/bin/env bash
# SLURM for the `slurm` tests and for trying the HPC path on a laptop: slurmctld, slurmd,
# the client commands and munge from Debian (8 packages; `slurm-wlm` would pull 43).
# Installs only; scripts/slurm-up starts the daemons. Quick when already installed.
set -euo pipefail
pkgs=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "installing ${missing[*]}"
$sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
  --no-install-recommends "${pkgs[@]}" >/dev/null
