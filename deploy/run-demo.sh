#!/usr/bin/env bash
# The main job for a new user: worker + sample traffic against the local Kafka,
# then show where the Parquet landed. Called by `make run`.
set -euo pipefail
count="${1:-20000}"
bin=.venv/bin
mkdir -p data
"$bin/cdrpipe" keys init --if-missing
log=data/worker.log
"$bin/cdrpipe" worker >"$log" 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null || true; wait $worker 2>/dev/null || true' EXIT
# the worker creates the topics at start; the demo publisher never does (it holds no Create)
for _ in $(seq 1 240); do
    grep -q "ingest started" "$log" && break
    kill -0 "$worker" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.5
done
grep -q "ingest started" "$log" || { echo "the worker did not start in 120s; see $log" >&2; exit 1; }
echo "worker started (pid $worker, log $log); publishing $count sample CDRs"
"$bin/cdrpipe" demo --count "$count" --wait 180
echo
echo "Parquet files under $CDRPIPE_STORE:"
find "$CDRPIPE_STORE" -name '*.parquet' | sort | sed 's/^/  /' | head -20
query="SELECT call_date, count(*) AS calls, count(DISTINCT caller_pseudonym) AS callers
FROM read_parquet('$CDRPIPE_STORE/cdr/*/*.parquet', hive_partitioning = true)
GROUP BY call_date ORDER BY call_date"
"$bin/python" -c 'import sys, duckdb; duckdb.sql(sys.argv[1]).show()' "$query"
echo "Try it yourself:"
echo "  $bin/python -c \"import duckdb; duckdb.sql(\\\"$(echo "$query" | tr '\n' ' ')\\\").show()\""
echo "The local Kafka keeps running for more experiments; 'make stop' stops it."
