#!/usr/bin/env bash
# Install Debian's headless Chromium for the real-browser JupyterLab test.
# (Playwright's own browser download cannot run without internet access.)
set -euo pipefail
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >"${LOGDIR:-/tmp}/apt-chromium.log"
fi
chromium --version
