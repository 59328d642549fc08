/*
 * Metric registry: a chained hash table keyed by (name, labels) under one
 * mutex, taken only to find or create; values are atomics. Rendering walks
 * metrics grouped by name in creation order of names so HELP/TYPE lines
 * appear once per family.
 *
 * Updated from every thread; rendered by the admin listener
 * (daemon/admin.c).
 */
#include "base/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/common.h"

#define NBUCKETS 512

struct imp_metric {
    struct imp_metric *next;     /* hash chain */
    struct imp_metric *next_all; /* creation order */
    char *name;
    char *labels;
    char *help;
    int kind;
    _Atomic int64_t value;
    /* histograms: per-bucket counts (not cumulative), sum in micro-units */
    _Atomic uint64_t buckets[IMP_METRIC_BUCKETS + 1];
    _Atomic int64_t sum_micro;
};

static const double bounds[IMP_METRIC_BUCKETS] = {0.5, 1,   2,   5,    10,   25,   50,
                                                  100, 250, 500, 1000, 2500, 5000, 10000};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct imp_metric *buckets[NBUCKETS];
static struct imp_metric *all_head, **all_tail = &all_head;

static struct imp_metric *lookup(int kind, const char *name, const char *labels, const char *help)
{
    if (!labels) labels = "";
    size_t nl = strlen(name), ll = strlen(labels);
    uint64_t h = imp_fnv1a64(name, nl) ^ (imp_fnv1a64(labels, ll) * 31);
    struct imp_metric *m;

    pthread_mutex_lock(&lock);
    for (m = buckets[h % NBUCKETS]; m; m = m->next)
        if (strcmp(m->name, name) == 0 && strcmp(m->labels, labels) == 0) break;
    if (!m) {
        m = imp_xcalloc(1, sizeof(*m));
        m->name = imp_xstrdup(name);
        m->labels = imp_xstrdup(labels);
        m->help = imp_xstrdup(help ? help : "");
        m->kind = kind;
        m->next = buckets[h % NBUCKETS];
        buckets[h % NBUCKETS] = m;
        *all_tail = m;
        all_tail = &m->next_all;
    }
    pthread_mutex_unlock(&lock);
    return m;
}

struct imp_metric *imp_metrics_counter(const char *name, const char *labels, const char *help)
{
    return lookup(IMP_METRIC_COUNTER, name, labels, help);
}

struct imp_metric *imp_metrics_gauge(const char *name, const char *labels, const char *help)
{
    return lookup(IMP_METRIC_GAUGE, name, labels, help);
}

struct imp_metric *imp_metrics_histogram(const char *name, const char *labels, const char *help)
{
    return lookup(IMP_METRIC_HISTOGRAM, name, labels, help);
}

void imp_metric_observe(struct imp_metric *m, double v)
{
    int b = 0;
    while (b < IMP_METRIC_BUCKETS && v > bounds[b]) b++;
    atomic_fetch_add_explicit(&m->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_micro, (int64_t)(v * 1e6), memory_order_relaxed);
    atomic_fetch_add_explicit(&m->value, 1, memory_order_relaxed); /* the count */
}

int imp_metrics_kind(const char *name)
{
    int kind = -1;
    pthread_mutex_lock(&lock);
    for (struct imp_metric *m = all_head; m; m = m->next_all)
        if (strcmp(m->name, name) == 0) {
            kind = m->kind;
            break;
        }
    pthread_mutex_unlock(&lock);
    return kind;
}

void imp_metric_add(struct imp_metric *m, int64_t delta)
{
    atomic_fetch_add_explicit(&m->value, delta, memory_order_relaxed);
}

void imp_metric_set(struct imp_metric *m, int64_t value)
{
    atomic_store_explicit(&m->value, value, memory_order_relaxed);
}

int64_t imp_metric_value(const struct imp_metric *m)
{
    return atomic_load_explicit(&((struct imp_metric *)m)->value, memory_order_relaxed);
}

void imp_metrics_inc(const char *name, const char *labels, int64_t delta)
{
    imp_metric_add(lookup(IMP_METRIC_COUNTER, name, labels, NULL), delta);
}

int64_t imp_metrics_get(const char *name, const char *labels)
{
    if (!labels) labels = "";
    int64_t v = 0;
    pthread_mutex_lock(&lock);
    for (struct imp_metric *m = all_head; m; m = m->next_all)
        if (strcmp(m->name, name) == 0 && strcmp(m->labels, labels) == 0) v = imp_metric_value(m);
    pthread_mutex_unlock(&lock);
    return v;
}

/* The label every series carries (impulse run --shadow: mode="shadow"),
 * or "". Set once before any thread renders. */
static char const_label[64];

/* The standard process_* metrics, with the names and help of Prometheus'
 * process collector (the one OpenIM's Go services export), read from
 * /proc at each scrape. What cannot be read is left out. */
