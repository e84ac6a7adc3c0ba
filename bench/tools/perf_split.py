#!/usr/bin/env python3
"""perf_split.py: the gateway core's busy time per packet, split by what it was spent on.

Reads the profiles `perf.sh` leaves in DIR (perf-SUT-GEN.data, `perf record -C GW_CPU -g`
during a max-rate run) and the runs it made (DIR/runs.jsonl: each run's gateway ns per
delivered packet). Every sample of the gateway's own tasks (NAPI threads, softirqs,
sipnat's workers; the idle loop is left out) is put in the first category of CATEGORIES
whose test its call stack passes, and each category's share of the samples times the
run's `gw ns/pkt` is its cost per packet. The categories separate what AF_XDP's copy mode
on veth costs (a zero-copy driver on a real NIC does none of it) from sipnat's own work
and from the forwarding both sipnat and the kernel do.

    perf_split.py DIR            # a Markdown table per profile
"""
import glob, json, os, subprocess, sys

GATEWAY_TASKS = ("napi/", "ksoftirqd/", "sipnat-q", "swapper")
IDLE = {"pv_native_safe_halt", "default_idle", "default_enter_idle", "cpuidle_enter_state",
        "do_idle", "acpi_safe_halt", "native_safe_halt", "cpu_idle_poll"}


def any_frame(*names):
    return lambda frames: any(f in names for f in frames)


def leaf_has(*parts):
    return lambda frames: bool(frames) and any(p in frames[0] for p in parts)


# (label, test on the stack (leaf first), whether only AF_XDP's copy mode or XDP on veth
# costs it: those are summed apart). Order matters: the first match wins.
CATEGORIES = [
    ("copy mode: AF_XDP receive (each frame copied into the UMEM)",
     any_frame("__xsk_rcv", "__xsk_map_redirect", "xsk_rcv", "__xsk_rcv_zc"), True),
    ("veth native XDP: each skb copied into a page with XDP headroom",
     any_frame("skb_pp_cow_data", "veth_convert_skb_to_xdp_buff"), True),
    ("veth transmit to the next hop (the kernel NAT's too)",
     any_frame("__dev_direct_xmit", "dev_hard_start_xmit", "veth_xmit"), False),
    ("copy mode: AF_XDP transmit (an skb built and the frame copied per sendto)",
     any_frame("__xsk_generic_xmit", "xsk_sendmsg", "__sys_sendto", "xsk_generic_xmit",
               "xsk_destruct_skb"), True),
    ("sipnat: SIP rewrite (parse, edit) and checksums",
     leaf_has("sipnat::rewrite", "sipnat::sip::", "sipnat::wire::checksum"), False),
    ("sipnat: NAPT and flow table",
     leaf_has("sipnat::nat::"), False),
    ("sipnat: worker, pipeline, rings",
     leaf_has("sipnat::", "xdpilone", "__mem", "__libc", "__GI_"), False),
    ("sipnat: the worker's poll() and other syscalls",
     any_frame("do_sys_poll", "__x64_sys_poll", "__x64_sys_ppoll", "entry_SYSCALL_64_after_hwframe"), False),
    ("XDP program (steering)",
     lambda frames: any(f.startswith("bpf_prog_") or f == "bpf_dispatcher_xdp" for f in frames), False),
    ("kernel: veth receive, netfilter, routing, skb frees (the kernel NAT's too)",
     lambda frames: True, False),
]


def samples(data):
    """(comm, frames) of each sample of `data`, frames leaf first."""
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym"], capture_output=True,
                         text=True, check=True).stdout
    comm, frames = None, []
    for line in out.splitlines() + [""]:
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif comm is None:
            comm = line.strip()
        else:
            parts = line.split(None, 1)
            frames.append(parts[-1].strip() if parts else "")


def runs(d):
    """DIR's runs by (system, generator)."""
    by = {}
    path = os.path.join(d, "runs.jsonl")
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            by[(r["sut"], r["gen"])] = r
    return by


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    by_run = runs(d)
    datas = sorted(glob.glob(os.path.join(d, "perf-*.data")))
    if not datas:
        sys.exit("no perf-*.data in %s" % d)
    for data in datas:
        name = os.path.basename(data)[len("perf-"):-len(".data")]
        sut, gen = name.rsplit("-", 1)
        run = by_run.get((sut, gen))
        counts = {label: 0 for label, _, _ in CATEGORIES}
        busy = idle = 0
        for comm, frames in samples(data):
            if not comm.startswith(GATEWAY_TASKS):
                continue
            if comm.startswith("swapper") and (not frames or frames[0] in IDLE):
                idle += 1
                continue
            busy += 1
            for label, test, _ in CATEGORIES:
                if test(frames):
                    counts[label] += 1
                    break
        ns = run.get("gw_ns_per_pkt") if run else None
        print("### %s (%d busy samples, %d idle; gw ns/pkt %s, %s pps delivered)\n" % (
            name, busy, idle, ns if ns else "?", run.get("delivered_pps", "?") if run else "?"))
        print("| where | share of busy samples | ns per packet |")
        print("|---|---:|---:|")
        for label, _, _ in CATEGORIES:
            c = counts[label]
            if c == 0:
                continue
            share = c / busy if busy else 0
            print("| %s | %.1f %% | %s |" % (label, 100 * share, "%.0f" % (share * ns) if ns else "?"))
        copy = sum(counts[label] for label, _, copy_only in CATEGORIES if copy_only)
        if busy and ns:
            print("| **all but AF_XDP copy mode's and veth XDP's own costs** | %.1f %% | **%.0f** |" % (
                100 * (busy - copy) / busy, (busy - copy) / busy * ns))
        print()


if __name__ == "__main__":
    main()
