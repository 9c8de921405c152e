/*
 * diag.c -- source files and diagnostics.
 *
 * Every user error goes through diag_error(): "file:line:col: error: msg",
 * the source line and a caret under the offending span, like a C compiler.
 * diag_fail() never returns into a half-built state: the compiler exits
 * (status 1) or, in tests, longjmps to diag_trap.
 */
#include "nncc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

FILE *diag_out;
jmp_buf *diag_trap;
bool diag_abort;

static FILE *out(void) { return diag_out ? diag_out : stderr; }

SrcFile *source_from_bytes(const char *name, const char *data, size_t len) {
  SrcFile *f = xalloc(sizeof *f);
  f->name = xstrdup(name);
  f->text = xstrndup(data, len);
  f->len = (int)len;
  return f;
}

SrcFile *source_from_string(const char *name, const char *text) {
  return source_from_bytes(name, text, strlen(text));
}

SrcFile *(*read_source_hook)(const char *path);

SrcFile *read_source(const char *path) {
  if (read_source_hook)
    return read_source_hook(path);
  /* a FIFO or device is refused (FIO_ENOTREG), never waited on; every
   * byte, NULs too: lex_init() reports a bad one with its line; 16 MiB of
   * model text is not a model (EFBIG) */
  size_t len;
  char *data = fio_read_file(path, NNCC_MAX_SOURCE_BYTES, &len);
  if (!data)
    return NULL;
  SrcFile *f = source_from_bytes(path, data, len);
  free(data);
  return f;
}

/* Columns count bytes from 1; the line index makes this O(log lines), so
 * dumping or emitting a 100k-node model does not rescan the file per node. */
void loc_line_col(Loc loc, int *line, int *col) {
  SrcFile *f = loc.file;
  if (!f->line_starts) {
    int n = 1;
    for (int i = 0; i < f->len; i++)
      n += f->text[i] == '\n';
    f->line_starts = xalloc(sizeof(int) * (size_t)n);
    f->nlines = 0;
    f->line_starts[f->nlines++] = 0;
    for (int i = 0; i < f->len; i++)
      if (f->text[i] == '\n')
        f->line_starts[f->nlines++] = i + 1;
  }
  int off = loc.off < 0 ? 0 : loc.off > f->len ? f->len : loc.off;
  int lo = 0, hi = f->nlines - 1; /* the last line starting at or before off */
  while (lo < hi) {
    int mid = lo + (hi - lo + 1) / 2;
    if (f->line_starts[mid] <= off)
      lo = mid;
    else
      hi = mid - 1;
  }
  *line = lo + 1;
  *col = off - f->line_starts[lo] + 1;
}

/* Print the source line of loc with a caret and tildes under its span. */
static void show_span(Loc loc) {
  const char *text = loc.file->text;
  int start = loc.off;
  while (start > 0 && text[start - 1] != '\n')
    start--;
  int end = loc.off;
  while (end < loc.file->len && text[end] != '\n')
    end++;
  int line, col;
  loc_line_col(loc, &line, &col);
  /* of a long line (a 10 MB list) only the part around the span, cut
   * between UTF-8 characters */
  enum { WIDE = 160, AROUND = 60 };
  int from = start, to = end;
  if (end - start > WIDE) {
    from = loc.off - AROUND > start ? loc.off - AROUND : start;
    to = from + WIDE < end ? from + WIDE : end;
    while (from < loc.off && (text[from] & 0xC0) == 0x80)
      from++;
    while (to > loc.off + 1 && to < end && (text[to] & 0xC0) == 0x80)
      to--;
  }
  const char *cut_l = from > start ? "..." : "", *cut_r = to < end ? "..." : "";
  fprintf(out(), "%5d | %s%.*s%s\n      | %s", line, cut_l, to - from, text + from, cut_r,
          *cut_l ? "   " : "");
  for (int i = from; i < loc.off; i++)  /* keep tabs so the caret lines up */
    fputc(text[i] == '\t' ? '\t' : ' ', out());
  int len = loc.len < 1 ? 1 : loc.len;
  if (loc.off + len > to)  /* a span running past the line is cut there */
    len = to - loc.off < 1 ? 1 : to - loc.off;
  fputc('^', out());
  for (int i = 1; i < len; i++)
    fputc('~', out());
  fputc('\n', out());
}

static void vreport(Loc loc, const char *kind, const char *fmt, va_list ap) {
  int line, col;
  loc_line_col(loc, &line, &col);
  fprintf(out(), "%s:%d:%d: %s: ", loc.file->name, line, col, kind);
  vfprintf(out(), fmt, ap);
  fputc('\n', out());
  show_span(loc);
}

void diag_error(Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(loc, "error", fmt, ap);
  va_end(ap);
}

void diag_note(const Loc *loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (loc) {
    vreport(*loc, "note", fmt, ap);
  } else {
    fprintf(out(), "note: ");
    vfprintf(out(), fmt, ap);
    fputc('\n', out());
  }
  va_end(ap);
}

/* "note: in block 'conv_2_block' called here" for each enclosing call. */
void diag_callsites(const CallSite *site) {
  for (; site; site = site->parent)
    diag_note(&site->loc, "in block '%s' called here", site->block);
}

noreturn void diag_fail(void) {
  fflush(out());
  if (diag_trap)
    longjmp(*diag_trap, 1);
  exit(1);
}

noreturn void error_at(Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(loc, "error", fmt, ap);
  va_end(ap);
  diag_fail();
}

/* An error with no source location: "nncc: cannot open ...". */
noreturn void fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(out(), "nncc: error: ");
  vfprintf(out(), fmt, ap);
  fputc('\n', out());
  va_end(ap);
  diag_fail();
}

noreturn void internal_error(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "nncc: internal error at %s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nthis is a bug in nncc, not in your model; please report it\n");
  va_end(ap);
  if (diag_abort)
    abort();
  exit(70);
}
