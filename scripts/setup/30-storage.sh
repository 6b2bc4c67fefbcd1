#!/usr/bin/env bash
# Storage servers the data tests start themselves: Azurite (Azure Blob emulator, npm)
# into the git-ignored .cache/node/. The S3 (moto) and GCS emulators are Python packages
# installed by `make install-test` (extras data,test-data). Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/../.."

AZURITE_VERSION="${AZURITE_VERSION:-3.37.0}"
PREFIX=".cache/node"
BIN="$PREFIX/node_modules/.bin/azurite-blob"
STAMP="$PREFIX/.azurite-$AZURITE_VERSION"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing nodejs and npm (for Azurite)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends nodejs npm
fi

if [ -x "$BIN" ] && [ -e "$STAMP" ]; then
  echo "azurite $AZURITE_VERSION: already installed in $PREFIX"
  exit 0
fi

echo "installing azurite $AZURITE_VERSION into $PREFIX"
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-save --no-audit --no-fund --loglevel=error \
  "azurite@$AZURITE_VERSION"
"$BIN" --version >/dev/null
rm -f "$PREFIX"/.azurite-*
touch "$STAMP"
echo "azurite $("$BIN" --version) installed"
