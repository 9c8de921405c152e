/*
 * elab.c -- run the program: blocks, loops and constants -> a flat graph.
 *
 * A .nn file is a tiny program.  Constants (ints, floats, bools, strings,
 * lists) are computed here; every call of an op adds a node; every call
 * of a block runs its body in a fresh scope; `for` and `if` run at compile
 * time.  What comes out is a DAG of op nodes with attributes but without
 * types: the shape pass types it.
 *
 * Node names: each scope numbers its nodes per op (conv1, relu2, fc1) and
 * its block calls per block (conv_2_block1); a block call's nodes are named
 * inside it ("conv_2_block1.conv2").  Parameter names follow
 * ("conv_2_block1.conv2.weight"), as a PyTorch state_dict would.
 *
 * Running a program is bounded (nncc.h, "limits"): statements and
 * expressions evaluated, graph nodes, list elements, block calls and the
 * depth of the recursion each have a budget, and running out of one is a
 * located error naming it.  Integer arithmetic is checked for overflow,
 * and a float that is not finite is an error, so every constant is exact
 * or finite.
 */
#include "nncc.h"
#include "schedule.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

typedef enum VKind { V_NONE, V_INT, V_FLOAT, V_BOOL, V_STR, V_LIST, V_TENSOR } VKind;

/* 16 bytes: a list of a million values is 16 MB */
typedef struct Value {
  VKind kind;
  int n;                 /* V_LIST: the number of items */
  union {
    int64_t i;           /* V_INT, V_BOOL; V_TENSOR: node id */
    double f;            /* V_FLOAT */
    char *s;             /* V_STR */
    struct Value *items; /* V_LIST */
  };
} Value;

typedef struct Binding {
  const char *name;   /* the source's own string, not a copy */
  Value v;
  Loc loc;
  bool used;
  bool check_unused;
  /* what bound it, for the unused check: an assignment or a for (site),
   * or parameter `param` of block `block`; neither for input and label */
  Stmt *site;
  BlockDef *block;
  int param;
} Binding;

typedef struct Scope {
  Binding *vars;
  int nvars, cap;
  StrMap index;     /* name -> vars[i], once there are more than a few */
  char *prefix;     /* "" at the top, "conv_2_block1." inside that call */
  StrMap counters;  /* op abbreviation or block name -> the last number used */
  bool library;     /* an imported file's top level: no tensors, no unused check */
} Scope;

typedef struct Elab {
  Graph *g;
  BlockDef **blocks;
  int nblocks, bcap;
  StrMap block_index;
  StrMap node_names; /* every node's name -> id */
  StrMap c_names;    /* ... and its generated C name (dots as '_', emit_fn) -> id */
  char **imported;
  int nimported, icap;
  CallSite *site;    /* the block calls we are inside */
  int depth;         /* block calls inside block calls */
  int nesting;       /* eval() and exec() on the C stack */
  int64_t steps, items, calls, syntax, source_bytes;
  bool has_model, has_train;
} Elab;

