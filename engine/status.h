/* status: engine error codes. Engine functions return 0 or a negative SL_E*. */
#ifndef SLUICE_STATUS_H
#define SLUICE_STATUS_H
enum {
  SL_OK = 0,
  SL_ENOMEM = -1,    /* out of memory */
  SL_EINVAL = -2,    /* invalid argument */
  SL_ECORRUPT = -3,  /* malformed encoded data */
  SL_ENOENT = -4,    /* no such stage / subscription / partition */
  SL_ETIMEDOUT = -5, /* a wait ran out of time */
  SL_EINTR = -6,     /* a wait was interrupted */
  SL_EEXIST = -7,    /* already exists (duplicate subscription) */
  SL_ECLOSED = -8    /* the target has gone */
};
const char *sl_strerror(int code);
#endif
