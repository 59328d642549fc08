/*
 * The datagram carries "KEY=value" lines; systemd reads the sender's
 * credentials, so the socket needs no handshake. A send that fails (the
 * socket gone: systemd restarted) is logged once and retried on the next
 * state change, never fatal.
 */
#include "daemon/notify.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/common.h"
#include "base/log.h"

struct imp_notify {
    int fd;
    struct sockaddr_un addr;
    socklen_t addr_len;
    uint64_t watchdog_usec;
    int warned;
};

struct imp_notify *imp_notify_open(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !path[0]) return NULL;
    size_t len = strlen(path);
    struct imp_notify *n = imp_xcalloc(1, sizeof(*n));
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(n->addr.sun_path)) {
        imp_warn(NULL, "NOTIFY_SOCKET '%s' is not a socket path; systemd is not notified", path);
        free(n);
        return NULL;
    }
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, path, len);
    if (path[0] == '@') n->addr.sun_path[0] = '\0'; /* abstract namespace */
    n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->fd < 0) {
        imp_warn(NULL, "NOTIFY_SOCKET: socket: %s; systemd is not notified", strerror(errno));
        free(n);
        return NULL;
    }
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    if (usec && (!pid || strtol(pid, NULL, 10) == (long)getpid()))
        n->watchdog_usec = strtoull(usec, NULL, 10);
    return n;
}

void imp_notify_close(struct imp_notify *n)
{
    if (!n) return;
    close(n->fd);
    free(n);
}

int imp_notify_send(struct imp_notify *n, const char *msg)
{
    if (!n) return 0;
    if (sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&n->addr, n->addr_len) <
        0) {
        if (!n->warned)
            imp_warn(NULL, "NOTIFY_SOCKET: cannot send '%.*s': %s", (int)strcspn(msg, "\n"), msg,
                     strerror(errno));
        n->warned = 1;
        return -1;
    }
    n->warned = 0;
    return 0;
}

uint64_t imp_notify_watchdog_usec(const struct imp_notify *n) { return n ? n->watchdog_usec : 0; }
