/*
 * A check protobuf-c does not make: protobuf-c 1.4 accepts a field numbered
 * 0 when its tag is written in more bytes than needed (a tag of 0 is
 * invalid protobuf), keeps it as an unknown field, and writes it back in a
 * form no parser accepts, its own included (found by fuzz_pushmsg). A
 * message holding one cannot be handed on faithfully.
 */
#ifndef IMP_PBCHECK_H
#define IMP_PBCHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* 1 when m or any message nested in it (at any depth, repeated fields
 * included) has an unknown field numbered 0. Cannot fail. */
int imp_pb_has_field_zero(const ProtobufCMessage *m);

/* Scans the top-level fields of the encoded message p[0..n) for field num.
 * Returns how often it occurs (0, 1, 2 meaning "more than once"), or -1
 * when the bytes are not a well-formed message or an occurrence has
 * another wire type than wt (0 varint, 2 length-delimited). For the last
 * occurrence, *off and *len give its payload (a varint's bytes, or a
 * length-delimited field's contents). */
int imp_pb_find_field(const uint8_t *p, size_t n, uint32_t num, int wt, size_t *off, size_t *len);

/* The field at p[*i..n): its number, wire type and payload (a varint's
 * bytes, or a length-delimited field's contents); *i moved past it. -1
 * when malformed, a group, or numbered 0. For readers that walk a message
 * without unpacking it. */
int imp_pb_next(const uint8_t *p, size_t n, size_t *i, uint32_t *num, int *wt, size_t *off,
                size_t *len);

struct imp_buf;

/* out = the message p[0..n) with every occurrence of field num removed and
 * one length-delimited field num = val[0..vlen) put where field order
 * places it (before the first higher-numbered field: a canonical message
 * stays canonical, as Go would write it). -1 when p is not well formed. */
int imp_pb_replace_field(const uint8_t *p, size_t n, uint32_t num, const void *val, size_t vlen,
                         struct imp_buf *out);

#endif
