/* Ctrl-C reaches Lua code running on the workers: a flow whose map is
 * stuck in `while true do end` on two workers is stopped by one SIGINT,
 * 100 times in a row, each within 100 ms of the signal (300 ms in the
 * sanitizer builds; measured here
 * with the monotonic clock, from the kill to the end of the process, or
 * to the REPL's next result). The sluice binary is the one next to this
 * test's directory (BUILD/tests/test_sigint -> BUILD/sluice). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "check.h"

#define RUNS 100
/* The bound is 100 ms. The sanitizer builds (make check) run the same
 * path several times slower, their exit included: there it is 300 ms. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LIMIT_MS 300.0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LIMIT_MS 300.0
#endif
#endif
#ifndef LIMIT_MS
#define LIMIT_MS 100.0
#endif

static char bin[PATH_MAX];

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* The flow: every map call prints "ready" (a worker's print is written
 * at once) and then never returns. */
static const char *const FLOW =
  "sluice.flow.from_enumerable(sluice.range(1, 1000000), {stages = 2})"
  ":map(function(x) print('ready') while true do end end):to_list()";

typedef struct child {
  pid_t pid;
  int in, out, err;   /* our ends of its stdin, stdout, stderr (-1: none) */
} child;

static child spawn(char *const argv[]) {
  int pin[2], pout[2], perr[2];
  child c = {-1, -1, -1, -1};
  if (pipe(pin) || pipe(pout) || pipe(perr)) return c;
  c.pid = fork();
  if (c.pid == 0) {
    dup2(pin[0], 0);
    dup2(pout[1], 1);
    dup2(perr[1], 2);
    for (int fd = 3; fd < 64; fd++) close(fd);
    signal(SIGINT, SIG_DFL);
    execv(argv[0], argv);
    _exit(127);
  }
  close(pin[0]);
  close(pout[1]);
  close(perr[1]);
  c.in = pin[1];
  c.out = pout[0];
  c.err = perr[0];
  return c;
}

/* Appends what fd has (without waiting) to buf; returns 0 at its end. */
static int drain(int fd, char *buf, size_t cap) {
  size_t len = strlen(buf);
  ssize_t n = read(fd, buf + len, cap - 1 - len);
  if (n > 0) buf[len + (size_t)n] = '\0';
  return n != 0 && !(n < 0 && errno != EINTR && errno != EAGAIN);
}

/* Reads the child's stdout and stderr until `want` shows in its stdout
 * (want NULL: until both end) or timeout_ms passes. Returns 1 when met. */
static int read_until(child *c, char *out, char *err, size_t cap, const char *want, double timeout_ms) {
  double deadline = now_ms() + timeout_ms;
  int open_out = 1, open_err = 1;
  while (open_out || open_err) {
    if (want && strstr(out, want)) return 1;
    double left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p[2] = {{open_out ? c->out : -1, POLLIN, 0}, {open_err ? c->err : -1, POLLIN, 0}};
    if (poll(p, 2, (int)left + 1) < 0 && errno != EINTR) return 0;
    if (p[0].revents && !drain(c->out, out, cap)) open_out = 0;
    if (p[1].revents && !drain(c->err, err, cap)) open_err = 0;
  }
  return want ? strstr(out, want) != NULL : 1;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, double *ms, int n) {
  qsort(ms, (size_t)n, sizeof *ms, by_value);
  printf("%s: %d runs, median %.1f ms, max %.1f ms\n", what, n, ms[n / 2], ms[n - 1]);
}

/* One run of the script: SIGINT once both maps are looping; the process
 * must report the interrupted map and end with status 1. Returns the ms
 * from the signal to the end, or -1. */
