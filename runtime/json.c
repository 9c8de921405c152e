/*
 * json.c -- a strict parser for the JSON a safetensors header uses:
 * objects, arrays, strings and non-negative integers.  Floats, negative
 * numbers, true/false/null and duplicate keys are rejected, since a valid
 * header never has them and accepting them would only hide corruption.
 * Nesting is capped so a hostile "[[[[..." cannot exhaust the stack.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#define JSON_MAX_DEPTH 16

typedef struct Parser {
  const char *s;
  size_t len, pos;
  int depth;
  char *err;
  size_t errcap;
  int failed;
} Parser;

static void fail(Parser *p, const char *fmt, ...) RT_PRINTF(2, 3);
static void fail(Parser *p, const char *fmt, ...) {
  if (p->failed) return;
  p->failed = 1;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(p->err, p->errcap, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < p->errcap)
    snprintf(p->err + n, p->errcap - (size_t)n, " at byte %zu", p->pos);
}

static void skip_ws(Parser *p) {
  while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos]) p->pos++;
}

static int peek(Parser *p) { return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1; }

static int expect(Parser *p, char c) {
  skip_ws(p);
  if (peek(p) != c) {
    fail(p, "expected '%c'", c);
    return -1;
  }
  p->pos++;
  return 0;
}

static int hex4(Parser *p, unsigned *out) {
  *out = 0;
  for (int i = 0; i < 4; i++, p->pos++) {
    int c = peek(p);
    unsigned d;
    if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
    else {
      fail(p, "bad \\u escape");
      return -1;
    }
    *out = *out << 4 | d;
  }
  return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* string = '"' { char | escape } '"' ; the decoded text is never longer
 * than the source, so one allocation of the source length suffices. */
