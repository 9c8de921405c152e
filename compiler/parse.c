/*
 * parse.c -- recursive-descent parser: tokens -> statements and expressions.
 *
 * Each function is named after the grammar rule it parses; the rule is in
 * the comment above it.  docs/language.md has the whole grammar.
 *
 * Hostile input is bounded: brackets, prefix operators, operator chains and
 * statement bodies nest at most NNCC_MAX_NESTING deep (the recursion here
 * and in elab.c stays far from the C stack's end), a call has at most
 * NNCC_MAX_ARGS arguments, and a program at most NNCC_MAX_SYNTAX
 * expressions and statements.  Tokens come from the lexer one at a time
 * and only the last few are kept.
 */
#include "nncc.h"

#include <string.h>

/* Tokens kept: the current one, one of lookahead and the recent ones a
 * caller still points at (never more than a few tokens back). */
enum { RING = 16 };

typedef struct Parser {
  SrcFile *file;
  Lexer lx;
  Token ring[RING]; /* token i is ring[i % RING] */
  int pos, lexed;   /* the current token's number; how many were lexed */
  int block_depth;  /* >0 inside a block body: 'return' is allowed */
  int depth[2];     /* nesting of expressions; of statement bodies */
  int nodes;        /* expressions and statements made */
} Parser;

static Token *tok(Parser *p, int i) {
  while (p->lexed <= i) {
    p->ring[p->lexed % RING] = lex_next(&p->lx);
    p->lexed++;
  }
  return &p->ring[i % RING];
}

static Token *peek(Parser *p) { return tok(p, p->pos); }
static Token *peek2(Parser *p) { return tok(p, p->pos + 1); }
static Token *prev(Parser *p) { return tok(p, p->pos > 0 ? p->pos - 1 : 0); }

/* The current token, then move past it (never past the end of file).  The
 * pointer stays valid while fewer than RING - 2 more tokens are read. */
static Token *next(Parser *p) {
  Token *t = peek(p);
  if (t->kind != T_EOF)
    p->pos++;
  return t;
}

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
  case T_INT:
  case T_FLOAT: return format("'%.*s'", t->loc.len, t->loc.file->text + t->loc.off);
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
    if (s[0] == kw[i][0] && strcmp(s, kw[i]) == 0) /* most names differ at once */
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
  Token *last = prev(p);
  int end = last->loc.off + last->loc.len;
  return (Loc){a.file, a.off, end > a.off ? end - a.off : a.len};
}

/* One more expression or statement, within the program's budget. */
static void count_node(Parser *p, Loc loc) {
  if (++p->nodes > NNCC_MAX_SYNTAX)
    error_at(loc, "the program has more than %s expressions and statements (the limit)",
             fmt_count(NNCC_MAX_SYNTAX));
}

/* Entering a nested expression or statement body at loc.  A body holds
 * statements and a statement expressions, never the other way round, so
 * the recursion is at most twice the limit deep. */
enum { EXPR, STMT };

static void enter(Parser *p, int what, Loc loc) {
  if (++p->depth[what] > NNCC_MAX_NESTING)
    error_at(loc, "%s nested more than %d deep (the limit)", what == EXPR ? "expression" : "statement",
             NNCC_MAX_NESTING);
}

static void leave(Parser *p, int what) { p->depth[what]--; }

static Ast *new_ast(Parser *p, AstKind kind, Loc loc) {
  count_node(p, loc);
  Ast *a = xalloc(sizeof *a);
  a->kind = kind;
  a->height = 1;
  a->loc = loc;
  return a;
}

/* a has operand b: a's height grows past b's.  An operator chain such as
 * 1 + 1 + ... nests without recursion here, but elab.c evaluates it by
 * recursion, so its height has the same limit; at is the operator. */
