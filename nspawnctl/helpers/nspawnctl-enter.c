/* nspawnctl-enter: run a command in a running container, confined as `nspawnctl exec` runs
 * it (confine.py's become(), whose module docstring says why each step is there).  The health
 * scheduler starts one per check with posix_spawn (confine.spawn_entered): a fork of the
 * scheduler's Python process was most of what a check cost (docs/benchmarks.md, "Health
 * checks"), where posix_spawn shares the caller's memory until this program's exec and this
 * program does its steps in a few dozen system calls.
 *
 *   nspawnctl-enter KEEP NOFILE ROOT CWD NS CGROUPS MAYCGROUPS -- COMMAND [ARG...]
 *
 * KEEP      the capability bounding set to keep, in hex (the leader's CapBnd)
 * NOFILE    the leader's limit of open files, SOFT:HARD
 * ROOT CWD  descriptors of the container's root and working directory
 * NS        descriptors of the namespaces to join, in order (the user namespace last), by ","
 * CGROUPS   descriptors of cgroup.procs files, by ","; joining at least one must work
 * MAYCGROUPS  more such descriptors, "-" for none: joined where the kernel lets us
 *
 * Every descriptor is the caller's, left open across this program's exec for it alone (the
 * caller's are close-on-exec) and named by its number: nothing of the container is looked
 * up by path here except the command, which is looked up inside it, in PATH of the
 * environment given.  The caller has set its own namespace for new PIDs to the container's
 * (so this process is in it), a session of its own, /dev/null as stdin, the check's pipe as
 * stdout and stderr, and every signal at its default action.  Every descriptor but 0, 1
 * and 2 is closed before the command runs.
 *
 * Exit status when the command does not run, as exec's: 125 when the container cannot be
 * entered, 126 when the command cannot be run, 127 when it is not found; one line on stderr.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#define EXEC_FAILED 125
#define EXEC_CANNOT_RUN 126
#define EXEC_NOT_FOUND 127
#define MAX_FDS 16

static void fail(int status, const char *format, ...) {
    char line[512];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    dprintf(2, "nspawnctl: %s\n", line);
    _exit(status);
}

/* A number in base (10, or 16 for KEEP) of at most max, nothing else, no sign or space (the
 * caller wrote it, but a slip must not turn into another descriptor or limit). */
static unsigned long long number(const char *text, unsigned long long max, int base) {
    char *end;
    errno = 0;
    if (!(base == 16 ? isxdigit : isdigit)((unsigned char)*text))
        fail(EXEC_FAILED, "nspawnctl-enter: bad number %.40s", text);
    unsigned long long value = strtoull(text, &end, base);
    if (errno != 0 || *end != '\0' || value > max)
        fail(EXEC_FAILED, "nspawnctl-enter: bad number %.40s", text);
    return value;
}

static int descriptor(const char *text) {
    int fd = (int)number(text, INT_MAX, 10);
    if (fd < 3 || fcntl(fd, F_GETFD) < 0)
        fail(EXEC_FAILED, "nspawnctl-enter: %s is not an open descriptor", text);
    return fd;
}

/* The descriptors of a ","-separated list ("-": none); their count. */
static int descriptors(char *list, int fds[MAX_FDS]) {
    int count = 0;
    if (strcmp(list, "-") == 0)
        return 0;
    for (char *item = strtok(list, ","); item != NULL; item = strtok(NULL, ",")) {
        if (count == MAX_FDS)
            fail(EXEC_FAILED, "nspawnctl-enter: too many descriptors");
        fds[count++] = descriptor(item);
    }
    return count;
}

/* Moves this process into the cgroup whose cgroup.procs fd is ("0": the writer). */
static int joined(int fd) {
    return write(fd, "0", 1) == 1;
}

/* argv run: a name with a "/" as it is, else the first one found in PATH of the environment,
 * as `exec` runs it (Python's os.execvpe): no shell for a file that is not a program.
 * Returns only when it cannot run, errno saying why (the first error other than "not
 * there", else the last). */