static void render_process(struct imp_buf *out)
{
    static const char *const fmt = "# HELP %s %s\n# TYPE %s %s\n%s%s%s%s %.17g\n";
    const char *lb = const_label[0] ? "{" : "", *rb = const_label[0] ? "}" : "";
#define PROC_METRIC(name, type, help, v)                                                           \
    imp_buf_printf(out, fmt, name, help, name, type, name, lb, const_label, rb, v)
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long utime = 0, stime = 0, vsize = 0;
    unsigned long long start = 0;
    long rss = 0;
    /* after ")": state (3) ... utime (14), stime (15) ... starttime (22),
     * vsize (23), rss (24) */
    if (p && tick > 0 &&
        sscanf(p + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
               "%llu %lu %ld",
               &utime, &stime, &start, &vsize, &rss) == 5) {
        PROC_METRIC("process_cpu_seconds_total", "counter",
                    "Total user and system CPU time spent in seconds.",
                    (double)(utime + stime) / (double)tick);
        PROC_METRIC("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                    (double)vsize);
        PROC_METRIC("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                    (double)rss * (double)page);
        unsigned long long btime = 0;
        f = fopen("/proc/stat", "r");
        while (f && fgets(buf, sizeof(buf), f))
            if (sscanf(buf, "btime %llu", &btime) == 1) break;
        if (f) fclose(f);
        if (btime)
            PROC_METRIC("process_start_time_seconds", "gauge",
                        "Start time of the process since unix epoch in seconds.",
                        (double)btime + (double)start / (double)tick);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long fds = -1; /* the directory's own descriptor */
        while (readdir(d)) fds++;
        closedir(d);
        PROC_METRIC("process_open_fds", "gauge", "Number of open file descriptors.",
                    (double)(fds - 2)); /* less "." and ".." */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        PROC_METRIC("process_max_fds", "gauge", "Maximum number of open file descriptors.",
                    (double)rl.rlim_cur);
#undef PROC_METRIC
}

void imp_metrics_const_label(const char *label)
{
    snprintf(const_label, sizeof(const_label), "%s", label ? label : "");
}

/* x's labels with the constant label first, into tmp when both are set. */
static const char *series_labels(const struct imp_metric *x, char *tmp, size_t cap)
{
    if (!const_label[0]) return x->labels;
    if (!x->labels[0]) return const_label;
    snprintf(tmp, cap, "%s,%s", const_label, x->labels);
    return tmp;
}

void imp_metrics_render(struct imp_buf *out)
{
    char tmp[1024];
    pthread_mutex_lock(&lock);
    for (struct imp_metric *m = all_head; m; m = m->next_all) {
        /* The first metric of a family prints its HELP and TYPE, then every
         * member of the family follows, so families are never split. */
        struct imp_metric *first = all_head;
        while (strcmp(first->name, m->name) != 0) first = first->next_all;
        if (first != m) continue;
        imp_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help[0] ? m->help : m->name,
                       m->name,
                       m->kind == IMP_METRIC_COUNTER ? "counter"
                       : m->kind == IMP_METRIC_GAUGE ? "gauge"
                                                     : "histogram");
        for (struct imp_metric *x = m; x; x = x->next_all) {
            if (strcmp(x->name, m->name) != 0) continue;
            const char *labels = series_labels(x, tmp, sizeof(tmp));
            if (x->kind == IMP_METRIC_HISTOGRAM) {
                uint64_t cum = 0;
                const char *sep = labels[0] ? "," : "";
                for (int b = 0; b <= IMP_METRIC_BUCKETS; b++) {
                    cum += atomic_load_explicit(&x->buckets[b], memory_order_relaxed);
                    if (b < IMP_METRIC_BUCKETS)
                        imp_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", x->name, labels, sep,
                                       bounds[b], (unsigned long long)cum);
                    else
                        imp_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", x->name, labels,
                                       sep, (unsigned long long)cum);
                }
                const char *lb = labels[0] ? "{" : "", *rb = labels[0] ? "}" : "";
                imp_buf_printf(out, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", x->name, lb, labels,
                               rb, atomic_load(&x->sum_micro) / 1e6, x->name, lb, labels, rb,
                               (unsigned long long)cum);
                continue;
            }
            if (labels[0])
                imp_buf_printf(out, "%s{%s} %lld\n", x->name, labels,
                               (long long)imp_metric_value(x));
            else
                imp_buf_printf(out, "%s %lld\n", x->name, (long long)imp_metric_value(x));
        }
    }
    pthread_mutex_unlock(&lock);
    render_process(out);
}

void imp_metrics_shutdown(void)
{
    pthread_mutex_lock(&lock);
    struct imp_metric *m = all_head;
    while (m) {
        struct imp_metric *n = m->next_all;
        free(m->name);
        free(m->labels);
        free(m->help);
        free(m);
        m = n;
    }
    all_head = NULL;
    all_tail = &all_head;
    memset(buckets, 0, sizeof(buckets));
    pthread_mutex_unlock(&lock);
}
