/*
 * parse.c -- recursive-descent parser: tokens -> statements and expressions.
 *
 * Each function is named after the grammar rule it parses; the rule is in
 * the comment above it.  docs/language.md has the whole grammar.
 */
#include "nncc.h"

#include <string.h>

typedef struct Parser {
  SrcFile *file;
  Token *tok;
  int pos, ntok;
  int block_depth; /* >0 inside a block body: 'return' is allowed */
} Parser;

static Token *peek(Parser *p) { return &p->tok[p->pos]; }
static Token *next(Parser *p) { return &p->tok[p->pos < p->ntok - 1 ? p->pos++ : p->pos]; }

static bool equal(Parser *p, const char *s) { return tok_is(peek(p), s); }

static bool consume(Parser *p, const char *s) {
  if (!equal(p, s))
    return false;
  next(p);
  return true;
}

static const char *describe(Token *t) {
  switch (t->kind) {
  case T_NEWLINE: return "end of line";
  case T_EOF: return "end of file";
  case T_STRING: return format("string \"%s\"", t->str);
  default: return format("'%s'", t->str);
  }
}

static noreturn void expected(Parser *p, const char *what) {
  Token *t = peek(p);
  error_at(t->loc, "expected %s, got %s", what, describe(t));
}

static void skip(Parser *p, const char *s) {
  if (!consume(p, s))
    expected(p, format("'%s'", s));
}

static bool is_keyword(const char *s) {
  static const char *kw[] = {"model", "import", "input", "label", "block", "train",
                             "for",   "in",     "if",    "else",  "return", "true",
                             "false", "and",    "or",    "not",   "of",     "class"};
  for (size_t i = 0; i < sizeof kw / sizeof *kw; i++)
    if (strcmp(s, kw[i]) == 0)
      return true;
  return false;
}

static Token *ident(Parser *p, const char *what) {
  Token *t = peek(p);
  if (t->kind != T_IDENT || is_keyword(t->str))
    expected(p, what);
  return next(p);
}

/* Span from token a to the end of the token before the current one. */
static Loc span_from(Parser *p, Loc a) {
  Token *last = &p->tok[p->pos > 0 ? p->pos - 1 : 0];
  int end = last->loc.off + last->loc.len;
  return (Loc){a.file, a.off, end > a.off ? end - a.off : a.len};
}

static Ast *new_ast(AstKind kind, Loc loc) {
  Ast *a = xalloc(sizeof *a);
  a->kind = kind;
  a->loc = loc;
  return a;
}

static Ast *expr(Parser *p);

/* Close a bracket, or say where the unclosed one was opened. */
static void close_bracket(Parser *p, const char *close, Loc open) {
  if (consume(p, close))
    return;
  Token *t = peek(p);
  diag_error(t->loc, "expected '%s', got %s", close, describe(t));
  diag_note(&open, "to match this '%.*s'", open.len, open.file->text + open.off);
  diag_fail();
}

/* args = arg ("," arg)* [","] ;  arg = [IDENT "="] expr */
static void args(Parser *p, Ast *call, const char *close) {
  Loc open = p->tok[p->pos - 1].loc;
  int cap = 0, ncap = 0, nnames = 0;
  bool seen_keyword = false;
  while (!equal(p, close)) {
    char *key = NULL;
    if (peek(p)->kind == T_IDENT && tok_is(&p->tok[p->pos + 1], "=") && !is_keyword(peek(p)->str)) {
      Token *k = next(p);
      next(p);
      key = k->str;
      for (int i = 0; i < nnames; i++)
        if (call->argnames[i] && strcmp(call->argnames[i], key) == 0)
          error_at(k->loc, "argument '%s' given twice", key);
      seen_keyword = true;
    } else if (seen_keyword) {
      error_at(peek(p)->loc, "positional argument after keyword argument");
    }
    Ast *a = expr(p);
    VEC_PUSH(call->args, call->nargs, cap, a);
    VEC_PUSH(call->argnames, nnames, ncap, key);
    if (!consume(p, ","))
      break;
  }
  close_bracket(p, close, open);
}

