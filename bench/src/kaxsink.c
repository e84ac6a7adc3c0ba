// kaxsink: the bench's sink as an XDP program on the sink interface. It counts and drops
// the UDP datagrams to one port (Ethernet + IPv4 without options), before the kernel builds
// an skb for them, so that receiving costs the sink's core ~tens of ns per packet instead
// of an skb and a trip through the stack (nft's ingress hook, the other sink, needs the
// skb). One datagram in EVERY (a power of two; 0 = none) is passed on to the stack, so
// that a capture on the interface (the bench's correctness sample) still sees some; what
// is passed counts too. Everything else (ARP, other ports) passes.
//
//   kaxsink -i IF -d DPORT [-e EVERY]
//
// Run it in IF's namespace. It attaches (native XDP), prints {"ready":1}, and counts until
// SIGINT/SIGTERM; then it detaches and prints one JSON line
// {"tool":"kaxsink","packets":N,"passed":P} (P = the samples passed to the stack).
#define TOOL "kaxsink"
#include "xdpraw.h"

// IPv4 protocol and UDP destination port of an untagged Ethernet + 20-byte IPv4 frame
#define IP_VER_IHL 14
#define IP_PROTO 23
#define UDP_DPORT 36

static int build_sink(int state_fd, int dport, long every) {
  struct prog p = {0};
  emit(&p, I(BPF_LDX | BPF_MEM | BPF_W, R7, R1, 0, 0));  // r7 = ctx->data
  emit(&p, I(BPF_LDX | BPF_MEM | BPF_W, R8, R1, 4, 0));  // r8 = ctx->data_end
  emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_X, R2, R7, 0, 0));
  emit(&p, I(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, HDRS));
  emit_out_if(&p, I(BPF_JMP | BPF_JGT | BPF_X, R2, R8, 0, 0));  // short frame
  // loads are little-endian: the wire's 0x0800 reads as 0x0008, a port as its bytes swapped
  emit(&p, I(BPF_LDX | BPF_MEM | BPF_H, R2, R7, 12, 0));
  emit_out_if(&p, I(BPF_JMP | BPF_JNE | BPF_K, R2, 0, 0, 0x0008));
  emit(&p, I(BPF_LDX | BPF_MEM | BPF_B, R2, R7, IP_VER_IHL, 0));
  emit_out_if(&p, I(BPF_JMP | BPF_JNE | BPF_K, R2, 0, 0, 0x45));
  emit(&p, I(BPF_LDX | BPF_MEM | BPF_B, R2, R7, IP_PROTO, 0));
  emit_out_if(&p, I(BPF_JMP | BPF_JNE | BPF_K, R2, 0, 0, 17));
  emit(&p, I(BPF_LDX | BPF_MEM | BPF_H, R2, R7, UDP_DPORT, 0));
  emit_out_if(&p, I(BPF_JMP | BPF_JNE | BPF_K, R2, 0, 0, (int)htons((uint16_t)dport)));
  emit_lookup(&p, state_fd, 0);
  emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_K, R1, 0, 0, 1));
  emit(&p, I(BPF_STX | BPF_ATOMIC | BPF_DW, R0, R1, 0, BPF_ADD | BPF_FETCH));  // r1 = n++
  if (every > 0) {  // the n-th datagram with n mod EVERY = 0 goes on to the stack
    emit(&p, I(BPF_ALU64 | BPF_AND | BPF_K, R1, 0, 0, (int)(every - 1)));
    emit_out_if(&p, I(BPF_JMP | BPF_JEQ | BPF_K, R1, 0, 0, 0));
  }
  emit(&p, I(BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, XDP_DROP));
  emit(&p, I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  emit_out(&p, XDP_PASS);
  return prog_load(&p, 0, "kaxsink");
}

static void usage(void) {
  fprintf(stderr, "usage: kaxsink -i IF -d DPORT [-e EVERY (a power of two, 0 = none; default 256)]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *ifname = NULL;
  long dport = -1, every = 256;
  int o;
  while ((o = getopt(argc, argv, "i:d:e:")) != -1) {
    switch (o) {
      case 'i': ifname = optarg; break;
      case 'd': dport = atol(optarg); break;
      case 'e': every = atol(optarg); break;
      default: usage();
    }
  }
  if (!ifname || dport < 1 || dport > 65535 || every < 0 || every > (1L << 30) || (every & (every - 1)))
    usage();
  unsigned ifindex = if_nametoindex(ifname);
  if (!ifindex) { fprintf(stderr, "kaxsink: no interface %s\n", ifname); return 1; }
  signal(SIGINT, on_sig);
  signal(SIGTERM, on_sig);
  int state = map_create(BPF_MAP_TYPE_ARRAY, 8, 1);
  int prog = build_sink(state, (int)dport, every);
  if (xdp_attach(ifindex, prog)) die("attaching the sink's XDP program");
  printf("{\"ready\":1}\n");
  fflush(stdout);
  while (!stop_flag) {
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  if (xdp_attach(ifindex, -1)) die("detaching the sink's XDP program");
  uint64_t n = map_get_u64(state, 0);  // after the detach: nothing is counted any more
  uint64_t passed = every > 0 ? (n + (uint64_t)every - 1) / (uint64_t)every : 0;
  printf("{\"tool\":\"kaxsink\",\"packets\":%llu,\"passed\":%llu}\n", (unsigned long long)n,
         (unsigned long long)passed);
  return 0;
}