static char *parse_string(Parser *p) {
  if (expect(p, '"')) return NULL;
  size_t start = p->pos;
  while (p->pos < p->len && p->s[p->pos] != '"') p->pos += p->s[p->pos] == '\\' ? 2 : 1;
  if (p->pos >= p->len) {
    fail(p, "unterminated string");
    return NULL;
  }
  char *out = malloc(p->pos - start + 1), *o = out;
  if (!out) {
    fail(p, "out of memory");
    return NULL;
  }
  p->pos = start;
  while (p->s[p->pos] != '"') {
    unsigned char c = (unsigned char)p->s[p->pos++];
    if (c < 0x20) {
      fail(p, "control character in string");
      goto bad;
    }
    if (c != '\\') {
      *o++ = (char)c;
      continue;
    }
    c = (unsigned char)p->s[p->pos++];
    const char *esc = strchr("\"\\/bfnrt", c);
    if (esc && c) {
      *o++ = "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
      continue;
    }
    if (c != 'u') {
      fail(p, "bad escape '\\%c'", c);
      goto bad;
    }
    unsigned cp, lo;
    if (hex4(p, &cp)) goto bad;
    if (cp >= 0xd800 && cp < 0xdc00) { /* a surrogate pair encodes one code point */
      if (p->pos + 2 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
        fail(p, "lone surrogate in string");
        goto bad;
      }
      p->pos += 2;
      if (hex4(p, &lo)) goto bad;
      if (lo < 0xdc00 || lo > 0xdfff) {
        fail(p, "bad surrogate pair in string");
        goto bad;
      }
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else if (cp >= 0xdc00 && cp < 0xe000) {
      fail(p, "lone surrogate in string");
      goto bad;
    }
    if (cp == 0) {
      fail(p, "NUL in string");
      goto bad;
    }
    o += put_utf8(o, cp);
  }
  p->pos++;
  *o = 0;
  return out;
bad:
  free(out);
  return NULL;
}

static int parse_value(Parser *p, JsonValue *v);

/* Appends a zeroed slot to an object/array under construction.  The
 * capacity is the power of two above count, so it doubles and needs no
 * field of its own: n members cost O(n) copying, not O(n^2). */
static JsonValue *grow(Parser *p, JsonValue *v, int with_key) {
  if (v->count >= 1 << 20) {
    fail(p, "too many members");
    return NULL;
  }
  if ((v->count & (v->count - 1)) == 0) {
    size_t cap = v->count ? 2 * (size_t)v->count : 1;
    JsonValue *items = realloc(v->items, cap * sizeof *items);
    if (!items) goto oom;
    v->items = items;
    if (with_key) {
      char **keys = realloc(v->keys, cap * sizeof *keys);
      if (!keys) goto oom;
      v->keys = keys;
    }
  }
  if (with_key) v->keys[v->count] = NULL;
  memset(&v->items[v->count], 0, sizeof *v->items);
  return &v->items[v->count++];
oom:
  fail(p, "out of memory");
  return NULL;
}

static int key_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Duplicate keys, found by sorting a copy of the key list: O(n log n), so
 * a header of 100,000 keys takes milliseconds, not a minute. */
static int check_unique(Parser *p, const JsonValue *v) {
  if (v->count < 2) return 0;
  char **sorted = malloc((size_t)v->count * sizeof *sorted);
  if (!sorted) {
    fail(p, "out of memory");
    return -1;
  }
  memcpy(sorted, v->keys, (size_t)v->count * sizeof *sorted);
  qsort(sorted, (size_t)v->count, sizeof *sorted, key_cmp);
  int rc = 0;
  for (int i = 1; i < v->count && !rc; i++)
    if (strcmp(sorted[i - 1], sorted[i]) == 0) {
      fail(p, "duplicate key \"%s\"", sorted[i]);
      rc = -1;
    }
  free(sorted);
  return rc;
}

/* object = '{' [ string ':' value { ',' string ':' value } ] '}' */
static int parse_object(Parser *p, JsonValue *v) {
  v->kind = JSON_OBJECT;
  p->pos++;
  skip_ws(p);
  if (peek(p) == '}') {
    p->pos++;
    return 0;
  }
  for (;;) {
    JsonValue *item = grow(p, v, 1);
    if (!item) return -1;
    char *key = parse_string(p);
    if (!key) return -1;
    v->keys[v->count - 1] = key;
    if (expect(p, ':') || parse_value(p, item)) return -1;
    skip_ws(p);
    if (peek(p) == ',') { p->pos++; continue; }
    return expect(p, '}') || check_unique(p, v) ? -1 : 0;
  }
}

/* array = '[' [ value { ',' value } ] ']' */
static int parse_array(Parser *p, JsonValue *v) {
  v->kind = JSON_ARRAY;
  p->pos++;
  skip_ws(p);
  if (peek(p) == ']') {
    p->pos++;
    return 0;
  }
  for (;;) {
    JsonValue *item = grow(p, v, 0);
    if (!item || parse_value(p, item)) return -1;
    skip_ws(p);
    if (peek(p) == ',') { p->pos++; continue; }
    return expect(p, ']');
  }
}

/* integer = '0' | [1-9][0-9]* , below 2^63 */
static int parse_int(Parser *p, JsonValue *v) {
  v->kind = JSON_INT;
  if (peek(p) == '0' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9') {
    fail(p, "leading zero in number");
    return -1;
  }
  int digits = 0;
  for (int c; (c = peek(p)) >= '0' && c <= '9'; p->pos++, digits++) {
    if (v->num > (INT64_MAX - (c - '0')) / 10) {
      fail(p, "number too large");
      return -1;
    }
    v->num = v->num * 10 + (c - '0');
  }
  int c = peek(p);
  if (c == '.' || c == 'e' || c == 'E') {
    fail(p, "only non-negative integers are allowed");
    return -1;
  }
  return 0;
}

static int parse_value(Parser *p, JsonValue *v) {
  if (++p->depth > JSON_MAX_DEPTH) {
    fail(p, "nested too deeply");
    return -1;
  }
  skip_ws(p);
  int c = peek(p), rc;
  if (c == '{') rc = parse_object(p, v);
  else if (c == '[') rc = parse_array(p, v);
  else if (c == '"') {
    v->kind = JSON_STRING;
    v->str = parse_string(p);
    rc = v->str ? 0 : -1;
  } else if (c >= '0' && c <= '9') rc = parse_int(p, v);
  else {
    if (c == '-') fail(p, "only non-negative integers are allowed");
    else if (c < 0) fail(p, "unexpected end of header");
    else fail(p, "unexpected character '%c'", c >= 0x20 && c < 0x7f ? c : '?');
    rc = -1;
  }
  p->depth--;
  return rc;
}

static void json_free_members(JsonValue *v) {
  for (int i = 0; i < v->count; i++) {
    json_free_members(&v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->str);
}

void json_free(JsonValue *v) {
  if (!v) return;
  json_free_members(v);
  free(v);
}

JsonValue *json_parse(const char *text, size_t len, char *err, size_t errcap) {
  Parser p = {text, len, 0, 0, err, errcap, 0};
  JsonValue *v = calloc(1, sizeof *v);
  if (!v) {
    snprintf(err, errcap, "out of memory");
    return NULL;
  }
  if (parse_value(&p, v) == 0) {
    skip_ws(&p);
    if (p.pos != len) fail(&p, "trailing characters after the JSON value");
  }
  if (!p.failed) return v;
  json_free(v);
  return NULL;
}

const JsonValue *json_get(const JsonValue *obj, const char *key) {
  if (!obj || obj->kind != JSON_OBJECT) return NULL;
  for (int i = 0; i < obj->count; i++)
    if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
  return NULL;
}
