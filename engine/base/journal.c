/*
 * The crash journal (base/journal.h). The file is a header, a table of
 * suspects (records that were being handled when a process died, with
 * their death count) and a slot per worker. Workers write only their own
 * slot: the record's fields, then `active` with a release store, so a
 * reader of the file after a death sees a whole record whenever it sees
 * the mark. The suspects table changes under a mutex; it is empty on
 * almost every start, and then the per-record check is one atomic load.
 */
#include "base/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "base/log.h"

#define MAGIC        "impulse crash journal 1\n"
#define MAX_SLOTS    256
#define MAX_SUSPECTS 64
#define MAX_FILES    16

struct slot {
    _Atomic uint32_t active;
    uint32_t pad;
    struct imp_journal_rec rec;
};

struct file {
    char magic[32];
    uint32_t nsuspects;
    uint32_t next_evict; /* when full, suspects are replaced in turn */
    struct imp_journal_rec suspects[MAX_SUSPECTS];
    struct slot slots[MAX_SLOTS];
};

struct imp_journal {
    int fd;
    struct file *f;
    int nslots;
    int threshold;
    char path[PATH_MAX];
    pthread_mutex_t lock; /* the suspects table */
    atomic_int nsuspects; /* its size, for the lock-free check */
    int found;            /* deaths the last process left behind */
};

static int same(const struct imp_journal_rec *r, const char *topic, int32_t partition,
                int64_t offset)
{
    return r->partition == partition && r->offset == offset &&
           strncmp(r->topic, topic, sizeof(r->topic) - 1) == 0;
}

static void set_rec(struct imp_journal_rec *r, const char *topic, int32_t partition, int64_t offset)
{
    size_t n = strlen(topic);
    if (n > sizeof(r->topic) - 1) n = sizeof(r->topic) - 1;
    memcpy(r->topic, topic, n);
    memset(r->topic + n, 0, sizeof(r->topic) - n);
    r->partition = partition;
    r->offset = offset;
}

static int find(struct file *f, const char *topic, int32_t partition, int64_t offset)
{
    for (uint32_t i = 0; i < f->nsuspects; i++)
        if (same(&f->suspects[i], topic, partition, offset)) return (int)i;
    return -1;
}

/* A death while handling rec: one more for its suspect entry. */
static void count_death(struct imp_journal *j, const struct imp_journal_rec *rec)
{
    struct file *f = j->f;
    char topic[sizeof(rec->topic)];
    memcpy(topic, rec->topic, sizeof(topic));
    topic[sizeof(topic) - 1] = '\0';
    int i = find(f, topic, rec->partition, rec->offset);
    if (i < 0) {
        if (f->nsuspects < MAX_SUSPECTS) {
            i = (int)f->nsuspects++;
        } else {
            i = (int)(f->next_evict++ % MAX_SUSPECTS);
        }
        set_rec(&f->suspects[i], topic, rec->partition, rec->offset);
        f->suspects[i].deaths = 0;
    }
    int deaths = ++f->suspects[i].deaths;
    j->found++;
    imp_warn(NULL, "crash journal: the last process died while handling %s[%d]@%lld (%d death%s%s)",
             topic, (int)rec->partition, (long long)rec->offset, deaths, deaths == 1 ? "" : "s",
             j->threshold && deaths >= j->threshold
                 ? "; it will be dead-lettered without running the scripts"
                 : "");
}

static int mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST) return -1;
    }
    return 0;
}

/* Opens and locks name; 1 when another process holds it, -1 on error. */
static int open_locked(struct imp_journal *j, const char *name, char *err, size_t errlen)
{
    int fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", name, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        if (!busy) snprintf(err, errlen, "%s: lock: %s", name, strerror(errno));
        close(fd);
        return busy ? 1 : -1;
    }
    j->fd = fd;
    snprintf(j->path, sizeof(j->path), "%s", name);
    return 0;
}

