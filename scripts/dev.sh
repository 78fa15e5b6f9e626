#!/usr/bin/env bash
# Developer entry point. Usage: bash scripts/dev.sh <setup|train|test>
#   setup  create .venv, install the Python dependencies, build the extension into it
#   train  setup, then fit a model by gradient descent in one SQL statement, from Python
#   test   setup, then run every Rust and Python test (the benchmarks' quick modes among them)
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds live outside the clone so that fresh clones on one machine share them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/datafusion-autograd/target}"
venv=.venv

# The PostgreSQL server programs the tests start a throwaway cluster with
# (tests/throwaway_postgres.py): on PATH or in Debian's versioned directory.
has_postgres_server() {
    command -v initdb >/dev/null && command -v pg_ctl >/dev/null && return 0
    compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null
}

setup() {
    if ! has_postgres_server; then
        echo "installing PostgreSQL (Debian package postgresql) for the tests" >&2
        sudo=""
        if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
        $sudo apt-get update
        $sudo apt-get install -y postgresql
    fi
    cargo fetch --locked
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet 'maturin>=1.5,<2'
    # Installs the package with its test extras. `maturin develop` builds with
    # the dev profile, the one `cargo test` uses, so the two share every
    # compiled dependency.
    VIRTUAL_ENV="$PWD/$venv" "$venv/bin/maturin" develop --quiet --locked --extras test
}

case "${1:-}" in
    setup)
        setup
        ;;
    train)
        setup
        "$venv/bin/python" examples/train.py
        ;;
    test)
        setup
        cargo test --workspace --locked
        "$venv/bin/python" -m pytest -q
        ;;
    *)
        echo "usage: bash scripts/dev.sh <setup|train|test>" >&2
        exit 2
        ;;
esac
