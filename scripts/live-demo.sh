#!/usr/bin/env bash
# eipsim live demo: real kernels on both sides of eipsim.
#
#   sudo scripts/live-demo.sh            (root: it makes network namespaces)
#
# Builds three network namespaces (the instance, an Internet host, a VPC
# host), starts `eipsim run` between them with the example topology, runs
# ping, a TCP transfer and a UDP exchange in both directions, shows which
# public address the Internet host saw, prints eipsim's counters, and
# removes everything it made, also on failure or Ctrl-C.
#
# Addresses: documentation ranges for the public side (198.51.100.0/24,
# 203.0.113.0/24) and 172.16.0.0/12 for the VPC, only inside these
# namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "live-demo: run as root (it creates network namespaces and TAP devices)" >&2; exit 1; }
for tool in ip ping python3; do
    command -v "$tool" >/dev/null || { echo "live-demo: needs $tool" >&2; exit 1; }
done

tag="eipsimdemo$$"
INST="$tag-inst"; NET="$tag-inet"; VPC="$tag-vpc"
TI="ed$$i"; TN="ed$$n"; TV="ed$$v"
work=$(mktemp -d)
pid=""

cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    for ns in "$INST" "$NET" "$VPC"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin="${EIPSIM_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin="${CARGO_TARGET_DIR:-target}/release/eipsim"
fi
cp pcaps/demo/topology.toml "$work/topology.toml"
echo "== topology"
"$bin" check "$work/topology.toml"

for ns in "$INST" "$NET" "$VPC"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done

"$bin" run --config "$work/topology.toml" --tap instance="$TI" --tap internet="$TN" --tap vpc="$TV" \
    --report "$work/report.json" > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 100); do grep -q ready "$work/out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$work/out" || { echo "eipsim did not start:"; cat "$work/err"; exit 1; }

ip link set "$TI" netns "$INST"; ip link set "$TN" netns "$NET"; ip link set "$TV" netns "$VPC"
for x in "$INST:$TI" "$NET:$TN" "$VPC:$TV"; do ip -n "${x%%:*}" link set "${x#*:}" up; done
# The instance OS: the private IPs of its NAT ENIs and the EIP of its
# cut-through ENI, default route through eipsim.
for a in 172.16.0.10 172.16.1.10 172.16.1.11 172.16.1.12 203.0.113.12; do
    ip -n "$INST" addr add "$a/32" dev "$TI"
done
ip -n "$INST" route add default dev "$TI"
ip -n "$NET" addr add 198.51.100.7/24 dev "$TN"
ip -n "$NET" route add 203.0.113.0/24 dev "$TN"
ip -n "$VPC" addr add 172.16.100.5/32 dev "$TV"
ip -n "$VPC" route add 172.16.0.0/12 dev "$TV"

step() { echo; echo "== $*"; }

step "ping: instance -> Internet host, Internet host -> NAT EIP and cut-through EIP"
ip netns exec "$INST" ping -c 2 -i 0.2 -W 2 198.51.100.7 | tail -2
ip netns exec "$NET" ping -c 2 -i 0.2 -W 2 203.0.113.10 | tail -2
ip netns exec "$NET" ping -c 2 -i 0.2 -W 2 203.0.113.12 | tail -2

server='
import socket, sys
kind, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "tcp":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind((addr, port)); l.listen(); l.settimeout(10)
    c, peer = l.accept(); n = 0
    while True:
        b = c.recv(65536)
        if not b: break
        n += len(b)
    c.sendall(b"x" * 1000000); c.close()
    print(f"  server {addr}:{port} saw the peer as {peer[0]}:{peer[1]}, received {n} bytes, sent 1000000")
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, port)); s.settimeout(10)
    data, peer = s.recvfrom(2048); s.sendto(b"pong " + data, peer)
    print(f"  server {addr}:{port} saw the peer as {peer[0]}:{peer[1]}")
'
client='
import socket, sys
kind, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "tcp":
    c = socket.create_connection((addr, port), timeout=10); c.sendall(b"y" * 4000000); c.shutdown(socket.SHUT_WR); n = 0
    while True:
        b = c.recv(65536)
        if not b: break
        n += len(b)
    print(f"  client got {n} bytes back from {addr}:{port}")
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.sendto(b"ping", (addr, port))
    print("  client got", s.recvfrom(2048)[0])
'
pair() { # server-ns server-addr client-ns client-target kind port
    ip netns exec "$1" python3 -c "$server" "$5" "$2" "$6" & local sp=$!
    sleep 0.3
    ip netns exec "$3" python3 -c "$client" "$5" "$4" "$6"
    wait "$sp"
}

step "TCP, instance -> Internet (4 MB up, 1 MB down): the Internet host sees the primary ENI's EIP"
pair "$NET" 198.51.100.7 "$INST" 198.51.100.7 tcp 5001
step "TCP, Internet -> the secondary ENI's EIP 203.0.113.13 (NAT to 172.16.1.11); replies need no route"
pair "$INST" 172.16.1.11 "$NET" 203.0.113.13 tcp 8080
step "UDP, instance -> Internet, and Internet -> the cut-through EIP"
pair "$NET" 198.51.100.7 "$INST" 198.51.100.7 udp 5300
pair "$INST" 203.0.113.12 "$NET" 203.0.113.12 udp 5301
step "SIP (UDP 5060) to the NAT EIP: the NAT ALG does not carry it (no answer expected)"
ip netns exec "$NET" python3 -c '
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
s.sendto(b"INVITE", ("203.0.113.10", 5060))
try: s.recvfrom(100); print("  unexpected answer")
except OSError: print("  no answer, as the seed says: use cut-through for SIP")'
step "VPC: instance -> VPC host over the vpc port with its private address"
pair "$VPC" 172.16.100.5 "$INST" 172.16.100.5 udp 5302

step "eipsim's counters"
kill -TERM "$pid"; wait "$pid" || true; pid=""
cat "$work/out" | sed -n '/^stopped/,$p'
