#!/usr/bin/env bash
# The dashboard page (`GET /health/dashboard`) in a real browser: headless
# Chromium driven by chromedriver, from Debian's packages (installed here
# when missing; no test tool downloads a browser). See
# tests/tests/dashboard_browser.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver > /dev/null
fi

cargo test -p battlement-tests --test dashboard_browser -- --ignored
