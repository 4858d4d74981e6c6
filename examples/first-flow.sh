#!/bin/sh
# The "Creating Your First Flow" network, built with `flow` on the embedded
# default: a SQLite database and a local broker folder, no server needed.
# Everything lives in ./.demo, rebuilt on every run, so your own pyfi data
# (in your user data directory) is never touched.
set -eu

DEMO_DIR="${DEMO_DIR:-$PWD/.demo}"
mkdir -p "$DEMO_DIR"
: > "$DEMO_DIR/pyfi.ini"          # an empty ini: nothing configured, embedded defaults apply
export PYFI_DATA_DIR="$DEMO_DIR" PYFI_INI="$DEMO_DIR/pyfi.ini"
unset PYFI_DB PYFI_BROKER PYFI_BACKEND

run() {
    printf '\n$ flow %s\n' "$*"
    flow "$@"
}

run config show
run db rebuild --yes
run add queue -n pyfi.queue1 -t direct
run add processor -n proc1 -g https://github.com/radiantone/pyfi-processors -m pyfi.processors.sample -h localhost -c 5
run add socket -n pyfi.processors.sample.do_something -q pyfi.queue1 -pn proc1 -t do_something
run add socket -n pyfi.processors.sample.do_this -q pyfi.queue1 -pn proc1 -t do_this
run add plug -n plug1 -q pyfi.queue1 --source pyfi.processors.sample.do_something --target pyfi.processors.sample.do_this
run ls processor -n proc1
run ls queues

cat <<MSG

The network is stored in $DEMO_DIR/pyfi.sqlite. To explore it further
(flow is installed in .venv/bin):
    export PYFI_DATA_DIR="$DEMO_DIR" PYFI_INI="$DEMO_DIR/pyfi.ini"
    flow ls plugs
    flow db json
MSG
