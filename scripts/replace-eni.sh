#!/usr/bin/env bash
# eipsim live rehearsal: replace a secondary ENI while traffic flows.
#
#   sudo scripts/replace-eni.sh          (root: it makes network namespaces)
#
# The seed promises: "When you replace the secondary ENI of an ECS
# instance, the reliability and availability of your service are not
# affected." This script rehearses that with real kernels on both sides of
# `eipsim run`: it builds two network namespaces (the instance, an Internet
# host), starts eipsim with the demo topology plus a detached ENI eth3,
# serves two long TCP transfers from the instance to the Internet host (one
# through the primary ENI's EIP 203.0.113.10, one through eth1's EIP
# 203.0.113.11), and while they run replaces eth1 by eth3 with `eipsim ctl`.
# Then it checks that the primary's transfer arrived intact and without a
# stall, that eth1's transfer ended, and that a new connection to eth3's
# new EIP 203.0.113.30 works; it shows the run's event counters and the
# events the run printed, and removes everything it made, also on failure
# or Ctrl-C. Exit status: 0 if every check held, 1 if not.
#
# The eipsim binary: $EIPSIM_BIN if set, else `cargo build --release`.
#
# Addresses: documentation ranges for the public side (198.51.100.0/24,
# 203.0.113.0/24) and 172.16.0.0/12 for the VPC, only inside these
# namespaces.
set -euo pipefail

bin="${EIPSIM_BIN:-}"
[ -z "$bin" ] || [ "${bin#/}" != "$bin" ] || bin="$PWD/$bin"
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "replace-eni: run as root (it creates network namespaces and TAP devices)" >&2; exit 1; }
for tool in ip python3; do
    command -v "$tool" >/dev/null || { echo "replace-eni: needs $tool" >&2; exit 1; }
done

tag="eipsimrepl$$"
INST="$tag-inst"; NET="$tag-inet"
TI="er$$i"; TN="er$$n"
work=$(mktemp -d)
sock="$work/control.sock"
pid=""
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    for ns in "$INST" "$NET"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin="${CARGO_TARGET_DIR:-target}/release/eipsim"
fi
[ -x "$bin" ] || { echo "replace-eni: no eipsim binary at $bin" >&2; exit 1; }

step() { echo; echo "== $*"; }
failed=0
ok()   { echo "  ok: $*"; }
fail() { echo "  FAILED: $*"; failed=$((failed + 1)); }
ctl()  { "$bin" ctl --socket "$sock" "$@"; }

cp pcaps/demo/topology.toml "$work/topology.toml"
printf '\n[[eni]]\nname = "eth3"\nprivate_ips = ["172.16.3.10"]\nsecurity_groups = ["sg-demo"]\nattached = false\n' \
    >> "$work/topology.toml"
step "topology: the demo's, plus eth3, declared but not attached"
"$bin" check "$work/topology.toml"

for ns in "$INST" "$NET"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done

"$bin" run --config "$work/topology.toml" --tap instance="$TI" --tap internet="$TN" \
    --control "$sock" > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 100); do grep -q ready "$work/out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$work/out" || { echo "eipsim did not start:"; cat "$work/err"; exit 1; }

ip link set "$TI" netns "$INST"; ip link set "$TN" netns "$NET"
for x in "$INST:$TI" "$NET:$TN"; do ip -n "${x%%:*}" link set "${x#*:}" up; done
# The instance OS: the private IPs of its attached NAT ENIs and the EIP of
# its cut-through ENI, default route through eipsim.
for a in 172.16.0.10 172.16.1.10 172.16.1.11 172.16.1.12 203.0.113.12; do
    ip -n "$INST" addr add "$a/32" dev "$TI"
done
ip -n "$INST" route add default dev "$TI"
ip -n "$NET" addr add 198.51.100.7/24 dev "$TN"
ip -n "$NET" route add 203.0.113.0/24 dev "$TN"