/* primary = INT | FLOAT | STRING | "true" | "false" | IDENT [ "(" args ")" ]
 *         | "[" [expr ("," expr)*] "]" | "(" expr ")" */
static Ast *primary(Parser *p) {
  Token *t = peek(p);
  Loc start = t->loc;
  if (t->kind == T_INT) {
    next(p);
    Ast *a = new_ast(A_INT, t->loc);
    a->ival = t->ival;
    return a;
  }
  if (t->kind == T_FLOAT) {
    next(p);
    Ast *a = new_ast(A_FLOAT, t->loc);
    a->fval = t->fval;
    return a;
  }
  if (t->kind == T_STRING) {
    next(p);
    Ast *a = new_ast(A_STR, t->loc);
    a->str = t->str;
    return a;
  }
  if (tok_is(t, "true") || tok_is(t, "false")) {
    next(p);
    Ast *a = new_ast(A_BOOL, t->loc);
    a->ival = tok_is(t, "true");
    return a;
  }
  if (consume(p, "[")) {
    Ast *a = new_ast(A_LIST, start);
    int cap = 0;
    while (!equal(p, "]")) {
      Ast *item = expr(p);
      VEC_PUSH(a->args, a->nargs, cap, item);
      if (!consume(p, ","))
        break;
    }
    close_bracket(p, "]", start);
    a->loc = span_from(p, start);
    return a;
  }
  if (consume(p, "(")) {
    Ast *a = expr(p);
    close_bracket(p, ")", start);
    return a;
  }
  if (t->kind == T_IDENT && !is_keyword(t->str)) {
    next(p);
    if (consume(p, "(")) {
      Ast *a = new_ast(A_CALL, start);
      a->str = t->str;
      args(p, a, ")");
      a->loc = span_from(p, start);
      return a;
    }
    Ast *a = new_ast(A_NAME, t->loc);
    a->str = t->str;
    return a;
  }
  expected(p, "an expression");
}

/* postfix = primary ("[" expr "]")* */
static Ast *postfix(Parser *p) {
  Loc start = peek(p)->loc;
  Ast *a = primary(p);
  while (consume(p, "[")) {
    Ast *idx = new_ast(A_INDEX, start);
    idx->lhs = a;
    idx->rhs = expr(p);
    skip(p, "]");
    idx->loc = span_from(p, start);
    a = idx;
  }
  return a;
}

/* unary = ("-" | "not") unary | postfix */
static Ast *unary(Parser *p) {
  Loc start = peek(p)->loc;
  if (consume(p, "-") || consume(p, "not")) {
    bool neg = tok_is(&p->tok[p->pos - 1], "-");
    Ast *a = new_ast(neg ? A_NEG : A_NOT, start);
    a->lhs = unary(p);
    a->loc = span_from(p, start);
    return a;
  }
  return postfix(p);
}

static Ast *binop(Parser *p, Loc start, const char *op, Ast *lhs, Ast *rhs) {
  Ast *a = new_ast(A_BINOP, start);
  a->str = (char *)op;
  a->lhs = lhs;
  a->rhs = rhs;
  a->loc = span_from(p, start);
  return a;
}

/* Left-associative levels: mul = unary (("*"|"/"|"%") unary)*, and so on. */
static const char *level_ops[][7] = {
    {"or", NULL},
    {"and", NULL},
    {"==", "!=", "<", "<=", ">", ">=", NULL},
    {"+", "-", NULL},
    {"*", "/", "%", NULL},
};

/* expr = or ; or = and ("or" and)* ; and = cmp ("and" cmp)* ;
 * cmp = add [("=="|"!="|"<"|"<="|">"|">=") add] ; add = mul (("+"|"-") mul)* */