static void operand(Ast *a, const Ast *b, Loc at) {
  if (b->height >= a->height)
    a->height = b->height + 1;
  if (a->height > NNCC_MAX_NESTING)
    error_at(at, "expression nested more than %d deep (the limit)", NNCC_MAX_NESTING);
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
  Loc open = prev(p)->loc;
  int cap = 0, ncap = 0, nnames = 0;
  bool seen_keyword = false;
  while (!equal(p, close)) {
    char *key = NULL;
    if (call->nargs == NNCC_MAX_ARGS)
      error_at(peek(p)->loc, "a call has at most %d arguments (the limit)", NNCC_MAX_ARGS);
    if (peek(p)->kind == T_IDENT && tok_is(peek2(p), "=") && !is_keyword(peek(p)->str)) {
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
    operand(call, a, a->loc);
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
    Ast *a = new_ast(p, A_INT, t->loc);
    a->ival = t->ival;
    return a;
  }
  if (t->kind == T_FLOAT) {
    next(p);
    Ast *a = new_ast(p, A_FLOAT, t->loc);
    a->fval = t->fval;
    return a;
  }
  if (t->kind == T_STRING) {
    next(p);
    Ast *a = new_ast(p, A_STR, t->loc);
    a->str = t->str;
    return a;
  }
  if (tok_is(t, "true") || tok_is(t, "false")) {
    next(p);
    Ast *a = new_ast(p, A_BOOL, t->loc);
    a->ival = tok_is(t, "true");
    return a;
  }
  if (consume(p, "[")) {
    Ast *a = new_ast(p, A_LIST, start);
    int cap = 0;
    while (!equal(p, "]")) {
      Ast *item = expr(p);
      operand(a, item, item->loc);
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
      Ast *a = new_ast(p, A_CALL, start);
      a->str = t->str;
      args(p, a, ")");
      a->loc = span_from(p, start);
      return a;
    }
    Ast *a = new_ast(p, A_NAME, t->loc);
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
    Loc bracket = prev(p)->loc;
    Ast *idx = new_ast(p, A_INDEX, start);
    idx->lhs = a;
    idx->rhs = expr(p);
    operand(idx, idx->lhs, bracket);
    operand(idx, idx->rhs, bracket);
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
    bool neg = tok_is(prev(p), "-");
    enter(p, EXPR, start);
    Ast *a = new_ast(p, neg ? A_NEG : A_NOT, start);
    a->lhs = unary(p);
    operand(a, a->lhs, start);
    a->loc = span_from(p, start);
    leave(p, EXPR);
    return a;
  }
  return postfix(p);
}

static Ast *binop(Parser *p, Loc start, Loc at, const char *op, Ast *lhs, Ast *rhs) {
  Ast *a = new_ast(p, A_BINOP, start);
  a->str = (char *)op;
  a->lhs = lhs;
  a->rhs = rhs;
  operand(a, lhs, at);
  operand(a, rhs, at);
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
    Token *t = peek(p);
    for (int i = 0; level_ops[lv][i] && (t->kind == T_PUNCT || t->kind == T_IDENT); i++)
      if (t->str[0] == level_ops[lv][i][0] && tok_is(t, level_ops[lv][i]))
        op = level_ops[lv][i];
    if (!op)
      return a;
    Loc at = next(p)->loc;
    a = binop(p, start, at, op, a, level(p, lv + 1));
    if (lv == 2 && !equal(p, ")")) { /* comparisons do not chain */
      for (int i = 0; level_ops[lv][i]; i++)
        if (equal(p, level_ops[lv][i]))
          error_at(peek(p)->loc, "comparisons cannot be chained");
    }
  }
}

static Ast *expr(Parser *p) {
  enter(p, EXPR, peek(p)->loc);
  Ast *a = level(p, 0);
  leave(p, EXPR);
  return a;
}