/* Errors inside a block also say which calls led there. */
static noreturn void elab_error(Elab *E, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static noreturn void elab_error(Elab *E, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_error(loc, "%s", msg);
  diag_callsites(E->site);
  diag_fail();
}

/* ---- budgets --------------------------------------------------------------- */

/* One more statement or expression evaluated. */
static void step(Elab *E, Loc loc) {
  if (++E->steps > NNCC_MAX_STEPS)
    elab_error(E, loc, "the program runs more than %s steps (the limit): a loop or a "
               "recursion too large?", fmt_count(NNCC_MAX_STEPS));
}

/* eval() and exec() call each other through blocks, loops and nested
 * expressions: their depth bounds nncc's own stack. */
static void nest(Elab *E, Loc loc) {
  if (++E->nesting > NNCC_MAX_EVAL_DEPTH)
    elab_error(E, loc, "the program nests blocks, statements and expressions more than %d "
               "deep (the limit)", NNCC_MAX_EVAL_DEPTH);
  step(E, loc);
}

/* n more list elements, in a list made at loc. */
static Value *new_items(Elab *E, int64_t n, Loc loc) {
  E->items += n;
  if (E->items > NNCC_MAX_LIST_ITEMS)
    elab_error(E, loc, "the program makes more than %s list elements (the limit)",
               fmt_count(NNCC_MAX_LIST_ITEMS));
  return xalloc(sizeof(Value) * (size_t)(n + 1));
}

/* A node for an op called at loc, named `name` (unique in the graph). */
static void add_node(Elab *E, Node *n, char *name) {
  if (E->g->nnodes >= NNCC_MAX_NODES)
    elab_error(E, n->loc, "the model has more than %s nodes (the limit)", fmt_count(NNCC_MAX_NODES));
  n->name = name;
  graph_push(E->g, n);
  strmap_put(&E->node_names, n->name, n->id);
  strmap_put(&E->c_names, emit_fn(n), n->id);
}

/* The node that has `name`, or whose C name is name's (-1: none). */
static int name_taken(Elab *E, const char *name) {
  int id = strmap_get(&E->node_names, name);
  if (id < 0) {
    Node tmp = {.name = (char *)name};
    id = strmap_get(&E->c_names, emit_fn(&tmp));
  }
  return id;
}

/* ---- helpers ------------------------------------------------------------ */

static int edit_distance(const char *a, const char *b) {
  int la = (int)strlen(a), lb = (int)strlen(b);
  if (la > 40 || lb > 40)
    return 99;
  int d[41][41];
  for (int i = 0; i <= la; i++)
    d[i][0] = i;
  for (int j = 0; j <= lb; j++)
    d[0][j] = j;
  for (int i = 1; i <= la; i++)
    for (int j = 1; j <= lb; j++) {
      int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
      d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
  return d[la][lb];
}

/* " (did you mean 'kernel'?)" or "": a close spelling, or a prefix either way */
static const char *suggest(const char *word, const char **cands, int n) {
  const char *best = NULL;
  int bestd = (int)(strlen(word) + 2) / 3 + 1;
  for (int i = 0; i < n; i++) {
    int d = edit_distance(word, cands[i]);
    size_t lw = strlen(word), lc = strlen(cands[i]);
    bool prefix = strncmp(word, cands[i], lw < lc ? lw : lc) == 0 && (lw < lc ? lw : lc) >= 3;
    if (d < bestd || (prefix && !best)) {
      bestd = d < bestd ? d : bestd;
      best = cands[i];
    }
  }
  return best ? format(" (did you mean '%s'?)", best) : "";
}

static const char *describe(Graph *g, Value v) {
  switch (v.kind) {
  case V_NONE: return "nothing";
  case V_INT: return format("int %lld", (long long)v.i);
  case V_FLOAT: return format("float %g", v.f);
  case V_BOOL: return v.i ? "true" : "false";
  case V_STR: return format("string '%s'", v.s);
  case V_LIST: return format("a list of %d", v.n);
  case V_TENSOR: return format("tensor %%%s", g->nodes[v.i]->name);
  }
  unreachable();
}

static Value int_value(int64_t i) { return (Value){.kind = V_INT, .i = i}; }
static Value bool_value(bool b) { return (Value){.kind = V_BOOL, .i = b}; }
static Value tensor_value(Node *n) { return (Value){.kind = V_TENSOR, .i = n->id}; }

/* A block call's scope holds a few names; the top level maybe thousands. */
enum { FEW_VARS = 8 };

static Binding *lookup(Scope *s, const char *name) {
  if (s->nvars <= FEW_VARS) {
    for (int i = 0; i < s->nvars; i++)
      if (strcmp(s->vars[i].name, name) == 0)
        return &s->vars[i];
    return NULL;
  }
  int i = strmap_get(&s->index, name);
  return i >= 0 ? &s->vars[i] : NULL;
}

/* ---- the unused-name check ------------------------------------------------ */

/*
 * A binding that is never read before it is rebound or its scope ends is
 * an error -- unless the source could read it on a path this run did not
 * take.  `s = h` then `if project { s = conv2d(h, ...) }` then
 * `return relu(s + r)`: with project true, the first s is rebound unread,
 * yet the return reads it whenever project is false.  So the check asks
 * the source: does some statement after the binding, before it is
 * certainly rebound, mention the name?  The scan is charged to the step
 * budget and its answer is cached per statement.
 */
enum { FLOWS_ON, READ, REBOUND }; /* what a run of statements does with a value */

static bool mentions(Elab *E, const Ast *a, const char *x) {
  if (!a)
    return false;
  step(E, a->loc);
  switch (a->kind) {
  case A_NAME: return strcmp(a->str, x) == 0;
  case A_LIST:
  case A_CALL:
    for (int i = 0; i < a->nargs; i++)
      if (mentions(E, a->args[i], x))
        return true;
    return false;
  case A_BINOP:
  case A_INDEX: return mentions(E, a->lhs, x) || mentions(E, a->rhs, x);
  case A_NEG:
  case A_NOT: return mentions(E, a->lhs, x);
  default: return false;
  }
}

static bool mentions_any(Elab *E, Ast **v, int n, const char *x) {
  for (int i = 0; i < n; i++)
    if (mentions(E, v[i], x))
      return true;
  return false;
}

/* What statements list[from..n) do with x's current value. */
static int scan(Elab *E, Stmt **list, int n, int from, const char *x) {
  for (int i = from; i < n; i++) {
    Stmt *st = list[i];
    step(E, st->loc);
    switch (st->kind) {
    case S_ASSIGN:
      if (mentions(E, st->expr, x))
        return READ;
      if (strcmp(st->name, x) == 0)
        return REBOUND;
      break;
    case S_FOR:
      if (mentions(E, st->expr, x))
        return READ;
      /* the body may run no time at all, so the value flows on */
      if (strcmp(st->name, x) != 0 && scan(E, st->body.v, st->body.n, 0, x) == READ)
        return READ;
      break;
    case S_IF: {
      if (mentions(E, st->expr, x))
        return READ;
      int a = scan(E, st->body.v, st->body.n, 0, x), b = scan(E, st->orelse.v, st->orelse.n, 0, x);
      if (a == READ || b == READ)
        return READ;
      if (a == REBOUND && b == REBOUND)
        return REBOUND;
      break;
    }
    case S_RETURN: return mentions(E, st->expr, x) ? READ : REBOUND;
    case S_INPUT:
    case S_LABEL:
      if (mentions_any(E, st->dims, st->ndims, x) || mentions(E, st->expr, x))
        return READ;
      if (strcmp(st->name, x) == 0)
        return REBOUND;
      break;
    case S_TRAIN:
      if (mentions(E, st->expr, x) || mentions_any(E, st->vals, st->nkeys, x))
        return READ;
      break;
    case S_MODEL:
    case S_IMPORT:
    case S_BLOCK: break;
    }
  }
  return FLOWS_ON;
}

/* May the value that st (an assignment, or a for's variable) binds to x
 * be read: after st, after each for or if around it, and in the next
 * round of each for around it? */
static bool read_later(Elab *E, Stmt *st) {
  if (st->read_later >= 0)
    return st->read_later;
  const char *x = st->name;
  int r = st->kind == S_FOR && scan(E, st->body.v, st->body.n, 0, x) == READ ? READ : FLOWS_ON;
  for (Stmt *cur = st; r == FLOWS_ON; cur = cur->parent) {
    r = scan(E, cur->list, cur->nlist, cur->index + 1, x);
    if (r != FLOWS_ON || !cur->parent)
      break;
    Stmt *loop = cur->parent;
    if (loop->kind == S_FOR && strcmp(loop->name, x) != 0 &&
        scan(E, loop->body.v, loop->body.n, 0, x) == READ)
      r = READ;
  }
  st->read_later = r == READ;
  return r == READ;
}

/* May parameter i of block b be read: by the body or a later default? */
static bool param_read(Elab *E, BlockDef *b, int i) {
  if (!b->param_read) {
    b->param_read = xalloc((size_t)b->nparams + 1);
    memset(b->param_read, -1, (size_t)b->nparams);
  }
  if (b->param_read[i] < 0)
    b->param_read[i] = scan(E, b->body.v, b->body.n, 0, b->params[i]) == READ ||
                       mentions_any(E, b->defaults + i + 1, b->nparams - i - 1, b->params[i]);
  return b->param_read[i];
}

static void check_used(Elab *E, Binding *b) {
  if (!b->check_unused || b->used || b->name[0] == '_')
    return; /* "_" names say "unused on purpose", as in Python */
  if (b->v.kind == V_TENSOR && (int)b->v.i == E->g->loss)
    return; /* the loss is used by training */
  if ((b->site && read_later(E, b->site)) || (b->block && param_read(E, b->block, b->param)))
    return; /* read on a path this run did not take */
  elab_error(E, b->loc, "'%s' is assigned but never used", b->name);
}

/* Bind name to v in scope s; site or (block, param) is what bound it. */
static void bind(Elab *E, Scope *s, const char *name, Value v, Loc loc, Stmt *site, BlockDef *block,
                 int param) {
  Binding *old = lookup(s, name);
  Binding b = {name, v, loc, false, !s->library, site, block, param};
  if (old) {
    check_used(E, old);
    *old = b;
  } else {
    VEC_PUSH(s->vars, s->nvars, s->cap, b);
    if (s->nvars == FEW_VARS + 1) /* from now on, by hash */
      for (int i = 0; i < s->nvars; i++)
        strmap_put(&s->index, s->vars[i].name, i);
    else if (s->nvars > FEW_VARS + 1)
      strmap_put(&s->index, name, s->nvars - 1);
  }
  if (v.kind == V_TENSOR && !E->g->nodes[v.i]->binding && !s->library)
    E->g->nodes[v.i]->binding = xstrdup(name);
}

static void end_scope(Elab *E, Scope *s) {
  for (int i = 0; i < s->nvars; i++)
    check_used(E, &s->vars[i]);
}

/* Next automatic name in scope s: "conv" -> "conv3", unique in the graph,
 * then `suffix` ("." for a block call's prefix: "conv_2_block1."). */
static char *fresh_name(Elab *E, Scope *s, const char *key, const char *suffix) {
  int n = strmap_get(&s->counters, key);
  if (n < 0)
    n = 0;
  for (;;) {
    size_t klen = strlen(key);
    const char *sep = klen && key[klen - 1] >= '0' && key[klen - 1] <= '9' ? "_" : "";
    char *name = format("%s%s%s%d%s", s->prefix, key, sep, ++n, suffix);
    size_t len = strlen(name) - strlen(suffix);
    char c = name[len];
    name[len] = '\0';
    bool taken = name_taken(E, name) >= 0;
    name[len] = c;
    if (!taken) {
      strmap_put(&s->counters, key, n);
      return name;
    }
  }
}

bool node_name_valid(const char *p) {
  bool ok = *p && strlen(p) <= 200 && !(*p >= '0' && *p <= '9');
  for (bool start = true; ok && *p; p++) {
    if (*p == '.')
      ok = !start && p[1];
    else
      ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '_';
    start = *p == '.';
  }
  return ok;
}

/* A node name the program gives (`conv2d(h, 64, kernel=3, name="features.0")`):
 * letters, digits and `_`, in parts separated by single dots, each part
 * not starting with a digit unless after a dot (PyTorch's module paths:
 * "features.0", "layer1.0.conv1"); inside a block call it is prefixed with
 * the call's name, and it must be unused in the graph. */
static char *given_name(Elab *E, Scope *s, Value v, Loc loc) {
  if (v.kind != V_STR)
    elab_error(E, loc, "name must be a string, got %s", describe(E->g, v));
  if (!node_name_valid(v.s))
    elab_error(E, loc, "name '%s' is not a node name: letters, digits and '_' in parts joined by "
               "single dots, not starting with a digit, at most 200 characters", v.s);
  char *name = format("%s%s", s->prefix, v.s);
  int other = name_taken(E, name);
  if (other >= 0) {
    Node *o = E->g->nodes[other];
    if (strcmp(o->name, name) == 0)
      diag_error(loc, "name '%s' is already the name of a node", name);
    else
      diag_error(loc, "name '%s' is '%s' in the generated C, as node '%s' is", name, emit_fn(o),
                 o->name);
    diag_note(&o->loc, "'%s' is this %s", o->name, op_name(o->op));
    diag_callsites(E->site);
    diag_fail();
  }
  return name;
}

static BlockDef *find_block(Elab *E, const char *name) {
  int i = strmap_get(&E->block_index, name);
  return i >= 0 ? E->blocks[i] : NULL;
}

static int find_op(const char *name) {
  for (int op = 0; op < OP_COUNT; op++)
    if (op_desc[op]->name && strcmp(op_desc[op]->name, name) == 0)
      return op;
  return -1;
}

/*
 * Match a call's arguments to named slots: positional ones in order (the
 * first npos slots), keywords by name.  slots[i] is the argument's AST or
 * NULL.  Errors call the callee format(what, name): "conv2d()", "block b()".
 */
static void match_args_pos(Elab *E, Ast *call, const char *what, const char *name,
                           const char **names, int n, int npos, Ast **slots) {
  for (int i = 0; i < n; i++)
    slots[i] = NULL;
  int pos = 0;
  for (int a = 0; a < call->nargs; a++) {
    const char *key = call->argnames[a];
    int slot = -1;
    if (!key) {
      if (pos >= npos)
        elab_error(E, call->args[a]->loc, "%s takes at most %d argument%s, got %d", format(what, name),
                   npos, npos == 1 ? "" : "s", call->nargs);
      slot = pos++;
    } else {
      for (int i = 0; i < n; i++)
        if (strcmp(names[i], key) == 0)
          slot = i;
      if (slot < 0) {
        /* the argument name's span: from the keyword to its value */
        Loc kl = call->args[a]->loc;
        int kstart = kl.off - (int)strlen(key) - 1;
        while (kstart > 0 && kl.file->text[kstart] != key[0])
          kstart--;
        Loc at = {kl.file, kstart, (int)strlen(key)};
        elab_error(E, at, "%s has no argument '%s'%s", format(what, name), key, suggest(key, names, n));
      }
      if (slots[slot])
        elab_error(E, call->args[a]->loc, "%s: argument '%s' given twice", format(what, name),
                   names[slot]);
    }
    slots[slot] = call->args[a];
  }
}

static void match_args(Elab *E, Ast *call, const char *what, const char *name, const char **names,
                       int n, Ast **slots) {
  match_args_pos(E, call, what, name, names, n, n, slots);
}

/* ---- expressions ---------------------------------------------------------- */

static Value eval(Elab *E, Scope *s, Ast *a);
static void exec_list(Elab *E, Scope *s, StmtList *list, Value *ret);

static int64_t want_int(Elab *E, Scope *s, Ast *a, const char *what) {
  Value v = eval(E, s, a);
  if (v.kind != V_INT)
    elab_error(E, a->loc, "%s must be an int, got %s", what, describe(E->g, v));
  return v.i;
}

static double want_number(Elab *E, Value v, Loc loc, const char *what) {
  if (v.kind == V_INT)
    return (double)v.i;
  if (v.kind != V_FLOAT)
    elab_error(E, loc, "%s must be a number, got %s", what, describe(E->g, v));
  return v.f;
}

static bool want_bool(Elab *E, Value v, Loc loc, const char *what) {
  if (v.kind != V_BOOL)
    elab_error(E, loc, "%s must be true or false, got %s", what, describe(E->g, v));
  return v.i != 0;
}

static Value call_block(Elab *E, Scope *s, Ast *call, BlockDef *b);
static Value call_op(Elab *E, Scope *s, Ast *call, OpKind op);

/* Python's x % y: the result takes the sign of y.  y is not 0. */
static int64_t int_mod(int64_t x, int64_t y) {
  if (y == -1)
    return 0; /* INT64_MIN % -1 traps in C */
  int64_t r = x % y;
  return r != 0 && (r < 0) != (y < 0) ? r + y : r;
}

static double float_mod(double x, double y) {
  double r = fmod(x, y);
  return r != 0 && (r < 0) != (y < 0) ? r + y : r;
}

static Value arith(Elab *E, Ast *a, Value l, Value r) {
  const char *op = a->str;
  bool num = (l.kind == V_INT || l.kind == V_FLOAT) && (r.kind == V_INT || r.kind == V_FLOAT);
  if (strcmp(op, "==") == 0 || strcmp(op, "!=") == 0) {
    bool eq;
    if (num)
      eq = want_number(E, l, a->loc, "") == want_number(E, r, a->loc, "");
    else if (l.kind == V_STR && r.kind == V_STR)
      eq = strcmp(l.s, r.s) == 0;
    else if (l.kind == V_BOOL && r.kind == V_BOOL)
      eq = l.i == r.i;
    else if (l.kind == V_TENSOR || r.kind == V_TENSOR || l.kind == V_LIST || r.kind == V_LIST)
      elab_error(E, a->loc, "cannot compare %s with %s", describe(E->g, l), describe(E->g, r));
    else
      eq = false; /* different kinds: 'M' == 64 is false, as in Python */
    return bool_value(op[0] == '=' ? eq : !eq);
  }
  if (strcmp(op, "and") == 0 || strcmp(op, "or") == 0) {
    bool x = want_bool(E, l, a->lhs->loc, format("the left side of '%s'", op));
    bool y = want_bool(E, r, a->rhs->loc, format("the right side of '%s'", op));
    return bool_value(op[0] == 'a' ? x && y : x || y);
  }
  if (!num)
    elab_error(E, a->loc, "cannot apply '%s' to %s and %s", op, describe(E->g, l),
               describe(E->g, r));
  if (strchr("<>", op[0])) {
    double x = want_number(E, l, a->loc, ""), y = want_number(E, r, a->loc, "");
    bool res = op[0] == '<' ? (op[1] ? x <= y : x < y) : (op[1] ? x >= y : x > y);
    return bool_value(res);
  }
  if (l.kind == V_INT && r.kind == V_INT && op[0] != '/') {
    int64_t x = l.i, y = r.i, z;
    bool overflow = false;
    switch (op[0]) {
    case '+': overflow = __builtin_add_overflow(x, y, &z); break;
    case '-': overflow = __builtin_sub_overflow(x, y, &z); break;
    case '*': overflow = __builtin_mul_overflow(x, y, &z); break;
    case '%':
      if (y == 0)
        elab_error(E, a->loc, "modulo by zero");
      z = int_mod(x, y);
      break;
    default: unreachable();
    }
    if (overflow)
      elab_error(E, a->loc, "integer overflow: %lld %s %lld does not fit in 64 bits", (long long)x,
                 op, (long long)y);
    return int_value(z);
  }
  double x = want_number(E, l, a->loc, ""), y = want_number(E, r, a->loc, "");
  double z;
  switch (op[0]) {
  case '+': z = x + y; break;
  case '-': z = x - y; break;
  case '*': z = x * y; break;
  case '/':
    if (y == 0)
      elab_error(E, a->loc, "division by zero");
    z = x / y;
    break;
  case '%':
    if (y == 0)
      elab_error(E, a->loc, "modulo by zero");
    z = float_mod(x, y);
    break;
  default: unreachable();
  }
  if (!isfinite(z))
    elab_error(E, a->loc, "floating-point overflow: %g %s %g is too large", x, op, y);
  return (Value){.kind = V_FLOAT, .f = z};
}

/* Built-in functions on constants: range(n), len(list). */
static bool builtin(Elab *E, Scope *s, Ast *call, Value *out) {
  bool is_range = strcmp(call->str, "range") == 0, is_len = strcmp(call->str, "len") == 0;
  if (!is_range && !is_len)
    return false;
  if (call->nargs != 1 || call->argnames[0])
    elab_error(E, call->loc, "%s() takes one positional argument", call->str);
  if (is_range) {
    int64_t n = want_int(E, s, call->args[0], "range()'s argument");
    if (n < 0 || n > 100000)
      elab_error(E, call->args[0]->loc, "range(%lld) is out of bounds (0..100000)", (long long)n);
    Value v = {.kind = V_LIST, .n = (int)n, .items = new_items(E, n, call->loc)};
    for (int i = 0; i < n; i++)
      v.items[i] = int_value(i);
    *out = v;
  } else {
    Value l = eval(E, s, call->args[0]);
    if (l.kind != V_LIST)
      elab_error(E, call->args[0]->loc, "len() needs a list, got %s", describe(E->g, l));
    *out = int_value(l.n);
  }
  return true;
}

/* A call of something that is no op, block or built-in (its own function:
 * the candidates' array stays off the recursion's stack frames). */
static noreturn __attribute__((noinline)) void unknown_call(Elab *E, Ast *a) {
  const char **cands = xalloc(sizeof(char *) * (size_t)(OP_COUNT + E->nblocks));
  int nc = 0;
  for (int i = 0; i < OP_COUNT; i++)
    if (op_desc[i]->name)
      cands[nc++] = op_desc[i]->name;
  for (int i = 0; i < E->nblocks; i++)
    cands[nc++] = E->blocks[i]->name;
  Loc name_loc = {a->loc.file, a->loc.off, (int)strlen(a->str)};
  elab_error(E, name_loc, "unknown op or block '%s'%s", a->str, suggest(a->str, cands, nc));
}

static noreturn __attribute__((noinline)) void undefined_name(Elab *E, Scope *s, Ast *a) {
  const char **names = xalloc(sizeof(char *) * (size_t)(s->nvars + 1));
  for (int i = 0; i < s->nvars; i++)
    names[i] = s->vars[i].name;
  if (find_op(a->str) >= 0 || find_block(E, a->str))
    elab_error(E, a->loc, "'%s' is an op or block; call it: %s(...)", a->str, a->str);
  elab_error(E, a->loc, "undefined name '%s'%s", a->str, suggest(a->str, names, s->nvars));
}

static Value eval_expr(Elab *E, Scope *s, Ast *a) {
  switch (a->kind) {
  case A_INT: return int_value(a->ival);
  case A_FLOAT: return (Value){.kind = V_FLOAT, .f = a->fval};
  case A_BOOL: return bool_value(a->ival);
  case A_STR: return (Value){.kind = V_STR, .s = a->str};
  case A_LIST: {
    Value v = {.kind = V_LIST, .n = a->nargs, .items = new_items(E, a->nargs, a->loc)};
    for (int i = 0; i < a->nargs; i++)
      v.items[i] = eval(E, s, a->args[i]);
    return v;
  }
  case A_NAME: {
    Binding *b = lookup(s, a->str);
    if (!b)
      undefined_name(E, s, a);
    b->used = true;
    return b->v;
  }
  case A_NEG: {
    Value v = eval(E, s, a->lhs);
    if (v.kind == V_INT) {
      if (v.i == INT64_MIN)
        elab_error(E, a->loc, "integer overflow: -(%lld) does not fit in 64 bits", (long long)v.i);
      return int_value(-v.i);
    }
    if (v.kind == V_FLOAT)
      return (Value){.kind = V_FLOAT, .f = -v.f};
    elab_error(E, a->loc, "cannot negate %s", describe(E->g, v));
  }
  case A_NOT: return bool_value(!want_bool(E, eval(E, s, a->lhs), a->lhs->loc, "'not'"));
  case A_INDEX: {
    Value l = eval(E, s, a->lhs);
    if (l.kind != V_LIST)
      elab_error(E, a->lhs->loc, "only lists can be indexed, not %s", describe(E->g, l));
    int64_t i = want_int(E, s, a->rhs, "an index");
    if (i < 0 && i >= -(int64_t)l.n)
      i += l.n;
    if (i < 0 || i >= l.n)
      elab_error(E, a->rhs->loc, "index out of range: the list has %d items", l.n);
    return l.items[i];
  }
  case A_BINOP: {
    Value l = eval(E, s, a->lhs), r = eval(E, s, a->rhs);
    if (strcmp(a->str, "+") == 0 && l.kind == V_TENSOR && r.kind == V_TENSOR) {
      /* a + b on tensors is add(a, b) */
      Node *n = node_new(OP_ADD, 2, a->loc, E->site);
      n->in[0] = (int)l.i;
      n->in[1] = (int)r.i;
      add_node(E, n, fresh_name(E, s, op_desc[OP_ADD]->abbrev, ""));
      return tensor_value(n);
    }
    if (l.kind == V_TENSOR || r.kind == V_TENSOR)
      elab_error(E, a->loc, "'%s' on tensors: only a + b (add) is defined", a->str);
    return arith(E, a, l, r);
  }
  case A_CALL: {
    if (s->library)
      elab_error(E, a->loc, "an imported file may define blocks and constants, not call '%s'", a->str);
    Value v;
    int op = find_op(a->str);
    if (op >= 0)
      return call_op(E, s, a, (OpKind)op);
    BlockDef *b = find_block(E, a->str);
    if (b)
      return call_block(E, s, a, b);
    if (builtin(E, s, a, &v))
      return v;
    unknown_call(E, a);
  }
  }
  unreachable();
}

static Value eval(Elab *E, Scope *s, Ast *a) {
  nest(E, a->loc);
  Value v = eval_expr(E, s, a);
  E->nesting--;
  return v;
}

/* ---- op calls ------------------------------------------------------------ */

/* An int n (= [n, n]) or a list of two ints into p; false for anything else. */
static bool int_pair(Value v, int64_t p[2]) {
  if (v.kind == V_INT) {
    p[0] = p[1] = v.i;
    return true;
  }
  if (v.kind == V_LIST && v.n == 2 && v.items[0].kind == V_INT && v.items[1].kind == V_INT) {
    p[0] = v.items[0].i;
    p[1] = v.items[1].i;
    return true;
  }
  return false;
}

/* Set attribute a of node n (opname's) from value v, or a located error. */
static void set_attr(Elab *E, Node *n, const char *opname, const AttrDesc *a, Value v, Loc loc) {
  void *f = (char *)n->attrs + a->offset;
  switch (a->type) {
  case AT_INT:
    if (v.kind != V_INT)
      elab_error(E, loc, "%s: '%s' must be an int, got %s", opname, a->name, describe(E->g, v));
    *(int64_t *)f = v.i;
    return;
  case AT_FLOAT:
    if (v.kind != V_INT && v.kind != V_FLOAT)
      elab_error(E, loc, "%s: '%s' must be a number, got %s", opname, a->name, describe(E->g, v));
    *(double *)f = v.kind == V_INT ? (double)v.i : v.f;
    return;
  case AT_BOOL:
    if (v.kind != V_BOOL)
      elab_error(E, loc, "%s: '%s' must be true or false, got %s", opname, a->name, describe(E->g, v));
    *(bool *)f = v.i != 0;
    return;
  case AT_PAIR:
  case AT_PADDING: {
    int64_t p[2];
    if (a->type == AT_PADDING && v.kind == V_STR) {
      if (strcmp(v.s, "same") != 0 && strcmp(v.s, "valid") != 0)
        elab_error(E, loc, "%s: '%s' must be an int, a list of two ints, \"same\" or \"valid\", "
                   "got '%s'", opname, a->name, v.s);
      *(Padding *)f = (Padding){0, 0, strcmp(v.s, "same") == 0};
      return;
    }
    if (!int_pair(v, p))
      elab_error(E, loc, "%s: '%s' must be an int or a list of two ints%s, got %s", opname, a->name,
                 a->type == AT_PADDING ? " (or \"same\", \"valid\")" : "", describe(E->g, v));
    if (a->type == AT_PADDING)
      *(Padding *)f = (Padding){p[0], p[1], false};
    else
      memcpy(f, p, sizeof p);
    return;
  }
  }
  unreachable();
}

/* An attribute's default: a literal, or the value of an earlier attribute
 * (stride=kernel). */
static void set_default(Elab *E, Node *n, const OpDesc *d, const AttrDesc *a, Loc loc) {
  const char *def = a->def;
  bool number = (def[0] >= '0' && def[0] <= '9') || def[0] == '-';
  if (strcmp(def, "true") == 0 || strcmp(def, "false") == 0) {
    set_attr(E, n, d->name, a, bool_value(def[0] == 't'), loc);
  } else if (number && strpbrk(def, ".e")) {
    set_attr(E, n, d->name, a, (Value){.kind = V_FLOAT, .f = strtod(def, NULL)}, loc);
  } else if (number) {
    set_attr(E, n, d->name, a, int_value(strtoll(def, NULL, 10)), loc);
  } else {
    for (int i = 0; i < d->nattrs; i++)
      if (strcmp(d->attrs[i].name, def) == 0 && d->attrs[i].type == a->type) {
        memcpy((char *)n->attrs + a->offset, (char *)n->attrs + d->attrs[i].offset,
               a->type == AT_PAIR ? 2 * sizeof(int64_t) : sizeof(int64_t));
        return;
      }
    ICE("%s: default '%s' of '%s' names no earlier attribute", d->name, def, a->name);
  }
}

/* A tensor argument: its node id, or a located error. */
static int want_tensor(Elab *E, Value v, Loc loc, const OpDesc *d, const char *what) {
  if (v.kind != V_TENSOR)
    elab_error(E, loc, "%s: %s must be a tensor, got %s", d->name, what, describe(E->g, v));
  return (int)v.i;
}

/*
 * An op call: the arguments matched to the op's signature (its inputs,
 * then its attributes), evaluated left to right, defaults filled in.
 */
static Value call_op(Elab *E, Scope *s, Ast *call, OpKind op) {
  const OpDesc *d = op_desc[op];
  int fixed = d->nin >= 0 ? d->nin : 1; /* input slots: a list op has one */
  int nslots = fixed + d->nattrs + 1;     /* and `name`, last */
  const char **names = xalloc(sizeof(char *) * (size_t)nslots);
  Ast **slots = xalloc(sizeof(Ast *) * (size_t)nslots);
  for (int i = 0; i < fixed; i++)
    names[i] = d->inputs[i];
  for (int i = 0; i < d->nattrs; i++)
    names[fixed + i] = d->attrs[i].name;
  names[nslots - 1] = "name";
  match_args_pos(E, call, "%s()", d->name, names, nslots, nslots - 1, slots); /* name: a keyword */

  /* inputs and attributes first: nodes they create must come before this one */
  for (int i = 0; i < fixed; i++)
    if (!slots[i])
      elab_error(E, call->loc, "%s: missing input '%s'", d->name, names[i]);
  Node *n;
  if (d->nin >= 0) {
    n = node_new(op, d->nin, call->loc, E->site);
    for (int i = 0; i < d->nin; i++)
      n->in[i] = want_tensor(E, eval(E, s, slots[i]), slots[i]->loc, d,
                             format("input '%s'", names[i]));
  } else {
    Value list = eval(E, s, slots[0]);
    if (list.kind != V_LIST || list.n == 0)
      elab_error(E, slots[0]->loc, "%s: '%s' must be a list of tensors, got %s", d->name, names[0],
                 describe(E->g, list));
    if (list.n > NNCC_MAX_ARGS)
      elab_error(E, slots[0]->loc, "%s: %d tensors, more than the limit of %d", d->name, list.n,
                 NNCC_MAX_ARGS);
    n = node_new(op, list.n, call->loc, E->site);
    for (int i = 0; i < list.n; i++)
      n->in[i] = want_tensor(E, list.items[i], slots[0]->loc, d, format("item %d of '%s'", i, names[0]));
  }
  for (int i = 0; i < d->nattrs; i++) {
    Ast *a = slots[fixed + i];
    const AttrDesc *ad = &d->attrs[i];
    if (a)
      set_attr(E, n, d->name, ad, eval(E, s, a), a->loc);
    else if (!ad->def)
      elab_error(E, call->loc, "%s: missing argument '%s'", d->name, ad->name);
    else
      set_default(E, n, d, ad, call->loc);
  }
  Ast *name = slots[nslots - 1];
  add_node(E, n, name ? given_name(E, s, eval(E, s, name), name->loc)
                      : fresh_name(E, s, d->abbrev, ""));
  if (d->flags & OPF_LOSS) {
    if (E->g->loss >= 0) {
      Node *prev = E->g->nodes[E->g->loss];
      diag_error(call->loc, "a model has one loss, and cross_entropy was already used");
      diag_note(&prev->loc, "the first loss is here");
      diag_callsites(E->site);
      diag_fail();
    }
    E->g->loss = n->id;
  }
  return tensor_value(n);
}

/* ---- blocks ---------------------------------------------------------------- */

static Value call_block(Elab *E, Scope *s, Ast *call, BlockDef *b) {
  if (E->depth >= NNCC_MAX_CALL_DEPTH)
    elab_error(E, call->loc, "block calls nested more than %d deep (does '%s' call itself?)",
               NNCC_MAX_CALL_DEPTH, b->name);
  if (++E->calls > NNCC_MAX_CALLS)
    elab_error(E, call->loc, "the program calls blocks more than %s times (the limit)",
               fmt_count(NNCC_MAX_CALLS));
  Ast *few[8]; /* small: this frame is on the recursion's stack */
  Ast **slots = b->nparams <= 8 ? few : xalloc(sizeof(Ast *) * (size_t)b->nparams);
  match_args(E, call, "block %s()", b->name, (const char **)b->params, b->nparams, slots);

  Scope inner = {.prefix = fresh_name(E, s, b->name, ".")};
  inner.cap = b->nparams > 2 ? b->nparams : 2; /* the parameters, and a little more */
  inner.vars = xalloc(sizeof(Binding) * (size_t)inner.cap);
  /* arguments are evaluated in the caller's scope, defaults in the block's */
  for (int i = 0; i < b->nparams; i++) {
    Value v;
    if (slots[i])
      v = eval(E, s, slots[i]);
    else if (b->defaults[i])
      v = eval(E, &inner, b->defaults[i]);
    else
      elab_error(E, call->loc, "block %s(): missing argument '%s'", b->name, b->params[i]);
    bind(E, &inner, b->params[i], v, b->loc, NULL, b, i);
  }
  CallSite *site = xalloc(sizeof *site);
  *site = (CallSite){b->name, call->loc, E->site};
  E->site = site;
  E->depth++;
  Value ret = {.kind = V_NONE};
  exec_list(E, &inner, &b->body, &ret);
  if (ret.kind == V_NONE)
    elab_error(E, b->loc, "block '%s' ends without 'return'", b->name);
  end_scope(E, &inner);
  E->depth--;
  E->site = site->parent;
  return ret;
}

/* ---- statements ------------------------------------------------------------ */

/* An input or label takes its declared name: no node may have it yet. */
static void name_declared(Elab *E, Node *n, Stmt *st) {
  int other = strmap_get(&E->node_names, st->name);
  if (other >= 0)
    elab_error(E, st->name_loc, "'%s' is already the name of node %%%s; declare inputs and "
               "labels before the ops", st->name, E->g->nodes[other]->name);
  add_node(E, n, xstrdup(st->name));
}

static void exec_input(Elab *E, Scope *s, Stmt *st) {
  if (E->g->input >= 0)
    elab_error(E, st->loc, "a model has one input; '%s' was declared already",
               E->g->nodes[E->g->input]->name);
  if (strcmp(st->dtype, "f32") != 0)
    elab_error(E, st->loc, "input '%s': unsupported dtype '%s' (nncc trains in f32)", st->name,
               st->dtype);
  Node *n = node_new(OP_INPUT, 0, st->name_loc, NULL);
  n->dtype = DT_F32;
  if (st->ndims > MAX_RANK)
    elab_error(E, st->dims[MAX_RANK]->loc, "input '%s': at most %d dimensions", st->name, MAX_RANK);
  n->rank = st->ndims;
  for (int i = 0; i < st->ndims; i++) {
    n->dims[i] = want_int(E, s, st->dims[i], "a dimension");
    if (n->dims[i] <= 0)
      elab_error(E, st->dims[i]->loc, "input '%s': dimension %d must be positive, got %lld",
                 st->name, i, (long long)n->dims[i]);
    if (n->dims[i] > NNCC_MAX_SIZE)
      elab_error(E, st->dims[i]->loc, "input '%s': dimension %d is %lld, more than the limit of "
                 "2^30 (%s)", st->name, i, (long long)n->dims[i], fmt_count(NNCC_MAX_SIZE));
  }
  /* the data source: mnist, mnist(pad=P) or mnist(pad=[top, left]), and
   * the training-time augmentation: crop_padding=P, hflip=true */
  Ast *src = st->expr;
  if ((src->kind != A_NAME && src->kind != A_CALL) || strcmp(src->str, "mnist") != 0)
    elab_error(E, src->loc, "unknown data source; nncc reads 'mnist', 'mnist(pad=P)' or "
               "'mnist(pad=[top, left])' (28x28 IDX images)");
  E->g->source_loc = src->loc;
  if (src->kind == A_CALL) {
    const char *names[] = {"pad", "crop_padding", "hflip"};
    Ast *slots[3], *slot = NULL;
    match_args(E, src, "%s()", "mnist", names, 3, slots);
    slot = slots[0];
    if (slots[1]) {
      E->g->aug_crop = want_int(E, s, slots[1], "crop_padding");
      if (E->g->aug_crop < 0 || E->g->aug_crop > 27)
        elab_error(E, slots[1]->loc, "mnist(): 'crop_padding' must be between 0 and 27, got %lld",
                   (long long)E->g->aug_crop);
    }
    if (slots[2])
      E->g->aug_hflip = want_bool(E, eval(E, s, slots[2]), slots[2]->loc, "hflip");
    if (slot) {
      Value v = eval(E, s, slot);
      int64_t p[2];
      if (!int_pair(v, p))
        elab_error(E, slot->loc, "mnist(): 'pad' must be an int or a list [top, left], got %s",
                   describe(E->g, v));
      E->g->pad_pair = v.kind == V_LIST;
      if (p[0] < 0 || p[0] > 1000 || p[1] < 0 || p[1] > 1000)
        elab_error(E, slot->loc, "mnist(): 'pad' must be between 0 and 1000");
      E->g->pad_top = p[0];
      E->g->pad_left = p[1];
    }
  }
  name_declared(E, n, st);
  E->g->input = n->id;
  bind(E, s, st->name, tensor_value(n), st->name_loc, NULL, NULL, 0);
}

static void exec_label(Elab *E, Scope *s, Stmt *st) {
  if (E->g->label >= 0)
    elab_error(E, st->loc, "a model has one label; '%s' was declared already",
               E->g->nodes[E->g->label]->name);
  if (st->ndims != 2)
    elab_error(E, st->loc, "label '%s' has one dimension, the batch: class[N] of C", st->name);
  Node *n = node_new(OP_LABEL, 0, st->name_loc, NULL);
  n->dtype = DT_CLASS;
  n->rank = 1;
  n->dims[0] = want_int(E, s, st->dims[0], "the label's batch size");
  n->classes = want_int(E, s, st->dims[1], "the number of classes");
  if (n->dims[0] <= 0)
    elab_error(E, st->dims[0]->loc, "label '%s': batch size must be positive", st->name);
  if (n->dims[0] > NNCC_MAX_SIZE)
    elab_error(E, st->dims[0]->loc, "label '%s': batch size %lld is more than the limit of 2^30 (%s)",
               st->name, (long long)n->dims[0], fmt_count(NNCC_MAX_SIZE));
  if (n->classes < 2)
    elab_error(E, st->dims[1]->loc, "label '%s': needs at least 2 classes, got %lld", st->name,
               (long long)n->classes);
  if (n->classes > NNCC_MAX_CLASSES)
    elab_error(E, st->dims[1]->loc, "label '%s': %lld classes, more than the limit of %d (labels "
               "are bytes)", st->name, (long long)n->classes, NNCC_MAX_CLASSES);
  name_declared(E, n, st);
  E->g->label = n->id;
  bind(E, s, st->name, tensor_value(n), st->name_loc, NULL, NULL, 0);
}

/* A hyperparameter: finite (arith() already keeps every float finite) and
 * not negative, else an error "<prefix>'what' must be non-negative". */
static double want_non_negative(Elab *E, Scope *s, Ast *a, const char *prefix, const char *what) {
  double v = want_number(E, eval(E, s, a), a->loc, what);
  if (!isfinite(v) || !(v >= 0))
    elab_error(E, a->loc, "%s'%s' must be non-negative", prefix, what);
  return v;
}

/* A value of a schedule's argument in the text form runtime/schedule.c
 * parses (in the pool: an error may leave at any point): numbers as %.17g
 * (exact), lists of numbers, true/false, a string's text
 * (anneal_strategy="linear"). */
static char *sched_value(Elab *E, Value v, Loc loc, const char *sched, const char *key) {
  switch (v.kind) {
  case V_INT: return format("%lld", (long long)v.i);
  case V_FLOAT: return format("%.17g", v.f);
  case V_BOOL: return v.i ? "true" : "false";
  case V_STR:
    for (const char *c = v.s; *c; c++)
      if (!((*c >= 'a' && *c <= 'z') || *c == '_'))
        elab_error(E, loc, "%s(): '%s' must be a word, got \"%s\"", sched, key, v.s);
    return v.s;
  case V_LIST: {
    char *text = "[";
    for (int i = 0; i < v.n; i++) {
      if (v.items[i].kind != V_INT && v.items[i].kind != V_FLOAT)
        elab_error(E, loc, "%s(): '%s' must be a list of numbers, got %s", sched, key, describe(E->g, v));
      text = format("%s%s%s", text, i ? ", " : "", sched_value(E, v.items[i], loc, sched, key));
    }
    return format("%s]", text);
  }
  default:
    elab_error(E, loc, "%s(): '%s' must be a number, a list, true/false or a word, got %s", sched,
               key, describe(E->g, v));
  }
}

/* schedule=cosine(T_max=10) or warmup=linear(...): the call's named
 * arguments evaluated, written as text and checked by the runtime's own
 * parser (runtime/schedule.c); the canonical text, or NULL for none. */
static char *exec_schedule(Elab *E, Scope *s, Ast *a, bool warmup, NnccSchedule *out) {
  if (a->kind != A_NAME && a->kind != A_CALL)
    elab_error(E, a->loc, "%s must be a call like %s", warmup ? "warmup" : "schedule",
               warmup ? "linear(start_factor=0.1, total_iters=2)" : "cosine(T_max=10)");
  char *text = a->str;
  if (a->kind == A_CALL) {
    text = format("%s(", text);
    for (int i = 0; i < a->nargs; i++) {
      if (!a->argnames[i])
        elab_error(E, a->args[i]->loc, "%s(): arguments are named, as in %s", a->str,
                   warmup ? "linear(total_iters=2)" : "cosine(T_max=10)");
      text = format("%s%s%s=%s", text, i ? ", " : "", a->argnames[i],
                    sched_value(E, eval(E, s, a->args[i]), a->args[i]->loc, a->str, a->argnames[i]));
    }
    text = format("%s)", text);
  }
  char err[256], canon[NNCC_SCHED_TEXT];
  if (sched_parse(text, warmup, out, err, sizeof err))
    elab_error(E, a->loc, "%s", err);
  if (out->kind == NNCC_SCHED_NONE)
    return NULL;
  if (sched_format(out, canon, sizeof canon))
    elab_error(E, a->loc, "%s(): its text is longer than %d characters", a->str, NNCC_SCHED_TEXT - 1);
  return xstrdup(canon);
}

/* train adam(lr=, betas=, eps=, weight_decay=) | adamw(...the same...)
 *       | sgd(lr=, momentum=, weight_decay=, nesterov=)
 *       [epochs=N] [seed=S] [schedule=S(...)] [warmup=linear(...)]
 *       [clip_grad_norm=X] [clip_grad_value=X]
 * The ranges are the runtime's (runtime/cli.c) and torch.optim's. */
static void exec_train(Elab *E, Scope *s, Stmt *st) {
  if (E->has_train)
    elab_error(E, st->loc, "training is already set up by an earlier 'train'");
  E->has_train = true;
  TrainCfg *t = &E->g->train;
  t->loc = st->loc;
  NnccSchedule sched = {0}, warm = {0};
  Loc warm_loc = st->loc;
  Ast *opt = st->expr;
  if ((opt->kind != A_NAME && opt->kind != A_CALL) ||
      (strcmp(opt->str, "adam") != 0 && strcmp(opt->str, "adamw") != 0 &&
       strcmp(opt->str, "sgd") != 0))
    elab_error(E, opt->loc, "unknown optimizer; nncc has adam(...), adamw(...) and sgd(...)");
  bool adam = strcmp(opt->str, "sgd") != 0; /* adam or adamw: the same settings */
  t->optim = !adam ? OPT_SGD : strcmp(opt->str, "adamw") == 0 ? OPT_ADAMW : OPT_ADAM;
  t->lr = adam ? 1e-3 : 0.01; /* torch.optim's defaults (SGD's lr is ours: torch requires one) */
  if (t->optim == OPT_ADAMW)
    t->weight_decay = 1e-2; /* torch.optim.AdamW's default */
  if (opt->kind == A_CALL) {
    const char *adam_names[] = {"lr", "betas", "eps", "weight_decay"};
    const char *sgd_names[] = {"lr", "momentum", "weight_decay", "nesterov"};
    Ast *slots[4];
    match_args(E, opt, "%s()", opt->str, adam ? adam_names : sgd_names, 4, slots);
    if (slots[0])
      t->lr = want_number(E, eval(E, s, slots[0]), slots[0]->loc, "lr");
    if (adam && slots[1]) {
      Value b = eval(E, s, slots[1]);
      if (b.kind != V_LIST || b.n != 2)
        elab_error(E, slots[1]->loc, "%s(): 'betas' must be a list of two numbers, got %s",
                   opt->str, describe(E->g, b));
      t->beta1 = want_number(E, b.items[0], slots[1]->loc, "betas[0]");
      t->beta2 = want_number(E, b.items[1], slots[1]->loc, "betas[1]");
      if (!(t->beta1 >= 0 && t->beta1 < 1 && t->beta2 >= 0 && t->beta2 < 1))
        elab_error(E, slots[1]->loc, "%s(): betas must be in [0, 1)", opt->str);
    }
    if (adam && slots[2]) {
      /* positive, as the trainer's --eps and checkpoint metadata require
       * (runtime/cli.c): with eps 0 a zero gradient makes 0/0 */
      t->eps = want_non_negative(E, s, slots[2], format("%s(): ", opt->str), "eps");
      if (!(t->eps > 0))
        elab_error(E, slots[2]->loc, "%s(): 'eps' must be positive", opt->str);
    }
    if (!adam && slots[1])
      t->momentum = want_non_negative(E, s, slots[1], "sgd(): ", "momentum");
    Ast *wd = slots[adam ? 3 : 2];
    if (wd)
      t->weight_decay = want_non_negative(E, s, wd, "", "weight_decay");
    if (!adam && slots[3]) {
      t->nesterov = want_bool(E, eval(E, s, slots[3]), slots[3]->loc, "nesterov");
      /* torch.optim.SGD: "Nesterov momentum requires a momentum and zero dampening" */
      if (t->nesterov && !(t->momentum > 0))
        elab_error(E, slots[3]->loc, "sgd(): nesterov=true needs a positive 'momentum'");
    }
    if (slots[0] && !(t->lr > 0 && isfinite(t->lr)))
      elab_error(E, slots[0]->loc, "'lr' must be positive");
  }
  for (int i = 0; i < st->nkeys; i++) {
    const char *k = st->keys[i];
    if (strcmp(k, "epochs") == 0) {
      t->epochs = want_int(E, s, st->vals[i], "epochs");
      if (t->epochs < 1)
        elab_error(E, st->vals[i]->loc, "'epochs' must be at least 1");
      if (t->epochs > 1000000) /* the trainer's --epochs range (runtime/cli.c) */
        elab_error(E, st->vals[i]->loc, "'epochs' must be at most 1,000,000, got %lld",
                   (long long)t->epochs);
    } else if (strcmp(k, "seed") == 0) {
      t->seed = want_int(E, s, st->vals[i], "seed");
      if (t->seed < 0)
        elab_error(E, st->vals[i]->loc, "'seed' must be non-negative");
    } else if (strcmp(k, "schedule") == 0 || strcmp(k, "warmup") == 0) {
      bool w = k[0] == 'w';
      NnccSchedule sc;
      char *text = exec_schedule(E, s, st->vals[i], w, &sc);
      if (w)
        t->warmup = text, warm = sc, warm_loc = st->vals[i]->loc;
      else
        t->schedule = text, sched = sc;
    } else if (strcmp(k, "clip_grad_norm") == 0 || strcmp(k, "clip_grad_value") == 0) {
      double v = want_non_negative(E, s, st->vals[i], "", k);
      if (!(v > 0 && isfinite(v)))
        elab_error(E, st->vals[i]->loc, "'%s' must be positive (leave it out to not clip)", k);
      if (strcmp(k, "clip_grad_norm") == 0)
        t->clip_grad_norm = v;
      else
        t->clip_grad_value = v;
    } else {
      const char *names[] = {"epochs", "seed", "schedule", "warmup", "clip_grad_norm", "clip_grad_value"};
      elab_error(E, st->vals[i]->loc, "unknown training setting '%s'%s", k, suggest(k, names, 6));
    }
  }
  /* what the trainer would refuse at start (runtime/train.c), said here */
  char err[256];
  int bad = sched_check(&sched, &warm, t->optim == OPT_SGD && !(t->momentum > 0), err, sizeof err);
  if (bad)
    elab_error(E, bad == 1 ? warm_loc : st->loc, "%s", err);
}

static void exec_import(Elab *E, Scope *s, Stmt *st);

static void exec_stmt(Elab *E, Scope *s, Stmt *st, Value *ret) {
  if (s->library && st->kind != S_ASSIGN && st->kind != S_BLOCK && st->kind != S_IMPORT)
    elab_error(E, st->loc, "an imported file may define blocks and constants only");
  switch (st->kind) {
  case S_MODEL:
    if (E->has_model)
      elab_error(E, st->loc, "the model is already named '%s'", E->g->name);
    E->has_model = true;
    E->g->name = st->name;
    return;
  case S_IMPORT: exec_import(E, s, st); return;
  case S_INPUT: exec_input(E, s, st); return;
  case S_LABEL: exec_label(E, s, st); return;
  case S_TRAIN: exec_train(E, s, st); return;
  case S_BLOCK: {
    BlockDef *prev = find_block(E, st->block->name);
    if (prev) {
      diag_error(st->name_loc, "block '%s' is defined twice", st->block->name);
      diag_note(&prev->loc, "first defined here");
      diag_fail();
    }
    if (find_op(st->block->name) >= 0 || strcmp(st->block->name, "range") == 0 ||
        strcmp(st->block->name, "len") == 0)
      elab_error(E, st->name_loc, "block '%s' would hide the built-in of that name", st->block->name);
    VEC_PUSH(E->blocks, E->nblocks, E->bcap, st->block);
    strmap_put(&E->block_index, st->block->name, E->nblocks - 1);
    return;
  }
  case S_ASSIGN: {
    Value v = eval(E, s, st->expr);
    if (v.kind == V_NONE)
      elab_error(E, st->expr->loc, "this has no value to assign");
    bind(E, s, st->name, v, st->name_loc, st, NULL, 0);
    return;
  }
  case S_FOR: {
    Value list = eval(E, s, st->expr);
    if (list.kind != V_LIST)
      elab_error(E, st->expr->loc, "'for' needs a list, got %s", describe(E->g, list));
    for (int i = 0; i < list.n && ret->kind == V_NONE; i++) {
      bind(E, s, st->name, list.items[i], st->name_loc, st, NULL, 0);
      exec_list(E, s, &st->body, ret);
    }
    return;
  }
  case S_IF:
    if (want_bool(E, eval(E, s, st->expr), st->expr->loc, "an 'if' condition"))
      exec_list(E, s, &st->body, ret);
    else
      exec_list(E, s, &st->orelse, ret);
    return;
  case S_RETURN: *ret = eval(E, s, st->expr); return;
  }
  unreachable();
}

static void exec_list(Elab *E, Scope *s, StmtList *list, Value *ret) {
  for (int i = 0; i < list->n && ret->kind == V_NONE; i++) {
    nest(E, list->v[i]->loc);
    exec_stmt(E, s, list->v[i], ret);
    E->nesting--;
  }
}

/* "a/b/../c.nn" -> "a/c.nn", lexically, so diagnostics name files plainly. */
static char *normalize_path(char *path) {
  char *out = xalloc(strlen(path) + 1);
  char **parts = xalloc(sizeof(char *) * (strlen(path) + 1));
  int n = 0;
  bool abs = path[0] == '/';
  for (char *tok = strtok(path, "/"); tok; tok = strtok(NULL, "/")) {
    if (strcmp(tok, ".") == 0)
      continue;
    if (strcmp(tok, "..") == 0 && n > 0 && strcmp(parts[n - 1], "..") != 0)
      n--;
    else
      parts[n++] = tok;
  }
  strcpy(out, abs ? "/" : "");
  for (int i = 0; i < n; i++) {
    strcat(out, parts[i]);
    if (i + 1 < n)
      strcat(out, "/");
  }
  return out;
}

/* import "file.nn": blocks and constants, path relative to the importer. */
static void exec_import(Elab *E, Scope *s, Stmt *st) {
  const char *from = st->loc.file->name;
  const char *slash = strrchr(from, '/');
  char *path = st->name[0] == '/' || !slash
                   ? xstrdup(st->name)
                   : format("%.*s/%s", (int)(slash - from), from, st->name);
  path = normalize_path(path);
  for (int i = 0; i < E->nimported; i++)
    if (strcmp(E->imported[i], path) == 0)
      return; /* imported already: once is enough */
  VEC_PUSH(E->imported, E->nimported, E->icap, path);
  SrcFile *f = read_source(path);
  if (!f)
    elab_error(E, st->name_loc, "cannot import '%s': %s", path, fio_strerror(errno));
  /* the budgets of source text and syntax cover all files together */
  E->source_bytes += f->len;
  if (E->source_bytes > NNCC_MAX_SOURCE_BYTES)
    elab_error(E, st->name_loc, "the model's files hold more than %s bytes (the limit)",
               fmt_count(NNCC_MAX_SOURCE_BYTES));
  StmtList prog = parse(f);
  E->syntax += f->syntax;
  if (E->syntax > NNCC_MAX_SYNTAX)
    elab_error(E, st->name_loc, "the program has more than %s expressions and statements (the limit)",
               fmt_count(NNCC_MAX_SYNTAX));
  bool was = s->library;
  s->library = true;
  Value ret = {.kind = V_NONE};
  exec_list(E, s, &prog, &ret);
  s->library = was;
}

Graph *elaborate(SrcFile *file, StmtList prog) {
  Elab E = {.g = graph_new(file), .source_bytes = file->len, .syntax = file->syntax};
  Scope top = {.prefix = ""};
  Value ret = {.kind = V_NONE};
  exec_list(&E, &top, &prog, &ret);
  /* "no input/label/loss" points after the last statement */
  Loc end = {file, 0, 0};
  if (prog.n > 0) {
    Loc last = prog.v[prog.n - 1]->loc;
    end = (Loc){file, last.off + last.len, 0};
  }
  if (E.g->input < 0)
    error_at(end, "the model has no input (add: input x: f32[N, 1, 28, 28] = mnist)");
  if (E.g->label < 0)
    error_at(end, "the model has no label (add: label y: class[N] of 10)");
  if (E.g->loss < 0)
    error_at(end, "the model has no loss (add: loss = cross_entropy(logits, y))");
  end_scope(&E, &top);
  if (!E.g->name) {
    const char *base = strrchr(file->name, '/');
    base = base ? base + 1 : file->name;
    const char *dot = strrchr(base, '.');
    E.g->name = dot ? xstrndup(base, (size_t)(dot - base)) : xstrdup(base);
  }
  return E.g;
}
