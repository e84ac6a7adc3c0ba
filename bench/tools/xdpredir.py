#!/usr/bin/env python3
"""xdpredir: load `return bpf_redirect(IFINDEX, 0)` as an XDP program and pin it.

Used by gen-xdpfwd.sh to make the generator's frames reach the gateway as XDP frames:
attached (native) to the peer of the generator's own veth, it redirects every frame
into IF (ka-in0), whose ndo_xdp_xmit hands the xdp_frame to the gateway's ka-gwin as
is: no skb on the gateway's receive, as from a NIC driver. Four instructions, no ELF,
no libbpf: the raw bpf(2) syscall.

  xdpredir.py --to IF --pin PATH      (run in IF's namespace: the ifindex is looked up there)
"""
import argparse, ctypes, ctypes.util, os, socket, struct

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_BPF = 321  # x86_64
BPF_PROG_LOAD, BPF_OBJ_PIN = 5, 6
BPF_PROG_TYPE_XDP = 6
BPF_FUNC_redirect = 23


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(bytes(attr), 128)
    r = libc.syscall(SYS_BPF, cmd, buf, 128)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, "bpf(%d): %s" % (cmd, os.strerror(e)))
    return r


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--to", required=True)
    ap.add_argument("--pin", required=True)
    a = ap.parse_args()
    prog = (insn(0xb7, dst=1, imm=socket.if_nametoindex(a.to))  # r1 = ifindex
            + insn(0xb7, dst=2, imm=0)                          # r2 = 0
            + insn(0x85, imm=BPF_FUNC_redirect)                 # call bpf_redirect
            + insn(0x95))                                       # exit (r0 = XDP_REDIRECT)
    code = ctypes.create_string_buffer(prog, len(prog))
    lic = ctypes.create_string_buffer(b"GPL")
    logb = ctypes.create_string_buffer(4096)
    attr = struct.pack("<IIQQIIQII16s", BPF_PROG_TYPE_XDP, len(prog) // 8, ctypes.addressof(code),
                       ctypes.addressof(lic), 1, len(logb), ctypes.addressof(logb), 0, 0, b"xdpredir")
    try:
        fd = bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        raise SystemExit("loading the redirect program failed: %s\n%s" % (e, logb.value.decode(errors="replace")))
    path = ctypes.create_string_buffer(a.pin.encode())
    if os.path.exists(a.pin):
        os.unlink(a.pin)
    bpf(BPF_OBJ_PIN, struct.pack("<QI", ctypes.addressof(path), fd))


if __name__ == "__main__":
    main()
