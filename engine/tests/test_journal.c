/* The crash journal (a death inside a step counts against that record, on
 * the next open) and the barrier a party can leave. Deaths are real: a
 * forked child marks a record and dies without clearing it. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/barrier.h"
#include "base/common.h"
#include "base/journal.h"
#include "t.h"

static char dir[64];
static char path[128];

/* A process that opens the journal, marks (topic, partition, offset) in
 * slot 1 and dies inside that step (clean: leaves it first). */
static void child_step(const char *topic, int partition, long long offset, int clean)
{
    pid_t pid = fork();
    if (pid == 0) {
        char err[256];
        struct imp_journal *j = imp_journal_open(path, 4, 2, err, sizeof(err));
        if (!j) _exit(9);
        imp_journal_enter(j, 1, topic, partition, offset);
        if (clean) imp_journal_leave(j, 1);
        _exit(0); /* no close: as a SIGKILL would leave it */
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static struct imp_journal *open_j(int threshold)
{
    char err[256] = "";
    struct imp_journal *j = imp_journal_open(path, 4, threshold, err, sizeof(err));
    if (!j) fprintf(stderr, "open: %s\n", err);
    CHECK(j != NULL);
    return j;
}

static void deaths_count_until_poison(void)
{
    child_step("toPush", 3, 1234, 0);
    struct imp_journal *j = open_j(2);
    CHECK(imp_journal_found(j) == 1);
    CHECK(imp_journal_deaths(j, "toPush", 3, 1234) == 1);
    CHECK(!imp_journal_poison(j, "toPush", 3, 1234));
    CHECK(imp_journal_deaths(j, "toPush", 3, 1235) == 0);
    CHECK(imp_journal_deaths(j, "toOfflinePush", 3, 1234) == 0);
    imp_journal_close(j);

    child_step("toPush", 3, 1234, 0);
    j = open_j(2);
    CHECK(imp_journal_found(j) == 1);
    CHECK(imp_journal_deaths(j, "toPush", 3, 1234) == 2);
    CHECK(imp_journal_poison(j, "toPush", 3, 1234));
    /* handled (dead-lettered): forgotten, here and in the file */
    imp_journal_forget(j, "toPush", 3, 1234);
    CHECK(imp_journal_deaths(j, "toPush", 3, 1234) == 0);
    CHECK(imp_journal_suspects(j) == 0);
    imp_journal_close(j);
    j = open_j(2);
    CHECK(imp_journal_found(j) == 0);
    CHECK(imp_journal_suspects(j) == 0);
    imp_journal_close(j);
}

static void a_clean_step_is_no_death(void)
{
    child_step("toPush", 0, 7, 1);
    struct imp_journal *j = open_j(2);
    CHECK(imp_journal_found(j) == 0);
    CHECK(imp_journal_deaths(j, "toPush", 0, 7) == 0);
    imp_journal_close(j);
}

static void threshold_zero_never_poisons(void)
{
    child_step("toPush", 1, 1, 0);
    child_step("toPush", 1, 1, 0);
    child_step("toPush", 1, 1, 0);
    struct imp_journal *j = open_j(0);
    CHECK(imp_journal_deaths(j, "toPush", 1, 1) == 3);
    CHECK(!imp_journal_poison(j, "toPush", 1, 1));
    imp_journal_forget(j, "toPush", 1, 1);
    imp_journal_close(j);
}

static void a_second_process_takes_the_next_file(void)
{
    struct imp_journal *a = open_j(2);
    struct imp_journal *b = open_j(2);
    CHECK_STR(imp_journal_path(a), path);
    char want[160];
    snprintf(want, sizeof(want), "%s.1", path);
    CHECK_STR(imp_journal_path(b), want);
    imp_journal_close(b);
    imp_journal_close(a);
}

static void a_garbage_file_starts_empty(void)
{
    FILE *f = fopen(path, "w");
    fputs("not a journal", f);
    fclose(f);
    struct imp_journal *j = open_j(2);
    CHECK(imp_journal_found(j) == 0);
    CHECK(imp_journal_suspects(j) == 0);
    imp_journal_close(j);
}

/* ---- barrier ---- */

static struct imp_barrier bar;
static int passed;
static pthread_mutex_t passed_lock = PTHREAD_MUTEX_INITIALIZER;

static void *party(void *arg)
{
    (void)arg;
    imp_barrier_wait(&bar);
    pthread_mutex_lock(&passed_lock);
    passed++;
    pthread_mutex_unlock(&passed_lock);
    imp_barrier_wait(&bar); /* a second round */
    return NULL;
}

static void a_party_that_leaves_does_not_hold_the_others(void)
{
    pthread_t th[2];
    imp_barrier_init(&bar, 3);
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, party, NULL);
    /* both wait in round 1 for a third that will never come */
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&bar.lock);
        unsigned arrived = bar.arrived;
        pthread_mutex_unlock(&bar.lock);
        if (arrived == 2) break;
        usleep(10000);
    }
    pthread_mutex_lock(&passed_lock);
    CHECK(passed == 0);
    pthread_mutex_unlock(&passed_lock);
    imp_barrier_leave(&bar);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK(passed == 2);
    imp_barrier_destroy(&bar);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/impulse-journal-XXXXXX");
    if (!mkdtemp(dir)) return 2;
    snprintf(path, sizeof(path), "%s/sub/crash-journal", dir); /* the folder is created */
    deaths_count_until_poison();
    a_clean_step_is_no_death();
    threshold_zero_never_poisons();
    a_second_process_takes_the_next_file();
    a_garbage_file_starts_empty();
    a_party_that_leaves_does_not_hold_the_others();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return t_done("journal");
}
