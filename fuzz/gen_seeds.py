#!/usr/bin/env python3
"""Regenerates the seed corpora from the repository's test data (stdlib only).

    python3 fuzz/gen_seeds.py [TESTDATA_DIR]    # default: testdata/ at the repository root

corpus/message/: byte-exact copies of the RFC 4475/5118 torture messages, the project
messages and the benchmark inputs (named <source>-<file>).
corpus/packet/: a selector byte (bit 0 inbound, bits 1-2 config, bit 3 flow; see
src/lib.rs) followed by an Ethernet frame carrying one of those messages over UDP, with
valid IPv4 header and UDP checksums (plus a few framing variants: VLAN tag, IPv4 options,
no UDP checksum, IPv6 hop-by-hop header, Ethernet padding, a corrupt UDP checksum).
Both also get the REGRESSIONS below: inputs that made a target fail once.
corpus/differential/: every message seed and every packet seed behind a selector byte
(bits 0-2 rule set, bits 3-4 direction, bit 5 frame; see src/lib.rs), rule sets and
directions taken in turn.
"""

import ipaddress
import os
import re
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(HERE), "testdata")
MSG_OUT = os.path.join(HERE, "corpus", "message")
PKT_OUT = os.path.join(HERE, "corpus", "packet")
DIFF_OUT = os.path.join(HERE, "corpus", "differential")


def csum_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def fold(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def udp(src, dst, sport, dport, payload, zero_checksum=False, corrupt=False):
    length = 8 + len(payload)
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    if zero_checksum:
        return hdr + payload
    s, d = src.packed, dst.packed
    pseudo = s + d + (struct.pack("!BBH", 0, 17, length) if len(s) == 4 else
                      struct.pack("!IxxxB", length, 17))
    c = (~fold(csum_sum(pseudo + hdr + payload))) & 0xFFFF
    if c == 0:
        c = 0xFFFF
    if corrupt:
        c ^= 0x0101
    return struct.pack("!HHHH", sport, dport, length, c) + payload


def ipv4(src, dst, l4, options=b""):
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(l4), 0x1234, 0x4000,
                      64, 17, 0, src.packed, dst.packed) + options
    c = (~fold(csum_sum(hdr))) & 0xFFFF
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + l4


def ipv6(src, dst, l4, hop_by_hop=False):
    ext = b""
    nh = 17
    if hop_by_hop:
        ext = bytes([17, 0, 1, 4, 0, 0, 0, 0])  # next=UDP, len 0, PadN(4)
        nh = 0
    return struct.pack("!IHBB16s16s", 0x60000000, len(ext) + len(l4), nh, 64,
                       src.packed, dst.packed) + ext + l4


def ether(ip, v6, vlan=False, pad_to=0):
    et = 0x86DD if v6 else 0x0800
    mac = bytes.fromhex("020000000001020000000002")
    tag = struct.pack("!HH", 0x8100, 42) if vlan else b""
    f = mac + tag + struct.pack("!H", et) + ip
    return f + b"\0" * max(0, pad_to - len(f))


def frame(src, dst, payload, sport=5060, dport=5060, vlan=False, options=b"", pad_to=0,
          zero_checksum=False, corrupt=False, hop_by_hop=False):
    src, dst = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    l4 = udp(src, dst, sport, dport, payload, zero_checksum, corrupt)
    if src.version == 6:
        return ether(ipv6(src, dst, l4, hop_by_hop), True, vlan, pad_to)
    return ether(ipv4(src, dst, l4, options), False, vlan, pad_to)


def sel(inbound=False, config=0, flow=False):
    return bytes([(1 if inbound else 0) | (config << 1) | (8 if flow else 0)])


def read(rel):
    with open(os.path.join(TESTDATA, rel), "rb") as f:
        return f.read()


V4_PRIVATE = re.compile(rb"(?<![0-9.])(?:10|192\.168)(?:\.[0-9]{1,3}){2,3}(?![0-9])")


def to_external(msg, ext):
    """A message as it comes back from outside: private IPv4 addresses → `ext`."""
    return V4_PRIVATE.sub(ext.encode(), msg)


