#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests when /usr/bin/chromium is missing.
# Never downloads a browser build of its own (no `playwright install`): Debian's package only.
# Exits non-zero with a message naming what is missing when it cannot install it; the browser
# tests then fail loudly (they never skip).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-chromium: $CHROMIUM is missing and this user is not root (no sudo);" \
             "install Debian's chromium package: apt-get install -y chromium" >&2
        exit 1
    fi
else
    SUDO=""
fi

echo "install-chromium: $CHROMIUM is missing; installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -q >&2 || ! $SUDO apt-get install -y -q --no-install-recommends \
        chromium fonts-dejavu-core >&2; then
    echo "install-chromium: apt-get could not install chromium; the browser tests need" \
         "$CHROMIUM (Debian package 'chromium')" >&2
    exit 1
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "install-chromium: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
"$CHROMIUM" --version >&2 || true
