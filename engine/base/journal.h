/*
 * The crash journal: poison-pill memory across restarts.
 *
 * Each worker marks the Kafka record it is working on synchronously (its
 * decode, each run of the scripts on it) in its own slot of a small file
 * mapped into memory, and clears the mark when the step ends. The stores go
 * to the page cache, so they survive the process's death however it dies
 * (SIGKILL, a crash, the stuck-worker exit). The next start reads the marks
 * left behind: each is one death while handling that record. A record with
 * `threshold` deaths is dead-lettered on replay without being decoded or
 * handed to the scripts, so one record cannot take the engine down forever.
 *
 * Processes on one host take the first of path, path.1 ... path.15 that no
 * live process holds (flock), so each has its own file.
 */
#ifndef IMP_JOURNAL_H
#define IMP_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

struct imp_journal;

/* A record: topic (truncated to 111 bytes), partition, offset. */
struct imp_journal_rec {
    char topic[112];
    int32_t partition;
    int32_t deaths; /* suspects: deaths seen while handling it */
    int64_t offset;
};

/* Opens (creating it and its folder) the journal at path with a slot per
 * worker, and counts the deaths the last process left behind: each is
 * logged as a warning. threshold: deaths that make a record poison (0:
 * count, never skip). NULL with the reason in err. */
struct imp_journal *imp_journal_open(const char *path, int nslots, int threshold, char *err,
                                     size_t errlen);
void imp_journal_close(struct imp_journal *j);
/* The file in use (path or path.N). */
const char *imp_journal_path(const struct imp_journal *j);
/* Deaths found at the open: records the last process died handling. */
int imp_journal_found(const struct imp_journal *j);

/* Marks / clears what slot's worker is handling (its own slot only). */
void imp_journal_enter(struct imp_journal *j, int slot, const char *topic, int32_t partition,
                       int64_t offset);
void imp_journal_leave(struct imp_journal *j, int slot);

/* Deaths recorded while handling that record (0 for almost every record:
 * a lock-free check when there are no suspects). Thread-safe. */
int imp_journal_deaths(struct imp_journal *j, const char *topic, int32_t partition, int64_t offset);
/* 1 when the record has reached the threshold. Thread-safe. */
int imp_journal_poison(struct imp_journal *j, const char *topic, int32_t partition, int64_t offset);
/* The record is handled (pushed or dead-lettered): forget its deaths.
 * Thread-safe; a no-op without suspects. */
void imp_journal_forget(struct imp_journal *j, const char *topic, int32_t partition,
                        int64_t offset);
/* Suspect records now (deaths below or at the threshold). */
int imp_journal_suspects(struct imp_journal *j);

#endif