# The instance's server: LEN pseudo-random bytes from SEED, 64 KiB every
# 5 ms (about 13 MB/s); prints the SHA-256 of what it means to send, then
# how far it got.
server='
import hashlib, random, socket, sys, time
addr, port, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = random.Random(seed).randbytes(n)
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((addr, port)); l.listen(); l.settimeout(10)
print("sha256", hashlib.sha256(data).hexdigest(), flush=True)
c, peer = l.accept(); c.settimeout(3); sent = 0
try:
    for i in range(0, n, 65536):
        c.sendall(data[i:i + 65536]); sent += len(data[i:i + 65536]); time.sleep(0.005)
    c.close(); how = "all sent"
except OSError as e:
    how = f"stopped: {e or type(e).__name__}"
print("sent", sent, "peer", f"{peer[0]}:{peer[1]}", how, flush=True)
'
# The Internet host's client: reads until the end or 2 s of silence; prints
# bytes, SHA-256, the longest gap between reads (from the connect) and why
# it stopped.
client='
import hashlib, socket, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((addr, port), timeout=5); s.settimeout(2)
h = hashlib.sha256(); got = 0; worst = 0.0; last = time.monotonic(); why = "closed by the server"
while True:
    try:
        b = s.recv(65536)
    except socket.timeout:
        why = "no data for 2 s"; break
    except OSError as e:
        why = str(e); break
    if not b:
        break
    now = time.monotonic(); worst = max(worst, now - last); last = now
    got += len(b); h.update(b)
print(got, h.hexdigest(), round(worst * 1000), why, flush=True)
'
bg() { # namespace output-file program args...
    local ns=$1 out=$2; shift 2
    ip netns exec "$ns" python3 -c "$@" > "$out" 2>&1 &
    pids+=($!)
}
wait_for() { # file pattern
    for _ in $(seq 50); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "  timed out waiting for $2 in $1:"; cat "$1"; return 1
}

LEN=$((24 << 20))
step "two transfers of $((LEN >> 20)) MiB from the instance to the Internet host (198.51.100.7)"
bg "$INST" "$work/s0" "$server" 172.16.0.10 80 "$LEN" 5
bg "$INST" "$work/s1" "$server" 172.16.1.10 443 "$LEN" 6
wait_for "$work/s0" sha256; wait_for "$work/s1" sha256
bg "$NET" "$work/c0" "$client" 203.0.113.10 80; c0=$!
bg "$NET" "$work/c1" "$client" 203.0.113.11 443; c1=$!
echo "  eth0: 203.0.113.10:80  -> 172.16.0.10:80   (the primary ENI)"
echo "  eth1: 203.0.113.11:443 -> 172.16.1.10:443  (the secondary ENI to replace)"
sleep 0.6

step "while they run: replace eth1 by eth3 (eipsim ctl)"
echo "\$ eipsim ctl detach-eni eth0      (the primary: the cloud refuses)"
code=0; ctl detach-eni eth0 | sed 's/^/  /' || code=$?
if [ "$code" = 1 ]; then ok "refused (exit 1)"; else fail "detaching the primary ENI: exit $code, expected 1 (refused)"; fi
echo "\$ eipsim ctl detach-eni eth1"
ctl detach-eni eth1 > "$work/detach" || fail "detach-eni eth1 not applied"
sed 's/^/  /' "$work/detach"
if grep -q "172.16.1.10:443 .*eni_detached" "$work/detach"; then
    ok "the flow that ended is eth1's transfer"
else
    fail "eth1's transfer is not among the flows ended"
fi
echo "\$ eipsim ctl attach-eni eth3"
ctl attach-eni eth3 | sed 's/^/  /' || fail "attach-eni eth3 not applied"
echo "\$ eipsim ctl associate-eip 203.0.113.30 --eni eth3 --mode nat"
ctl associate-eip 203.0.113.30 --eni eth3 --mode nat | sed 's/^/  /' || fail "associate-eip not applied"
echo "\$ ip addr add 172.16.3.10/32 dev <instance device>   (the instance OS brings eth3's address up)"
ip -n "$INST" addr add 172.16.3.10/32 dev "$TI"

