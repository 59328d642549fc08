/*
 * A Kafka producer on a worker's loop: records go out through librdkafka,
 * and each delivery report comes back as a callback on the same loop (the
 * main queue signals a pipe the loop watches, as the consumer's does).
 * Used for dead letters now and for toOfflinePush later.
 *
 * acks=all (OpenIM's default producerAck), librdkafka's `fnv1a`
 * partitioner (OpenIM's: FNV-1a-32 of the key, as Sarama's hash
 * partitioner), records up to 1,000,000 bytes (OpenIM's cap).
 */
#ifndef IMP_PRODUCER_H
#define IMP_PRODUCER_H

#include <ev.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "base/config.h"

struct imp_producer;

/* err is 0 when the broker acknowledged the record, else a librdkafka
 * error code with errstr. */
typedef void (*imp_produce_cb)(void *arg, int err, const char *errstr);

struct imp_producer *imp_producer_create(struct ev_loop *loop, const struct imp_config *cfg,
                                         const char *client_id, char *err, size_t errlen);

/* Sends a record. headers (may be NULL) are taken over by the producer on
 * success and stay the caller's on failure. cb runs once, later, on the
 * loop, unless this returns non-zero (the librdkafka error code). */
int imp_producer_send(struct imp_producer *p, const char *topic, const void *key, size_t klen,
                      const void *value, size_t vlen, rd_kafka_headers_t *headers,
                      imp_produce_cb cb, void *arg);

/* Records sent and not yet reported. */
int imp_producer_pending(const struct imp_producer *p);

/* Waits up to timeout_ms for outstanding reports (callbacks run), fails
 * what is still undelivered (its callback runs with an error), then
 * destroys the producer: bounded whatever the broker does. */
void imp_producer_destroy(struct imp_producer *p, int timeout_ms);

/* The names of the topics on the cluster (for impulse check). Returns 0
 * and calls fn for each, or a librdkafka error code with errstr. */
int imp_kafka_list_topics(const struct imp_config *cfg, int timeout_ms,
                          void (*fn)(void *ud, const char *topic), void *ud, char *errstr,
                          size_t errlen);

#endif
