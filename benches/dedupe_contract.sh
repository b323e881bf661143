#!/usr/bin/env bash
# Publish throughput with message-id deduplication and a JSON contract, against plain publishing
# of the same broker and of the broker that resolved the queues-and-topics work, all in one run.
#
#   benches/dedupe_contract.sh [ROUNDS]     # default 5 rounds; ~40 s a round, plus the builds
#
# Each round runs every configuration once, in turn, each against a fresh broker on an empty
# data directory, with `sluice-bench --batch 100 --duration 5s` (1 producer, 1 consumer, 16
# batches in flight) from this tree for all of them. Prints each configuration's runs, median
# and broker CPU per message, and the ratios to the two plain figures of the same rounds.
# Needs a full clone (not a shallow one) for the baseline commit, and Linux (/proc, /dev/tcp).
set -euo pipefail

rounds=${1:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
# The commit whose broker set the queues-and-topics figure (README, "Broker performance").
baseline_commit=a711bd6
port=${SLUICE_BENCH_PORT:-7493}
work=$(mktemp -d)
broker_pid=
cleanup() {
    if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; fi
    git -C "$root" worktree remove --force "$work/baseline" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cd "$root"
cargo build --release --quiet --bin sluice --bin sluice-bench
git worktree add --quiet --detach "$work/baseline" "$baseline_commit"
CARGO_TARGET_DIR="$root/target/baseline-$baseline_commit" \
    cargo build --release --quiet --manifest-path "$work/baseline/Cargo.toml" --bin sluice
current="$root/target/release/sluice"
baseline="$root/target/baseline-$baseline_commit/release/sluice"
bench="$root/target/release/sluice-bench"

# One run: leaves "<msgs/s> <broker ns of CPU per message>" in $result. Called directly, not
# in $(...), so that broker_pid reaches cleanup and a failure stops the script.
run() {
    local broker=$1
    shift
    rm -rf "$work/data"
    "$broker" --data-dir "$work/data" --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 \
        >"$work/broker.log" 2>&1 &
    broker_pid=$!
    local ready=
    for _ in $(seq 100); do
        if ! kill -0 "$broker_pid" 2>/dev/null; then break; fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ready=1; break; fi
        sleep 0.1
    done
    if [ -z "$ready" ]; then
        echo "broker $broker did not start on port $port:" >&2
        cat "$work/broker.log" >&2
        exit 1
    fi
    if ! "$bench" --broker "127.0.0.1:$port" --batch 100 --duration 5s "$@" >"$work/bench.txt" 2>&1; then
        cat "$work/bench.txt" "$work/broker.log" >&2
        exit 1
    fi
    local ticks
    ticks=$(awk '{print $14 + $15}' "/proc/$broker_pid/stat")
    kill "$broker_pid"
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=
    local published rate
    published=$(awk '/^published/ {gsub(",", "", $2); print $2}' "$work/bench.txt")
    rate=$(awk '/^published/ {gsub(",", "", $7); print $7}' "$work/bench.txt")
    result="$rate $((ticks * 1000000000 / $(getconf CLK_TCK) / published))"
}

configs=("plain, queues-and-topics broker ($baseline_commit)|$baseline|"
    "plain|$current|"
    "ids + payload_format = json|$current|--ids --json"
    "ids only|$current|--ids"
    "payload_format = json only|$current|--json")
: >"$work/results"
for round in $(seq "$rounds"); do
    for i in "${!configs[@]}"; do
        IFS='|' read -r label broker args <<<"${configs[$i]}"
        # shellcheck disable=SC2086 # the flags are meant to split
        run "$broker" $args
        echo "round $round: $label: $result msgs/s, ns/msg" >&2
        echo "$i $round $result" >>"$work/results"
    done
done

echo
echo "| configuration | publish msgs/s (runs) | median | × plain | × queues-and-topics plain | broker CPU µs / msg |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
for i in "${!configs[@]}"; do
    IFS='|' read -r label _ _ <<<"${configs[$i]}"
    awk -v i="$i" -v label="$label" '
        function median(a, n,   j, k, t) {
            for (j = 2; j <= n; j++) for (k = j; k > 1 && a[k - 1] > a[k]; k--) { t = a[k]; a[k] = a[k - 1]; a[k - 1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        { rate[$1, $2] = $3; cpu[$1, $2] = $4; if ($2 > rounds) rounds = $2 }
        END {
            runs = ""
            for (r = 1; r <= rounds; r++) {
                runs = runs (r > 1 ? ", " : "") sprintf("%.2f M", rate[i, r] / 1e6)
                mine[r] = rate[i, r]; plain[r] = rate[1, r]; base[r] = rate[0, r]; c[r] = cpu[i, r]
            }
            m = median(mine, rounds)
            printf "| %s | %s | %.2f M | %.2f | %.2f | %.2f |\n", label, runs, m / 1e6,
                m / median(plain, rounds), m / median(base, rounds), median(c, rounds) / 1000
        }' "$work/results"
done
