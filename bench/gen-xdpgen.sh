#!/usr/bin/env bash
# gen-xdpgen.sh: kaxgen (bench/src/kaxgen.c), a generator whose frames reach the gateway
# as XDP frames at a rate the gateway core cannot keep up with (generator hook, contract
# in gen-template.sh). An XDP program gives each frame its flow's UDP source port and
# redirects it into IF (ka-in0); veth's ndo_xdp_xmit hands the xdp_frame to the gateway's
# ka-gwin as is, as a NIC driver would. Mode (KA_XDPGEN_MODE, default auto):
#   live  BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (the kernel loops the program over a
#         page pool in the generator's syscall: no skb, no copy per frame)
#   loop  frames seeded once into a second veth pair in the generator's namespace
#         (ka-gen0/ka-gen1, threaded NAPI on the generator's core) circle through XDP; each
#         round sends copies into IF (devmap broadcast: a page and a memcpy per copy)
#   auto  live, or loop if the kernel refuses live frames (EPERM)
# Max rate only in loop mode (--pps other than 0 needs live). KA_XDPGEN_COPIES (loop, default
# 4, at most 8): copies sent into IF per round of the loop, each with the next flow's port
# (more offered per generator CPU second: the round's own work is shared). KA_XDPGEN_FRAMES
# (loop, default 64, at most 200): frames circling; one NAPI poll of the loop hands the gateway
# at most FRAMES x COPIES frames at once (veth's ring holds 256).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
case "${1:-}" in
  run)
    shift
    gen_opts "$@"
    ns=${o[ns]}
    # NAPI in a kthread on the generator's core, at the default priority: the sink's NAPI
    # thread there (nice -15, topo.sh) runs first whenever it has work
    threaded_napi() {
      nsx "$ns" ethtool -K "$1" gro on >/dev/null
      nsx "$ns" sh -c "echo 1 > /sys/class/net/$1/threaded"
    }
    gen_pair "$ns" threaded_napi
    for i in $IF_GEN0 $IF_GEN1; do
      for p in $(ps -eo pid=,comm= | awk -v n="napi/$i-" 'index($2, n) == 1 {print $1}'); do
        taskset -pc "${o[cpu]}" "$p" >/dev/null
      done
    done
    args=(-m "${KA_XDPGEN_MODE:-auto}" -p "${o[pcap]}" -i "${o[if]}" -s "${o[seconds]}" -f "${o[flows]}"
          -c "${o[cpu]}" -l "$IF_GEN0,$IF_GEN1" -k "${KA_XDPGEN_COPIES:-4}" -n "${KA_XDPGEN_FRAMES:-64}")
    [[ ${o[pps]} != 0 ]] && args+=(-r "${o[pps]}")
    ensure_built
    # kaxgen prints {"offered":..,"sent":..,"seconds":..,"mode":..} itself
    exec ip netns exec "$ns" nice -n -15 "$BUILD_DIR/kaxgen" "${args[@]}" ;;
  info) echo "kaxgen (XDP frames into ka-in0: BPF_PROG_RUN live frames, or an XDP loop where the kernel refuses them)" ;;
  *) echo "usage: $0 run --pcap P --msg M --flows K --seconds S --pps N --ns NS --if IF --cpu C --dst IP --dport PORT | info" >&2; exit 2 ;;
esac