static Stmt *new_stmt(Parser *p, StmtKind kind, Loc loc) {
  count_node(p, loc);
  Stmt *s = xalloc(sizeof *s);
  s->kind = kind;
  s->loc = loc;
  s->read_later = -1;
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
  enter(p, STMT, peek(p)->loc);
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
  leave(p, STMT);
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
    if (b->nparams == NNCC_MAX_ARGS)
      error_at(peek(p)->loc, "a block has at most %d parameters (the limit)", NNCC_MAX_ARGS);
    Token pt = *ident(p, "a parameter name"); /* a copy: expr() reads on */
    for (int i = 0; i < b->nparams; i++)
      if (strcmp(b->params[i], pt.str) == 0)
        error_at(pt.loc, "parameter '%s' declared twice", pt.str);
    Ast *def = consume(p, "=") ? expr(p) : NULL;
    if (!def && nd > 0 && b->defaults[nd - 1])
      error_at(pt.loc, "parameter '%s' without a default follows one with a default", pt.str);
    VEC_PUSH(b->params, b->nparams, cap, pt.str);
    VEC_PUSH(b->defaults, nd, dcap, def);
    if (!consume(p, ","))
      break;
  }
  skip(p, ")");
  p->block_depth++;
  b->body = body(p);
  p->block_depth--;
  Stmt *s = new_stmt(p, S_BLOCK, start);
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
    s = new_stmt(p, S_MODEL, start);
    Token *n = ident(p, "a model name");
    s->name = n->str;
    s->name_loc = n->loc;
  } else if (consume(p, "import")) {
    s = new_stmt(p, S_IMPORT, start);
    if (peek(p)->kind != T_STRING)
      expected(p, "a file name in quotes");
    s->name_loc = peek(p)->loc;
    s->name = next(p)->str;
  } else if (consume(p, "input")) {
    s = new_stmt(p, S_INPUT, start);
    Token *n = ident(p, "the input's name");
    s->name = n->str;
    s->name_loc = n->loc;
    skip(p, ":");
    s->dtype = ident(p, "a dtype such as f32")->str;
    dims(p, s);
    skip(p, "=");
    s->expr = expr(p);
  } else if (consume(p, "label")) {
    s = new_stmt(p, S_LABEL, start);
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
    s = new_stmt(p, S_TRAIN, start);
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
    s = new_stmt(p, S_FOR, start);
    Token *n = ident(p, "a loop variable");
    s->name = n->str;
    s->name_loc = n->loc;
    skip(p, "in");
    s->expr = expr(p);
    s->body = body(p);
  } else if (consume(p, "if")) {
    s = new_stmt(p, S_IF, start);
    s->expr = expr(p);
    s->body = body(p);
    if (consume(p, "else")) {
      if (equal(p, "if")) {
        enter(p, STMT, peek(p)->loc);
        Stmt *elif = statement(p, top);
        leave(p, STMT);
        VEC_PUSH(s->orelse.v, s->orelse.n, s->orelse.cap, elif);
        return s;
      }
      s->orelse = body(p);
    }
  } else if (equal(p, "return")) {
    if (p->block_depth == 0)
      error_at(t->loc, "'return' outside a block");
    next(p);
    s = new_stmt(p, S_RETURN, start);
    s->expr = expr(p);
  } else if (t->kind == T_IDENT && !is_keyword(t->str)) {
    next(p);
    if (!equal(p, "="))
      expected(p, format("'=' after '%s' (a statement is NAME = EXPRESSION)", t->str));
    next(p);
    s = new_stmt(p, S_ASSIGN, start);
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

/* Record where each statement sits, for elab.c's unused-name check. */
static void link_stmts(StmtList *list, Stmt *parent) {
  for (int i = 0; i < list->n; i++) {
    Stmt *s = list->v[i];
    s->parent = parent;
    s->list = list->v;
    s->nlist = list->n;
    s->index = i;
    link_stmts(&s->body, s);
    link_stmts(&s->orelse, s);
    if (s->kind == S_BLOCK)
      link_stmts(&s->block->body, NULL);
  }
}

/* program = statement* */
StmtList parse(SrcFile *file) {
  Parser p = {.file = file};
  lex_init(&p.lx, file);
  StmtList prog = {0};
  skip_newlines(&p);
  while (peek(&p)->kind != T_EOF) {
    if (equal(&p, "}"))
      error_at(peek(&p)->loc, "unexpected '}'");
    Stmt *s = statement(&p, true);
    VEC_PUSH(prog.v, prog.n, prog.cap, s);
    skip_newlines(&p);
  }
  link_stmts(&prog, NULL);
  file->syntax = p.nodes;
  return prog;
}
