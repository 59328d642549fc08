/*
 * Process-wide metrics in Prometheus text format.
 *
 * A metric is identified by name plus a rendered label set
 * (`path="/x",code="0"`, or NULL for none). Lookups create on first use
 * and return a stable pointer that callers may cache: metrics are never
 * freed before imp_metrics_shutdown(). Updates are lock-free atomics.
 */
#ifndef IMP_METRICS_H
#define IMP_METRICS_H

#include <stdint.h>

#include "base/buf.h"

enum imp_metric_kind { IMP_METRIC_COUNTER, IMP_METRIC_GAUGE, IMP_METRIC_HISTOGRAM };

/* Histogram buckets (upper bounds), suited to milliseconds. */
#define IMP_METRIC_BUCKETS 14

struct imp_metric;

/* Returns the counter or gauge with this name and labels, creating it.
 * help is used the first time a name is seen. Cannot fail (aborts on OOM). */
struct imp_metric *imp_metrics_counter(const char *name, const char *labels, const char *help);
struct imp_metric *imp_metrics_gauge(const char *name, const char *labels, const char *help);

/* A histogram (buckets 0.5 1 2 5 10 25 50 100 250 500 1000 2500 5000 10000
 * and +Inf), e.g. of milliseconds. */
struct imp_metric *imp_metrics_histogram(const char *name, const char *labels, const char *help);
void imp_metric_observe(struct imp_metric *m, double value);

/* The kind a name was first registered with, or -1. For scripts, which
 * must not turn a counter into a gauge. */
int imp_metrics_kind(const char *name);

void imp_metric_add(struct imp_metric *m, int64_t delta);
void imp_metric_set(struct imp_metric *m, int64_t value);
int64_t imp_metric_value(const struct imp_metric *m);

/* Shorthand: find-or-create a counter and add delta. Use cached pointers
 * on hot paths; this takes the registry lock. */
void imp_metrics_inc(const char *name, const char *labels, int64_t delta);
/* Current value of a metric, 0 if it does not exist (for tests). */
int64_t imp_metrics_get(const char *name, const char *labels);

/* A label rendered first on every series, process_* included
 * (`mode="shadow"`), or NULL/"" for none. Call before threads render. */
void imp_metrics_const_label(const char *label);

/* Renders every metric as Prometheus text exposition format 0.0.4. */
void imp_metrics_render(struct imp_buf *out);

/* Frees every metric; pointers handed out become invalid. */
void imp_metrics_shutdown(void);

#endif
