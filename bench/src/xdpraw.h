// xdpraw.h: what the bench's XDP tools (kaxgen, kaxsink) share: raw bpf(2), programs
// assembled from instructions (no libbpf, no ELF, no clang), native XDP attach by
// rtnetlink, array and devmap helpers. Define TOOL (the name for messages) before
// including it.
#ifndef XDPRAW_H
#define XDPRAW_H
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>


static volatile sig_atomic_t stop_flag;
static inline void on_sig(int s) { (void)s; stop_flag = 1; }

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // = bpf_ktime_get_ns()
  return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static inline long sys_bpf(int cmd, union bpf_attr *attr) { return syscall(SYS_bpf, cmd, attr, sizeof(*attr)); }

static inline void die(const char *what) {
  fprintf(stderr, TOOL ": %s: %s\n", what, strerror(errno));
  exit(1);
}

static inline uint64_t if_stat(const char *ifname, const char *what) {
  char p[256];
  unsigned long long v = 0;
  snprintf(p, sizeof p, "/sys/class/net/%s/statistics/%s", ifname, what);
  FILE *f = fopen(p, "r");
  if (f) {
    if (fscanf(f, "%llu", &v) != 1) v = 0;
    fclose(f);
  }
  return v;
}

// attach (fd >= 0) or detach (fd = -1) a native XDP program: RTM_SETLINK, IFLA_XDP
static inline int xdp_attach(unsigned ifindex, int fd) {
  struct {
    struct nlmsghdr nh;
    struct ifinfomsg ifi;
    char buf[64];
  } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_type = RTM_SETLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof req.ifi);
  req.ifi.ifi_family = AF_UNSPEC;
  req.ifi.ifi_index = (int)ifindex;
  struct rtattr *nest = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
  nest->rta_type = IFLA_XDP | NLA_F_NESTED;
  struct rtattr *a = RTA_DATA(nest);
  a->rta_type = IFLA_XDP_FD;
  a->rta_len = RTA_LENGTH(sizeof(int));
  memcpy(RTA_DATA(a), &fd, sizeof fd);
  struct rtattr *b = (struct rtattr *)((char *)a + RTA_ALIGN(a->rta_len));
  uint32_t flags = XDP_FLAGS_DRV_MODE;
  b->rta_type = IFLA_XDP_FLAGS;
  b->rta_len = RTA_LENGTH(sizeof flags);
  memcpy(RTA_DATA(b), &flags, sizeof flags);
  nest->rta_len = RTA_LENGTH(RTA_ALIGN(a->rta_len) + RTA_ALIGN(b->rta_len));
  req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_ALIGN(nest->rta_len);

  int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (s < 0) die("netlink socket");
  if (send(s, &req, req.nh.nlmsg_len, 0) < 0) die("netlink send");
  char ack[512];
  ssize_t n = recv(s, ack, sizeof ack, 0);
  close(s);
  struct nlmsghdr *h = (struct nlmsghdr *)ack;
  if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) && h->nlmsg_type == NLMSG_ERROR) {
    int e = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
    if (e) { errno = -e; return -1; }
    return 0;
  }
  errno = EPROTO;
  return -1;
}

// ---------------------------------------------------------------- programs
#define I(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
enum { R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 };
// UDP header of an untagged Ethernet + 20-byte IPv4 frame
#define UDP_SPORT 34
#define UDP_CSUM 40
#define HDRS 42
#define MAXI 96

struct prog {
  struct bpf_insn in[MAXI];
  int n;
  int out_jumps[8], nout;  // jumps to the common exit, patched by emit_out
};
static inline void emit(struct prog *p, struct bpf_insn i) { p->in[p->n++] = i; }
static inline void emit_ld_map(struct prog *p, int reg, int fd) {
  emit(p, I(BPF_LD | BPF_DW | BPF_IMM, reg, BPF_PSEUDO_MAP_FD, 0, fd));
  emit(p, I(0, 0, 0, 0, 0));
}
// a jump to the program's common exit (whose verdict emit_out sets)
static inline void emit_out_if(struct prog *p, struct bpf_insn j) {
  p->out_jumps[p->nout++] = p->n;
  emit(p, j);
}
// the common exit: return `verdict`; every emit_out_if jump lands here
static inline void emit_out(struct prog *p, int verdict) {
  int at = p->n;
  emit(p, I(BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, verdict));
  emit(p, I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  for (int k = 0; k < p->nout; k++) p->in[p->out_jumps[k]].off = (int16_t)(at - p->out_jumps[k] - 1);
}
// r0 = &state[key] (an array map), or the common exit
static inline void emit_lookup(struct prog *p, int map_fd, int key) {
  emit(p, I(BPF_ST | BPF_MEM | BPF_W, R10, 0, -4, key));
  emit(p, I(BPF_ALU64 | BPF_MOV | BPF_X, R2, R10, 0, 0));
  emit(p, I(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, -4));
  emit_ld_map(p, R1, map_fd);
  emit(p, I(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem));
  emit_out_if(p, I(BPF_JMP | BPF_JEQ | BPF_K, R0, 0, 0, 0));
}
// load an assembled program (XDP; `attach` = its expected attach type, 0 for an
// interface's own program); the verifier's log on failure
static inline int prog_load(const struct prog *p, uint32_t attach, const char *name) {
  static char vlog[1 << 16];
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_XDP;
  a.expected_attach_type = attach;
  a.insns = (uint64_t)(uintptr_t)p->in;
  a.insn_cnt = (uint32_t)p->n;
  a.license = (uint64_t)(uintptr_t) "GPL";
  a.log_buf = (uint64_t)(uintptr_t)vlog;
  a.log_size = sizeof vlog;
  a.log_level = 1;
  strncpy(a.prog_name, name, sizeof a.prog_name - 1);
  int fd = (int)sys_bpf(BPF_PROG_LOAD, &a);
  if (fd < 0) {
    fprintf(stderr, TOOL ": program load: %s\n%s\n", strerror(errno), vlog);
    exit(1);
  }
  return fd;
}

static inline int map_create(uint32_t type, uint32_t vsize, uint32_t n) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_type = type;
  a.key_size = 4;
  a.value_size = vsize;
  a.max_entries = n;
  int fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
  if (fd < 0) die("map create");
  return fd;
}
static inline void map_set(int fd, uint32_t key, const void *val) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = (uint32_t)fd;
  a.key = (uint64_t)(uintptr_t)&key;
  a.value = (uint64_t)(uintptr_t)val;
  if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a)) die("map update");
}
static inline uint64_t map_get_u64(int fd, uint32_t key) {
  union bpf_attr a;
  uint64_t v = 0;
  memset(&a, 0, sizeof a);
  a.map_fd = (uint32_t)fd;
  a.key = (uint64_t)(uintptr_t)&key;
  a.value = (uint64_t)(uintptr_t)&v;
  if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &a)) die("map lookup");
  return v;
}

#endif
