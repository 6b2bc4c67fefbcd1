#!/usr/bin/env bash
# Storage servers the data tests start themselves: Azurite (Azure Blob emulator, npm)
# into the git-ignored .cache/node/, from the committed lock in scripts/setup/azurite/
# (`npm ci`: exact versions, integrity checked). The S3 (moto) and GCS emulators are Python
# packages in requirements/test.txt. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/../.."

LOCK_DIR="scripts/setup/azurite"
PREFIX=".cache/node"
BIN="$PREFIX/node_modules/.bin/azurite-blob"
AZURITE_VERSION=$(sed -n 's/.*"azurite": "\(.*\)".*/\1/p' "$LOCK_DIR/package.json")
STAMP="$PREFIX/.azurite-$(cat "$LOCK_DIR/package.json" "$LOCK_DIR/package-lock.json" | sha256sum | cut -c1-16)"

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
cp "$LOCK_DIR/package.json" "$LOCK_DIR/package-lock.json" "$PREFIX/"
npm ci --prefix "$PREFIX" --no-audit --no-fund --loglevel=error
"$BIN" --version >/dev/null
rm -f "$PREFIX"/.azurite-*
touch "$STAMP"
echo "azurite $("$BIN" --version) installed"
