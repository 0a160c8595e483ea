#!/usr/bin/env bash
# Headless Chromium and ChromeDriver for the HTML report test (Debian packages).
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup-browser: chromium/chromedriver missing and apt-get unavailable as root;" \
         "the browser test will be skipped" >&2
    exit 0
fi
echo "setup-browser: installing chromium and chromium-driver"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
