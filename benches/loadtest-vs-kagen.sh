#!/usr/bin/env bash
# loadtest-vs-kagen.sh: `sipnat loadtest` as a generator against the bench harness's
# AF_PACKET generator (kagen), side by side in one run, on one veth pair between two
# network namespaces this script creates (and removes, also on error / Ctrl-C).
#
#   sudo benches/loadtest-vs-kagen.sh [ROUNDS] [SECONDS]
#
# Both send the same 64-flow INVITE+SDP pcap (rendered by the harness's mkpcap.py) at
# maximum rate, pinned to CPU 0, into an nftables ingress drop counter on the peer (its
# softirq runs on the sender's core, as in the harness's "sink on the same core" figure).
# Rounds alternate kagen / loadtest; printed per round and as medians: offered pps,
# delivered pps (the sink's counter) and the generator's CPU time per packet.
# Env: SIPNAT_BENCH_DIR (default: the repository's bench/ harness), SIPNAT_BIN.
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${SIPNAT_BENCH_DIR:-$ROOT/bench}
BIN=${SIPNAT_BIN:-$ROOT/target/release/sipnat}
[[ $EUID -eq 0 ]] || { echo "run as root (namespaces, AF_XDP)" >&2; exit 2; }
[[ -x $BIN ]] || { echo "build first: cargo build --release ($BIN missing)" >&2; exit 2; }
[[ -f $BENCH/src/kagen.c ]] || { echo "bench harness not found at $BENCH (set SIPNAT_BENCH_DIR)" >&2; exit 2; }

TAG="ltk$$"
A="${TAG}a" B="${TAG}b"
WORK=$(mktemp -d)
cleanup() {
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

KA_BUILD_DIR=$WORK "$BENCH/build.sh" >/dev/null 2>&1
for ns in "$A" "$B"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$A" link add gen0 type veth peer name sink0 netns "$B"
ip -n "$A" addr add 10.0.0.2/24 dev gen0
ip -n "$B" addr add 10.0.0.1/24 dev sink0
ip -n "$A" link set gen0 up
ip -n "$B" link set sink0 up
ip netns exec "$A" ethtool -K gen0 tx off >/dev/null
ip netns exec "$B" ethtool -K sink0 tx off >/dev/null
MAC_A=$(ip netns exec "$A" cat /sys/class/net/gen0/address)
MAC_B=$(ip netns exec "$B" cat /sys/class/net/sink0/address)
ip netns exec "$B" nft -f - <<EOF
table netdev sink {
  counter sip {}
  chain ingress { type filter hook ingress device "sink0" priority 0; udp dport 5060 counter name "sip" drop; }
}
EOF
python3 "$BENCH/tools/mkpcap.py" --msg "$BENCH/msgs/invite-sdp.tmpl" --flows 64 \
  --src 10.0.0.2 --dst 10.0.0.1 --smac "$MAC_A" --dmac "$MAC_B" --out "$WORK/inv64.pcap" >/dev/null

sink() { ip netns exec "$B" nft -j list counter netdev sink sip |
  python3 -c 'import json,sys; print([x["counter"]["packets"] for x in json.load(sys.stdin)["nftables"] if "counter" in x][0])'; }
reset() { ip netns exec "$B" nft reset counter netdev sink sip >/dev/null; }

echo "round generator  offered_pps  delivered_pps  cpu_ns_per_pkt  frame_bytes" | tee "$WORK/res"
for r in $(seq "$ROUNDS"); do
  reset
  /usr/bin/time -o "$WORK/t" -f "%U %S" ip netns exec "$A" taskset -c 0 "$WORK/kagen" \
    -p "$WORK/inv64.pcap" -i gen0 -s "$SECS" -c 0 >"$WORK/k.json" 2>/dev/null
  d=$(sink); read -r u s <"$WORK/t"
  python3 - "$WORK/k.json" "$d" "$u" "$s" "$r" <<'EOF' | tee -a "$WORK/res"
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
d, u, s, r = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
print(f"{r:>5} kagen      {j['sent']/j['seconds']:>11.0f}  {d/j['seconds']:>13.0f}  {(u+s)*1e9/max(j['sent'],1):>14.0f}  {j['frame_bytes']:>11}")
EOF
  reset
  /usr/bin/time -o "$WORK/t" -f "%U %S" ip netns exec "$A" "$BIN" loadtest -i gen0 \
    --pcap "$WORK/inv64.pcap" --flows 1 --max -d "$SECS" --cpus 0 --src-ip 10.0.0.2 \
    --dst-ip 10.0.0.1 --dst-mac "$MAC_B" --json --no-progress >"$WORK/l.json" 2>/dev/null
  d=$(sink); read -r u s <"$WORK/t"
  python3 - "$WORK/l.json" "$d" "$u" "$s" "$r" <<'EOF' | tee -a "$WORK/res"
import json, sys
j = json.load(open(sys.argv[1]))
d, u, s, r = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
print(f"{r:>5} loadtest   {j['offered_pps']:>11.0f}  {d/j['duration_s']:>13.0f}  {(u+s)*1e9/max(j['sent'],1):>14.0f}  {j['frame_bytes']:>11}")
EOF
done
python3 - "$WORK/res" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
def med(g, i): return statistics.median(float(r[i]) for r in rows if r[1] == g)
k, l = med("kagen", 2), med("loadtest", 2)
kd, ld = med("kagen", 3), med("loadtest", 3)
kc, lc = med("kagen", 4), med("loadtest", 4)
ratios = [float(b[2]) / float(a[2]) for a, b in zip(rows[0::2], rows[1::2])]
print(f"median offered pps: kagen {k:.0f}, loadtest {l:.0f} ({l/k:.2f}x); delivered {kd:.0f} vs {ld:.0f}")
print(f"median CPU ns/packet: kagen {kc:.0f}, loadtest {lc:.0f}; per-round ratios {', '.join(f'{x:.2f}' for x in ratios)}")
EOF
