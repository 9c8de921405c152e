/*
 * lex.c -- turn .nn text into tokens, one at a time.
 *
 * Newlines end statements, except inside ( ) and [ ] where an expression
 * may span lines.  '#' starts a comment to the end of the line.  A file is
 * UTF-8 text: lex_init() rejects NUL bytes and malformed UTF-8 with the
 * line and column of the first bad byte.
 */
#include "nncc.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Longest first, so "==" is not read as "=" "=". */
static const char *puncts[] = {
    "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ",", ":", "=",
    "+",  "-",  "*",  "/",  "%", "<", ">", ".",
};

bool tok_is(const Token *t, const char *s) {
  return (t->kind == T_PUNCT || t->kind == T_IDENT) && strcmp(t->str, s) == 0;
}

static Loc span(SrcFile *f, const char *start, const char *end) {
  return (Loc){f, (int)(start - f->text), (int)(end - start)};
}

/* The length of the well-formed UTF-8 sequence at s (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static int utf8_len(const unsigned char *s) {
  if (s[0] < 0x80)
    return 1;
  int n;
  unsigned lo = 0x80, hi = 0xBF; /* the range of the second byte */
  if (s[0] >= 0xC2 && s[0] <= 0xDF)
    n = 2;
  else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
    n = 3;
    if (s[0] == 0xE0)
      lo = 0xA0;
    else if (s[0] == 0xED)
      hi = 0x9F;
  } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
    n = 4;
    if (s[0] == 0xF0)
      lo = 0x90;
    else if (s[0] == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (int i = 2; i < n; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  return n;
}

void lex_init(Lexer *L, SrcFile *file) {
  *L = (Lexer){.file = file, .p = file->text, .last = T_EOF};
  /* the text ends in a NUL of its own, so a sequence cut short stops there */
  const unsigned char *s = (const unsigned char *)file->text;
  for (int i = 0; i < file->len;) {
    int n = s[i] ? utf8_len(s + i) : 0;
    if (n == 0) {
      Loc at = {file, i, 1};
      if (s[i] == 0)
        error_at(at, "NUL byte in the source (a .nn file is UTF-8 text)");
      error_at(at, "invalid UTF-8 byte 0x%02x (a .nn file is UTF-8 text)", s[i]);
    }
    i += n;
  }
}

/* A number: 16, 0.0002, 1e-5, 2.5E3.  p is at its first character. */
static Token number(Lexer *L) {
  SrcFile *file = L->file;
  const char *start = L->p, *p = start;
  bool is_float = false;
  while (isdigit((unsigned char)*p))
    p++;
  if (*p == '.') {
    is_float = true;
    p++;
    while (isdigit((unsigned char)*p))
      p++;
  }
  if ((*p == 'e' || *p == 'E') &&
      (isdigit((unsigned char)p[1]) || ((p[1] == '-' || p[1] == '+') && isdigit((unsigned char)p[2])))) {
    is_float = true;
    p += 2;
    while (isdigit((unsigned char)*p))
      p++;
  }
  if (isalpha((unsigned char)*p) || *p == '_')
    error_at(span(file, start, p + 1), "invalid number '%.*s'", (int)(p - start + 1), start);
  Token t = {.loc = span(file, start, p)};
  /* strtod and strtoll read exactly the characters above and stop there */
  char *end;
  errno = 0;
  if (is_float) {
    t.kind = T_FLOAT;
    t.fval = strtod(start, &end);
  } else {
    t.kind = T_INT;
    t.ival = strtoll(start, &end, 10);
  }
  if (end != p)
    ICE("number '%.*s' read as %d characters", (int)(p - start), start, (int)(end - start));
  /* overflow to inf, or underflow below the smallest normal double */
  if (errno == ERANGE)
    error_at(t.loc, "number '%.*s' is out of range", (int)(p - start), start);
  L->p = p;
  return t;
}

Token lex_next(Lexer *L) {
  SrcFile *file = L->file;
  for (;;) {
    const char *p = L->p;
    Token t = {0};
    if (*p == '#') {
      while (*p && *p != '\n')
        p++;
      L->p = p;
      continue;
    }
    if (*p == '\n') {
      L->p = p + 1;
      /* one NEWLINE token per run of line ends, none inside ( ) [ ] */
      if (L->depth == 0 && L->last != T_EOF && L->last != T_NEWLINE) {
        t.kind = L->last = T_NEWLINE;
        t.loc = span(file, p, p + 1);
        t.str = "\\n";
        return t;
      }
      continue;
    }
    if (isspace((unsigned char)*p)) {
      L->p = p + 1;
      continue;
    }
    if (*p == '\0') { /* the end: a last NEWLINE if missing, then EOF */
      t.kind = L->depth == 0 && L->last != T_EOF && L->last != T_NEWLINE ? T_NEWLINE : T_EOF;
      t.loc = span(file, p, p);
      t.str = t.kind == T_NEWLINE ? "\\n" : "end of file";
      if (t.kind == T_NEWLINE)
        L->last = T_NEWLINE;
      return t;
    }

    const char *start = p;
    if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1]))) {
      t = number(L);
    } else if (isalpha((unsigned char)*p) || *p == '_') {
      while (isalnum((unsigned char)*p) || *p == '_')
        p++;
      t.kind = T_IDENT;
      t.loc = span(file, start, p);
      t.str = xstrndup(start, (size_t)(p - start));
      L->p = p;
    } else if (*p == '"' || *p == '\'') {
      char quote = *p++;
      while (*p && *p != quote && *p != '\n')
        p++;
      if (*p != quote)
        error_at(span(file, start, p), "unterminated string");
      p++;
      t.kind = T_STRING;
      t.loc = span(file, start, p);
      t.str = xstrndup(start + 1, (size_t)(p - start - 2));
      L->p = p;
    } else {
      for (size_t i = 0; i < sizeof puncts / sizeof *puncts; i++) {
        size_t len = strlen(puncts[i]);
        if (strncmp(p, puncts[i], len) == 0) {
          t.kind = T_PUNCT;
          t.str = (char *)puncts[i];
          p += len;
          break;
        }
      }
      if (t.kind != T_PUNCT) {
        /* one UTF-8 sequence counts as one bad character */
        const char *q = p + 1;
        while ((*q & 0xC0) == 0x80)
          q++;
        error_at(span(file, start, q), "unexpected character '%.*s'", (int)(q - start), start);
      }
      t.loc = span(file, start, p);
      L->p = p;
      if (tok_is(&t, "(") || tok_is(&t, "["))
        L->depth++;
      else if ((tok_is(&t, ")") || tok_is(&t, "]")) && L->depth > 0)
        L->depth--;
    }
    L->last = t.kind;
    return t;
  }
}

Token *lex(SrcFile *file, int *ntok) {
  Lexer L;
  lex_init(&L, file);
  Token *toks = NULL;
  int n = 0, cap = 0;
  for (;;) {
    Token t = lex_next(&L);
    VEC_PUSH(toks, n, cap, t);
    if (t.kind == T_EOF)
      break;
  }
  *ntok = n;
  return toks;
}
