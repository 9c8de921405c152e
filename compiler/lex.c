/*
 * lex.c -- turn .nn text into tokens.
 *
 * Newlines end statements, except inside ( ) and [ ] where an expression
 * may span lines.  '#' starts a comment to the end of the line.
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

Token *lex(SrcFile *file, int *ntok) {
  Token *toks = NULL;
  int n = 0, cap = 0, depth = 0;
  const char *p = file->text;

  for (;;) {
    Token t = {0};
    if (*p == '#') {
      while (*p && *p != '\n')
        p++;
      continue;
    }
    if (*p == '\n') {
      /* one NEWLINE token per run of line ends, none inside ( ) [ ] */
      if (depth == 0 && n > 0 && toks[n - 1].kind != T_NEWLINE) {
        t.kind = T_NEWLINE;
        t.loc = span(file, p, p + 1);
        t.str = "\\n";
        VEC_PUSH(toks, n, cap, t);
      }
      p++;
      continue;
    }
    if (isspace((unsigned char)*p)) {
      p++;
      continue;
    }
    if (*p == '\0') {
      if (n > 0 && toks[n - 1].kind != T_NEWLINE && depth == 0) {
        t.kind = T_NEWLINE;
        t.loc = span(file, p, p);
        t.str = "\\n";
        VEC_PUSH(toks, n, cap, t);
      }
      t.kind = T_EOF;
      t.loc = span(file, p, p);
      t.str = "end of file";
      VEC_PUSH(toks, n, cap, t);
      break;
    }

    const char *start = p;
    if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1]))) {
      /* numbers: 16, 0.0002, 1e-5, 2.5E3 */
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
          (isdigit((unsigned char)p[1]) ||
           ((p[1] == '-' || p[1] == '+') && isdigit((unsigned char)p[2])))) {
        is_float = true;
        p += 2;
        while (isdigit((unsigned char)*p))
          p++;
      }
      if (isalpha((unsigned char)*p) || *p == '_')
        error_at(span(file, start, p + 1), "invalid number '%.*s'", (int)(p - start + 1), start);
      t.loc = span(file, start, p);
      char *text = xstrndup(start, (size_t)(p - start));
      errno = 0;
      if (is_float) {
        t.kind = T_FLOAT;
        t.fval = strtod(text, NULL);
      } else {
        t.kind = T_INT;
        t.ival = strtoll(text, NULL, 10);
      }
      if (errno == ERANGE)
        error_at(t.loc, "number '%s' is out of range", text);
      t.str = text;
    } else if (isalpha((unsigned char)*p) || *p == '_') {
      while (isalnum((unsigned char)*p) || *p == '_')
        p++;
      t.kind = T_IDENT;
      t.loc = span(file, start, p);
      t.str = xstrndup(start, (size_t)(p - start));
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
      if (tok_is(&t, "(") || tok_is(&t, "["))
        depth++;
      else if ((tok_is(&t, ")") || tok_is(&t, "]")) && depth > 0)
        depth--;
    }
    VEC_PUSH(toks, n, cap, t);
  }
  *ntok = n;
  return toks;
}
