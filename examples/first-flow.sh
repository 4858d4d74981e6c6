#!/bin/sh
# The main job: a real flow through the sample processors, on the embedded
# default (a SQLite database and a local broker folder, no server needed).
#
# It turns processors_example/ into a git repository, builds the reference's
# first flow plus a plug chain that feeds a join, starts an agent that deploys
# the processor from git into its own virtualenv and supervises its worker,
# runs calls while `flow listen` prints the live events, shows what was
# recorded, and stops everything cleanly. Everything lives in ./.demo,
# rebuilt on every run (the virtualenv cache is kept), so your own pyfi data
# is never touched.
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
DEMO_DIR="${DEMO_DIR:-$PWD/.demo}"
mkdir -p "$DEMO_DIR"
rm -rf "$DEMO_DIR/repo" "$DEMO_DIR/agent" "$DEMO_DIR/broker" "$DEMO_DIR"/*.sqlite*
: > "$DEMO_DIR/pyfi.ini"          # an empty ini: nothing configured, embedded defaults apply
export PYFI_DATA_DIR="$DEMO_DIR" PYFI_INI="$DEMO_DIR/pyfi.ini" PYFI_ALLOWED_REPOS='file://*'
unset PYFI_DB PYFI_BROKER PYFI_BACKEND

run() {
    printf '\n$ flow %s\n' "$*"
    flow "$@"
}

AGENT_PID="" LISTEN_PID=""
stop_all() {
    for pid in $LISTEN_PID $AGENT_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            wait "$pid" || true
        fi
    done
    AGENT_PID="" LISTEN_PID=""
}
trap stop_all EXIT INT TERM

wait_until() {  # what, command...
    what=$1; shift
    tries=0
    until "$@" >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ $tries -gt 1200 ]; then
            echo "gave up waiting for $what" >&2
            tail -n 20 "$DEMO_DIR/agent.log" >&2
            exit 1
        fi
        sleep 0.1
    done
}

SOMETHING=pyfi.processors.sample.do_something
THIS=pyfi.processors.sample.do_this
ADD=pyfi.processors.sample.add_two

echo "# The processor repository: processors_example/ as a git repository"
cp -R "$HERE/processors_example" "$DEMO_DIR/repo"
rm -rf "$DEMO_DIR"/repo/*.egg-info "$DEMO_DIR"/repo/build
git -C "$DEMO_DIR/repo" init -q -b main
git -C "$DEMO_DIR/repo" add .
git -C "$DEMO_DIR/repo" -c user.name=pyfi -c user.email=demo@pyfi.invalid commit -q -m "sample processors"
echo "file://$DEMO_DIR/repo at $(git -C "$DEMO_DIR/repo" rev-parse --short HEAD)"

run db init
run add queue -n pyfi.queue1 -t direct
run add processor -n proc1 -g "file://$DEMO_DIR/repo" -m pyfi_examples.sample -c 1
run add socket -n $SOMETHING -q pyfi.queue1 -pn proc1 -t do_something
run add socket -n $THIS -q pyfi.queue1 -pn proc1 -t do_this
run add socket -n $ADD -q pyfi.queue1 -pn proc1 -t add_two --wait
# do_something's result goes to do_this, and to add_two's argument "one";
# do_this's result goes to add_two's argument "two": add_two joins them.
run add plug -n plug1 -q pyfi.queue1 --source $SOMETHING --target $THIS
run add plug -n plug2 -q pyfi.queue1 --source $SOMETHING --target $ADD --argument one
run add plug -n plug3 -q pyfi.queue1 --source $THIS --target $ADD --argument two

printf '\n$ flow agent start --name demo --port 0 &   # deploys proc1 from git, starts its worker\n'
flow agent start --name demo --port 0 --workdir "$DEMO_DIR/agent" \
    --venv-cache "$DEMO_DIR/venvs" > "$DEMO_DIR/agent.log" 2>&1 &
AGENT_PID=$!
echo "(the first run builds proc1's virtualenv; later runs reuse it)"
processor_running() { flow ls processor -n proc1 --json | grep -q '"status": "running"'; }
worker_running() { flow ls workers --json | grep -q '"status": "running"'; }
wait_until "proc1 to be deployed" processor_running
wait_until "proc1's worker" worker_running
run ls workers

printf '\n$ flow listen --name pyfi.queue1.proc1 --channel task &   # live events, printed below\n'
flow listen --name pyfi.queue1.proc1 --channel task &
LISTEN_PID=$!
sleep 1

run task run --socket $THIS --data "['some data']"

printf '\n$ echo "HI THERE!" | flow task run -s %s | echo "$(cat -) add some text" | flow task run -s %s\n' $SOMETHING $THIS
echo "HI THERE!" | flow task run -s $SOMETHING | echo "$(cat -) add some text" | flow task run -s $THIS

# One call that flows along the plugs and completes the join.
run task run --socket $SOMETHING --data '"hello"'
join_fired() { flow ls calls --socket $ADD --json | grep -q '"state": "finished"'; }
wait_until "the join" join_fired
sleep 1
kill -TERM "$LISTEN_PID" && wait "$LISTEN_PID" || true
LISTEN_PID=""

run ls calls --rows 20
ADD_CALL=$(flow ls calls --socket $ADD --json | sed -n 's/.*"id": "\([0-9a-f-]*\)".*/\1/p' | head -n 1)
run ls call --id "$ADD_CALL" --result

printf '\n$ kill -TERM %s   # the agent drains its worker, releases its share, goes offline\n' "$AGENT_PID"
stop_all
tail -n 3 "$DEMO_DIR/agent.log"
run ls agents

cat <<MSG

The network and its call records are in $DEMO_DIR. To explore them further
(flow is installed in .venv/bin):
    export PYFI_DATA_DIR="$DEMO_DIR" PYFI_INI="$DEMO_DIR/pyfi.ini"
    flow ls plugs
    flow ls calls
MSG
