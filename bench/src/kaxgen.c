// kaxgen: a generator whose frames reach the next hop as XDP frames (xdp_frame, handed
// over by ndo_xdp_xmit), not as skbs: the way a NIC driver with native XDP receives.
// Each frame is frame 0 of the pcap, with the UDP source port of flow n mod FLOWS
// (base + stride * (n mod FLOWS), base and stride from frames 0 and 1 of the pcap) and
// the UDP checksum updated incrementally (RFC 1624), set by a small XDP program per
// frame. Raw bpf(2) and rtnetlink, no libbpf, no ELF: the programs are built below.
//
//   kaxgen -m live -p PCAP -i IF -s SECONDS [-r PPS] [-f FLOWS] [-c CPU] [-b BATCH]
//     BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (what xdp-trafficgen uses): the kernel
//     runs the program over a page pool holding the frame, in this process's syscall, and
//     its bpf_redirect(IF) really transmits. The cheapest generator there is; some
//     kernels' security policy refuses the flag (EPERM), then use -m loop.
//   kaxgen -m loop -p PCAP -i IF -s SECONDS -l A,B [-f FLOWS] [-c CPU] [-n FRAMES] [-k COPIES]
//     A and B are a veth pair of this namespace. FRAMES copies of the frame are sent
//     once out of A (AF_PACKET); from then on they circle as xdp_frames: B's program
//     redirects with BPF_F_BROADCAST to a devmap {IF × COPIES, B}, which transmits COPIES
//     copies (xdpf_clone: one page and one memcpy each) out of IF, each given the next
//     flow's port by the devmap entry's program, and the frame itself back out of B;
//     A's program returns XDP_TX, to B again. No syscall, no skb,
//     no AF_PACKET per frame; the loop runs in A's and B's NAPI on this CPU until the
//     deadline B's program checks. Max rate only (-r is refused).
//   kaxgen -m auto ... -l A,B: live; if the kernel refuses live frames before the first
//     frame (EPERM), loop. The JSON line says which mode ran ("mode", "live_error").
// Run it in IF's namespace (ifindexes are looked up there). Prints one JSON line:
// offered = frames the program sent towards IF (every one counts: open loop), sent =
// IF's tx_packets growth (veth counts the frames its peer took), dropped = IF's
// tx_dropped growth (the peer's ring was full).
#define TOOL "kaxgen"
#include "xdpraw.h"

// frames 0 and 1 of a little-endian Ethernet pcap; returns how many were read
static int load_pcap(const char *path, uint8_t f[2][2048], uint32_t len[2]) {
  FILE *fp = fopen(path, "rb");
  if (!fp) die(path);
  uint32_t gh[6], rh[4];
  if (fread(gh, 4, 6, fp) != 6 || gh[0] != 0xa1b2c3d4 || gh[5] != 1) {
    fprintf(stderr, "kaxgen: %s: not a little-endian Ethernet pcap\n", path);
    exit(1);
  }
  int n = 0;
  while (n < 2 && fread(rh, 4, 4, fp) == 4) {
    if (rh[2] > 2048 || fread(f[n], 1, rh[2], fp) != rh[2]) {
      fprintf(stderr, "kaxgen: %s: frame %d truncated or over 2048 bytes\n", path, n);
      exit(1);
    }
    len[n++] = rh[2];
  }
  fclose(fp);
  return n;
}

enum { ST_COUNT, ST_DEADLINE, ST_N };

