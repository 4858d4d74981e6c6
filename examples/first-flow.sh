#!/bin/sh
# The main job: a real flow through the sample processors, on the embedded
# default (a SQLite database and a local broker folder, no server needed).
#
# It builds the reference's "first flow" plus a plug chain that feeds a join,
# starts a worker, runs calls through it, shows what was recorded, and stops
# the worker cleanly. Everything lives in ./.demo, rebuilt on every run, so
# your own pyfi data is never touched.
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
DEMO_DIR="${DEMO_DIR:-$PWD/.demo}"
mkdir -p "$DEMO_DIR"
: > "$DEMO_DIR/pyfi.ini"          # an empty ini: nothing configured, embedded defaults apply
export PYFI_DATA_DIR="$DEMO_DIR" PYFI_INI="$DEMO_DIR/pyfi.ini"
unset PYFI_DB PYFI_BROKER PYFI_BACKEND

run() {
    printf '\n$ flow %s\n' "$*"
    flow "$@"
}

WORKER_PID=""
stop_worker() {
    if [ -n "$WORKER_PID" ] && kill -0 "$WORKER_PID" 2>/dev/null; then
        kill -TERM "$WORKER_PID"
        wait "$WORKER_PID" || true
    fi
}
trap stop_worker EXIT INT TERM

SOMETHING=pyfi.processors.sample.do_something
THIS=pyfi.processors.sample.do_this
ADD=pyfi.processors.sample.add_two

run config show
run db rebuild --yes
run add queue -n pyfi.queue1 -t direct
run add processor -n proc1 -g "file://$HERE/processors_example" -m pyfi_examples.sample -c 2
run add socket -n $SOMETHING -q pyfi.queue1 -pn proc1 -t do_something
run add socket -n $THIS -q pyfi.queue1 -pn proc1 -t do_this
run add socket -n $ADD -q pyfi.queue1 -pn proc1 -t add_two --wait
# do_something's result goes to do_this, and to add_two's argument "one";
# do_this's result goes to add_two's argument "two": add_two joins them.
run add plug -n plug1 -q pyfi.queue1 --source $SOMETHING --target $THIS
run add plug -n plug2 -q pyfi.queue1 --source $SOMETHING --target $ADD --argument one
run add plug -n plug3 -q pyfi.queue1 --source $THIS --target $ADD --argument two
run ls processor -n proc1

printf '\n$ flow worker start --processor proc1 --path processors_example &\n'
flow worker start --processor proc1 --path "$HERE/processors_example" > "$DEMO_DIR/worker.log" 2>&1 &
WORKER_PID=$!
tries=0
until grep -q consuming "$DEMO_DIR/worker.log"; do
    tries=$((tries + 1))
    if [ $tries -gt 200 ] || ! kill -0 "$WORKER_PID" 2>/dev/null; then
        cat "$DEMO_DIR/worker.log" >&2
        exit 1
    fi
    sleep 0.05
done
cat "$DEMO_DIR/worker.log"

run task run --socket $THIS --data "['some data']"

printf '\n$ echo "HI THERE!" | flow task run -s %s | echo "$(cat -) add some text" | flow task run -s %s\n' $SOMETHING $THIS
echo "HI THERE!" | flow task run -s $SOMETHING | echo "$(cat -) add some text" | flow task run -s $THIS

# One call that flows along the plugs and completes the join.
run task run --socket $SOMETHING --data '"hello"'
tries=0
until flow ls calls --socket $ADD --json | grep -q '"state": "finished"'; do
    tries=$((tries + 1))
    [ $tries -gt 200 ] && { echo "the join did not fire" >&2; exit 1; }
    sleep 0.05
done
run ls calls --rows 20
ADD_CALL=$(flow ls calls --socket $ADD --json | sed -n 's/.*"id": "\([0-9a-f-]*\)".*/\1/p' | head -n 1)
run ls call --id "$ADD_CALL" --result

printf '\n$ kill -TERM %s   # the worker drains, acks, and exits\n' "$WORKER_PID"
stop_worker
WORKER_PID=""
tail -n 2 "$DEMO_DIR/worker.log"

cat <<MSG

The network and its call records are in $DEMO_DIR. To explore them further
(flow is installed in .venv/bin):
    export PYFI_DATA_DIR="$DEMO_DIR" PYFI_INI="$DEMO_DIR/pyfi.ini"
    flow ls plugs
    flow ls calls
MSG
