#!/usr/bin/env bash
# Headless chromium and fonts for the dashboard browser tests (tests/test_dashboard_browser.py).
# Idempotent and quick when installed; harmless next to any other script that installs
# chromium (apt-get skips what is there). Playwright drives this chromium: never run
# 'playwright install' (no browser downloads here).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "Liberation"; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
APT=($SUDO apt-get -o DPkg::Lock::Timeout=300)
# Refresh the package lists only when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  "${APT[@]}" update -qq
fi
"${APT[@]}" install -y -qq --no-install-recommends chromium fonts-liberation fontconfig >/dev/null
command -v chromium >/dev/null
