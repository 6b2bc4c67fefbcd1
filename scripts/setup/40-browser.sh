#!/usr/bin/env bash
# Headless Debian chromium and fonts for every browser test (`browser` marker: the JupyterLab
# extension's tests and the dashboard tests). Playwright drives /usr/bin/chromium; never run
# 'playwright install' (no browser downloads here). Quick when everything is installed.
set -euo pipefail
pkgs=(chromium fonts-liberation fontconfig)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
export DEBIAN_FRONTEND=noninteractive
APT=($SUDO apt-get -o DPkg::Lock::Timeout=300)
echo "installing ${missing[*]:-chromium}"
# Refresh the package lists only when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  "${APT[@]}" update -qq
fi
"${APT[@]}" install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
/usr/bin/chromium --version
