/* dump.h -- the bit-exact dump format the kernel tests write for
 * cross_compiler.sh: a name and a count, then every float as 8 hex digits. */
#ifndef NNCC_TEST_DUMP_H
#define NNCC_TEST_DUMP_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void dump(FILE *f, const char *name, const float *p, size_t n) {
  fprintf(f, "%s %zu\n", name, n);
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &p[i], 4);
    fprintf(f, "%08x%c", u, i % 8 == 7 ? '\n' : ' ');
  }
  fputc('\n', f);
}

#endif
