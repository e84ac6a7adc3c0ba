#!/usr/bin/env bash
# SUT: plain kernel forwarding + nftables masquerade of 10.88.0.0/24 on the outside leg, no
# SIP helper: the kernel's NAT of RTP, the comparison of the RTP bench (run-rtp.sh).
KA_SIP_HELPER=0 KA_NAT_MASQ=1 exec "$(dirname "$0")/sut-kernel-alg.sh" "$@"