# Inputs that made a target fail (kept as seeds so every run checks them again), with the
# failure they showed when found.
REGRESSIONS = {
    # Two equal Content-Length headers: only the last is updated when the body grows, so
    # the output has two different ones (Malformed(DuplicateContentLength) on a second
    # pass). Found by `message`; `fuzz tmin`-minimized (bare-LF line ends, short body).
    "regress-dup-content-length-min": bytes.fromhex(
        "45206d205349502f322e300a436f6e74656e742d4c656e6774683a3330310a433a6170706c6963"
        "6174696f6e2f7364700a436f6e74656e742d4c656e6774683a3330310a0a6f3d494e2049503420"
        "3139322e3136382e302e37"),
    # The same with a well-formed INVITE (CRLF, correct length).
    "regress-dup-content-length.sip":
        b"INVITE sip:bob@198.51.100.2 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
        b"Content-Length: 45\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 45\r\n"
        b"\r\n"
        b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 1 RTP/AVP 0\r\n",
}


def copy_messages():
    os.makedirs(MSG_OUT, exist_ok=True)
    n = 0
    sources = [("rfc4475", "corpus/rfc4475"), ("rfc5118", "corpus/rfc5118")]
    msgs = os.path.join(TESTDATA, "corpus", "messages")
    for proj in sorted(os.listdir(msgs)):
        sources.append((proj, os.path.join("corpus", "messages", proj)))
    for prefix, rel in sources:
        for name in sorted(os.listdir(os.path.join(TESTDATA, rel))):
            shutil.copyfile(os.path.join(TESTDATA, rel, name),
                            os.path.join(MSG_OUT, f"{prefix}-{name}"))
            n += 1
    for name, data in REGRESSIONS.items():
        with open(os.path.join(MSG_OUT, name), "wb") as f:
            f.write(data)
        n += 1
    bench = os.path.join(TESTDATA, "bench-inputs")
    for name in sorted(os.listdir(bench)):
        if name.endswith(".sip"):
            shutil.copyfile(os.path.join(bench, name), os.path.join(MSG_OUT, f"bench-{name}"))
            n += 1
    return n


