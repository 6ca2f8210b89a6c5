/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* wan-emu: delay, jitter and loss between "sites" for the network-namespace
 * tests, where the kernel has no sch_netem (CONFIG_NET_SCH_NETEM unset, as on
 * this project's machines).  It binds an NFQUEUE (raw nfnetlink, no library)
 * and holds each queued IPv4 packet whose source and destination lie in
 * different sites (a site is a /24: 10.200.S.0/24) for delay ± jitter
 * (uniform, as netem without a distribution table), or drops it with the
 * loss probability; packets within a site are accepted at once.  Verdicts
 * are given out of order, so jitter reorders as netem's does.
 *
 * Run it in the namespace holding the bridge, with br_netfilter on and
 * iptables -A FORWARD -j NFQUEUE --queue-num Q --queue-bypass, so bridged
 * packets pass through it (and flow unhindered if it is gone).
 *
 * Usage: wan-emu --queue Q --delay MS --jitter MS --loss PERCENT
 *                [--seconds N] [--seed N] [--stats FILE]
 * Bounded: it exits after --seconds (default 900) or on SIGTERM/SIGINT;
 * held packets are dropped with the queue then, as a cut cable would.
 * Exits 77 when the kernel gives it no NFQUEUE (the tests then skip). */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define COPY_RANGE 64
#define QUEUE_MAXLEN 16384
#define HELD_MAX 65536

struct held {
        uint64_t due_usec;
        uint32_t id;
};

static struct held heap[HELD_MAX];
static size_t n_heap;
static volatile sig_atomic_t stop;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static struct {
        uint64_t seen, local, delayed, dropped, overflow;
} stats;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static uint64_t rng_next(void) {
        /* splitmix64: reproducible with --seed, good enough for loss. */
        uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static double rng_unit(void) {
        return (double) (rng_next() >> 11) / (double) (1ull << 53);
}

static void heap_push(struct held h) {
        size_t i = n_heap++;

        while (i > 0 && heap[(i - 1) / 2].due_usec > h.due_usec) {
                heap[i] = heap[(i - 1) / 2];
                i = (i - 1) / 2;
        }
        heap[i] = h;
}

static struct held heap_pop(void) {
        struct held top = heap[0], last = heap[--n_heap];
        size_t i = 0;

        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= n_heap)
                        break;
                if (c + 1 < n_heap && heap[c + 1].due_usec < heap[c].due_usec)
                        c++;
                if (heap[c].due_usec >= last.due_usec)
                        break;
                heap[i] = heap[c];
                i = c;
        }
        if (n_heap > 0)
                heap[i] = last;
        return top;
}

/* ---- nfnetlink ---- */

/* NLMSG_OK() and NLMSG_NEXT() with a signed remainder: the last message's
 * padding can take it below zero, which must end the walk (an unsigned one
 * wrapped and read past the buffer). */
static bool msg_ok(const struct nlmsghdr *nh, ssize_t len) {
        return len >= (ssize_t) sizeof(*nh) && nh->nlmsg_len >= sizeof(*nh) && (ssize_t) nh->nlmsg_len <= len;
}

static struct nlmsghdr *msg_next(struct nlmsghdr *nh, ssize_t *len) {
        *len -= (ssize_t) NLMSG_ALIGN(nh->nlmsg_len);
        return (struct nlmsghdr *) ((char *) nh + NLMSG_ALIGN(nh->nlmsg_len));
}

static void *attr_put(struct nlmsghdr *nh, uint16_t type, const void *data, size_t len) {
        struct nlattr *a = (struct nlattr *) ((char *) nh + NLMSG_ALIGN(nh->nlmsg_len));

        a->nla_type = type;
        a->nla_len = (uint16_t) (NLA_HDRLEN + len);
        memcpy((char *) a + NLA_HDRLEN, data, len);
        nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + NLA_ALIGN(a->nla_len);
        return a;
}

static struct nlmsghdr *msg_start(char *buf, uint16_t type, uint16_t flags, uint16_t queue) {
        struct nlmsghdr *nh = (struct nlmsghdr *) buf;
        struct nfgenmsg *g;

        memset(buf, 0, NLMSG_SPACE(sizeof(struct nfgenmsg)));
        nh->nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg));
        nh->nlmsg_type = (uint16_t) ((NFNL_SUBSYS_QUEUE << 8) | type);
        nh->nlmsg_flags = (uint16_t) (NLM_F_REQUEST | flags);
        g = NLMSG_DATA(nh);
        g->nfgen_family = AF_UNSPEC;
        g->version = NFNETLINK_V0;
        g->res_id = htons(queue);
        return nh;
}

