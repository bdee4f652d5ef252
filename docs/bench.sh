#!/usr/bin/env bash
# docs/bench.sh — reproduces every load figure of docs/benchmarks.md.
#
#   bash docs/bench.sh                     # the full run (about 17 minutes at DURATION=15s)
#   DURATION=3s MEM_EVENTS=20000 bash docs/bench.sh    # a quick check of the harness
#   MEASURE="floor relay" bash docs/bench.sh           # a subset
#
# It builds relay and relay-load into a temporary directory and, for each
# measurement, starts the processes it needs on 127.0.0.1 with random ports,
# drives load, and stops them. Every relay run gets a fresh storage
# directory. At the end it prints the machine and a markdown table per
# measurement:
#
#   floor   relay-load --floor (svix verify + JSON parse, nothing stored),
#           closed loop at each concurrency: req/s
#   fsync   the same with --floor-fsync (append + fsync per request, one
#           writer at a time): req/s
#   relay   relay serve with storage.sync 1s and always, closed loop at each
#           concurrency: accepted events/s (2xx), accept latency p50/p99, and
#           the deliveries still pending when the load stopped. Config: the
#           quick-start rules plus an http sink to a relay-load --receive
#           endpoint, every event archived to a file sink (no fsync) and
#           forwarded over HTTP.
#   ratio   RATIO_ROUNDS back-to-back pairs of the floor and the relay (sync
#           1s) at concurrency 64: each pair's relay/floor and the median
#   sustain the same relay at steady rates (SUSTAIN_RATES, open loop): does it
#           deliver as fast as it accepts? accepted/s, the deliveries
#           pending when the load stopped and how long they took to drain
#   burst   the same relay (sync 1s) at concurrency 64 for DURATION, with
#           the default server.ingest_priority and with it off (busy_at 0):
#           accepted, accepted/s, accept p99, the deliveries pending when the
#           load stopped and how long they took to drain
#   e2e     the same relay at a steady E2E_RATE events/s (open loop): accept
#           latency at the sender and end-to-end latency at the receiving
#           endpoint (its arrival minus the relay's received_at, which the
#           http sink sends through a body_template)
#   mem     relay (sync 1s) with one http sink to a dead port, retrying for
#           a day: MEM_EVENTS events at concurrency 64, then the relay's
#           VmRSS / VmHWM and relay_pending_deliveries
#   history the relay measurement's relay (sync 1s) takes HISTORY_EVENTS
#           events at concurrency 64 and delivers them; then: the store's
#           bytes per event (relay_store_bytes and the directory on disk),
#           the time of GET /api/v1/events with where event ==
#           "transcript.failed" and limit 100, of the same where matching
#           nothing (the whole history read), of GET /api/v1/events/{id},
#           and the restart: time to ready and RSS with the dedupe window's
#           ids read back (not in the default MEASURE: it takes minutes)
#   cluster (not in the default set) three nats-server processes (built
#           from the module) and relays in cluster mode (replicas 3): the
#           relay's and the NATS nodes' CPU per event at steady 100 and
#           1,000 events/s, accepted/s at concurrency 64 through one relay
#           and split over two and over three (with the relays' and the
#           nodes' CPU per event), and the bytes the cluster stores per
#           event;
#           for docs/operations.md, Sizing
#   fault   relay (sync 1s, default retry and breaker) with one http sink to
#           a relay-load --receive endpoint that answers 503 for
#           FAULT_OUTAGE while FAULT_EVENTS events arrive at a steady rate
#           over it, then recovers: events delivered exactly once (distinct
#           Idempotency-Key), repeats, events missing, the attempts the down
#           endpoint got, the time from recovery to the last delivery, dead
#           letters and the relay's peak RSS (VmHWM). Not in the default
#           MEASURE: it lasts FAULT_OUTAGE plus the drain.
#   peer    (not in the default set; about 11 minutes) the cost per event
#           against a peer doing the same job: the floor, the relay with
#           docs/bench/peer-relay.yaml (sync 1s and always; and, as the
#           ceiling, the same with no rules: intake alone, nothing to
#           deliver) and Benthos v4.27.0 with docs/bench/peer-benthos.yaml,
#           in interleaved rounds:
#           accepted/s at concurrency 64 and 16, delivered/s (first request
#           to last delivery) at 64, CPU per event at a steady PEER_RATE/s,
#           medians and the ratios docs/benchmarks.md tracks. Benthos is
#           built once from the Go module proxy into BENTHOS_CACHE (or give
#           BENTHOS_BIN); nothing of it enters the repository.
#
# Environment: DURATION (15s), CONCURRENCIES ("1 16 64"), E2E_RATE (1000),
# MEM_EVENTS (100000), MEM_CONCURRENCY (64), FAULT_OUTAGE (10m), FAULT_EVENTS
# (10000), HISTORY_EVENTS (1000000), MEASURE ("floor fsync relay ratio sustain
# burst e2e mem"; add "history", "fault" or "cluster" for those runs), RATIO_ROUNDS (3), SUSTAIN_RATES ("4000 6000 8000"), LOG_LEVEL (relay --log-level, info: one log line per event, as
# deployed), RELAY_ENV (extra VAR=value words for relay serve only, e.g.
# "GOGC=200"), PEER_DURATION (10s), PEER_WARMUP (2s), PEER_ROUNDS_64 (3),
# PEER_ROUNDS_16 (3), PEER_CPU_ROUNDS (3), PEER_RATE (1000), PEER_SYSTEMS
# ("floor relay-1s relay-always relay-intake benthos", a subset for before/after pairs of
# one build), BENTHOS_CACHE
# (~/.cache/relay-bench), BENTHOS_BIN (a Benthos v4.27.0 binary), START_TIMEOUT (30 s), DRAIN_TIMEOUT (120 s), KEEP=1 keeps the
# work directory (logs, reports) and prints its path.
set -euo pipefail

DURATION=${DURATION:-15s}
CONCURRENCIES=${CONCURRENCIES:-"1 16 64"}
E2E_RATE=${E2E_RATE:-1000}
MEM_EVENTS=${MEM_EVENTS:-100000}
MEM_CONCURRENCY=${MEM_CONCURRENCY:-64}
HISTORY_EVENTS=${HISTORY_EVENTS:-1000000}
FAULT_OUTAGE=${FAULT_OUTAGE:-10m}
FAULT_EVENTS=${FAULT_EVENTS:-10000}
MEASURE=${MEASURE:-"floor fsync relay ratio sustain burst e2e mem"}
RATIO_ROUNDS=${RATIO_ROUNDS:-3}
SUSTAIN_RATES=${SUSTAIN_RATES:-"4000 6000 8000"}
LOG_LEVEL=${LOG_LEVEL:-info}
RELAY_ENV=${RELAY_ENV:-}
START_TIMEOUT=${START_TIMEOUT:-30}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-120}
KEEP=${KEEP:-0}
PEER_DURATION=${PEER_DURATION:-10s}
PEER_WARMUP=${PEER_WARMUP:-2s}
PEER_ROUNDS_64=${PEER_ROUNDS_64:-3}
PEER_ROUNDS_16=${PEER_ROUNDS_16:-3}
PEER_CPU_ROUNDS=${PEER_CPU_ROUNDS:-3}
PEER_RATE=${PEER_RATE:-1000}
BENTHOS_CACHE=${BENTHOS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/relay-bench}
PEER_SYSTEMS=${PEER_SYSTEMS:-"floor relay-1s relay-always relay-intake benthos"}

SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw # the quick-start demo secret
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EVENTS=$ROOT/configs/examples/events
# The http sink's body in the e2e runs: the relay's receive time, to the ns.
E2E_TEMPLATE='{"received_at":"{{ .received_at.Format "2006-01-02T15:04:05.999999999Z07:00" }}"}'

die() { echo "bench.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }
wants() { [[ " $MEASURE " == *" $1 "* ]]; }

for tool in go curl; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
HAVE_JQ=0
command -v jq >/dev/null && HAVE_JQ=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/relay-bench.XXXXXX")
PIDS=()

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ $KEEP == 1 ]]; then
		echo "bench.sh: work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# forget PID: drop it from the list of processes to kill on exit.
