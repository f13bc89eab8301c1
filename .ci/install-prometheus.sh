#!/usr/bin/env bash
# Installs the real operator tools the tests run against: promtool / prometheus (rule checks,
# rule unit tests, scrape integration test), alertmanager (config check) and headless
# chromium (HTML report rendering). Idempotent: does nothing when all binaries are present.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || command -v prometheus-alertmanager >/dev/null 2>&1 \
  || need+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  echo "prometheus, alertmanager and chromium already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "warning: not root and no password-less sudo: not installing ${need[*]};" \
      "the tests that need them will skip" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2068
$SUDO apt-get install -y -q --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u)
# the Debian packages start services; the tests run their own instances
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
