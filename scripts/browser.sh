#!/usr/bin/env bash
# Debian's Chromium and a CJK font for the page's browser tests (tests/test_page.py), when missing.
# Playwright drives this Chromium; it never downloads a browser of its own (the machines have no network).
set -euo pipefail
if command -v chromium >/dev/null && fc-list 2>/dev/null | grep -qi "cjk"; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "browser tests need chromium and fonts-noto-cjk: run 'sudo bash scripts/browser.sh'" >&2
    exit 1
fi
echo "installing chromium and fonts-noto-cjk for the browser tests ..." >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
