/*
 * errbuf.h -- the error convention of the runtime's files that nncc links
 * too (schedule.c, plot.c): a failing function writes one line into the
 * caller's buffer and returns -1; the caller prints it as it prints errors.
 */
#ifndef NNCC_ERRBUF_H
#define NNCC_ERRBUF_H

#include <stdarg.h>
#include <stdio.h>

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static inline int errbuf_set(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

#endif
