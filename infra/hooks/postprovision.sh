#!/bin/sh
# azd postprovision hook: the project's .venv has what the migrations need (make setup); else the system python3.
set -eu
cd "$(dirname "$0")/../.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
exec "$PY" infra/hooks/postprovision.py
