/*
 * impulse-kafka-mock: a Kafka broker for tests and the demo, built on
 * librdkafka's mock cluster (the one Kafka available on a bare Debian box).
 *
 *   impulse-kafka-mock [--brokers N] [--partitions N] [--topic NAME]...
 *                      [--info FILE]
 *
 * Creates the topics (default toPush, toOfflinePush and their .dlq
 * dead-letter topics, 8 partitions each:
 * the mock keeps only ~5 MiB per partition), prints the bootstrap address
 * on stdout and, with --info, writes {"bootstrap":"...","pid":N} to FILE
 * (atomically, once the cluster is up) for callers that poll for it. Runs
 * until SIGTERM or SIGINT.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    int brokers = 1, partitions = 8;
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
        else {
            fprintf(stderr, "usage: impulse-kafka-mock [--brokers N] [--partitions N] "
                            "[--topic NAME]... [--info FILE]\n");
            return 2;
        }
    }
    if (ntopics == 0) {
        topics[ntopics++] = "toPush";
        topics[ntopics++] = "toOfflinePush";
        topics[ntopics++] = "toPush.dlq";
        topics[ntopics++] = "toOfflinePush.dlq";
    }
    if (brokers < 1 || partitions < 1) {
        fprintf(stderr, "impulse-kafka-mock: --brokers and --partitions must be positive\n");
        return 2;
    }

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
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    printf("%s\n", bootstrap);
    fflush(stdout);
    if (info) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", info);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "{\"bootstrap\":\"%s\",\"pid\":%d}\n", bootstrap, (int)getpid()) < 0 ||
            fclose(f) != 0 || rename(tmp, info) != 0) {
            perror("impulse-kafka-mock: writing the info file");
            return 1;
        }
    }

    /* Block the signals, then wait for them with sigsuspend, so one that
     * arrives between the check and the wait is not lost. */
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
    while (!stop) sigsuspend(&old);

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    if (info) unlink(info);
    return 0;
}
