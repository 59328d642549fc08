/*
 * impulse-kafka-mock: a Kafka broker for tests and the demo, built on
 * librdkafka's mock cluster (the one Kafka available on a bare Debian box).
 *
 *   impulse-kafka-mock [--brokers N] [--partitions N] [--topic NAME]...
 *                      [--info FILE] [--control-port PORT]
 *
 * Creates the topics (default toPush, toOfflinePush and their .dlq
 * dead-letter topics, 8 partitions each:
 * the mock keeps only ~5 MiB per partition), prints the bootstrap address
 * on stdout and, with --info, writes
 * {"bootstrap":"...","control":"127.0.0.1:P","pid":N} to FILE (atomically,
 * once the cluster is up) for callers that poll for it. Runs until SIGTERM
 * or SIGINT.
 *
 * Control port (127.0.0.1, --control-port, default a free one; 'control'
 * in the info file), for fault tests: a client sends command lines and
 * gets one reply line per command, "ok[ ...]" or "error: <why>". Commands
 * run on the mock cluster at once (librdkafka's rdkafka_mock.h calls):
 *
 *   ping                            -> ok
 *   broker_down ID | broker_up ID   the broker (1..N, -1 = all) closes its
 *                                   connections and refuses new ones / takes
 *                                   them again (no leader change)
 *   broker_rtt ID MS                delay every reply of the broker by MS
 *   request_errors API ERR...       the next requests of API (a Kafka API
 *                                   name: Produce, Fetch, OffsetCommit,
 *                                   OffsetFetch, Metadata, FindCoordinator,
 *                                   JoinGroup, SyncGroup, Heartbeat,
 *                                   LeaveGroup, ListOffsets, ... or its
 *                                   number) fail, one per ERR, in order; ERR
 *                                   is an error name as rd_kafka_err2name
 *                                   gives it (NOT_LEADER_FOR_PARTITION) or a
 *                                   number; NAME*K repeats it K times
 *   clear_request_errors API        drop the errors still queued for API
 *
 * The loop is single-threaded: ppoll() on the listener and up to 16
 * clients, with SIGTERM/SIGINT unblocked only inside ppoll, so a signal
 * is never lost between the check and the wait. A line longer than 4 KiB
 * closes its client. Nothing here is meant for untrusted peers: it listens
 * on loopback only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS  16
#define LINE_MAX_LEN 4096
#define MAX_ERRORS   1024

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

struct client {
    int fd; /* -1: free slot */
    size_t len;
    char line[LINE_MAX_LEN];
};

/* Kafka API keys by name (the protocol's numbering). */
static const struct {
    const char *name;
    int key;
} apis[] = {
    {"Produce", 0},          {"Fetch", 1},
    {"ListOffsets", 2},      {"Metadata", 3},
    {"OffsetCommit", 8},     {"OffsetFetch", 9},
    {"FindCoordinator", 10}, {"JoinGroup", 11},
    {"Heartbeat", 12},       {"LeaveGroup", 13},
    {"SyncGroup", 14},       {"DescribeGroups", 15},
    {"ListGroups", 16},      {"SaslHandshake", 17},
    {"ApiVersions", 18},     {"CreateTopics", 19},
    {"InitProducerId", 22},  {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25}, {"EndTxn", 26},
    {"TxnOffsetCommit", 28}, {"OffsetForLeaderEpoch", 23},
};

