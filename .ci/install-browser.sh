#!/usr/bin/env bash
# The browser the web tests drive (tests/test_web_browser.py): Debian's chromium, used by
# Playwright through executable_path=/usr/bin/chromium (no browser download). With CI=true the
# tests fail, not skip, when it is missing. Called from .ci/run before the tests.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium chromium-driver
/usr/bin/chromium --version