static double script_run(const char *script) {
  char *argv[] = {bin, "-w", "2", (char *)script, NULL};
  child c = spawn(argv);
  if (c.pid <= 0) return -1;
  close(c.in);
  static char out[65536], err[65536];
  out[0] = err[0] = '\0';
  double took = -1;
  /* a generous start-up wait (the sanitizer builds start slowly); then
   * both map calls are inside their loops */
  if (read_until(&c, out, err, sizeof out, "ready\nready\n", 20000)) {
    struct timespec settle = {0, 20 * 1000000};
    nanosleep(&settle, NULL);
    double t0 = now_ms();
    kill(c.pid, SIGINT);
    int ended = read_until(&c, out, err, sizeof out, NULL, 10000);   /* its output closes as it exits */
    int status;
    if (!ended) {   /* still running after 10 s */
      kill(c.pid, SIGKILL);
      waitpid(c.pid, &status, 0);
      fprintf(stderr, "still running 10 s after the SIGINT\n");
    } else {
      waitpid(c.pid, &status, 0);
      double t1 = now_ms();
      int ok = WIFEXITED(status) && WEXITSTATUS(status) == 1 &&
               strstr(err, "sluice: sluice.flow: flow 1 layer 1 stage ") &&
               strstr(err, " (map): interrupted\nstack traceback:");
      if (ok) took = t1 - t0;
      else fprintf(stderr, "status %d, stderr:\n%s\n", status, err);
    }
    c.pid = 0;
  }
  if (c.pid > 0) {
    kill(c.pid, SIGKILL);
    waitpid(c.pid, NULL, 0);
  }
  close(c.out);
  close(c.err);
  return took;
}

static void test_script(void) {
  char script[] = "/tmp/sluice-sigint-XXXXXX";
  int fd = mkstemp(script);
  CHECK(fd >= 0);
  if (fd < 0) return;
  CHECK(write(fd, FLOW, strlen(FLOW)) == (ssize_t)strlen(FLOW));
  close(fd);
  double ms[RUNS];
  int n = 0, missed = 0;
  for (int i = 0; i < RUNS; i++) {
    double t = script_run(script);
    if (t < 0 || t > LIMIT_MS) {
      missed++;
      fprintf(stderr, "run %d: %s (%.1f ms)\n", i + 1, t < 0 ? "not interrupted" : "too slow", t);
    }
    if (t >= 0) ms[n++] = t;
  }
  unlink(script);
  CHECK_INT(missed, 0);
  if (n) report("SIGINT to the end of the script", ms, n);
}

/* The REPL: the interrupted line reports the flow's error, and the next
 * line runs. Returns the ms from the signal to the next line's output. */
static double repl_run(void) {
  char *argv[] = {bin, "-w", "2", "-i", NULL};
  child c = spawn(argv);
  if (c.pid <= 0) return -1;
  static char out[65536], err[65536];
  out[0] = err[0] = '\0';
  char input[512];
  snprintf(input, sizeof input, "%s\nprint('after')\n", FLOW);
  double took = -1;
  if (write(c.in, input, strlen(input)) == (ssize_t)strlen(input) &&
      read_until(&c, out, err, sizeof out, "ready\nready\n", 20000)) {
    struct timespec settle = {0, 20 * 1000000};
    nanosleep(&settle, NULL);
    double t0 = now_ms();
    kill(c.pid, SIGINT);
    if (read_until(&c, out, err, sizeof out, "\nafter\n", 10000)) {
      took = now_ms() - t0;
      if (!strstr(err, " (map): interrupted\nstack traceback:")) {
        fprintf(stderr, "stderr:\n%s\n", err);
        took = -1;
      }
    }
  }
  close(c.in);   /* the end of its input: the REPL exits */
  int status = -1;
  if (!read_until(&c, out, err, sizeof out, NULL, 10000)) kill(c.pid, SIGKILL);
  waitpid(c.pid, &status, 0);
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) took = -1;
  close(c.out);
  close(c.err);
  return took;
}

static void test_repl(void) {
  enum { N = 20 };
  double ms[N];
  int n = 0, missed = 0;
  for (int i = 0; i < N; i++) {
    double t = repl_run();
    if (t < 0 || t > LIMIT_MS) {
      missed++;
      fprintf(stderr, "REPL run %d: %s (%.1f ms)\n", i + 1, t < 0 ? "not interrupted" : "too slow", t);
    }
    if (t >= 0) ms[n++] = t;
  }
  CHECK_INT(missed, 0);
  if (n) report("SIGINT to the REPL's next result", ms, n);
}

int main(int argc, char **argv) {
  (void)argc;
  const char *slash = strrchr(argv[0], '/');
  int dir = slash ? (int)(slash - argv[0]) : 1;
  snprintf(bin, sizeof bin, "%.*s/../sluice", dir, slash ? argv[0] : ".");
  signal(SIGPIPE, SIG_IGN);
  RUN(test_script);
  RUN(test_repl);
  return CHECK_SUMMARY();
}