// The programs. state: array map {frames sent, deadline (ns)}.
//   GEN_LIVE: the flow's port, count, bpf_redirect(ifindex)
//   GEN_LOOP: drop after the deadline, else broadcast to the devmap
//   GEN_COPY: the flow's port, count, XDP_PASS (a devmap entry's program: transmit)
enum { GEN_LIVE, GEN_LOOP, GEN_COPY };
static int build_gen(int state_fd, long flows, int stride, int base, int kind, int devmap_fd, unsigned ifindex) {
  struct prog p = {0};
  emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_X, R6, R1, 0, 0));
  emit(&p, I(BPF_LDX | BPF_MEM | BPF_W, R7, R6, 0, 0));  // r7 = ctx->data
  emit(&p, I(BPF_LDX | BPF_MEM | BPF_W, R8, R6, 4, 0));  // r8 = ctx->data_end
  emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_X, R2, R7, 0, 0));
  emit(&p, I(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, HDRS));
  emit_out_if(&p, I(BPF_JMP | BPF_JGT | BPF_X, R2, R8, 0, 0));  // short frame
  int skip = -1;
  if (kind == GEN_LOOP) {  // the loop ends at the deadline: every frame is dropped from then on
    emit_lookup(&p, state_fd, ST_DEADLINE);
    emit(&p, I(BPF_LDX | BPF_MEM | BPF_DW, R9, R0, 0, 0));
    emit(&p, I(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_ktime_get_ns));
    emit_out_if(&p, I(BPF_JMP | BPF_JGT | BPF_X, R0, R9, 0, 0));
    emit_ld_map(&p, R1, devmap_fd);
    emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_K, R2, 0, 0, 0));
    emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_K, R3, 0, 0, BPF_F_BROADCAST));
    emit(&p, I(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect_map));
    emit(&p, I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    goto done;
  }
  emit_lookup(&p, state_fd, ST_COUNT);
  emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_K, R1, 0, 0, 1));
  emit(&p, I(BPF_STX | BPF_ATOMIC | BPF_DW, R0, R1, 0, BPF_ADD | BPF_FETCH));  // r1 = n++
  emit(&p, I(BPF_ALU64 | BPF_MOD | BPF_K, R1, 0, 0, (int)flows));
  emit(&p, I(BPF_ALU64 | BPF_MUL | BPF_K, R1, 0, 0, stride));
  emit(&p, I(BPF_ALU64 | BPF_ADD | BPF_K, R1, 0, 0, base));
  emit(&p, I(BPF_ALU | BPF_END | BPF_TO_BE, R1, 0, 0, 16));  // the port as the bytes on the wire
  emit(&p, I(BPF_LDX | BPF_MEM | BPF_H, R2, R7, UDP_SPORT, 0));  // old port
  emit(&p, I(BPF_STX | BPF_MEM | BPF_H, R7, R1, UDP_SPORT, 0));
  emit(&p, I(BPF_LDX | BPF_MEM | BPF_H, R3, R7, UDP_CSUM, 0));
  // no checksum (0): nothing to update; else csum' = ~(~csum + ~old + new), in one's
  // complement arithmetic, which is byte-order neutral
  skip = p.n;
  emit(&p, I(BPF_JMP | BPF_JEQ | BPF_K, R3, 0, 0, 0));
  emit(&p, I(BPF_ALU64 | BPF_XOR | BPF_K, R3, 0, 0, 0xffff));
  emit(&p, I(BPF_ALU64 | BPF_XOR | BPF_K, R2, 0, 0, 0xffff));
  emit(&p, I(BPF_ALU64 | BPF_ADD | BPF_X, R3, R2, 0, 0));
  emit(&p, I(BPF_ALU64 | BPF_ADD | BPF_X, R3, R1, 0, 0));
  for (int k = 0; k < 2; k++) {  // fold the carries, twice
    emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_X, R2, R3, 0, 0));
    emit(&p, I(BPF_ALU64 | BPF_RSH | BPF_K, R2, 0, 0, 16));
    emit(&p, I(BPF_ALU64 | BPF_AND | BPF_K, R3, 0, 0, 0xffff));
    emit(&p, I(BPF_ALU64 | BPF_ADD | BPF_X, R3, R2, 0, 0));
  }
  emit(&p, I(BPF_ALU64 | BPF_XOR | BPF_K, R3, 0, 0, 0xffff));
  // a computed 0 goes on the wire as 0xffff (RFC 768: 0 means "no checksum")
  emit(&p, I(BPF_JMP | BPF_JNE | BPF_K, R3, 0, 1, 0));
  emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_K, R3, 0, 0, 0xffff));
  emit(&p, I(BPF_STX | BPF_MEM | BPF_H, R7, R3, UDP_CSUM, 0));
  p.in[skip].off = (int16_t)(p.n - skip - 1);
  if (kind == GEN_COPY) {
    emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, XDP_PASS));
  } else {
    emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_K, R1, 0, 0, (int)ifindex));
    emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_K, R2, 0, 0, 0));
    emit(&p, I(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect));
  }
  emit(&p, I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
done:
  emit_out(&p, XDP_DROP);
  return prog_load(&p, kind == GEN_COPY ? BPF_XDP_DEVMAP : 0, "kaxgen");
}