static void run(char **argv) {
    extern char **environ;
    const char *name = argv[0], *path = getenv("PATH");
    if (strchr(name, '/') != NULL) {
        execve(name, argv, environ);
        return;
    }
    int saved = 0, last = ENOENT;
    for (const char *dir = path != NULL ? path : "/bin:/usr/bin"; ; ) {
        const char *colon = strchrnul(dir, ':');
        char full[PATH_MAX];
        int length = (int)(colon - dir);
        if (snprintf(full, sizeof full, "%.*s%s%s", length, dir, length ? "/" : "", name)
                < (int)sizeof full) {
            execve(full, argv, environ);
            last = errno;
        } else {
            last = ENAMETOOLONG;
        }
        if (last != ENOENT && last != ENOTDIR && saved == 0)
            saved = last;
        if (*colon == '\0')
            break;
        dir = colon + 1;
    }
    errno = saved != 0 ? saved : last;
}

int main(int argc, char **argv) {
    if (argc < 10 || strcmp(argv[8], "--") != 0)
        fail(EXEC_FAILED, "nspawnctl-enter: usage: nspawnctl-enter KEEP NOFILE ROOT CWD NS "
                          "CGROUPS MAYCGROUPS -- COMMAND [ARG...]");
    /* Non-dumpable before it joins anything: once in the container's user namespace it
     * holds host descriptors its root must not take over with ptrace (CVE-2016-9962). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fail(EXEC_FAILED, "cannot enter the container: %s", strerror(errno));
    unsigned long long keep = number(argv[1], ~0ULL, 16);
    char *hard = strchr(argv[2], ':');
    if (hard == NULL)
        fail(EXEC_FAILED, "nspawnctl-enter: bad limit %.40s", argv[2]);
    *hard++ = '\0';
    struct rlimit nofile = {number(argv[2], RLIM_INFINITY, 10),
                            number(hard, RLIM_INFINITY, 10)};
    int root = descriptor(argv[3]), cwd = descriptor(argv[4]);
    int ns[MAX_FDS], must[MAX_FDS], may[MAX_FDS];
    int n_ns = descriptors(argv[5], ns);
    int n_must = descriptors(argv[6], must);
    int n_may = descriptors(argv[7], may);

    /* The leader's cgroups, joined through the host's cgroupfs before any namespace: the
     * unified (or systemd) hierarchy must take it, v1 controllers where they do. */
    int in_one = 0;
    for (int i = 0; i < n_must; i++)
        in_one |= joined(must[i]);
    if (!in_one)
        fail(EXEC_FAILED, "cannot join the cgroup of the container's leader");
    for (int i = 0; i < n_may; i++)
        (void)joined(may[i]);
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
        fail(EXEC_FAILED, "cannot enter the container: %s", strerror(errno));
    for (int i = 0; i < n_ns; i++)
        if (setns(ns[i], 0) != 0)
            fail(EXEC_FAILED, "cannot enter the container: %s", strerror(errno));
    /* Entering a user namespace gave a full bounding set: down to the leader's. */
    for (int cap = 0; cap < 64; cap++)
        if (!(keep >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && errno != EINVAL)  /* EINVAL: a capability this kernel does not know */
            fail(EXEC_FAILED, "cannot enter the container: %s", strerror(errno));
    if (fchdir(root) != 0 || chroot(".") != 0 || fchdir(cwd) != 0)
        fail(EXEC_FAILED, "cannot enter the container: %s", strerror(errno));
    /* Its root user, no groups (setgroups may be denied in its user namespace: then there
     * are none to drop). */
    if (setgroups(0, NULL) != 0 && errno != EPERM)
        fail(EXEC_FAILED, "cannot become user 0:0 in the container: %s", strerror(errno));
    if (setresgid(0, 0, 0) != 0 || setresuid(0, 0, 0) != 0)
        fail(EXEC_FAILED, "cannot become user 0:0 in the container: %s", strerror(errno));
    /* Nothing of the host's goes with the command. */
    if (close_range(3, ~0U, 0) != 0)
        fail(EXEC_FAILED, "cannot enter the container: %s", strerror(errno));
    run(argv + 9);
    fail(errno == ENOENT ? EXEC_NOT_FOUND : EXEC_CANNOT_RUN,
         "cannot run %s in the container: %s", argv[9], strerror(errno));
}