static int nl_send(int fd, struct nlmsghdr *nh) {
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK };

        return sendto(fd, nh, nh->nlmsg_len, 0, (struct sockaddr *) &sa, sizeof(sa)) < 0 ? -errno : 0;
}

/* Sends a config request and waits for its ack: 0 or -errno. */
static int nl_request(int fd, struct nlmsghdr *nh) {
        char buf[4096];
        ssize_t n;
        int r;

        nh->nlmsg_flags |= NLM_F_ACK;
        r = nl_send(fd, nh);
        if (r < 0)
                return r;
        n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0)
                return -errno;
        for (struct nlmsghdr *h = (struct nlmsghdr *) buf; msg_ok(h, n); h = msg_next(h, &n))
                if (h->nlmsg_type == NLMSG_ERROR)
                        return ((struct nlmsgerr *) NLMSG_DATA(h))->error;
        return -EPROTO;
}

static int verdict(int fd, uint16_t queue, uint32_t id, uint32_t v) {
        char buf[128];
        struct nlmsghdr *nh = msg_start(buf, NFQNL_MSG_VERDICT, 0, queue);
        struct nfqnl_msg_verdict_hdr vh = { .verdict = htonl(v), .id = htonl(id) };

        attr_put(nh, NFQA_VERDICT_HDR, &vh, sizeof(vh));
        return nl_send(fd, nh);
}

static int queue_bind(int fd, uint16_t queue) {
        char buf[256];
        struct nlmsghdr *nh;
        struct nfqnl_msg_config_cmd cmd = { .command = NFQNL_CFG_CMD_BIND, .pf = htons(AF_INET) };
        struct nfqnl_msg_config_params params = { .copy_range = htonl(COPY_RANGE),
                                                  .copy_mode = NFQNL_COPY_PACKET };
        uint32_t maxlen = htonl(QUEUE_MAXLEN), flags = htonl(NFQA_CFG_F_FAIL_OPEN);
        int r;

        nh = msg_start(buf, NFQNL_MSG_CONFIG, 0, queue);
        attr_put(nh, NFQA_CFG_CMD, &cmd, sizeof(cmd));
        r = nl_request(fd, nh);
        if (r < 0)
                return r;
        nh = msg_start(buf, NFQNL_MSG_CONFIG, 0, queue);
        attr_put(nh, NFQA_CFG_PARAMS, &params, sizeof(params));
        attr_put(nh, NFQA_CFG_QUEUE_MAXLEN, &maxlen, sizeof(maxlen));
        attr_put(nh, NFQA_CFG_FLAGS, &flags, sizeof(flags));
        attr_put(nh, NFQA_CFG_MASK, &flags, sizeof(flags));
        return nl_request(fd, nh);
}

/* Site of an IPv4 address: its /24. */
static uint32_t site_of(const uint8_t *a) {
        return ((uint32_t) a[0] << 16) | ((uint32_t) a[1] << 8) | a[2];
}

static void on_packet(int fd, uint16_t queue, struct nlmsghdr *nh, double delay_ms, double jitter_ms,
                      double loss) {
        struct nfqnl_msg_packet_hdr *ph = NULL;
        const uint8_t *payload = NULL;
        size_t payload_len = 0;
        size_t len = nh->nlmsg_len - NLMSG_LENGTH(sizeof(struct nfgenmsg));
        struct nlattr *a = (struct nlattr *) ((char *) NLMSG_DATA(nh) + NLMSG_ALIGN(sizeof(struct nfgenmsg)));
        uint32_t id;

        while (len >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= len) {
                uint16_t type = a->nla_type & NLA_TYPE_MASK;
                if (type == NFQA_PACKET_HDR && a->nla_len >= NLA_HDRLEN + sizeof(*ph))
                        ph = (struct nfqnl_msg_packet_hdr *) ((char *) a + NLA_HDRLEN);
                else if (type == NFQA_PAYLOAD) {
                        payload = (const uint8_t *) a + NLA_HDRLEN;
                        payload_len = a->nla_len - NLA_HDRLEN;
                }
                if ((size_t) NLA_ALIGN(a->nla_len) >= len)
                        break;
                len -= NLA_ALIGN(a->nla_len);
                a = (struct nlattr *) ((char *) a + NLA_ALIGN(a->nla_len));
        }
        if (!ph)
                return;
        id = ntohl(ph->packet_id);
        stats.seen++;

        if (!payload || payload_len < 20 || (payload[0] >> 4) != 4 || site_of(payload + 12) == site_of(payload + 16)) {
                stats.local++;
                (void) verdict(fd, queue, id, NF_ACCEPT);
                return;
        }
        if (loss > 0 && rng_unit() < loss) {
                stats.dropped++;
                (void) verdict(fd, queue, id, NF_DROP);
                return;
        }
        if (n_heap >= HELD_MAX) {
                stats.overflow++;
                (void) verdict(fd, queue, id, NF_ACCEPT);
                return;
        }
        {
                double d = delay_ms + (2 * rng_unit() - 1) * jitter_ms;
                heap_push((struct held) { .due_usec = now_usec() + (uint64_t) (d > 0 ? d * 1000 : 0), .id = id });
                stats.delayed++;
        }
}

