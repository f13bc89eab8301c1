#!/usr/bin/env bash
# The test suite: ruff, mypy, then pytest against a real local Kafka broker that this script
# starts (and stops) with the project's own `gpuledger kafka start`. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .ci/install-prometheus.sh ]; then .ci/install-prometheus.sh; fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
port=${GPULEDGER_TEST_PORT:-19192}
kdir=.gpuledger/test-kafka
rm -rf "$kdir"
bootstrap=$(.venv/bin/gpuledger kafka start --port "$port" --data-dir "$kdir")
trap '.venv/bin/gpuledger kafka stop --data-dir "$kdir" >/dev/null || true' EXIT
echo "test broker at $bootstrap" >&2
GPULEDGER_TEST_KAFKA=$bootstrap .venv/bin/python -m pytest -q "$@"
