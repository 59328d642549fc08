/*
 * A consistent-hash ring as OpenIM's K8sStaticConsistentHash builds it with
 * github.com/stathat/consistent v1.0.0: each node has 20 points at
 * CRC-32/IEEE("<i><name>") for i = 0..19; a key belongs to the node of the
 * first point strictly above CRC-32(key), wrapping to the lowest; where two
 * points collide, the node added later wins (nodes are added in the order
 * given).
 */
#ifndef IMP_RING_H
#define IMP_RING_H

#include <stddef.h>
#include <stdint.h>

#define IMP_RING_REPLICAS 20

struct imp_ring;

/* A ring of nodes names[0..n) (copied nowhere: only hashed). Never NULL. */
struct imp_ring *imp_ring_build(char *const *names, size_t n);
void imp_ring_destroy(struct imp_ring *r);
/* The index in names of the node key belongs to; (size_t)-1 for an empty ring. */
size_t imp_ring_get(const struct imp_ring *r, const char *key, size_t len);

/* CRC-32/IEEE (zlib's crc32, Go's crc32.ChecksumIEEE). */
uint32_t imp_crc32(const void *data, size_t len);

#endif