static int parse_int(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static int parse_api(const char *s)
{
    long v;
    for (size_t i = 0; i < sizeof(apis) / sizeof(apis[0]); i++)
        if (strcasecmp(s, apis[i].name) == 0) return apis[i].key;
    if (parse_int(s, &v) == 0 && v >= 0 && v < 100) return (int)v;
    return -1;
}

/* An error by name (as rd_kafka_err2name gives it) or number; 0 on success. */
static int parse_err(const char *s, rd_kafka_resp_err_t *out)
{
    const struct rd_kafka_err_desc *d;
    size_t n;
    long v;
    if (parse_int(s, &v) == 0) {
        *out = (rd_kafka_resp_err_t)v;
        return 0;
    }
    rd_kafka_get_err_descs(&d, &n);
    for (size_t i = 0; i < n; i++)
        if (d[i].name && strcasecmp(d[i].name, s) == 0) {
            *out = d[i].code;
            return 0;
        }
    return -1;
}

/* Runs one command line; writes the reply line (without newline) to out. */
static void run_command(rd_kafka_mock_cluster_t *mc, char *line, char *out, size_t outlen)
{
    char *argv[MAX_ERRORS + 2];
    int argc = 0;
    long id, ms;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

    for (char *tok = strtok(line, " \t\r"); tok && argc < (int)(sizeof(argv) / sizeof(argv[0]));
         tok = strtok(NULL, " \t\r"))
        argv[argc++] = tok;
    if (argc == 0) {
        snprintf(out, outlen, "error: empty command");
        return;
    }
    if (strcmp(argv[0], "ping") == 0 && argc == 1) {
        snprintf(out, outlen, "ok");
        return;
    }
    if ((strcmp(argv[0], "broker_down") == 0 || strcmp(argv[0], "broker_up") == 0) && argc == 2) {
        if (parse_int(argv[1], &id) != 0) {
            snprintf(out, outlen, "error: %s: broker id expected", argv[0]);
            return;
        }
        err = argv[0][7] == 'd' ? rd_kafka_mock_broker_set_down(mc, (int32_t)id)
                                : rd_kafka_mock_broker_set_up(mc, (int32_t)id);
    } else if (strcmp(argv[0], "broker_rtt") == 0 && argc == 3) {
        if (parse_int(argv[1], &id) != 0 || parse_int(argv[2], &ms) != 0 || ms < 0) {
            snprintf(out, outlen, "error: broker_rtt ID MS");
            return;
        }
        err = rd_kafka_mock_broker_set_rtt(mc, (int32_t)id, (int)ms);
    } else if (strcmp(argv[0], "request_errors") == 0 && argc >= 3) {
        static rd_kafka_resp_err_t errs[MAX_ERRORS];
        size_t n = 0;
        int api = parse_api(argv[1]);
        if (api < 0) {
            snprintf(out, outlen, "error: unknown Kafka API %s", argv[1]);
            return;
        }
        for (int i = 2; i < argc; i++) {
            long times = 1;
            char *star = strchr(argv[i], '*');
            if (star) {
                *star = '\0';
                if (parse_int(star + 1, &times) != 0 || times < 1) {
                    snprintf(out, outlen, "error: bad repeat count in %s*%s", argv[i], star + 1);
                    return;
                }
            }
            rd_kafka_resp_err_t e;
            if (parse_err(argv[i], &e) != 0) {
                snprintf(out, outlen, "error: unknown error name %s", argv[i]);
                return;
            }
            if (n + (size_t)times > MAX_ERRORS) {
                snprintf(out, outlen, "error: at most %d errors per command", MAX_ERRORS);
                return;
            }
            while (times-- > 0) errs[n++] = e;
        }
        rd_kafka_mock_push_request_errors_array(mc, (int16_t)api, n, errs);
        snprintf(out, outlen, "ok %zu errors queued for API %d", n, api);
        return;
    } else if (strcmp(argv[0], "clear_request_errors") == 0 && argc == 2) {
        int api = parse_api(argv[1]);
        if (api < 0) {
            snprintf(out, outlen, "error: unknown Kafka API %s", argv[1]);
            return;
        }
        rd_kafka_mock_clear_request_errors(mc, (int16_t)api);
    } else {
        snprintf(out, outlen,
                 "error: unknown command or arguments: %s (ping, broker_down ID, broker_up ID, "
                 "broker_rtt ID MS, request_errors API ERR..., clear_request_errors API)",
                 argv[0]);
        return;
    }
    if (err)
        snprintf(out, outlen, "error: %s", rd_kafka_err2str(err));
    else
        snprintf(out, outlen, "ok");
}

/* Reads what a client sent; runs each complete line. Returns -1 when the
 * client is to be closed. */
static int client_read(rd_kafka_mock_cluster_t *mc, struct client *c)
{
    ssize_t r = read(c->fd, c->line + c->len, sizeof(c->line) - c->len);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) return 0;
    if (r <= 0) return -1;
    c->len += (size_t)r;
    for (;;) {
        char *nl = memchr(c->line, '\n', c->len);
        if (!nl) break;
        *nl = '\0';
        char reply[512];
        run_command(mc, c->line, reply, sizeof(reply) - 1);
        fprintf(stderr, "impulse-kafka-mock: control: %s\n", reply);
        size_t rl = strlen(reply);
        reply[rl++] = '\n';
        if (write(c->fd, reply, rl) != (ssize_t)rl) return -1;
        size_t used = (size_t)(nl - c->line) + 1;
        memmove(c->line, c->line + used, c->len - used);
        c->len -= used;
    }
    return c->len == sizeof(c->line) ? -1 : 0;
}