static int build_tx(void) {  // return XDP_TX
  struct prog p = {0};
  emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, XDP_TX));
  emit(&p, I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  return prog_load(&p, 0, "kaxgen_tx");
}

static void usage(void) {
  fprintf(stderr,
          "usage: kaxgen -m live -p PCAP -i IF -s SECONDS [-r PPS] [-f FLOWS] [-c CPU] [-b BATCH]\n"
          "       kaxgen -m loop -p PCAP -i IF -s SECONDS -l A,B [-f FLOWS] [-c CPU] [-n FRAMES] [-k COPIES]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *pcap = NULL, *ifname = NULL, *mode = "live";
  char *loop = NULL;
  double secs = 5;
  long pps = 0, flows = 1, batch = 64, seed = 64, copies = 1;
  int cpu = -1, o;
  while ((o = getopt(argc, argv, "m:p:i:s:r:c:f:b:l:n:k:")) != -1) {
    switch (o) {
      case 'm': mode = optarg; break;
      case 'p': pcap = optarg; break;
      case 'i': ifname = optarg; break;
      case 's': secs = atof(optarg); break;
      case 'r': pps = atol(optarg); break;
      case 'c': cpu = atoi(optarg); break;
      case 'f': flows = atol(optarg); break;
      case 'b': batch = atol(optarg); break;
      case 'l': loop = optarg; break;
      case 'n': seed = atol(optarg); break;
      case 'k': copies = atol(optarg); break;
      default: usage();
    }
  }
  int live = strcmp(mode, "loop") != 0, autom = !strcmp(mode, "auto");
  if (!pcap || !ifname || secs <= 0 || flows < 1 || batch < 1 || batch > 256 || seed < 1 || seed > 200 ||
      copies < 1 || copies > 8 ||
      (strcmp(mode, "live") && !loop) || (!live && pps) || (live && !autom && strcmp(mode, "live")))
    usage();
  unsigned ifindex = if_nametoindex(ifname);
  if (!ifindex) { fprintf(stderr, "kaxgen: no interface %s\n", ifname); return 1; }

  static uint8_t fr[2][2048];
  uint32_t len[2] = {0, 0};
  int nf = load_pcap(pcap, fr, len);
  uint8_t *f0 = fr[0];
  if (nf < 1 || len[0] < HDRS || f0[12] != 0x08 || f0[13] != 0x00 || f0[14] != 0x45 || f0[23] != 17) {
    fprintf(stderr, "kaxgen: %s: frame 0 is not Ethernet/IPv4 (no options)/UDP\n", pcap);
    return 1;
  }
  int base = f0[UDP_SPORT] << 8 | f0[UDP_SPORT + 1], stride = 1;
  if (nf == 2 && len[1] >= HDRS) {
    int p1 = fr[1][UDP_SPORT] << 8 | fr[1][UDP_SPORT + 1];
    if (p1 > base) stride = p1 - base;
  }
  if (base + (long)stride * (flows - 1) > 65535) { fprintf(stderr, "kaxgen: flows do not fit the port range\n"); return 1; }
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set)) perror("sched_setaffinity");
  }
  signal(SIGINT, on_sig);
  signal(SIGTERM, on_sig);

  int state = map_create(BPF_MAP_TYPE_ARRAY, 8, ST_N);
  uint64_t tx0 = if_stat(ifname, "tx_packets"), dr0 = if_stat(ifname, "tx_dropped");
  uint64_t t0 = now_ns(), offered = 0;
  int err = 0, live_err = 0;

  if (live) {
    int prog = build_gen(state, flows, stride, base, GEN_LIVE, -1, ifindex);
    // one BPF_PROG_RUN call runs `repeat` frames in batches of `batch` (one page pool
    // setup per call): big chunks at max rate, ~1 ms of frames when paced
    uint32_t chunk = pps ? (uint32_t)(pps / 1000 > 0 ? pps / 1000 : 1) : 1u << 16;
    uint64_t t;
    while (!stop_flag && (t = now_ns()) - t0 < secs * 1e9) {
      uint32_t n = chunk;
      if (pps) {
        double due = (t - t0) * 1e-9 * pps - (double)offered;
        if (due < 1) {
          struct timespec ts = {0, 200000};
          nanosleep(&ts, NULL);
          continue;
        }
        n = due < chunk ? (uint32_t)due : chunk;
      }
      union bpf_attr a;
      memset(&a, 0, sizeof a);
      a.test.prog_fd = (uint32_t)prog;
      a.test.data_in = (uint64_t)(uintptr_t)f0;
      a.test.data_size_in = len[0];
      a.test.repeat = n;
      a.test.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
      a.test.batch_size = (uint32_t)batch;
      if (sys_bpf(BPF_PROG_TEST_RUN, &a) < 0) {
        if (errno == EINTR) break;
        err = errno;
        fprintf(stderr, "kaxgen: BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: %s%s\n", strerror(errno),
                autom && !offered ? "; running the XDP loop instead" : "");
        break;
      }
      offered += n;
    }
    close(prog);
    if (autom && !offered && err) {  // refused from the start: the loop instead
      live_err = err;
      err = 0;
      live = 0;
      mode = "loop";
      tx0 = if_stat(ifname, "tx_packets");
      dr0 = if_stat(ifname, "tx_dropped");
      t0 = now_ns();
    }
  }
  if (!live) {
    char *comma = strchr(loop, ',');
    if (!comma) usage();
    *comma = 0;
    unsigned ia = if_nametoindex(loop), ib = if_nametoindex(comma + 1);
    if (!ia || !ib) { fprintf(stderr, "kaxgen: no interface %s or %s\n", loop, comma + 1); return 1; }
    // the devmap: 0 .. COPIES-1 = IF, each with the program that gives the copy its flow's
    // port; COPIES = B (the frame itself goes round again; the last entry of a broadcast
    // gets the original, the others a copy each)
    int devmap = map_create(BPF_MAP_TYPE_DEVMAP, sizeof(struct bpf_devmap_val), (uint32_t)copies + 1);
    int pcopy = build_gen(state, flows, stride, base, GEN_COPY, -1, ifindex);
    for (long k = 0; k < copies; k++) {
      struct bpf_devmap_val v = {.ifindex = ifindex, .bpf_prog.fd = pcopy};
      map_set(devmap, (uint32_t)k, &v);
    }
    struct bpf_devmap_val vb = {.ifindex = ib};
    map_set(devmap, (uint32_t)copies, &vb);
    uint64_t deadline = t0 + (uint64_t)(secs * 1e9);
    map_set(state, ST_DEADLINE, &deadline);
    int pg = build_gen(state, flows, stride, base, GEN_LOOP, devmap, ifindex), ptx = build_tx();
    if (xdp_attach(ia, ptx) || xdp_attach(ib, pg)) die("attaching the loop's XDP programs");
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (s < 0) die("AF_PACKET socket");
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = (int)ia, .sll_halen = ETH_ALEN};
    memcpy(sll.sll_addr, f0, ETH_ALEN);
    t0 = now_ns();
    for (long k = 0; k < seed; k++)
      if (sendto(s, f0, len[0], 0, (struct sockaddr *)&sll, sizeof sll) < 0) die("seeding the loop");
    close(s);
    while (!stop_flag && now_ns() < deadline + 20000000ull) {
      struct timespec ts = {0, 10000000};
      nanosleep(&ts, NULL);
    }
    xdp_attach(ia, -1);
    xdp_attach(ib, -1);
    offered = map_get_u64(state, ST_COUNT);
  }
  double el = (now_ns() - t0) * 1e-9;
  if (!live && el > secs) el = secs;  // the loop stops sending at the deadline
  uint64_t tx = if_stat(ifname, "tx_packets") - tx0, dr = if_stat(ifname, "tx_dropped") - dr0;
  printf("{\"tool\":\"kaxgen\",\"mode\":\"%s\",\"live_error\":\"%s\",\"flows\":%ld,\"base_port\":%d,\"stride\":%d,\"frame_bytes\":%u,"
         "\"offered\":%llu,\"sent\":%llu,\"dropped\":%llu,\"seconds\":%.3f,\"offered_pps\":%.0f}\n",
         mode, live_err ? strerror(live_err) : "", flows, base, stride, len[0], (unsigned long long)offered, (unsigned long long)tx,
         (unsigned long long)dr, el, offered / el);
  return err ? 1 : 0;
}