forget() {
	local keep=() p
	for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# stop_proc PID [TIMEOUT_S]: SIGTERM, wait (bounded), then SIGKILL.
stop_proc() {
	local pid=$1 timeout=${2:-30} i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < timeout * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "bench.sh: pid $pid did not stop within ${timeout}s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	forget "$pid"
}

# jfield FILE KEY: the first value of KEY in the one-line JSON document that
# is the last line of FILE (keys are unique in relay-load's reports).
jfield() {
	local line v
	line=$(tail -n 1 "$1")
	if [[ $HAVE_JQ == 1 ]]; then
		v=$(jq -r --arg k "$2" 'first(.. | objects | select(has($k)) | .[$k]) // empty' <<<"$line")
	else
		v=$(grep -o "\"$2\":[^,}]*" <<<"$line" | head -n 1 | cut -d: -f2- | tr -d '"' || true)
	fi
	echo "${v:-0}" # omitted (omitempty) counts are 0
}

# non2xx FILE: the number of responses that were not 2xx in a load report.
non2xx() {
	local sent ok
	sent=$(jfield "$1" sent)
	ok=$(jfield "$1" ok)
	echo $((sent - ok))
}

# wait_listening NAME PID OUTFILE: waits for relay-load's "listening on ADDR"
# first line and prints ADDR.
wait_listening() {
	local name=$1 pid=$2 out=$3 i line
	for ((i = 0; i < START_TIMEOUT * 10; i++)); do
		if [[ -s $out ]]; then
			line=$(head -n 1 "$out")
			if [[ $line == "listening on "* ]]; then
				echo "${line#listening on }"
				return 0
			fi
		fi
		kill -0 "$pid" 2>/dev/null || { cat "$out" "${out%.out}.err" >&2 2>/dev/null; die "$name exited before listening"; }
		sleep 0.1
	done
	die "$name did not print 'listening on' within ${START_TIMEOUT}s"
}

# start_loadtool NAME ARGS...: runs relay-load ARGS in the background
# (stdout NAME.out, stderr NAME.err), waits for its address; sets
# LAST_PID and LAST_ADDR.
start_loadtool() {
	local name=$1
	shift
	"$BIN/relay-load" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
	LAST_ADDR=$(wait_listening "$name" "$LAST_PID" "$WORK/$name.out")
}

# start_relay NAME CONFIG: runs relay serve in the background (logs in
# NAME.log) and waits for the "relay started" line; sets RELAY_PID,
# RELAY_INGEST and RELAY_ADMIN.
start_relay() {
	local name=$1 config=$2 i line=""
	local logf=$WORK/$name.log
	# shellcheck disable=SC2086 # RELAY_ENV is a list of VAR=value words
	env $RELAY_ENV RELAY_SERVER__LISTEN=127.0.0.1:0 RELAY_SERVER__ADMIN_LISTEN=127.0.0.1:0 \
		"$BIN/relay" serve -c "$config" --log-format json --log-level "$LOG_LEVEL" 2>"$logf" >/dev/null &
	RELAY_PID=$!
	PIDS+=("$RELAY_PID")
	for ((i = 0; i < START_TIMEOUT * 10; i++)); do
		line=$(grep -m 1 '"msg":"relay started"' "$logf" 2>/dev/null || true)
		[[ -n $line ]] && break
		kill -0 "$RELAY_PID" 2>/dev/null || { cat "$logf" >&2; die "relay ($name) exited before starting"; }
		sleep 0.1
	done
	[[ -n $line ]] || { tail -n 20 "$logf" >&2; die "relay ($name) did not start within ${START_TIMEOUT}s"; }
	if [[ $HAVE_JQ == 1 ]]; then
		RELAY_INGEST=$(jq -r .ingest <<<"$line")
		RELAY_ADMIN=$(jq -r .admin <<<"$line")
	else
		RELAY_INGEST=$(sed -n 's/.*"ingest":"\([^"]*\)".*/\1/p' <<<"$line")
		RELAY_ADMIN=$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' <<<"$line")
	fi
	[[ $RELAY_INGEST == 127.0.0.1:* && $RELAY_ADMIN == 127.0.0.1:* ]] || die "relay ($name): cannot read its addresses from: $line"
}

# metric ADMIN NAME: the sum of every series of the metric NAME.
metric() {
	local out
	out=$(curl -fsS --max-time 10 "http://$1/metrics") || die "cannot read http://$1/metrics"
	awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%d\n", s }' <<<"$out"
}

# load NAME URL ARGS...: runs relay-load against URL with the sample events;
# the JSON report goes to NAME.json.
load() {
	local name=$1 url=$2
	shift 2
	"$BIN/relay-load" --url "$url" --secret "$SECRET" --events "$EVENTS" --json "$@" \
		>"$WORK/$name.json" 2>"$WORK/$name.err" || { cat "$WORK/$name.err" >&2; die "load $name failed"; }
}

# write_config FILE DIR SYNC SINK_URL [http sink extra YAML lines]: the
# quick-start config (its rules and a failures file sink) plus an archive
# file sink (no fsync) and an http sink, both getting every event.
write_config() {
	local file=$1 dir=$2 sync=$3 url=$4 extra=${5:-}
	cat >"$file" <<EOF
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_grace: 5s
storage:
  dir: $dir/jetstream
  sync: $sync
  dedupe_window: 24h
sources:
  recall:
    path: /webhooks/recall
    secrets: [$SECRET]
    tolerance: 5m
sinks:
  archive:
    type: file
    path: $dir/events.jsonl
    fsync: false
  failures:
    type: file
    path: $dir/failures.jsonl
  endpoint:
    type: http
    url: http://$url/hook
$extra
rules:
  - name: zoom-captions-failures
    when: event == "transcript.failed" && sub_code startsWith "zoom_"
    sinks: [failures]
  - name: any-failure
    when: status == "failed" || event == "bot.fatal"
    sinks: [failures]
  - name: archive-and-forward-everything
    when: "true"
    sinks: [archive, endpoint]
EOF
}

# forward_config FILE DIR SINK_ADDR [http sink extra YAML lines]: a relay
# (sync 1s) that forwards every event to one http sink.
forward_config() {
	cat >"$1" <<EOF
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_grace: 5s
storage:
  dir: $2/jetstream
  sync: 1s
sources:
  recall:
    secrets: [$SECRET]
sinks:
  endpoint:
    type: http
    url: http://$3/hook
${4:-}
rules:
  - name: forward-everything
    when: "true"
    sinks: [endpoint]
EOF
}

# mb KB: kilobytes as megabytes, one decimal.
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
vm() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

log "building relay and relay-load"
BIN=$WORK/bin
mkdir -p "$BIN"
(cd "$ROOT" && go build -o "$BIN/" ./cmd/relay ./cmd/relay-load) || die "go build failed"
[[ -d $EVENTS ]] || die "no sample events in $EVENTS"

declare -A FLOOR FSYNC
RELAY_ROWS=()
E2E_ROWS=()
MEM_ROW=""
FAULT_ROW=""
declare -A RELAY_OK

# --- a, b: floors -----------------------------------------------------------
# floor_once NAME KIND C: one floor server and one load at concurrency C;
# the report is NAME.json, the 2xx rate is in LAST_RPS.
floor_once() {
	local name=$1 kind=$2 c=$3 args=(--floor 127.0.0.1:0 --secret "$SECRET")
	if [[ $kind == fsync ]]; then
		mkdir -p "$WORK/$name"
		args+=(--floor-fsync "$WORK/$name/store.jsonl")
	fi
	start_loadtool "$name-server" "${args[@]}"
	log "$kind c=$c ($DURATION) on $LAST_ADDR"
	load "$name" "http://$LAST_ADDR/webhooks/recall" --concurrency "$c" --duration "$DURATION"
	stop_proc "$LAST_PID"
	LAST_RPS=$(jfield "$WORK/$name.json" ok_throughput_rps)
}

run_floor() { # KIND (floor|fsync)
	local kind=$1 c
	for c in $CONCURRENCIES; do
		floor_once "$kind-c$c" "$kind" "$c"
		if [[ $kind == floor ]]; then FLOOR[$c]=$LAST_RPS; else FSYNC[$c]=$LAST_RPS; fi
		FLOOR_ROWS+=("| $kind | $c | $LAST_RPS | $(jfield "$WORK/$kind-c$c.json" p50_ms) | $(jfield "$WORK/$kind-c$c.json" p99_ms) | $(non2xx "$WORK/$kind-c$c.json") |")
	done
}
FLOOR_ROWS=()
wants floor && run_floor floor
wants fsync && run_floor fsync

# --- c: relay throughput ----------------------------------------------------
# relay_start NAME SYNC [RECEIVER ARGS...]: a relay-load --receive process
# (RECV_PID, RECV_ADDR) and a relay with write_config's config sending to it
# (RELAY_PID, RELAY_INGEST, RELAY_ADMIN); the http sink's extra YAML lines,
# if any, come from RELAY_SINK_EXTRA.
relay_start() {
	local name=$1 sync=$2 dir=$WORK/$1
	shift 2
	mkdir -p "$dir"
	start_loadtool "$name-receiver" --receive 127.0.0.1:0 "$@"
	RECV_PID=$LAST_PID
	RECV_ADDR=$LAST_ADDR
	write_config "$dir/relay.yaml" "$dir" "$sync" "$RECV_ADDR" "${RELAY_SINK_EXTRA:-}"
	start_relay "$name" "$dir/relay.yaml"
}

# relay_stop NAME: stops what relay_start started, drops the store and
# waits for the kernel to write back what the run left dirty, so that it
# does not land in the next measurement. (It does not cure the stalls this
# VM's disk shows after the heaviest runs: see the e2e section.)
relay_stop() {
	stop_proc "$RELAY_PID"
	stop_proc "$RECV_PID"
	rm -rf "$WORK/$1/jetstream"
	sync
}

# relay_once NAME SYNC C: relay_start, one load at concurrency C, relay_stop;
# the report is NAME.json, the 2xx rate is in LAST_RPS and the deliveries
# still pending at the end in LAST_PENDING.
relay_once() {
	local name=$1 sync=$2 c=$3
	relay_start "$name" "$sync"
	log "relay sync=$sync c=$c ($DURATION) on $RELAY_INGEST"
	load "$name" "http://$RELAY_INGEST/webhooks/recall" --concurrency "$c" --duration "$DURATION"
	LAST_PENDING=$(metric "$RELAY_ADMIN" relay_pending_deliveries)
	relay_stop "$name"
	LAST_RPS=$(jfield "$WORK/$name.json" ok_throughput_rps)
}

# --- d: end-to-end latency at a steady rate ---------------------------------
# First of the relay runs: after the heavy ones (the 8,000/s sustained run
# above all) this VM's disk kept stalling fsyncs even after sync(1), which put
# up to 250 ms into this p99 for the builds before and after the 2026-11-27
# work alike; run first, they mostly measured 2-6 ms. (The disk also stalls
# on its own: single fsyncs of up to 0.6 s in a plain write+fsync loop.)
if wants e2e; then
	# The template must render: check it with a dry run first.
	dir=$WORK/e2e-check
	mkdir -p "$dir"
	write_config "$dir/relay.yaml" "$dir" 1s 127.0.0.1:9 "    body_template: '$E2E_TEMPLATE'"
	"$BIN/relay" test -c "$dir/relay.yaml" "$EVENTS/recording.done.json" >"$dir/dryrun.txt" 2>&1 ||
		{ cat "$dir/dryrun.txt" >&2; die "relay test failed on the e2e config"; }
	grep -q 'received_at.*2025-01-01T00:00:00Z' "$dir/dryrun.txt" ||
		{ cat "$dir/dryrun.txt" >&2; die "the e2e body_template does not render received_at"; }

	for sync in 1s always; do
		name=e2e-$sync
		RELAY_SINK_EXTRA="    body_template: '$E2E_TEMPLATE'" relay_start "$name" "$sync" --json
		log "e2e sync=$sync rate=$E2E_RATE/s ($DURATION) on $RELAY_INGEST"
		load "$name" "http://$RELAY_INGEST/webhooks/recall" --rate "$E2E_RATE" --concurrency 64 --duration "$DURATION"
		f=$WORK/$name.json
		want=$(jfield "$f" ok)
		got=0
		for ((i = 0; i < DRAIN_TIMEOUT * 10; i++)); do
			got=$(curl -fsS --max-time 5 "http://$RECV_ADDR/stats" | grep -o '"received":[0-9]*' | cut -d: -f2 || true)
			got=${got:-0}
			((got >= want)) && break
			sleep 0.1
		done
		((got >= want)) || echo "bench.sh: $name: receiver got $got of $want deliveries within ${DRAIN_TIMEOUT}s" >&2
		relay_stop "$name"
		r=$WORK/$name-receiver.out
		E2E_ROWS+=("| $sync | $E2E_RATE | $(jfield "$f" ok) | $(jfield "$f" missed) | $(non2xx "$f") | $(jfield "$f" p50_ms) | $(jfield "$f" p99_ms) | $(jfield "$r" count) | $(jfield "$r" p50_ms) | $(jfield "$r" p99_ms) | $(jfield "$r" max_ms) |")
	done
fi

if wants relay; then
	for sync in 1s always; do
		for c in $CONCURRENCIES; do
			name=relay-$sync-c$c
			relay_once "$name" "$sync" "$c"
			f=$WORK/$name.json
			RELAY_OK[$sync-$c]=$LAST_RPS
			RELAY_ROWS+=("| $sync | $c | $LAST_RPS | $(jfield "$f" p50_ms) | $(jfield "$f" p99_ms) | $(non2xx "$f") | $LAST_PENDING |")
		done
	done
fi

# --- c2: the floor ratio, interleaved ---------------------------------------
# Both rates move by 10-20% from run to run on a shared 2-core machine, so
# the ratio is measured in RATIO_ROUNDS back-to-back pairs (floor, then the
# relay with sync 1s) at concurrency 64, and the median pair is reported.
RATIO_ROWS=()
RATIOS=()
if wants ratio; then
	for ((round = 1; round <= RATIO_ROUNDS; round++)); do
		floor_once "ratio-floor-$round" floor 64
		floor_rps=$LAST_RPS
		relay_once "ratio-relay-$round" 1s 64
		r=$(ratio "$LAST_RPS" "$floor_rps")
		RATIOS+=("$r")
		RATIO_ROWS+=("| $round | $floor_rps | $LAST_RPS | $(non2xx "$WORK/ratio-relay-$round.json") | $LAST_PENDING | $r |")
	done
fi

# drain_time ADMIN: waits (DRAIN_TIMEOUT) for the relay's pending deliveries
# to reach 0 and prints how long that took, in seconds (">N" if they did not).
drain_time() {
	local start_ns left i
	start_ns=$(date +%s%N)
	left=$(metric "$1" relay_pending_deliveries)
	for ((i = 0; i < DRAIN_TIMEOUT * 10 && left > 0; i++)); do
		sleep 0.1
		left=$(metric "$1" relay_pending_deliveries)
	done
	if ((left > 0)); then
		echo ">$DRAIN_TIMEOUT"
	else
		awk -v a="$start_ns" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'
	fi
}

# --- c3: sustained rates ----------------------------------------------------
# At a steady rate the relay should deliver as fast as it accepts: the
# backlog when the load stops stays small and drains at once. Past its
# capacity on these cores the backlog grows for as long as the load lasts.
SUSTAIN_ROWS=()
if wants sustain; then
	for rate in $SUSTAIN_RATES; do
		name=sustain-$rate
		relay_start "$name" 1s
		log "sustain rate=$rate/s ($DURATION) on $RELAY_INGEST"
		load "$name" "http://$RELAY_INGEST/webhooks/recall" --rate "$rate" --concurrency 256 --duration "$DURATION"
		pending=$(metric "$RELAY_ADMIN" relay_pending_deliveries)
		drain=$(drain_time "$RELAY_ADMIN")
		relay_stop "$name"
		f=$WORK/$name.json
		SUSTAIN_ROWS+=("| $rate | $(jfield "$f" ok_throughput_rps) | $(jfield "$f" missed) | $(non2xx "$f") | $(jfield "$f" p99_ms) | $pending | $drain |")
	done
fi

# --- c4: a burst, with and without ingest priority ---------------------------
# Closed loop at concurrency 64 for DURATION, then the time until every
# delivery is made: the default (deliveries give way to a busy ingest) and
# server.ingest_priority.busy_at 0 (they never do).
BURST_ROWS=()
if wants burst; then
	for mode in default off; do
		name=burst-$mode
		saved_env=$RELAY_ENV
		[[ $mode == off ]] && RELAY_ENV="$RELAY_ENV RELAY_SERVER__INGEST_PRIORITY__BUSY_AT=0"
		relay_start "$name" 1s
		RELAY_ENV=$saved_env
		log "burst ingest_priority=$mode c=64 ($DURATION) on $RELAY_INGEST"
		load "$name" "http://$RELAY_INGEST/webhooks/recall" --concurrency 64 --duration "$DURATION"
		pending=$(metric "$RELAY_ADMIN" relay_pending_deliveries)
		drain=$(drain_time "$RELAY_ADMIN")
		relay_stop "$name"
		f=$WORK/$name.json
		BURST_ROWS+=("| $mode | $(jfield "$f" ok) | $(jfield "$f" ok_throughput_rps) | $(jfield "$f" p99_ms) | $pending | $drain |")
	done
fi

# --- e: memory with a dead endpoint -----------------------------------------
if wants mem; then
	name=mem
	dir=$WORK/$name
	mkdir -p "$dir"
	start_loadtool dead-receiver --receive 127.0.0.1:0
	dead=$LAST_ADDR
	stop_proc "$LAST_PID" # now nothing listens there
	forward_config "$dir/relay.yaml" "$dir" "$dead" '    retry:
      max_attempts: 1000
      max_age: 24h'
	start_relay "$name" "$dir/relay.yaml"
	sleep 1
	idle_rss=$(vm "$RELAY_PID" VmRSS)
	log "mem: $MEM_EVENTS events at concurrency $MEM_CONCURRENCY to a relay whose sink is dead ($dead)"
	load "$name" "http://$RELAY_INGEST/webhooks/recall" --concurrency "$MEM_CONCURRENCY" --requests "$MEM_EVENTS"
	sleep 2 # let the failed first attempts settle into their backoff
	rss=$(vm "$RELAY_PID" VmRSS)
	hwm=$(vm "$RELAY_PID" VmHWM)
	pending=$(metric "$RELAY_ADMIN" relay_pending_deliveries)
	stop_proc "$RELAY_PID"
	f=$WORK/$name.json
	MEM_ROW="| $(jfield "$f" ok) | $(jfield "$f" ok_throughput_rps) | $(mb "$idle_rss") | $(mb "$rss") | $(mb "$hwm") | $pending |"
fi

# --- f: history search over many stored events -------------------------------
# api_time URL [RUNS]: the seconds curl took for one GET of URL (admin
# API), the best of RUNS (3).
api_time() {
	local best="" t i
	for ((i = 0; i < ${2:-3}; i++)); do
		t=$(curl -fsS -o /dev/null -w '%{time_total}' --max-time 600 "$1") || die "GET $1 failed"
		if [[ -z $best ]] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t; fi
	done
	echo "$best"
}
HISTORY_ROWS=()
if wants history; then
	name=history
	relay_start "$name" 1s
	log "history: $HISTORY_EVENTS events at concurrency 64 on $RELAY_INGEST"
	load "$name" "http://$RELAY_INGEST/webhooks/recall" --concurrency 64 --requests "$HISTORY_EVENTS"
	accepted=$(jfield "$WORK/$name.json" ok)
	drain=$(drain_time "$RELAY_ADMIN")
	for ((i = 0; i < DRAIN_TIMEOUT * 10; i++)); do
		(($(metric "$RELAY_ADMIN" relay_history_events) >= accepted)) && break
		sleep 0.1
	done
	sleep 2
	events=$(metric "$RELAY_ADMIN" relay_history_events)
	bytes=$(metric "$RELAY_ADMIN" relay_store_bytes)
	disk=$(du -sb "$WORK/$name/jetstream" | cut -f1)
	rss_before=$(vm "$RELAY_PID" VmRSS)
	api="http://$RELAY_ADMIN/api/v1/events"
	t_found=$(api_time "$api?limit=100&where=event%20%3D%3D%20%22transcript.failed%22")
	t_show=$(api_time "$api/$((accepted / 2))")
	t_none=$(api_time "$api?limit=100&where=event%20%3D%3D%20%22none%22" 1)
	stop_proc "$RELAY_PID"
	start_ns=$(date +%s%N)
	start_relay "$name-restart" "$WORK/$name/relay.yaml"
	ready=$(awk -v a="$start_ns" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
	sleep 1
	rss_after=$(vm "$RELAY_PID" VmRSS)
	stop_proc "$RELAY_PID"
	stop_proc "$RECV_PID"
	HISTORY_ROWS+=("| $accepted | $drain | $events | $(awk -v b="$bytes" -v n="$events" 'BEGIN { printf "%.0f", b / n }') | $(awk -v b="$disk" -v n="$events" 'BEGIN { printf "%.0f", b / n }') | $t_found | $t_none | $t_show | $ready | $(mb "$rss_before") | $(mb "$rss_after") |")
	rm -rf "$WORK/$name/jetstream"
fi

# --- g: cluster sizing (MEASURE=cluster) ------------------------------------
# free_port: a loopback TCP port nothing listens on now.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# cpu_ticks PID...: user + system CPU of the processes, in clock ticks.
cpu_ticks() {
	local pid t=0
	for pid in "$@"; do
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
	done
	echo "$t"
}

# cluster_config FILE DIR RECEIVER: a relay's config in cluster mode (every
# event archived to a file and forwarded over HTTP).
cluster_config() {
	cat >"$1" <<EOF
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_grace: 5s
storage:
  url: $NATS_URL
  replicas: 3
sources:
  recall:
    secrets: [$SECRET]
sinks:
  archive:
    type: file
    path: $2/events.jsonl
  endpoint:
    type: http
    url: http://$3/hook
rules:
  - name: archive-and-forward-everything
    when: "true"
    sinks: [archive, endpoint]
EOF
}

# js_storage: the bytes the three NATS nodes' JetStream stores hold
# together (each node's /jsz "storage": its replicas of every stream, as the
# file store counts them). Not du: the file store frees the blocks of
# messages deleted earlier (delivered, removed by interest) when it gets to
# it, which shifted du by more than the events measured.
js_storage() {
	local i t=0 b
	for i in 1 2 3; do
		b=$(curl -fsS --max-time 5 "http://127.0.0.1:${HPORT[i]}/jsz" | python3 -c 'import json, sys; print(json.load(sys.stdin)["storage"])')
		t=$((t + b))
	done
	echo "$t"
}

# split_load NAME N ADMIN: closed-loop load at concurrency 64 split over
# the first N relays of CR_INGEST for DURATION, then the drain (ADMIN's
# pending deliveries, which count every relay's). Sets SPLIT_RPS, accepted/s
# over all of them, and SPLIT_CPU, the CPU of the N relays and of the NATS
# nodes (load and drain) per accepted event.
split_load() {
	local name=$1 n=$2 i p ok br bn pids=()
	br=$(cpu_ticks "${CR_PIDS[@]:0:n}")
	bn=$(cpu_ticks "${NATS_PIDS[@]}")
	for ((i = 0; i < n; i++)); do
		load "$name-$i" "http://${CR_INGEST[i]}/webhooks/recall" --concurrency $((64 / n + (i < 64 % n ? 1 : 0))) --duration "$DURATION" &
		pids+=("$!")
	done
	for p in "${pids[@]}"; do wait "$p" || die "load $name failed"; done
	drain "$3"
	br=$(($(cpu_ticks "${CR_PIDS[@]:0:n}") - br))
	bn=$(($(cpu_ticks "${NATS_PIDS[@]}") - bn))
	SPLIT_RPS=$(for ((i = 0; i < n; i++)); do jfield "$WORK/$name-$i.json" ok_throughput_rps; done | awk '{ s += $1 } END { printf "%.0f", s }')
	ok=$(for ((i = 0; i < n; i++)); do jfield "$WORK/$name-$i.json" ok; done | awk '{ s += $1 } END { print s }')
	SPLIT_CPU=$(awk -v r="$br" -v m="$bn" -v k="$ticks" -v n="$ok" 'BEGIN { printf "relays %.0f µs, NATS %.0f µs", r * 1e6 / k / n, m * 1e6 / k / n }')
}

# drain ADMIN: waits (bounded) until the relay has nothing pending.
drain() {
	[[ $(drain_time "$1") != ">"* ]] || echo "bench.sh: deliveries still pending after ${DRAIN_TIMEOUT}s" >&2
}

CLUSTER_ROWS=()
if wants cluster; then
	command -v python3 >/dev/null || die "MEASURE=cluster needs python3 (to find free ports)"
	(cd "$ROOT" && go build -o "$BIN/nats-server" github.com/nats-io/nats-server/v2) || die "go build nats-server failed"
	NATS_PIDS=()
	routes=""
	declare -a CPORT PPORT HPORT
	for i in 1 2 3; do
		CPORT[i]=$(free_port)
		PPORT[i]=$(free_port)
		HPORT[i]=$(free_port)
		routes+="${routes:+,}nats-route://127.0.0.1:${PPORT[i]}"
	done
	for i in 1 2 3; do
		mkdir -p "$WORK/nats$i"
		"$BIN/nats-server" --name "n$i" --addr 127.0.0.1 --port "${CPORT[i]}" --http_port "${HPORT[i]}" --jetstream --store_dir "$WORK/nats$i" \
			--cluster_name relay-bench --cluster "nats://127.0.0.1:${PPORT[i]}" --routes "$routes" \
			>"$WORK/nats$i.log" 2>&1 &
		NATS_PIDS+=("$!")
		PIDS+=("$!")
	done
	NATS_URL="nats://127.0.0.1:${CPORT[1]},nats://127.0.0.1:${CPORT[2]},nats://127.0.0.1:${CPORT[3]}"
	ticks=$(getconf CLK_TCK)

	start_loadtool cluster-receiver --receive 127.0.0.1:0
	recv_pid=$LAST_PID
	recv=$LAST_ADDR
	for r in r1 r2 r3; do
		mkdir -p "$WORK/cluster-$r"
		cluster_config "$WORK/cluster-$r/relay.yaml" "$WORK/cluster-$r" "$recv"
	done
	START_TIMEOUT=90 start_relay cluster-r1 "$WORK/cluster-r1/relay.yaml"
	r1_pid=$RELAY_PID r1_ingest=$RELAY_INGEST r1_admin=$RELAY_ADMIN

	for rate in 100 1000; do
		log "cluster: one relay at a steady $rate/s ($DURATION)"
		before_relay=$(cpu_ticks "$r1_pid")
		before_nats=$(cpu_ticks "${NATS_PIDS[@]}")
		load "cluster-rate$rate" "http://$r1_ingest/webhooks/recall" --rate "$rate" --concurrency 64 --duration "$DURATION"
		drain "$r1_admin"
		relay_t=$(($(cpu_ticks "$r1_pid") - before_relay))
		nats_t=$(($(cpu_ticks "${NATS_PIDS[@]}") - before_nats))
		n=$(jfield "$WORK/cluster-rate$rate.json" ok)
		CLUSTER_ROWS+=("| CPU per event at a steady $rate/s: the relay; the three NATS nodes together | $(awk -v t="$relay_t" -v k="$ticks" -v n="$n" 'BEGIN { printf "%.0f µs", t * 1e6 / k / n }'); $(awk -v t="$nats_t" -v k="$ticks" -v n="$n" 'BEGIN { printf "%.0f µs", t * 1e6 / k / n }') ($n events, delivered) |")
	done

	CR_PIDS=("$r1_pid") CR_INGEST=("$r1_ingest")
	for n in 1 2 3; do
		if ((n > 1)); then
			START_TIMEOUT=90 start_relay "cluster-r$n" "$WORK/cluster-r$n/relay.yaml"
			CR_PIDS+=("$RELAY_PID") CR_INGEST+=("$RELAY_INGEST")
		fi
		log "cluster: accepted/s at concurrency 64 split over $n relay(s) ($DURATION)"
		split_load "cluster-split$n" "$n" "$r1_admin"
		((n == 1)) && one=$SPLIT_RPS
		CLUSTER_ROWS+=("| accepted/s at concurrency 64 split over $n relay(s) (the same two cores) | $SPLIT_RPS ($(awk -v a="$SPLIT_RPS" -v b="$one" 'BEGIN { printf "%.2f", a / b }')×); CPU per event: $SPLIT_CPU |")
	done

	log "cluster: disk per stored event (2,000 events kept behind a dead endpoint)"
	for pid in "${CR_PIDS[@]}"; do stop_proc "$pid"; done
	stop_proc "$recv_pid" # the endpoint is dead from now on: events stay stored
	START_TIMEOUT=90 start_relay cluster-disk "$WORK/cluster-r1/relay.yaml"
	before=$(js_storage)
	load cluster-disk "http://$RELAY_INGEST/webhooks/recall" --requests 2000 --concurrency 16
	after=$(js_storage)
	for ((i = 0; i < 10; i++)); do # followers may still be applying the last writes
		sleep 1
		now=$(js_storage)
		[[ $now == "$after" ]] && break
		after=$now
	done
	stop_proc "$RELAY_PID"
	per=$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.0f", (a - b) / 2000 }')
	body=$(cat "$EVENTS"/*.json | wc -c | awk -v n="$(ls "$EVENTS"/*.json | wc -l)" '{ printf "%.0f", $1 / n }')
	CLUSTER_ROWS+=("| bytes stored per event (JetStream's count; bodies of $body bytes on average), the three replicas together | $per bytes |")
	CLUSTER_ROWS+=("| disk for one day of stored events at 100/s; at 1,000/s | $(awk -v p="$per" 'BEGIN { printf "%.1f GB; %.1f GB", p * 100 * 86400 / 1e9, p * 1000 * 86400 / 1e9 }') |")
	for pid in "${NATS_PIDS[@]}"; do stop_proc "$pid"; done
fi

# --- f: a sink down for an outage, then back ---------------------------------
# seconds DURATION: a duration in whole s, m or h units, in seconds.
seconds() {
	case $1 in
	*h) echo $((${1%h} * 3600)) ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) die "FAULT_OUTAGE: want a duration such as 60s, 10m or 1h, got $1" ;;
	esac
}

# recv_stat ADDR KEY: one count from a receiver's /stats.
recv_stat() {
	local v
	v=$(curl -fsS --max-time 5 "http://$1/stats" | grep -o "\"$2\":[0-9]*" | cut -d: -f2 || true)
	echo "${v:-0}"
}

if wants fault; then
	name=fault
	dir=$WORK/$name
	mkdir -p "$dir"
	outage_s=$(seconds "$FAULT_OUTAGE")
	((outage_s > 0)) || die "FAULT_OUTAGE must be positive"
	rate=$(awk -v n="$FAULT_EVENTS" -v s="$outage_s" 'BEGIN { printf "%.3f", n / s }')
	start_loadtool fault-receiver --receive 127.0.0.1:0 --down-until "$dir/up" --count-keys --json
	RECV_PID=$LAST_PID
	RECV_ADDR=$LAST_ADDR
	forward_config "$dir/relay.yaml" "$dir" "$RECV_ADDR"
	start_relay "$name" "$dir/relay.yaml"
	log "fault: $FAULT_EVENTS events at $rate/s over a $FAULT_OUTAGE outage of $RECV_ADDR"
	load "$name" "http://$RELAY_INGEST/webhooks/recall" --rate "$rate" --concurrency 16 --requests "$FAULT_EVENTS"
	f=$WORK/$name.json
	accepted=$(jfield "$f" ok)
	refused=$(recv_stat "$RECV_ADDR" refused)
	dead_before=$(metric "$RELAY_ADMIN" relay_dead_letters)
	touch "$dir/up"
	log "fault: the endpoint is back; it refused $refused attempts while down; waiting for $accepted deliveries"
	up_ns=$(date +%s%N)
	got=0
	for ((i = 0; i < DRAIN_TIMEOUT * 10; i++)); do
		got=$(recv_stat "$RECV_ADDR" unique_keys)
		((got >= accepted)) && break
		sleep 0.1
	done
	if ((got >= accepted)); then
		drain=$(awk -v a="$up_ns" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
	else
		drain=">$DRAIN_TIMEOUT"
	fi
	repeats=$(recv_stat "$RECV_ADDR" duplicate_keys)
	dead=$(metric "$RELAY_ADMIN" relay_dead_letters)
	pending=$(metric "$RELAY_ADMIN" relay_pending_deliveries)
	hwm=$(vm "$RELAY_PID" VmHWM)
	opened=$(grep -c '"msg":"sink breaker opened' "$WORK/$name.log" || true)
	stop_proc "$RELAY_PID"
	stop_proc "$RECV_PID"
	FAULT_ROW="| $FAULT_OUTAGE | $FAULT_EVENTS | $accepted | $got | $repeats | $((accepted - got)) | $refused | $opened | $drain | $dead_before / $dead | $pending | $(mb "$hwm") |"
fi

# --- g: cost per event against a peer (MEASURE=peer) -------------------------
# The same job three ways, in interleaved rounds: verify the Svix signature,
# archive every event as one line to a file (no fsync), POST every
# transcript.failed event to a relay-load --receive endpoint. The relay runs
# docs/bench/peer-relay.yaml with storage.sync 1s and always; the peer is
# Benthos v4.27.0 running docs/bench/peer-benthos.yaml (no durability, no
# dedupe); the floor is relay-load --floor (verify + parse, nothing else).
# relay-intake is the relay at sync 1s with the same config less its rules:
# every event verified, deduplicated and stored (history keeps it), none
# routed, so nothing to deliver. It is no peer; it shows how much of the
# relay's cost is intake, the ceiling for the columns the deliveries share.
# Columns: accepted/s closed loop at concurrency 64 and 16; delivered/s at
# 64 = archive lines written from the first request until the relay's
# relay_pending_deliveries reads 0 again (Benthos: until its archive stops
# growing), over that time; CPU per event (utime + stime from /proc/PID/stat
# of the one process, from the first request to the last delivery) at an
# open-loop steady PEER_RATE/s. Every run starts from a fresh directory,
# sends a PEER_WARMUP warm-up whose deliveries are drained before measuring,
# and checks that each acknowledged id is in the archive exactly once.

# benthos_bin: the Benthos v4.27.0 binary, built once into BENTHOS_CACHE
# from a scratch module (its main imports public/components/io and
# public/components/pure only) and kept there between runs.
benthos_bin() {
	local dir=$BENTHOS_CACHE/benthos-v4.27.0
	if [[ -x $dir/benthos ]]; then
		echo "$dir/benthos"
		return 0
	fi
	log "building Benthos v4.27.0 from the module proxy into $dir (once)"
	mkdir -p "$dir/src"
	cat >"$dir/src/go.mod" <<'EOF'
module relaybench/benthos

go 1.22

require github.com/benthosdev/benthos/v4 v4.27.0
EOF
	cat >"$dir/src/main.go" <<'EOF'
package main

import (
	"context"

	_ "github.com/benthosdev/benthos/v4/public/components/io"
	_ "github.com/benthosdev/benthos/v4/public/components/pure"
	"github.com/benthosdev/benthos/v4/public/service"
)

func main() {
	service.RunCLI(context.Background())
}
EOF
	(cd "$dir/src" && GOFLAGS=-mod=mod go mod tidy && go build -o "$dir/benthos.tmp" . && mv "$dir/benthos.tmp" "$dir/benthos") >&2 ||
		die "building Benthos failed (it needs the Go module proxy once)"
	echo "$dir/benthos"
}

now_ns() { date +%s%N; }

# wait_port NAME PID ADDR: waits until something answers HTTP on ADDR.
wait_port() {
	local i
	for ((i = 0; i < START_TIMEOUT * 10; i++)); do
		curl -s -o /dev/null --max-time 1 "http://$3/" && return 0
		kill -0 "$2" 2>/dev/null || die "$1 exited before listening on $3"
		sleep 0.1
	done
	die "$1 did not listen on $3 within ${START_TIMEOUT}s"
}

# peer_start SYS NAME: starts SYS (floor, relay-1s, relay-always,
# relay-intake, benthos)
# with its receiver in a fresh directory WORK/NAME; sets P_PID, P_URL,
# P_ADMIN (relay only), P_FILE (the archive; none for the floor or relay-intake) and
# P_RECV (the receiver's pid, or empty).
peer_start() {
	local sys=$1 name=$2 dir=$WORK/$2 addr
	mkdir -p "$dir"
	P_RECV="" P_ADMIN="" P_FILE=""
	if [[ $sys == floor ]]; then
		start_loadtool "$name-floor" --floor 127.0.0.1:0 --secret "$SECRET"
		P_PID=$LAST_PID
		P_URL=http://$LAST_ADDR/webhooks/recall
		return 0
	fi
	start_loadtool "$name-receiver" --receive 127.0.0.1:0
	P_RECV=$LAST_PID
	P_FILE=$dir/events.jsonl
	if [[ $sys == benthos ]]; then
		addr=127.0.0.1:$(free_port)
		BENTHOS_ADDR=$addr BENTHOS_KEY_B64=${SECRET#whsec_} BENTHOS_FILE=$P_FILE RECV_URL=http://$LAST_ADDR/hook \
			"$BENTHOS" -c "$ROOT/docs/bench/peer-benthos.yaml" >"$WORK/$name.log" 2>&1 &
		P_PID=$!
		PIDS+=("$P_PID")
		wait_port "benthos ($name)" "$P_PID" "$addr"
		P_URL=http://$addr/webhooks/recall
		return 0
	fi
	local saved_env=$RELAY_ENV config=$ROOT/docs/bench/peer-relay.yaml sync=${sys#relay-}
	if [[ $sys == relay-intake ]]; then
		# The same config less its rules: nothing is routed or archived.
		config=$dir/peer-intake.yaml
		sed '/^rules:/,$d' "$ROOT/docs/bench/peer-relay.yaml" >"$config"
		echo 'rules: []' >>"$config"
		sync=1s
		P_FILE=""
	fi
	RELAY_ENV="$RELAY_ENV RELAY_BENCH_SECRET=$SECRET RELAY_BENCH_DATA=$dir RELAY_BENCH_RECV=http://$LAST_ADDR/hook RELAY_BENCH_SYNC=$sync"
	start_relay "$name" "$config"
	RELAY_ENV=$saved_env
	P_PID=$RELAY_PID
	P_URL=http://$RELAY_INGEST/webhooks/recall
	P_ADMIN=$RELAY_ADMIN
}

# peer_stop NAME: stops what peer_start started and drops its directory.
peer_stop() {
	stop_proc "$P_PID"
	[[ -n $P_RECV ]] && stop_proc "$P_RECV"
	rm -rf "${WORK:?}/$1"
	sync
}

# peer_delivered SYS: waits (bounded) until every accepted event is
# delivered and prints the time it was, in ns: the relay's
# relay_pending_deliveries read 0; Benthos's archive grew last (it has no
# backlog to read, so it counts as done once its size has not changed for
# a second); the floor delivers nothing (now).
peer_delivered() {
	local sys=$1 i size last="" last_ns
	last_ns=$(now_ns)
	case $sys in
	floor) ;;
	benthos)
		for ((i = 0; i < DRAIN_TIMEOUT * 20; i++)); do
			size=$(stat -c %s "$P_FILE" 2>/dev/null || echo 0)
			if [[ $size != "$last" ]]; then
				last=$size
				last_ns=$(now_ns)
			elif (($(now_ns) - last_ns > 1000000000)); then
				break
			fi
			sleep 0.05
		done
		;;
	*)
		for ((i = 0; i < DRAIN_TIMEOUT * 20; i++)); do
			[[ $(metric "$P_ADMIN" relay_pending_deliveries) == 0 ]] && break
			sleep 0.05
		done
		last_ns=$(now_ns)
		[[ $(metric "$P_ADMIN" relay_pending_deliveries) == 0 ]] || echo "bench.sh: deliveries still pending after ${DRAIN_TIMEOUT}s" >&2
		;;
	esac
	echo "$last_ns"
}

# peer_lines NAME [IDS FILE...]: relay-load --check of the run's archive
# against the acknowledged ids; the report is NAME.check.json.
peer_lines() {
	local name=$1 args=() f
	shift
	for f in "$@"; do args+=(--ids "$f"); done
	"$BIN/relay-load" --check "$P_FILE" "${args[@]}" >"$WORK/$name.check.json" 2>"$WORK/$name.check.err" ||
		{ cat "$WORK/$name.check.err" >&2; die "check $name failed"; }
}

# peer_run SYS NAME C [RATE]: one measured run of SYS at concurrency C
# (closed loop, or open loop at RATE/s); sets P_ACCEPT (2xx/s), P_DELIVERED
# (archive lines/s from the first request to the last delivery), P_CPU (µs
# of CPU per accepted event) and P_CHECK (ok, or what was wrong).
peer_run() {
	local sys=$1 name=$2 c=$3 rate=${4:-} loadargs=() t0 t1 ticks0 ticks1 lines0=0 lines1=0 ok f
	loadargs=(--concurrency "$c")
	[[ -n $rate ]] && loadargs=(--concurrency 256 --rate "$rate")
	peer_start "$sys" "$name"
	log "peer: $sys ${rate:+rate=$rate/s }c=$c ($PEER_WARMUP warm-up + $PEER_DURATION) on $P_URL"
	load "$name-warm" "$P_URL" "${loadargs[@]}" --duration "$PEER_WARMUP" --ids-out "$WORK/$name-warm.ids"
	peer_delivered "$sys" >/dev/null
	if [[ -n $P_FILE ]]; then
		peer_lines "$name-warm"
		lines0=$(jfield "$WORK/$name-warm.check.json" lines)
	fi
	ticks0=$(cpu_ticks "$P_PID")
	t0=$(now_ns)
	load "$name" "$P_URL" "${loadargs[@]}" --duration "$PEER_DURATION" --ids-out "$WORK/$name.ids"
	t1=$(peer_delivered "$sys")
	ticks1=$(cpu_ticks "$P_PID")
	f=$WORK/$name.json
	ok=$(jfield "$f" ok)
	P_ACCEPT=$(jfield "$f" ok_throughput_rps)
	P_CPU=$(awk -v t="$((ticks1 - ticks0))" -v k="$CLK_TCK" -v n="$ok" 'BEGIN { if (n > 0) printf "%.0f", t * 1e6 / k / n; else print 0 }')
	P_DELIVERED=0
	P_CHECK=ok
	if [[ -n $P_FILE ]]; then
		peer_lines "$name" "$WORK/$name-warm.ids" "$WORK/$name.ids"
		lines1=$(jfield "$WORK/$name.check.json" lines)
		P_DELIVERED=$(awk -v l="$((lines1 - lines0))" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", l * 1e9 / (b - a) }')
		local missing repeated
		missing=$(jfield "$WORK/$name.check.json" missing)
		repeated=$(jfield "$WORK/$name.check.json" repeated)
		((missing == 0 && repeated == 0)) || P_CHECK="$missing missing, $repeated repeated"
	fi
	(($(non2xx "$f") == 0)) || P_CHECK="$(non2xx "$f") non-2xx; $P_CHECK"
	peer_stop "$name"
	log "peer: $sys: accepted/s $P_ACCEPT, delivered/s $P_DELIVERED, CPU/event ${P_CPU} µs, ids $P_CHECK"
}

# median VALUES...: the median (the lower middle one of an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A PEER_VALS PEER_MED
PEER_ROUND_ROWS=()
PEER_CHECKS=()
if wants peer; then
	command -v python3 >/dev/null || die "MEASURE=peer needs python3 (to find free ports)"
	for sys in $PEER_SYSTEMS; do
		[[ " floor relay-1s relay-always relay-intake benthos " == *" $sys "* ]] || die "PEER_SYSTEMS: unknown system $sys"
	done
	[[ " $PEER_SYSTEMS " == *" benthos "* ]] && BENTHOS=${BENTHOS_BIN:-$(benthos_bin)}
	CLK_TCK=$(getconf CLK_TCK)
	# peer_column KEY C RATE ROUNDS SYSTEMS: interleaved rounds of one column.
	peer_column() {
		local key=$1 c=$2 rate=$3 rounds=$4 systems=$5 r sys
		for ((r = 1; r <= rounds; r++)); do
			for sys in $systems; do
				peer_run "$sys" "peer-$key-$sys-r$r" "$c" "$rate"
				PEER_VALS[$key-accept-$sys]+=" $P_ACCEPT"
				PEER_VALS[$key-delivered-$sys]+=" $P_DELIVERED"
				PEER_VALS[$key-cpu-$sys]+=" $P_CPU"
				PEER_ROUND_ROWS+=("| $key | $r | $sys | $P_ACCEPT | $P_DELIVERED | $P_CPU | $P_CHECK |")
				[[ $P_CHECK == ok ]] || PEER_CHECKS+=("$key round $r $sys: $P_CHECK")
			done
		done
	}
	peer_column c64 64 "" "$PEER_ROUNDS_64" "$PEER_SYSTEMS"
	peer_column c16 16 "" "$PEER_ROUNDS_16" "$PEER_SYSTEMS"
	peer_column rate 64 "$PEER_RATE" "$PEER_CPU_ROUNDS" "$(for sys in $PEER_SYSTEMS; do [[ $sys == relay-always ]] || echo "$sys"; done)"
	for sys in $PEER_SYSTEMS; do
		PEER_MED[$sys-a64]=$(median ${PEER_VALS[c64-accept-$sys]:-})
		PEER_MED[$sys-d64]=$(median ${PEER_VALS[c64-delivered-$sys]:-})
		PEER_MED[$sys-a16]=$(median ${PEER_VALS[c16-accept-$sys]:-})
		PEER_MED[$sys-cpu]=$(median ${PEER_VALS[rate-cpu-$sys]:-})
		PEER_MED[$sys-cpu64]=$(median ${PEER_VALS[c64-cpu-$sys]:-})
		PEER_MED[$sys-cpu16]=$(median ${PEER_VALS[c16-cpu-$sys]:-})
	done
fi

# --- report -----------------------------------------------------------------
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "## relay benchmarks"
echo
echo "- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/^MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
echo "- $(go version | cut -d' ' -f3-), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- DURATION=$DURATION, events: configs/examples/events ($(ls "$EVENTS"/*.json | wc -l) files, cycled), relay log level $LOG_LEVEL"
if ((${#FLOOR_ROWS[@]})); then
	echo
	echo "### Floors (relay-load --floor: verify + parse; fsync: + append and fsync per request)"
	echo
	echo "| floor | concurrency | req/s | p50 ms | p99 ms | non-2xx |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${FLOOR_ROWS[@]}"
fi
if ((${#RELAY_ROWS[@]})); then
	echo
	echo "### Relay throughput (closed loop; file archive + http sink to relay-load --receive)"
	echo
	echo "| storage.sync | concurrency | accepted/s | p50 ms | p99 ms | non-2xx | pending deliveries at end |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${RELAY_ROWS[@]}"
	echo
	echo "| ratio | concurrency | relay/s | floor/s | relay / floor |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	for c in 16 64; do
		if [[ -n ${RELAY_OK[1s-$c]:-} && -n ${FLOOR[$c]:-} ]]; then
			echo "| sync 1s / floor | $c | ${RELAY_OK[1s-$c]} | ${FLOOR[$c]} | $(ratio "${RELAY_OK[1s-$c]}" "${FLOOR[$c]}") |"
		fi
		if [[ -n ${RELAY_OK[always-$c]:-} && -n ${FSYNC[$c]:-} ]]; then
			echo "| sync always / fsync floor | $c | ${RELAY_OK[always-$c]} | ${FSYNC[$c]} | $(ratio "${RELAY_OK[always-$c]}" "${FSYNC[$c]}") |"
		fi
	done
fi
if ((${#RATIO_ROWS[@]})); then
	echo
	echo "### Relay / floor at concurrency 64, sync 1s ($RATIO_ROUNDS interleaved rounds)"
	echo
	echo "| round | floor/s | relay accepted/s | relay non-2xx | pending deliveries at end | relay / floor |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${RATIO_ROWS[@]}"
	echo
	echo "median relay / floor: $(printf '%s\n' "${RATIOS[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
fi
if ((${#SUSTAIN_ROWS[@]})); then
	echo
	echo "### Sustained rates (open loop, sync 1s; file archive + http sink to relay-load --receive)"
	echo
	echo "| rate/s | accepted/s | missed | non-2xx | accept p99 ms | pending deliveries at end | drained in s |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${SUSTAIN_ROWS[@]}"
fi
if ((${#E2E_ROWS[@]})); then
	echo
	echo "### End-to-end latency at a steady rate (open loop; http sink → relay-load --receive)"
	echo
	echo "| storage.sync | rate/s | accepted | missed | non-2xx | accept p50 ms | accept p99 ms | delivered | e2e p50 ms | e2e p99 ms | e2e max ms |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${E2E_ROWS[@]}"
fi
if ((${#BURST_ROWS[@]})); then
	echo
	echo "### A burst at concurrency 64 for $DURATION, then the drain (sync 1s; file archive + http sink)"
	echo
	echo "| ingest_priority | accepted | accepted/s | accept p99 ms | pending deliveries at end | drained in s |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${BURST_ROWS[@]}"
fi
if ((${#HISTORY_ROWS[@]})); then
	echo
	echo "### History: $HISTORY_EVENTS events stored (sync 1s; file archive + http sink), then searched"
	echo
	echo "| accepted | drained in s | in history | store bytes/event | disk bytes/event | list where found, limit 100 s | list where nothing s | show s | restart to ready s | RSS after the drain MB | RSS after restart MB |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${HISTORY_ROWS[@]}"
fi
if ((${#CLUSTER_ROWS[@]})); then
	echo
	echo "### Cluster sizing (three nats-server processes, replicas 3, relays in cluster mode, all on these cores)"
	echo
	echo "| measurement | result |"
	echo "| --- | --- |"
	printf '%s\n' "${CLUSTER_ROWS[@]}"
fi
if [[ -n $MEM_ROW ]]; then
	echo
	echo "### Memory with a dead sink (sync 1s, concurrency $MEM_CONCURRENCY, retries for 24h)"
	echo
	echo "| events accepted | accepted/s | RSS idle MB | RSS after MB | HWM MB | pending deliveries |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
	echo "$MEM_ROW"
fi
if ((${#PEER_ROUND_ROWS[@]})); then
	pm() { echo "${PEER_MED[$1]:-–}"; }
	echo
	echo "### Cost per event against a peer (medians of interleaved rounds; docs/bench/peer-*.yaml; $PEER_DURATION per run)"
	echo
	echo "| | accepted/s c=64 | delivered/s incl. drain, c=64 | accepted/s c=16 | CPU per event at a steady $PEER_RATE/s |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	echo "| verify floor (svix verify + parse, nothing else) | $(pm floor-a64) | – | $(pm floor-a16) | $(pm floor-cpu) µs |"
	echo "| relay \`sync: 1s\` | $(pm relay-1s-a64) ($(ratio "$(pm relay-1s-a64)" "$(pm floor-a64)")×) | $(pm relay-1s-d64) | $(pm relay-1s-a16) ($(ratio "$(pm relay-1s-a16)" "$(pm floor-a16)")×) | $(pm relay-1s-cpu) µs |"
	echo "| relay \`sync: always\` | $(pm relay-always-a64) | $(pm relay-always-d64) | $(pm relay-always-a16) | – |"
	echo "| relay \`sync: 1s\`, no rules (intake alone, nothing delivered; not a peer) | $(pm relay-intake-a64) ($(ratio "$(pm relay-intake-a64)" "$(pm floor-a64)")×) | – | $(pm relay-intake-a16) ($(ratio "$(pm relay-intake-a16)" "$(pm floor-a16)")×) | $(pm relay-intake-cpu) µs |"
	echo "| Benthos v4.27.0 | $(pm benthos-a64) | $(pm benthos-d64) | $(pm benthos-a16) | $(pm benthos-cpu) µs |"
	echo
	# verdict RATIO OP BAR: the ratio and whether it meets the bar.
	verdict() { awk -v r="$1" -v op="$2" -v b="$3" 'BEGIN { if (r == "n/a") { print "n/a (not measured)"; exit } ok = (op == ">=" ? r >= b : (op == "<=" ? r <= b : r < b)); printf "%s (%s %s: %s)", r, op, b, ok ? "met" : "NOT met" }'; }
	echo "| ratio | value |"
	echo "| --- | --- |"
	echo "| c=64 delivered/s, relay 1s / Benthos | $(verdict "$(ratio "$(pm relay-1s-d64)" "$(pm benthos-d64)")" ">=" 1.5) |"
	echo "| c=64 accepted/s, relay 1s / floor | $(verdict "$(ratio "$(pm relay-1s-a64)" "$(pm floor-a64)")" ">=" 0.6) |"
	echo "| c=16 accepted/s, relay 1s / floor | $(verdict "$(ratio "$(pm relay-1s-a16)" "$(pm floor-a16)")" ">=" 0.6) |"
	echo "| c=16 accepted/s, relay 1s / Benthos | $(verdict "$(ratio "$(pm relay-1s-a16)" "$(pm benthos-a16)")" ">=" 1.5) |"
	echo "| c=16 accepted/s, relay always / Benthos | $(verdict "$(ratio "$(pm relay-always-a16)" "$(pm benthos-a16)")" ">=" 1.0) |"
	echo "| CPU per event at $PEER_RATE/s, relay 1s / floor | $(verdict "$(ratio "$(pm relay-1s-cpu)" "$(pm floor-cpu)")" "<=" 2.0) |"
	echo "| CPU per event at $PEER_RATE/s, relay 1s / Benthos | $(verdict "$(ratio "$(pm relay-1s-cpu)" "$(pm benthos-cpu)")" "<" 1.0) |"
	echo
	echo "CPU per event in the closed-loop runs (the one process, first request to last delivery; µs, c=64 / c=16): $(for sys in $PEER_SYSTEMS; do printf '%s %s / %s; ' "$sys" "$(pm "$sys-cpu64")" "$(pm "$sys-cpu16")"; done)"
	echo
	echo "Every acknowledged id in the archive exactly once: $(((${#PEER_CHECKS[@]})) && printf '%s; ' "${PEER_CHECKS[@]}" || echo "yes, in every run")"
	echo
	echo "| column | round | system | accepted/s | delivered/s | CPU µs/event | check |"
	echo "| --- | ---: | --- | ---: | ---: | ---: | --- |"
	printf '%s\n' "${PEER_ROUND_ROWS[@]}"
fi
if [[ -n $FAULT_ROW ]]; then
	echo
	echo "### A sink down for an outage, then back (sync 1s, default retry and breaker)"
	echo
	echo "| outage | events sent | accepted | delivered once | repeats | missing | attempts while down | breaker openings | drained in s | dead letters (at recovery / end) | pending at end | relay peak RSS MB |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	echo "$FAULT_ROW"
fi
