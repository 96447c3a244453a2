/* benchrun — run a command, then report its wall time and peak RSS.
 *
 *   benchrun CMD [ARGS...]
 *
 * The command inherits stdin/stdout/stderr.  After it ends, one line goes to
 * stdout (after everything the command wrote, since it has exited):
 *
 *   BENCHRUN wall=<seconds> maxrss_kb=<peak resident set, KiB> status=<exit code or 128+signal>
 *
 * benchrun exits with the command's status.  Peak RSS comes from wait4()'s
 * rusage of the command's own process (the command is exec'd directly, not
 * through a shell).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: benchrun CMD [ARGS...]\n");
        return 2;
    }
    fflush(stdout);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) { perror("benchrun: fork"); return 2; }
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        fprintf(stderr, "benchrun: %s: %s\n", argv[1], strerror(errno));
        _exit(127);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0)
        if (errno != EINTR) { perror("benchrun: wait4"); return 2; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    printf("BENCHRUN wall=%.6f maxrss_kb=%ld status=%d\n", wall, ru.ru_maxrss, code);
    return code;
}
