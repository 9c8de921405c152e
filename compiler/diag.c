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

static FILE *out(void) { return diag_out ? diag_out : stderr; }

SrcFile *source_from_string(const char *name, const char *text) {
  SrcFile *f = xalloc(sizeof *f);
  f->name = xstrdup(name);
  f->text = xstrdup(text);
  f->len = (int)strlen(text);
  return f;
}

SrcFile *read_source(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return NULL;
  Buf b = {0};
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) {
    if (memchr(chunk, '\0', n)) { /* a binary file is not a model */
      fclose(fp);
      buf_free(&b);
      errno = EILSEQ;
      return NULL;
    }
    buf_printf(&b, "%.*s", (int)n, chunk);
    if (b.len > (1u << 24)) { /* 16 MiB of model text is not a model either */
      fclose(fp);
      buf_free(&b);
      errno = EFBIG;
      return NULL;
    }
  }
  bool bad = ferror(fp);
  fclose(fp);
  if (bad) {
    buf_free(&b);
    errno = EIO;
    return NULL;
  }
  SrcFile *f = source_from_string(path, b.data ? b.data : "");
  buf_free(&b);
  return f;
}

void loc_line_col(Loc loc, int *line, int *col) {
  int l = 1, c = 1;
  for (int i = 0; i < loc.off && i < loc.file->len; i++) {
    if (loc.file->text[i] == '\n') {
      l++;
      c = 1;
    } else {
      c++;
    }
  }
  *line = l;
  *col = c;
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
  fprintf(out(), "%5d | %.*s\n      | ", line, end - start, text + start);
  for (int i = start; i < loc.off; i++)  /* keep tabs so the caret lines up */
    fputc(text[i] == '\t' ? '\t' : ' ', out());
  int len = loc.len < 1 ? 1 : loc.len;
  if (loc.off + len > end)  /* a span running past the line is cut there */
    len = end - loc.off < 1 ? 1 : end - loc.off;
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
  exit(70);
}
