/*
 * Kafka consumer on a worker's loop, with at-least-once offset storage.
 *
 * One consumer per worker and topic, member of the topic's group (eager
 * `range` assignor, as OpenIM's Sarama consumers). librdkafka signals its
 * queue through a pipe that the loop watches; every wake-up drains the
 * queue fully (the signal fires only on empty → non-empty), and a timer
 * keeps polling while paused or idle so the member is never evicted.
 *
 * Offsets: enable.auto.offset.store=false, auto commit on. Each delivered
 * message gets a reference; imp_consumer_done(ref) marks it handled and
 * stores the partition's offset only when every earlier message of the
 * partition is handled too (offsets.h). References from before a
 * rebalance are ignored: those partitions replay on their new owner.
 */
#ifndef IMP_KAFKA_H
#define IMP_KAFKA_H

#include <ev.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "base/config.h"

struct imp_consumer;

/* A librdkafka queue wired into a loop: librdkafka writes to a pipe when
 * the queue goes from empty to non-empty, the loop watches the pipe, and a
 * timer serves the queue too (to keep polling while paused or idle).
 * serve(arg) runs on the loop and must drain the queue fully. */
struct imp_kafka_wakeup {
    struct ev_loop *loop;
    ev_io io;
    ev_timer tick;
    int fd[2];
    void (*serve)(void *arg);
    void *arg;
};

int imp_kafka_wakeup_init(struct imp_kafka_wakeup *k, struct ev_loop *loop, rd_kafka_queue_t *q,
                          double tick_s, void (*serve)(void *), void *arg, char *err,
                          size_t errlen);
void imp_kafka_wakeup_start(struct imp_kafka_wakeup *k);
void imp_kafka_wakeup_stop(struct imp_kafka_wakeup *k);
/* Stops the watchers and closes the pipe (safe on a failed init). */
void imp_kafka_wakeup_dispose(struct imp_kafka_wakeup *k);

struct imp_msgref {
    int32_t partition;
    uint32_t gen; /* assignment generation the message was fetched in */
    uint64_t seq; /* position in the partition's tracker */
};

struct imp_consumer_handler {
    /* A message to handle; the handler owns rkm (rd_kafka_message_destroy)
     * and must eventually call imp_consumer_done(ref) exactly once. */
    void (*message)(void *arg, rd_kafka_message_t *rkm, struct imp_msgref ref);
    /* Partitions assigned (count may be 0); runs on every rebalance. */
    void (*assigned)(void *arg, int npartitions);
    void *arg;
};

/* Fills conf with what every impulse Kafka client needs (brokers, SASL,
 * TLS, logging). Returns 0, or IMP_EINVAL with the failing key in err. */
/* rd_kafka_conf_set, with "kafka setting <k>: <why>" in err on failure. */
int imp_kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err,
                       size_t errlen);
/* The partition count of topic as the cluster reports it (blocking, up to
 * timeout_ms), or -1 with the reason in *err (an unknown topic:
 * RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC). For the command-line tools. */
int imp_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
                              rd_kafka_resp_err_t *err);
int imp_kafka_conf_common(rd_kafka_conf_t *conf, const struct imp_config *cfg,
                          const char *client_id, char *err, size_t errlen);

struct imp_consumer *imp_consumer_create(struct ev_loop *loop, const struct imp_config *cfg,
                                         const char *topic, const char *group,
                                         const char *client_id,
                                         const struct imp_consumer_handler *h, char *err,
                                         size_t errlen);
/* Subscribes; partitions arrive through the handler. */
int imp_consumer_start(struct imp_consumer *c, char *err, size_t errlen);
void imp_consumer_done(struct imp_consumer *c, struct imp_msgref ref);
/* Stops taking records (maxInflight reached): the consumer is not polled,
 * so librdkafka's prefetched records wait in its queue; held past 3 s it
 * becomes a pause in librdkafka. Resume polls again on the next loop turn. */
void imp_consumer_pause(struct imp_consumer *c);
void imp_consumer_resume(struct imp_consumer *c);
int imp_consumer_paused(const struct imp_consumer *c);
int imp_consumer_assigned(const struct imp_consumer *c); /* partitions now */
/* 1 while ref's partition is still held in the assignment it was fetched
 * in; 0 once a rebalance took it (its offset can no longer be stored, and
 * the partition's next owner consumes the message again). */
int imp_consumer_current(const struct imp_consumer *c, struct imp_msgref ref);
/* Stops delivering: messages fetched from now on are dropped unhandled
 * (they replay after restart) and every partition is paused. */
void imp_consumer_stop_fetching(struct imp_consumer *c);
/* Commits the stored offsets synchronously. Returns 0 or IMP_EIO (logged). */
int imp_consumer_commit(struct imp_consumer *c);
/* Leaves the group and destroys the consumer. Commit first: leaving starts
 * a rebalance, during which the group refuses commits. */
void imp_consumer_close(struct imp_consumer *c);

#endif