step "the primary ENI's transfer (203.0.113.10:80)"
wait "$c0" || true
read -r n0 h0 gap0 why0 < "$work/c0" || true
wait_for "$work/s0" "^sent" >/dev/null || true
sha0=$(awk '/^sha256/ {print $2}' "$work/s0")
echo "  received ${n0:-?} of $LEN bytes ($why0), longest gap between reads ${gap0:-?} ms"
echo "  sha256 sent     $sha0"
echo "  sha256 received ${h0:-?}"
if [ "${n0:-}" = "$LEN" ] && [ "${h0:-}" = "$sha0" ]; then ok "every byte intact"; else fail "the primary's transfer is not intact"; fi
if [[ ${gap0:-} =~ ^[0-9]+$ ]] && [ "$gap0" -lt 1000 ]; then ok "no stall (longest gap under 1 s)"; else fail "the primary's transfer stalled (${gap0:-?} ms)"; fi

step "eth1's transfer (203.0.113.11:443)"
wait "$c1" || true
read -r n1 _ _ why1 < "$work/c1" || true
echo "  received ${n1:-?} of $LEN bytes, then: ${why1:-?}"
if [[ ${n1:-} =~ ^[0-9]+$ ]] && [ "$n1" -lt "$LEN" ]; then ok "it ended with its ENI"; else fail "eth1's transfer did not end"; fi

step "a new connection: Internet host -> 203.0.113.30:80 (eth3's EIP, NAT to 172.16.3.10)"
hello='
import socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("172.16.3.10", 80)); l.listen(); l.settimeout(10); print("listening", flush=True)
c, peer = l.accept(); c.sendall(f"hello from eth3, you are {peer[0]}".encode()); c.close()
print(f"server 172.16.3.10:80 saw the peer as {peer[0]}:{peer[1]}", flush=True)
'
bg "$INST" "$work/s3" "$hello"; s3=$!
wait_for "$work/s3" listening
ip netns exec "$NET" python3 -c '
import socket
c = socket.create_connection(("203.0.113.30", 80), timeout=5); c.settimeout(5)
me, peer = c.getsockname(), c.getpeername(); got = b""
while True:
    b = c.recv(1000)
    if not b: break
    got += b
print(f"client {me[0]}:{me[1]} reached {peer[0]}:{peer[1]}, got {got.decode()!r}")
' > "$work/c3" 2>&1 || true
wait "$s3" || true
sed 's/^/  /' "$work/c3"; grep -v '^listening' "$work/s3" | sed 's/^/  /'
if grep -q "reached 203.0.113.30:80, got 'hello from eth3, you are 198.51.100.7'" "$work/c3"; then
    ok "the Internet host reached the instance at 203.0.113.30, which saw it as 198.51.100.7"
else
    fail "no working connection to 203.0.113.30"
fi

step "eipsim ctl show counters: events"
ctl --json show counters > "$work/counters" || fail "show counters"
if python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["counters"]["events"]
print("\n".join("  " + l for l in json.dumps(e, indent=2).splitlines()))
sys.exit(0 if (e.get("applied"), e.get("refused"), e.get("flows_ended")) == (3, 1, 1) else 1)' "$work/counters"; then
    ok "3 applied, 1 refused, 1 flow ended"
else
    fail "unexpected event counters"
fi

step "the events the run printed"
grep -E '^eipsim run: .*(applied|refused)' "$work/err" | sed 's/^/  /' || true

kill -TERM "$pid"; wait "$pid" || fail "eipsim run exited with $?"; pid=""

echo
if [ "$failed" = 0 ]; then
    echo "== every check held: eth1 was replaced by eth3, the primary's transfer never noticed"
else
    echo "== $failed check(s) failed"
    exit 1
fi