struct imp_journal *imp_journal_open(const char *path, int nslots, int threshold, char *err,
                                     size_t errlen)
{
    if (nslots < 1 || nslots > MAX_SLOTS) {
        snprintf(err, errlen, "%d workers: the journal has room for %d", nslots, MAX_SLOTS);
        return NULL;
    }
    struct imp_journal *j = imp_xcalloc(1, sizeof(*j));
    j->fd = -1;
    j->nslots = nslots;
    j->threshold = threshold;
    char name[PATH_MAX];
    snprintf(name, sizeof(name), "%s", path);
    if (mkdirs(name) != 0) {
        snprintf(err, errlen, "%s: cannot create its folder: %s", path, strerror(errno));
        free(j);
        return NULL;
    }
    for (int n = 0; n < MAX_FILES && j->fd < 0; n++) {
        if (n) snprintf(name, sizeof(name), "%s.%d", path, n);
        int rc = open_locked(j, name, err, errlen);
        if (rc < 0) {
            free(j);
            return NULL;
        }
    }
    if (j->fd < 0) {
        snprintf(err, errlen, "%s: %d processes on this host hold %s.N already", path, MAX_FILES,
                 path);
        free(j);
        return NULL;
    }
    struct stat st;
    int fresh = fstat(j->fd, &st) != 0 || (size_t)st.st_size != sizeof(struct file);
    if (fresh && ftruncate(j->fd, 0) == 0 && ftruncate(j->fd, sizeof(struct file)) != 0) {
        snprintf(err, errlen, "%s: %s", j->path, strerror(errno));
        close(j->fd);
        free(j);
        return NULL;
    }
    void *m = mmap(NULL, sizeof(struct file), PROT_READ | PROT_WRITE, MAP_SHARED, j->fd, 0);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "%s: mmap: %s", j->path, strerror(errno));
        close(j->fd);
        free(j);
        return NULL;
    }
    j->f = m;
    if (memcmp(j->f->magic, MAGIC, sizeof(MAGIC)) != 0 || j->f->nsuspects > MAX_SUSPECTS) {
        /* new, or not ours: start empty */
        memset(j->f, 0, sizeof(struct file));
        memcpy(j->f->magic, MAGIC, sizeof(MAGIC));
    }
    for (int i = 0; i < MAX_SLOTS; i++) {
        struct slot *s = &j->f->slots[i];
        if (atomic_load_explicit(&s->active, memory_order_acquire)) count_death(j, &s->rec);
        atomic_store_explicit(&s->active, 0, memory_order_relaxed);
    }
    pthread_mutex_init(&j->lock, NULL);
    atomic_store(&j->nsuspects, (int)j->f->nsuspects);
    return j;
}

void imp_journal_close(struct imp_journal *j)
{
    if (!j) return;
    munmap(j->f, sizeof(struct file));
    close(j->fd); /* releases the lock */
    pthread_mutex_destroy(&j->lock);
    free(j);
}

const char *imp_journal_path(const struct imp_journal *j) { return j->path; }

int imp_journal_found(const struct imp_journal *j) { return j ? j->found : 0; }

void imp_journal_enter(struct imp_journal *j, int slot, const char *topic, int32_t partition,
                       int64_t offset)
{
    if (!j || slot < 0 || slot >= j->nslots) return;
    struct slot *s = &j->f->slots[slot];
    set_rec(&s->rec, topic, partition, offset);
    atomic_store_explicit(&s->active, 1, memory_order_release);
}

void imp_journal_leave(struct imp_journal *j, int slot)
{
    if (!j || slot < 0 || slot >= j->nslots) return;
    atomic_store_explicit(&j->f->slots[slot].active, 0, memory_order_release);
}

int imp_journal_deaths(struct imp_journal *j, const char *topic, int32_t partition, int64_t offset)
{
    if (!j || atomic_load_explicit(&j->nsuspects, memory_order_relaxed) == 0) return 0;
    pthread_mutex_lock(&j->lock);
    int i = find(j->f, topic, partition, offset);
    int deaths = i < 0 ? 0 : j->f->suspects[i].deaths;
    pthread_mutex_unlock(&j->lock);
    return deaths;
}

int imp_journal_poison(struct imp_journal *j, const char *topic, int32_t partition, int64_t offset)
{
    return j && j->threshold > 0 && imp_journal_deaths(j, topic, partition, offset) >= j->threshold;
}

void imp_journal_forget(struct imp_journal *j, const char *topic, int32_t partition, int64_t offset)
{
    if (!j || atomic_load_explicit(&j->nsuspects, memory_order_relaxed) == 0) return;
    pthread_mutex_lock(&j->lock);
    struct file *f = j->f;
    int i = find(f, topic, partition, offset);
    if (i >= 0) {
        f->suspects[i] = f->suspects[f->nsuspects - 1];
        f->nsuspects--;
        atomic_store(&j->nsuspects, (int)f->nsuspects);
    }
    pthread_mutex_unlock(&j->lock);
}

int imp_journal_suspects(struct imp_journal *j)
{
    return j ? atomic_load_explicit(&j->nsuspects, memory_order_relaxed) : 0;
}
