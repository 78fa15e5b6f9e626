#!/usr/bin/env bash
# Developer entry point. Usage: bash scripts/dev.sh <setup|train|test|memcheck|fuzz>
#   setup     create .venv, install the Python dependencies, build the extension into it
#   train     setup, then fit a model by gradient descent in one SQL statement, from Python
#   test      setup, then run every Rust and Python test (the benchmarks' quick modes among
#             them), and the dlopen host test under memcheck
#   memcheck  the dlopen host test under valgrind's memcheck (installs valgrind if missing)
#   fuzz      setup, then the full fuzz run: 20,000 FFI cases, 5,000 cases per Python entry
#             point (AUTOGRAD_FUZZ_CASES and AUTOGRAD_FUZZ_SEED override), 10,000 random
#             expression trees in Rust and 10,000 through the Python bridge
#             (AUTOGRAD_FUZZ_TREES overrides), and 3,000 random loss queries against finite
#             differences (AUTOGRAD_FUZZ_LOSSES overrides), and 1,000 in DuckDB and SQLite
#             against DataFusion (AUTOGRAD_FUZZ_ENGINE_LOSSES overrides)
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

# The dlopen host test under memcheck: no memory error, and no definite,
# indirect or possible leak beyond scripts/memcheck.supp (which explains each
# suppression).
memcheck() {
    if ! command -v valgrind >/dev/null; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get install -y valgrind || { $sudo apt-get update && $sudo apt-get install -y valgrind; }
    fi
    local test_binary
    test_binary=$(cargo test -p datafusion-autograd-ffi --test dlopen_host --locked --no-run \
        --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "dlopen_host":
        print(message["executable"])')
    # Deep enough stacks for the suppressions to see where a block was allocated from.
    # Valgrind cannot unwind a stack that stacker or DataFusion's recursion guard
    # switched to, so a block allocated there has no allocation site and no
    # suppression can match it; test threads of 256 MiB keep planning on their own
    # stack (the switching itself is exercised by the deep-nesting tests).
    RUST_MIN_STACK=268435456 valgrind --tool=memcheck --error-exitcode=1 --leak-check=full --num-callers=50 \
        --errors-for-leak-kinds=definite,indirect,possible \
        --show-leak-kinds=definite,indirect,possible \
        --suppressions=scripts/memcheck.supp "$test_binary"
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
        memcheck
        ;;
    memcheck)
        memcheck
        ;;
    fuzz)
        setup
        AUTOGRAD_FUZZ_CASES="${AUTOGRAD_FUZZ_CASES:-20000}" \
            cargo test --locked -p datafusion-autograd-ffi --test ffi_fuzz
        AUTOGRAD_FUZZ_CASES="${AUTOGRAD_FUZZ_CASES:-5000}" "$venv/bin/python" -m pytest -q tests/test_fuzz.py
        AUTOGRAD_FUZZ_TREES="${AUTOGRAD_FUZZ_TREES:-10000}" \
            cargo test --locked -p datafusion-autograd --test sql fuzz
        AUTOGRAD_FUZZ_TREES="${AUTOGRAD_FUZZ_TREES:-10000}" \
            "$venv/bin/python" -m pytest -q tests/test_random_trees.py
        AUTOGRAD_FUZZ_LOSSES="${AUTOGRAD_FUZZ_LOSSES:-3000}" \
            cargo test --locked -p datafusion-autograd --test sql random_losses
        AUTOGRAD_FUZZ_ENGINE_LOSSES="${AUTOGRAD_FUZZ_ENGINE_LOSSES:-1000}" \
            "$venv/bin/python" -m pytest -q tests/test_engine_random_losses.py
        ;;
    *)
        echo "usage: bash scripts/dev.sh <setup|train|test|memcheck|fuzz>" >&2
        exit 2
        ;;
esac
