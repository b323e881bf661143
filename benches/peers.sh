#!/usr/bin/env bash
# Sluice side by side with NATS JetStream and RabbitMQ on this machine, in one run.
#
#   benches/peers.sh                      # every system and workload, 3 s of publishing per cell, 3 runs
#   benches/peers.sh --runs 5 --duration 5s   # any further flags go to sluice-peers (see --help)
#
# Installs nats-server and rabbitmq-server with apt if they are missing (without starting the
# system services), builds the Sluice broker and the harness (benches/peers, a workspace member
# that is not a default member, so `cargo test` never builds the peer clients), and writes
# benches/results/<date>.md and benches/results/<date>.svg. The harness starts every server
# itself on 127.0.0.1 under a temporary directory and stops it by pid, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

install_peers() {
    local missing=()
    command -v nats-server >/dev/null || missing+=(nats-server)
    ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server >/dev/null 2>&1 \
        || missing+=(rabbitmq-server)
    [ ${#missing[@]} -eq 0 ] && return
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    # Keep apt from starting a system-wide RabbitMQ (bound to every interface): the harness
    # starts its own. policy-rc.d is removed again only if we created it.
    local policy=/usr/sbin/policy-rc.d created=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
        created=1
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
    [ -z "$created" ] || $sudo rm -f "$policy"
}

install_peers
cargo build --release --bin sluice
cargo build --release -p sluice-peers
target/release/sluice-peers \
    --sluice-bin target/release/sluice --out-dir benches/results "$@"