static Ast *level(Parser *p, int lv) {
  if (lv == (int)(sizeof level_ops / sizeof *level_ops))
    return unary(p);
  Loc start = peek(p)->loc;
  Ast *a = level(p, lv + 1);
  for (;;) {
    const char *op = NULL;
    for (int i = 0; level_ops[lv][i]; i++)
      if (equal(p, level_ops[lv][i]))
        op = level_ops[lv][i];
    if (!op)
      return a;
    next(p);
    a = binop(p, start, op, a, level(p, lv + 1));
    if (lv == 2 && !equal(p, ")")) { /* comparisons do not chain */
      for (int i = 0; level_ops[lv][i]; i++)
        if (equal(p, level_ops[lv][i]))
          error_at(peek(p)->loc, "comparisons cannot be chained");
    }
  }
}

static Ast *expr(Parser *p) { return level(p, 0); }

static Stmt *new_stmt(StmtKind kind, Loc loc) {
  Stmt *s = xalloc(sizeof *s);
  s->kind = kind;
  s->loc = loc;
  return s;
}

static void end_of_statement(Parser *p) {
  if (peek(p)->kind == T_NEWLINE) {
    next(p);
    return;
  }
  if (equal(p, "}") || peek(p)->kind == T_EOF)
    return;
  expected(p, "end of line");
}

static void skip_newlines(Parser *p) {
  while (peek(p)->kind == T_NEWLINE)
    next(p);
}

static Stmt *statement(Parser *p, bool top);

/* body = "{" statement* "}" */
static StmtList body(Parser *p) {
  StmtList list = {0};
  skip(p, "{");
  skip_newlines(p);
  while (!equal(p, "}")) {
    if (peek(p)->kind == T_EOF)
      expected(p, "'}'");
    Stmt *s = statement(p, false);
    VEC_PUSH(list.v, list.n, list.cap, s);
    skip_newlines(p);
  }
  skip(p, "}");
  return list;
}

/* dims = "[" expr ("," expr)* "]" */
static void dims(Parser *p, Stmt *s) {
  int cap = 0;
  skip(p, "[");
  do {
    Ast *d = expr(p);
    VEC_PUSH(s->dims, s->ndims, cap, d);
  } while (consume(p, ","));
  skip(p, "]");
}

/* block = "block" IDENT "(" [param ("," param)*] ")" body ;
 * param = IDENT ["=" expr] */
static Stmt *block_def(Parser *p, Loc start) {
  Token *name = ident(p, "a block name");
  BlockDef *b = xalloc(sizeof *b);
  b->name = name->str;
  b->loc = name->loc;
  skip(p, "(");
  int cap = 0, dcap = 0, nd = 0;
  while (!equal(p, ")")) {
    Token *pt = ident(p, "a parameter name");
    for (int i = 0; i < b->nparams; i++)
      if (strcmp(b->params[i], pt->str) == 0)
        error_at(pt->loc, "parameter '%s' declared twice", pt->str);
    Ast *def = consume(p, "=") ? expr(p) : NULL;
    if (!def && nd > 0 && b->defaults[nd - 1])
      error_at(pt->loc, "parameter '%s' without a default follows one with a default", pt->str);
    VEC_PUSH(b->params, b->nparams, cap, pt->str);
    VEC_PUSH(b->defaults, nd, dcap, def);
    if (!consume(p, ","))
      break;
  }
  skip(p, ")");
  p->block_depth++;
  b->body = body(p);
  p->block_depth--;
  Stmt *s = new_stmt(S_BLOCK, start);
  s->name = b->name;
  s->name_loc = b->loc;
  s->block = b;
  return s;
}

/*
 * statement = "model" IDENT
 *           | "import" STRING
 *           | "input" IDENT ":" IDENT dims "=" expr
 *           | "label" IDENT ":" "class" "[" expr "]" "of" expr
 *           | block
 *           | "train" expr (IDENT "=" expr)*
 *           | "for" IDENT "in" expr body
 *           | "if" expr body ["else" (body | if-statement)]
 *           | "return" expr
 *           | IDENT "=" expr
 * Only the last four may appear inside a block body.
 */