static void on_signal(int sig) {
        stop = 1;
}

static void write_stats(const char *path) {
        FILE *f = path ? fopen(path, "we") : NULL;

        if (!f)
                return;
        fprintf(f, "seen %llu\nlocal %llu\ndelayed %llu\ndropped %llu\noverflow %llu\n",
                (unsigned long long) stats.seen, (unsigned long long) stats.local,
                (unsigned long long) stats.delayed, (unsigned long long) stats.dropped,
                (unsigned long long) stats.overflow);
        fclose(f);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "queue", required_argument, NULL, 'q' },
                { "delay", required_argument, NULL, 'd' },
                { "jitter", required_argument, NULL, 'j' },
                { "loss", required_argument, NULL, 'l' },
                { "seconds", required_argument, NULL, 's' },
                { "seed", required_argument, NULL, 'S' },
                { "stats", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        double delay_ms = 20, jitter_ms = 5, loss = 0.01;
        unsigned long queue = 0, seconds = 900;
        const char *stats_path = NULL;
        uint64_t deadline;
        int fd, c, r, size = 8 << 20;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'q':
                        queue = strtoul(optarg, NULL, 10);
                        break;
                case 'd':
                        delay_ms = strtod(optarg, NULL);
                        break;
                case 'j':
                        jitter_ms = strtod(optarg, NULL);
                        break;
                case 'l':
                        loss = strtod(optarg, NULL) / 100.0;
                        break;
                case 's':
                        seconds = strtoul(optarg, NULL, 10);
                        break;
                case 'S':
                        rng_state = strtoull(optarg, NULL, 10);
                        break;
                case 'o':
                        stats_path = optarg;
                        break;
                case 'h':
                        printf("wan-emu --queue Q --delay MS --jitter MS --loss PERCENT [--seconds N] "
                               "[--seed N] [--stats FILE]\n");
                        return 0;
                default:
                        return 2;
                }
        if (queue > 65535 || delay_ms < 0 || jitter_ms < 0 || !(loss >= 0 && loss <= 1) || seconds == 0) {
                fprintf(stderr, "wan-emu: bad arguments\n");
                return 2;
        }

        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
        if (fd < 0) {
                perror("wan-emu: netlink socket");
                return 77;      /* the kernel cannot: the tests skip, saying so */
        }
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        r = queue_bind(fd, (uint16_t) queue);
        if (r < 0) {
                fprintf(stderr, "wan-emu: cannot bind NFQUEUE %lu: %s\n", queue, strerror(-r));
                return 77;
        }
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        deadline = now_usec() + (uint64_t) seconds * 1000000u;
        fprintf(stderr, "wan-emu: queue %lu, %.1f ms ± %.1f ms, %.2f %% loss between sites\n", queue, delay_ms,
                jitter_ms, loss * 100);

        while (!stop) {
                static char buf[1 << 16];
                uint64_t now = now_usec();
                int timeout = 100;
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (now >= deadline)
                        break;
                while (n_heap > 0 && heap[0].due_usec <= now)
                        (void) verdict(fd, (uint16_t) queue, heap_pop().id, NF_ACCEPT);
                if (n_heap > 0) {
                        uint64_t wait = heap[0].due_usec - now;
                        timeout = (int) (wait / 1000);
                }
                if (poll(&p, 1, timeout) <= 0)
                        continue;
                n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n < 0)
                        continue;       /* ENOBUFS: the kernel dropped some; fail-open passes them */
                for (struct nlmsghdr *nh = (struct nlmsghdr *) buf; msg_ok(nh, n); nh = msg_next(nh, &n))
                        if (nh->nlmsg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
                                on_packet(fd, (uint16_t) queue, nh, delay_ms, jitter_ms, loss);
        }
        write_stats(stats_path);
        close(fd);
        return 0;
}
