#!/usr/bin/env bash
# The main job for a new user: worker + sample traffic against the local Kafka,
# then show where the Parquet landed and how to reach `cdrpipe`. Called by `make run`:
#   deploy/run-demo.sh --check         only check the web port (before the broker starts)
#   deploy/run-demo.sh COUNT [BIN]     BIN: the virtualenv's bin directory (default .venv/bin)
#
# It cannot hang on a worker that did not start: the web port (CDRPIPE_WEB_PORT) must be
# free before the worker starts, the worker must answer /health before anything is
# published, and it must stay alive while the demo waits for its records. Otherwise the
# demo stops with one line: the worker log's last error, which says what to fix.
set -euo pipefail
count="${1:-20000}"
bin="${2:-.venv/bin}"
web_port="${CDRPIPE_WEB_PORT:-6066}"
health_wait=90
log=data/worker.log

fail() { echo "run-demo: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
healthy() {
    "$bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "http://127.0.0.1:$web_port/health" 2>/dev/null
}
worker_stopped() {
    local last
    last="$(grep -E '^cdrpipe: |\[(ERROR|CRITICAL)\]' "$log" | tail -1 || true)"
    fail "the worker stopped $1: ${last:-$(tail -1 "$log")} (full log: $log)"
}

if port_open "$web_port"; then
    fail "web port $web_port is taken by another process (CDRPIPE_WEB_PORT): stop it, or choose another port, e.g. CDRPIPE_WEB_PORT=$((web_port + 1)) make run"
fi
[[ "$count" == --check ]] && exit 0
mkdir -p data
"$bin/cdrpipe" keys init --if-missing
"$bin/cdrpipe" worker >"$log" 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null || true; wait $worker 2>/dev/null || true' EXIT
echo "worker started (pid $worker, log $log); waiting for http://127.0.0.1:$web_port/health"
deadline=$((SECONDS + health_wait))
# healthy, and ingesting: the worker creates the topics at start; the demo publisher never does
# (it holds no Create)
until healthy && grep -q "ingest started" "$log"; do
    kill -0 "$worker" 2>/dev/null || worker_stopped "at start"
    ((SECONDS < deadline)) || fail "the worker did not answer /health within ${health_wait}s (log: $log)"
    sleep 0.5
done
echo "worker healthy; publishing $count sample CDRs"
"$bin/cdrpipe" demo --count "$count" --wait 180 &
demo=$!
while kill -0 "$demo" 2>/dev/null; do
    if ! kill -0 "$worker" 2>/dev/null; then
        kill "$demo" 2>/dev/null || true
        worker_stopped "while the demo ran"
    fi
    sleep 0.5
done
wait "$demo"
echo
echo "Parquet files under $CDRPIPE_STORE:"
find "$CDRPIPE_STORE" -name '*.parquet' | sort | sed 's/^/  /' | head -20
cdr="read_parquet('$CDRPIPE_STORE/cdr/*/*.parquet', hive_partitioning = true)"
query="SELECT call_date, count(*) AS calls, count(DISTINCT caller_pseudonym) AS callers
FROM $cdr
GROUP BY call_date ORDER BY call_date"
"$bin/python" -c 'import sys, duckdb; duckdb.sql(sys.argv[1]).show()' "$query"
echo "Try it yourself:"
echo "  $bin/python -c \"import duckdb; duckdb.sql(\\\"$(echo "$query" | tr '\n' ' ')\\\").show()\""
busiest="$("$bin/python" -c 'import sys, duckdb; print(duckdb.sql(sys.argv[1]).fetchall()[0][0])' \
    "SELECT caller_pseudonym FROM $cdr WHERE direction = 'inbound' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")"
echo
echo "The cdrpipe command is in $bin; put it on this shell's PATH, from this directory:"
echo "  . $bin/activate"
echo "then, for example: the keyring, the register, and the busiest demo caller's rows:"
echo "  cdrpipe keys list"
echo "  cdrpipe requests"
echo "  cdrpipe export --pseudonym $busiest --out subject.jsonl"
echo "The local Kafka keeps running for more experiments; 'make stop' stops it."
