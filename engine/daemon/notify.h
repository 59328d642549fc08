/*
 * systemd's service notification protocol (sd_notify(3)), spoken directly:
 * one datagram per state change to the AF_UNIX socket named by
 * $NOTIFY_SOCKET ("@name" is in the abstract namespace). READY=1 once
 * impulse would answer /readyz 200, WATCHDOG=1 from a healthy main loop
 * every half of $WATCHDOG_USEC, STOPPING=1 when the drain begins. Without
 * $NOTIFY_SOCKET every call does nothing. Main thread only.
 */
#ifndef IMP_NOTIFY_H
#define IMP_NOTIFY_H

#include <stdint.h>

struct imp_notify;

/* Reads the environment; NULL when there is nothing to notify. */
struct imp_notify *imp_notify_open(void);
void imp_notify_close(struct imp_notify *n);
/* Sends one message ("READY=1\nSTATUS=..."); 0, or -1 (logged once). */
int imp_notify_send(struct imp_notify *n, const char *msg);
/* The watchdog period systemd expects for this process, 0 when none
 * ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or this process). */
uint64_t imp_notify_watchdog_usec(const struct imp_notify *n);

#endif
