#!/usr/bin/env bash
# Load test: an authenticated GET /api/me over loopback HTTP, driven by wrk
# at a fixed concurrency, against
#   bare      — a plain axum handler (benches/examples/load_server.rs bare),
#   pipeline  — the pipeline bench's stack on memory stores (load_server pipeline),
#   demo      — the reference server, examples/demo, on its embedded SQLite.
# Rounds are interleaved (bare, pipeline, demo, bare, ...) and the median
# round is reported, with each figure as a ratio to bare from the same run,
# and the server's CPU time per request (user + system, from /proc).
# Ends by itself; servers are stopped on exit.
#
#   benches/load/run.sh                   # 3 rounds of 10 s, 64 connections
#   ROUNDS=5 DURATION=20s CONNECTIONS=128 benches/load/run.sh
#   BENCH_FEATURES=mimalloc benches/load/run.sh   # bare and pipeline on mimalloc
#
# Needs wrk (Debian package `wrk`; installed when missing and root/sudo is
# available) and curl. Results: docs/benchmarks.md, "Load test".
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
# One wrk thread: the servers keep the other core (2-core machine).
THREADS="${THREADS:-1}"
PORT_BASE="${PORT_BASE:-18600}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

if ! command -v wrk >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -q wrk >/dev/null
fi

echo "==> building (release)" >&2
cargo build -q --release -p portcullis-demo --bin portcullis-demo
cargo build -q --release -p portcullis-benches --example load_server ${BENCH_FEATURES:+--features "$BENCH_FEATURES"}
bin="$CARGO_TARGET_DIR/release"

work="$(mktemp -d)"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap 'stop_server; rm -rf "$work"' EXIT

wait_port() {
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://$1/health" -m 1 && return 0
        curl -s -o /dev/null "http://$1/api/me" -m 1 && return 0
        sleep 0.05
    done
    echo "server on $1 did not start" >&2
    return 1
}

# Starts target $1 on $2; sets server_pid and TOKEN.
start() {
    local target="$1" addr="$2"
    case "$target" in
        bare | pipeline)
            "$bin/examples/load_server" "$target" "$addr" > "$work/$target.out" 2>&1 &
            server_pid=$!
            wait_port "$addr"
            TOKEN="$(sed -n 's/^token //p' "$work/$target.out")"
            ;;
        demo)
            rm -f "$work"/demo.db*
            PORTCULLIS_DEMO_ADDR="$addr" \
                PORTCULLIS_DATABASE_URL="sqlite://$work/demo.db" \
                PORTCULLIS_JWT_SECRET="load-test-secret-0123456789-abcdefghijklmnop" \
                PORTCULLIS_RATE_LIMIT_RPS=100000000 \
                PORTCULLIS_RATE_LIMIT_BURST=100000000 \
                "$bin/portcullis-demo" > /dev/null 2> "$work/demo.err" &
            server_pid=$!
            wait_port "$addr"
            curl -sf -o /dev/null "http://$addr/api/auth/signup" -H 'content-type: application/json' \
                -d '{"email":"load@example.com","name":"Load","password":"load-test-password"}'
            TOKEN="$(curl -sf "http://$addr/api/auth/login" -H 'content-type: application/json' \
                -d '{"email":"load@example.com","password":"load-test-password"}' |
                sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
            ;;
    esac
    [ -n "$TOKEN" ] || { echo "no token for $target" >&2; return 1; }
    # The request must succeed before it is measured.
    local status
    status="$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/api/me" -H "authorization: Bearer $TOKEN")"
    [ "$status" = 200 ] || { echo "$target: GET /api/me answered $status" >&2; return 1; }
}

# The server's CPU time so far, user and system, in clock ticks.
cpu_ticks() {
    awk '{ print $14, $15 }' "/proc/$server_pid/stat"
}

# wrk's latency in microseconds ("1.23ms" -> 1230).
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") f = 1; else if (u == "ms") f = 1000; else if (u == "s") f = 1000000; else f = 1;
        printf "%.0f", n * f }'
}

targets=(bare pipeline demo)
results="$work/results"
: > "$results"
port=$PORT_BASE
for round in $(seq "$ROUNDS"); do
    for target in "${targets[@]}"; do
        port=$((port + 1))
        addr="127.0.0.1:$port"
        start "$target" "$addr"
        read -r user0 sys0 < <(cpu_ticks)
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
            -H "authorization: Bearer $TOKEN" "http://$addr/api/me" > "$work/wrk.out"
        read -r user1 sys1 < <(cpu_ticks)
        stop_server
        # Server CPU per request: what the layers cost the server, whatever
        # wrk and the kernel's loopback make of the throughput.
        requests="$(awk '/ requests in / {print $1}' "$work/wrk.out")"
        cpu_us() { awk -v t="$1" -v n="$requests" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'; }
        user_us="$(cpu_us $((user1 - user0)))"
        sys_us="$(cpu_us $((sys1 - sys0)))"
        rps="$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")"
        p50="$(to_us "$(awk '$1 == "50%" {print $2}' "$work/wrk.out")")"
        p99="$(to_us "$(awk '$1 == "99%" {print $2}' "$work/wrk.out")")"
        errors="$(awk '/Non-2xx|Socket errors/ {print}' "$work/wrk.out" | tr '\n' ' ')"
        [ -z "$errors" ] || { echo "$target round $round: $errors" >&2; exit 1; }
        echo "$target $round $rps $p50 $p99 $user_us $sys_us" >> "$results"
        printf '  round %s %-9s %10.0f req/s  p50 %6s us  p99 %6s us  server CPU %s + %s us/req\n' \
            "$round" "$target" "$rps" "$p50" "$p99" "$user_us" "$sys_us" >&2
    done
done

# Median round per target (by req/s), ratios to bare's median.
median() { sort -k3,3n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }
bare_rps="$(grep '^bare ' "$results" | median | awk '{print $3}')"
echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, median round; $(nproc) cores, $(date -u +%Y-%m-%d)"
printf '| %-9s | %10s | %9s | %8s | %8s | %17s |\n' target "req/s" "÷ bare" "p50 µs" "p99 µs" "server CPU µs/req"
printf '| %-9s | %10s | %9s | %8s | %8s | %17s |\n' --- --- --- --- --- ---
for target in "${targets[@]}"; do
    read -r _ _ rps p50 p99 user_us sys_us < <(grep "^$target " "$results" | median)
    ratio="$(awk -v a="$rps" -v b="$bare_rps" 'BEGIN { printf "%.2f", a / b }')"
    printf '| %-9s | %10.0f | %8s× | %8s | %8s | %17s |\n' "$target" "$rps" "$ratio" "$p50" "$p99" \
        "$user_us user + $sys_us sys"
done
