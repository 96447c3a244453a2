/* Minimal C unit-test harness: TEST functions registered in main, CHECK
 * macros that record failures and carry on, one summary line at the end
 * ("N passed, M failed") that scripts/test.sh adds up. */
#ifndef SLUICE_TEST_CHECK_H
#define SLUICE_TEST_CHECK_H
#include <stdio.h>
#include <string.h>

static int check_failed_in_test;
static int check_passed, check_failed;

#define CHECK(cond) do { if (!(cond)) { check_failed_in_test = 1; \
  fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_INT(got, want) do { long long g_ = (long long)(got), w_ = (long long)(want); \
  if (g_ != w_) { check_failed_in_test = 1; fprintf(stderr, "  %s:%d: %s == %lld, want %lld\n", \
  __FILE__, __LINE__, #got, g_, w_); } } while (0)
#define CHECK_STR(got, want) do { const char *g_ = (got), *w_ = (want); \
  if (!g_ || strcmp(g_, w_) != 0) { check_failed_in_test = 1; fprintf(stderr, \
  "  %s:%d: %s == \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got, g_ ? g_ : "(null)", w_); } } while (0)

#define RUN(test) do { check_failed_in_test = 0; test(); \
  if (check_failed_in_test) { check_failed++; printf("FAIL %s\n", #test); } \
  else { check_passed++; printf("ok   %s\n", #test); } } while (0)

#define CHECK_SUMMARY() (printf("%d passed, %d failed\n", check_passed, check_failed), \
  check_failed ? 1 : 0)
#endif