def packets():
    carrier = read("bench-inputs/carrier-invite-sdp.sip")
    header = read("bench-inputs/header-rewriting.sip")
    sdp = read("bench-inputs/sdp-rewriting.sip")
    avaya = read("corpus/messages/sipsorcery/avaya_invite_rtcp.sip")
    rr = read("corpus/messages/sipsorcery/200ok_record_route_rport.sip")
    cisco = read("corpus/messages/sipxecs/cisco_multipart_sdp_gtd.sip")
    xten = read("corpus/messages/sipsorcery/xten_invite_sdp.sip")
    xlite = read("corpus/messages/sipsorcery/xlite_register_received.sip")
    ast = read("corpus/messages/sipsorcery/asterisk_200ok_sdp.sip")
    v6sdp = read("corpus/rfc5118/ipv6-in-sdp.dat")
    # The RFC 5118 messages use documentation addresses: make them internal (fd00::/8).
    def internal6(m):
        return m.replace(b"2001:db8::", b"fd00::").replace(b"192.0.2.", b"192.168.2.")
    v6good = internal6(read("corpus/rfc5118/ipv6-good.dat"))
    mapped = internal6(read("corpus/rfc5118/ipv4-mapped-ipv6.dat"))
    multi = internal6(read("corpus/rfc5118/mult-ip-in-sdp.dat"))
    ext, ext6, peer, peer6 = "203.0.113.10", "2001:db8::10", "198.51.100.2", "2001:db8:1::2"
    p = {
        # outbound, config 0 (10/8 → 203.0.113.10)
        "out-c0-v4-carrier": sel() + frame("10.0.0.5", peer, carrier),
        "out-c0-v4-avaya": sel() + frame("10.0.0.5", peer, avaya),
        "out-c0-v4-rr": sel() + frame("10.0.0.5", peer, rr),
        "out-c0-v4-cisco-vlan": sel() + frame("10.0.0.5", peer, cisco, vlan=True),
        "out-c0-v4-options": sel() + frame("10.0.0.5", peer, avaya,
                                             options=bytes([1, 1, 1, 0])),
        "out-c0-v4-nocsum": sel() + frame("10.0.0.5", peer, carrier, zero_checksum=True),
        "out-c0-v4-badcsum": sel() + frame("10.0.0.5", peer, rr, corrupt=True),
        "out-c0-v4-keepalive-pad": sel() + frame("10.0.0.5", peer, b"\r\n\r\n", pad_to=60),
        # outbound, config 1 (192.168/16 + fd00::/8, v4+v6, Record-Route, From/To)
        "out-c1-v4-header": sel(config=1) + frame("192.168.1.5", peer, header),
        "out-c1-v4-sdp": sel(config=1) + frame("192.168.1.5", peer, sdp),
        "out-c1-v4-xten": sel(config=1) + frame("192.168.1.5", peer, xten),
        "out-c1-v4-xlite": sel(config=1) + frame("192.168.1.5", peer, xlite),
        "out-c1-v6-sdp": sel(config=1) + frame("fd00::5", peer6, internal6(v6sdp)),
        "out-c1-v6-good": sel(config=1) + frame("fd00::5", peer6, v6good),
        "out-c1-v6-mapped-hbh": sel(config=1) + frame("fd00::5", peer6, mapped,
                                                       hop_by_hop=True),
        "out-c1-v6-multi": sel(config=1) + frame("fd00::5", peer6, multi),
        "out-c1-v6-asterisk": sel(config=1) + frame("fd00::5", peer6, ast),
        # outbound, config 2 (10/8 → 198.51.100.20 with a port map), config 3 (L3 keep)
        "out-c2-v4-carrier": sel(config=2) + frame("10.0.0.5", peer, carrier),
        "out-c2-v4-avaya": sel(config=2) + frame("10.0.0.5", peer, avaya),
        "out-c3-v4-avaya": sel(config=3) + frame("10.1.2.3", peer,
                                                 avaya.replace(b"10.1.1.241", b"10.1.2.3")),
        # inbound
        "in-c0-v4-flow-carrier": sel(True, 0, True) + frame(peer, ext,
                                                             to_external(carrier, ext)),
        "in-c1-v4-flow-header": sel(True, 1, True) + frame(peer, ext,
                                                            to_external(header, ext)),
        "in-c1-v6-flow-sdp": sel(True, 1, True) + frame(
            peer6, ext6, v6sdp.replace(b"2001:db8::", ext6.encode())),
        "in-c2-v4-flow-avaya": sel(True, 2, True) + frame(
            peer, "198.51.100.20", to_external(avaya, "198.51.100.20"), dport=15060),
        "in-c3-v4-keep-avaya": sel(True, 3) + frame(peer, "10.1.2.3",
                                                     to_external(avaya, ext), dport=15060),
    }
    p["regress-out-c0-v4-dup-content-length"] = sel() + frame(
        "10.0.0.5", peer, REGRESSIONS["regress-dup-content-length.sip"])
    os.makedirs(PKT_OUT, exist_ok=True)
    for name, data in p.items():
        with open(os.path.join(PKT_OUT, name), "wb") as f:
            f.write(data)
    return len(p)


def differential():
    """The message and packet seeds behind a differential selector byte."""
    os.makedirs(DIFF_OUT, exist_ok=True)
    n = 0
    for i, name in enumerate(sorted(os.listdir(MSG_OUT))):
        with open(os.path.join(MSG_OUT, name), "rb") as f:
            data = f.read()
        sel_byte = (i % 6) | (((i // 6) % 3) << 3)
        with open(os.path.join(DIFF_OUT, "msg-" + name), "wb") as f:
            f.write(bytes([sel_byte]) + data)
        n += 1
    for i, name in enumerate(sorted(os.listdir(PKT_OUT))):
        with open(os.path.join(PKT_OUT, name), "rb") as f:
            data = f.read()
        sel_byte = 0x20 | (i % 6) | (((i // 6) % 3) << 3)
        with open(os.path.join(DIFF_OUT, "pkt-" + name), "wb") as f:
            f.write(bytes([sel_byte]) + data[1:])
        n += 1
    return n


if __name__ == "__main__":
    print(f"{copy_messages()} message seeds in {MSG_OUT}")
    print(f"{packets()} packet seeds in {PKT_OUT}")
    print(f"{differential()} differential seeds in {DIFF_OUT}")