static Stmt *statement(Parser *p, bool top) {
  Token *t = peek(p);
  Loc start = t->loc;
  const char *kw = t->kind == T_IDENT ? t->str : "";
  static const char *top_only[] = {"model", "import", "input", "label", "block", "train"};
  for (size_t i = 0; i < sizeof top_only / sizeof *top_only; i++)
    if (strcmp(kw, top_only[i]) == 0 && !top)
      error_at(t->loc, "'%s' is only allowed at the top level, not inside a block", kw);

  Stmt *s;
  if (consume(p, "model")) {
    s = new_stmt(S_MODEL, start);
    Token *n = ident(p, "a model name");
    s->name = n->str;
    s->name_loc = n->loc;
  } else if (consume(p, "import")) {
    s = new_stmt(S_IMPORT, start);
    if (peek(p)->kind != T_STRING)
      expected(p, "a file name in quotes");
    s->name_loc = peek(p)->loc;
    s->name = next(p)->str;
  } else if (consume(p, "input")) {
    s = new_stmt(S_INPUT, start);
    Token *n = ident(p, "the input's name");
    s->name = n->str;
    s->name_loc = n->loc;
    skip(p, ":");
    s->dtype = ident(p, "a dtype such as f32")->str;
    dims(p, s);
    skip(p, "=");
    s->expr = expr(p);
  } else if (consume(p, "label")) {
    s = new_stmt(S_LABEL, start);
    Token *n = ident(p, "the label's name");
    s->name = n->str;
    s->name_loc = n->loc;
    skip(p, ":");
    skip(p, "class");
    dims(p, s);
    skip(p, "of");
    int cap = s->ndims;
    Ast *c = expr(p);
    VEC_PUSH(s->dims, s->ndims, cap, c);
  } else if (consume(p, "block")) {
    s = block_def(p, start);
  } else if (consume(p, "train")) {
    s = new_stmt(S_TRAIN, start);
    s->expr = expr(p);
    int cap = 0, vcap = 0, nv = 0;
    while (peek(p)->kind == T_IDENT) {
      Token *k = ident(p, "a training setting");
      skip(p, "=");
      VEC_PUSH(s->keys, s->nkeys, cap, k->str);
      Ast *v = expr(p);
      VEC_PUSH(s->vals, nv, vcap, v);
    }
  } else if (consume(p, "for")) {
    s = new_stmt(S_FOR, start);
    Token *n = ident(p, "a loop variable");
    s->name = n->str;
    s->name_loc = n->loc;
    skip(p, "in");
    s->expr = expr(p);
    s->body = body(p);
  } else if (consume(p, "if")) {
    s = new_stmt(S_IF, start);
    s->expr = expr(p);
    s->body = body(p);
    if (consume(p, "else")) {
      if (equal(p, "if")) {
        Stmt *elif = statement(p, top);
        VEC_PUSH(s->orelse.v, s->orelse.n, s->orelse.cap, elif);
        return s;
      }
      s->orelse = body(p);
    }
  } else if (equal(p, "return")) {
    if (p->block_depth == 0)
      error_at(t->loc, "'return' outside a block");
    next(p);
    s = new_stmt(S_RETURN, start);
    s->expr = expr(p);
  } else if (t->kind == T_IDENT && !is_keyword(t->str)) {
    next(p);
    if (!equal(p, "="))
      expected(p, format("'=' after '%s' (a statement is NAME = EXPRESSION)", t->str));
    next(p);
    s = new_stmt(S_ASSIGN, start);
    s->name = t->str;
    s->name_loc = t->loc;
    s->expr = expr(p);
  } else {
    expected(p, "a statement");
  }
  s->loc = span_from(p, start);
  end_of_statement(p);
  return s;
}

/* program = statement* */
StmtList parse(SrcFile *file) {
  Parser p = {.file = file};
  p.tok = lex(file, &p.ntok);
  StmtList prog = {0};
  skip_newlines(&p);
  while (peek(&p)->kind != T_EOF) {
    if (equal(&p, "}"))
      error_at(peek(&p)->loc, "unexpected '}'");
    Stmt *s = statement(&p, true);
    VEC_PUSH(prog.v, prog.n, prog.cap, s);
    skip_newlines(&p);
  }
  return prog;
}
