#!/usr/bin/env bash
# gen-xdpfwd.sh: kagen whose frames reach the gateway as XDP frames, not skbs (generator
# hook, contract in gen-template.sh). kagen sends out of ka-gen0, a second veth pair in
# the generator's namespace; a native XDP program on its peer ka-gen1 redirects every
# frame into IF (ka-in0), and veth's ndo_xdp_xmit hands the xdp_frame to the gateway's
# ka-gwin as is. So the gateway receives as from a NIC driver (a frame in a page with
# XDP headroom): sipnat's XDP program runs on it without veth's skb-to-page copy, and the
# kernel's forwarding builds its skb around it. The extra copy (skb to XDP page at
# ka-gen1) is paid on the generator's CPU, not the gateway's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
case "${1:-}" in
  run)
    gen_opts "${@:2}"
    ns=${o[ns]}
    gen_pair "$ns"
    fs=$RUN_DIR/bpffs
    mkdir -p "$fs"
    mountpoint -q "$fs" || mount -t bpf bpf "$fs"
    nsx "$ns" python3 "$BENCH_DIR/tools/xdpredir.py" --to "${o[if]}" --pin "$fs/xdpfwd"
    ip -n "$ns" link set $IF_GEN1 xdpdrv off 2>/dev/null || true
    ip -n "$ns" link set $IF_GEN1 xdpdrv pinned "$fs/xdpfwd"
    args=(-p "${o[pcap]}" -i $IF_GEN0 -m packet -s "${o[seconds]}" -c "${o[cpu]}")
    [[ ${o[pps]} != 0 ]] && args+=(-r "${o[pps]}")
    ensure_built
    ip netns exec "$ns" nice -n -15 "$BUILD_DIR/kagen" "${args[@]}"
    ip -n "$ns" link set $IF_GEN1 xdpdrv off
    rm -f "$fs/xdpfwd"
    umount "$fs" 2>/dev/null || true ;;
  info) echo "kagen (AF_PACKET) via ka-gen0/ka-gen1 and an XDP redirect into ka-in0: the gateway receives XDP frames (ndo_xdp_xmit)" ;;
  *) echo "usage: $0 run --pcap P --msg M --flows K --seconds S --pps N --ns NS --if IF --cpu C --dst IP --dport PORT | info" >&2; exit 2 ;;
esac