static int control_listen(int port, int *bound)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        close(fd);
        return -1;
    }
    *bound = ntohs(sa.sin_port);
    return fd;
}

int main(int argc, char **argv)
{
    int brokers = 1, partitions = 8, control_port = 0;
    const char *info = NULL;
    const char *topics[32];
    int ntopics = 0;
    char errstr[512];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc)
            brokers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc)
            partitions = atoi(argv[++i]);
        else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc && ntopics < 32)
            topics[ntopics++] = argv[++i];
        else if (strcmp(argv[i], "--info") == 0 && i + 1 < argc)
            info = argv[++i];
        else if (strcmp(argv[i], "--control-port") == 0 && i + 1 < argc)
            control_port = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: impulse-kafka-mock [--brokers N] [--partitions N] "
                            "[--topic NAME]... [--info FILE] [--control-port PORT]\n");
            return 2;
        }
    }
    if (ntopics == 0) {
        topics[ntopics++] = "toPush";
        topics[ntopics++] = "toOfflinePush";
        topics[ntopics++] = "toPush.dlq";
        topics[ntopics++] = "toOfflinePush.dlq";
    }
    if (brokers < 1 || partitions < 1 || control_port < 0 || control_port > 65535) {
        fprintf(stderr, "impulse-kafka-mock: --brokers and --partitions must be positive, "
                        "--control-port a port\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a control client that left: write fails instead */

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "impulse-kafka-mock: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "impulse-kafka-mock: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (int i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topics[i], partitions, brokers);
        if (err) {
            fprintf(stderr, "impulse-kafka-mock: topic %s: %s\n", topics[i], rd_kafka_err2str(err));
            return 1;
        }
    }
    int bound = 0;
    int lfd = control_listen(control_port, &bound);
    if (lfd < 0) {
        perror("impulse-kafka-mock: the control port");
        return 1;
    }
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    printf("%s\n", bootstrap);
    fflush(stdout);
    if (info) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", info);
        FILE *f = fopen(tmp, "w");
        if (!f ||
            fprintf(f, "{\"bootstrap\":\"%s\",\"control\":\"127.0.0.1:%d\",\"pid\":%d}\n",
                    bootstrap, bound, (int)getpid()) < 0 ||
            fclose(f) != 0 || rename(tmp, info) != 0) {
            perror("impulse-kafka-mock: writing the info file");
            return 1;
        }
    }

    /* Block the signals; ppoll unblocks them only while it waits, so one
     * that arrives between the check and the wait is not lost. */
    struct sigaction sa;
    sigset_t block, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &old);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    static struct client clients[MAX_CLIENTS];
    for (int i = 0; i < MAX_CLIENTS; i++) clients[i].fd = -1;
    while (!stop) {
        struct pollfd pfd[MAX_CLIENTS + 1];
        int who[MAX_CLIENTS + 1];
        nfds_t n = 0;
        pfd[n].fd = lfd;
        pfd[n].events = POLLIN;
        who[n++] = -1;
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (clients[i].fd >= 0) {
                pfd[n].fd = clients[i].fd;
                pfd[n].events = POLLIN;
                who[n++] = i;
            }
        if (ppoll(pfd, n, NULL, &old) < 0) continue; /* EINTR: a signal */
        for (nfds_t k = 0; k < n; k++) {
            if (!pfd[k].revents) continue;
            if (who[k] < 0) {
                int fd = accept(lfd, NULL, NULL);
                if (fd < 0) continue;
                int slot = -1;
                for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
                    if (clients[i].fd < 0) slot = i;
                if (slot < 0) {
                    close(fd); /* full */
                    continue;
                }
                clients[slot].fd = fd;
                clients[slot].len = 0;
            } else if (client_read(mc, &clients[who[k]]) != 0) {
                close(clients[who[k]].fd);
                clients[who[k]].fd = -1;
            }
        }
    }

    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd >= 0) close(clients[i].fd);
    close(lfd);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    if (info) unlink(info);
    return 0;
}
