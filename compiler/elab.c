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
 */
#include "nncc.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

typedef enum VKind { V_NONE, V_INT, V_FLOAT, V_BOOL, V_STR, V_LIST, V_TENSOR } VKind;

typedef struct Value {
  VKind kind;
  int64_t i;           /* V_INT, V_BOOL; V_TENSOR: node id */
  double f;            /* V_FLOAT */
  char *s;             /* V_STR */
  struct Value *items; /* V_LIST */
  int n;
} Value;

typedef struct Binding {
  char *name;
  Value v;
  Loc loc;
  bool used;
  bool check_unused;
} Binding;

/* Counters for automatic names, one per op abbreviation or block name. */
typedef struct Counter {
  const char *key;
  int n;
} Counter;

typedef struct Scope {
  Binding *vars;
  int nvars, cap;
  char *prefix;     /* "" at the top, "conv_2_block1." inside that call */
  Counter *counters;
  int ncounters, ccap;
  bool library;     /* an imported file's top level: no tensors, no unused check */
} Scope;

typedef struct Elab {
  Graph *g;
  BlockDef **blocks;
  int nblocks, bcap;
  char **imported;
  int nimported, icap;
  CallSite *site;   /* the block calls we are inside */
  int depth;
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

static Binding *lookup(Scope *s, const char *name) {
  for (int i = s->nvars - 1; i >= 0; i--)
    if (strcmp(s->vars[i].name, name) == 0)
      return &s->vars[i];
  return NULL;
}

static void check_used(Elab *E, Binding *b) {
  if (!b->check_unused || b->used || b->name[0] == '_')
    return; /* "_" names say "unused on purpose", as in Python */
  if (b->v.kind == V_TENSOR && (int)b->v.i == E->g->loss)
    return; /* the loss is used by training */
  elab_error(E, b->loc, "'%s' is assigned but never used", b->name);
}

static void bind(Elab *E, Scope *s, const char *name, Value v, Loc loc) {
  Binding *old = lookup(s, name);
  if (old) {
    check_used(E, old);
    old->v = v;
    old->loc = loc;
    old->used = false;
    old->check_unused = !s->library;
  } else {
    Binding b = {xstrdup(name), v, loc, false, !s->library};
    VEC_PUSH(s->vars, s->nvars, s->cap, b);
  }
  if (v.kind == V_TENSOR && !E->g->nodes[v.i]->binding && !s->library)
    E->g->nodes[v.i]->binding = xstrdup(name);
}

static void end_scope(Elab *E, Scope *s) {
  for (int i = 0; i < s->nvars; i++)
    check_used(E, &s->vars[i]);
}

/* Next automatic name in scope s: "conv" -> "conv3", unique in the graph. */
static char *fresh_name(Elab *E, Scope *s, const char *key) {
  Counter *c = NULL;
  for (int i = 0; i < s->ncounters; i++)
    if (strcmp(s->counters[i].key, key) == 0)
      c = &s->counters[i];
  if (!c) {
    Counter nc = {key, 0};
    VEC_PUSH(s->counters, s->ncounters, s->ccap, nc);
    c = &s->counters[s->ncounters - 1];
  }
  for (;;) {
    char *name = format("%s%s%d", s->prefix, key, ++c->n);
    bool taken = false;
    for (int i = 0; i < E->g->nnodes && !taken; i++)
      taken = E->g->nodes[i]->name && strcmp(E->g->nodes[i]->name, name) == 0;
    if (!taken)
      return name;
  }
}

static BlockDef *find_block(Elab *E, const char *name) {
  for (int i = 0; i < E->nblocks; i++)
    if (strcmp(E->blocks[i]->name, name) == 0)
      return E->blocks[i];
  return NULL;
}

static int find_op(const char *name) {
  for (int op = 0; op < OP_COUNT; op++)
    if (op_info[op].name && strcmp(op_info[op].name, name) == 0)
      return op;
  return -1;
}

/*
 * Match a call's arguments to named slots: positional ones in order,
 * keywords by name.  slots[i] is the argument's AST or NULL.
 */
static void match_args(Elab *E, Ast *call, const char *what, const char **names, int n,
                       Ast **slots) {
  for (int i = 0; i < n; i++)
    slots[i] = NULL;
  int pos = 0;
  for (int a = 0; a < call->nargs; a++) {
    const char *key = call->argnames[a];
    int slot = -1;
    if (!key) {
      if (pos >= n)
        elab_error(E, call->args[a]->loc, "%s takes at most %d argument%s, got %d", what, n,
                   n == 1 ? "" : "s", call->nargs);
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
        elab_error(E, at, "%s has no argument '%s'%s", what, key, suggest(key, names, n));
      }
      if (slots[slot])
        elab_error(E, call->args[a]->loc, "%s: argument '%s' given twice", what, names[slot]);
    }
    slots[slot] = call->args[a];
  }
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
      z = ((x % y) + y) % y;
      break;
    default: unreachable();
    }
    if (overflow)
      elab_error(E, a->loc, "integer overflow in '%s'", op);
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
  case '%': z = fmod(x, y); break;
  default: unreachable();
  }
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
    Value v = {.kind = V_LIST, .n = (int)n, .items = xalloc(sizeof(Value) * (size_t)(n + 1))};
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

static Value eval(Elab *E, Scope *s, Ast *a) {
  switch (a->kind) {
  case A_INT: return int_value(a->ival);
  case A_FLOAT: return (Value){.kind = V_FLOAT, .f = a->fval};
  case A_BOOL: return bool_value(a->ival);
  case A_STR: return (Value){.kind = V_STR, .s = a->str};
  case A_LIST: {
    Value v = {.kind = V_LIST, .n = a->nargs, .items = xalloc(sizeof(Value) * (size_t)(a->nargs + 1))};
    for (int i = 0; i < a->nargs; i++)
      v.items[i] = eval(E, s, a->args[i]);
    return v;
  }
  case A_NAME: {
    Binding *b = lookup(s, a->str);
    if (!b) {
      const char **names = xalloc(sizeof(char *) * (size_t)(s->nvars + 1));
      for (int i = 0; i < s->nvars; i++)
        names[i] = s->vars[i].name;
      if (find_op(a->str) >= 0 || find_block(E, a->str))
        elab_error(E, a->loc, "'%s' is an op or block; call it: %s(...)", a->str, a->str);
      elab_error(E, a->loc, "undefined name '%s'%s", a->str, suggest(a->str, names, s->nvars));
    }
    b->used = true;
    return b->v;
  }
  case A_NEG: {
    Value v = eval(E, s, a->lhs);
    if (v.kind == V_INT)
      return int_value(-v.i);
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
    if (i < 0)
      i += l.n;
    if (i < 0 || i >= l.n)
      elab_error(E, a->rhs->loc, "index out of range: the list has %d items", l.n);
    return l.items[i];
  }
  case A_BINOP: {
    Value l = eval(E, s, a->lhs), r = eval(E, s, a->rhs);
    if (strcmp(a->str, "+") == 0 && l.kind == V_TENSOR && r.kind == V_TENSOR) {
      /* a + b on tensors is add(a, b) */
      Node *n = graph_add(E->g, OP_ADD, a->loc, E->site);
      n->name = fresh_name(E, s, op_info[OP_ADD].abbrev);
      n->nin = 2;
      n->in[0] = (int)l.i;
      n->in[1] = (int)r.i;
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
    const char *cands[OP_COUNT + 64];
    int nc = 0;
    for (int i = 0; i < OP_COUNT; i++)
      if (op_info[i].name)
        cands[nc++] = op_info[i].name;
    for (int i = 0; i < E->nblocks && nc < OP_COUNT + 64; i++)
      cands[nc++] = E->blocks[i]->name;
    Loc name_loc = {a->loc.file, a->loc.off, (int)strlen(a->str)};
    elab_error(E, name_loc, "unknown op or block '%s'%s", a->str, suggest(a->str, cands, nc));
  }
  }
  unreachable();
}

/* ---- op calls ------------------------------------------------------------ */

/* Where each attribute lives in a Node; pairs are two adjacent int64s. */
static const struct {
  const char *name;
  size_t offset;
} attr_fields[] = {
    {"out", offsetof(Node, out)},         {"kernel", offsetof(Node, kh)},
    {"stride", offsetof(Node, sh)},       {"padding", offsetof(Node, ph)},
    {"output", offsetof(Node, oh)},       {"bias", offsetof(Node, bias)},
    {"p", offsetof(Node, p)},             {"eps", offsetof(Node, eps)},
    {"momentum", offsetof(Node, momentum)},
};

static void *attr_field(Node *n, const char *name) {
  for (size_t i = 0; i < sizeof attr_fields / sizeof *attr_fields; i++)
    if (strcmp(attr_fields[i].name, name) == 0)
      return (char *)n + attr_fields[i].offset;
  ICE("no field for attribute %s", name);
}

typedef struct SigEntry {
  char name[16], type[8], def[16];
} SigEntry;

/* "out:int kernel:pair stride:pair=kernel" -> entries */
static int parse_sig(const char *sig, SigEntry *out, int max) {
  int n = 0;
  while (*sig) {
    while (*sig == ' ')
      sig++;
    if (!*sig)
      break;
    if (n == max)
      ICE("signature too long: %s", sig);
    SigEntry *e = &out[n++];
    *e = (SigEntry){0};
    int k = 0;
    while (*sig && *sig != ':' && k < 15)
      e->name[k++] = *sig++;
    sig++;
    k = 0;
    while (*sig && *sig != '=' && *sig != ' ' && k < 7)
      e->type[k++] = *sig++;
    if (*sig == '=') {
      sig++;
      k = 0;
      while (*sig && *sig != ' ' && k < 15)
        e->def[k++] = *sig++;
    }
  }
  return n;
}

static void set_attr(Elab *E, Node *n, const char *opname, SigEntry *e, Value v, Loc loc) {
  void *f = attr_field(n, e->name);
  const char *what = format("%s: '%s'", opname, e->name);
  if (strcmp(e->type, "int") == 0) {
    if (v.kind != V_INT)
      elab_error(E, loc, "%s must be an int, got %s", what, describe(E->g, v));
    *(int64_t *)f = v.i;
  } else if (strcmp(e->type, "float") == 0) {
    *(double *)f = want_number(E, v, loc, what);
  } else if (strcmp(e->type, "bool") == 0) {
    *(bool *)f = want_bool(E, v, loc, what);
  } else if (strcmp(e->type, "pair") == 0) {
    int64_t *p = f;
    if (v.kind == V_INT) {
      p[0] = p[1] = v.i;
    } else if (v.kind == V_LIST && v.n == 2 && v.items[0].kind == V_INT && v.items[1].kind == V_INT) {
      p[0] = v.items[0].i;
      p[1] = v.items[1].i;
    } else {
      elab_error(E, loc, "%s must be an int or a list of two ints, got %s", what, describe(E->g, v));
    }
  } else {
    ICE("bad signature type %s", e->type);
  }
}

static Value call_op(Elab *E, Scope *s, Ast *call, OpKind op) {
  const OpInfo *info = &op_info[op];
  SigEntry sig[8];
  int nsig = parse_sig(info->sig, sig, 8);
  const char *names[10];
  static const char *tensor_names[OP_COUNT][2] = {
      [OP_ADD] = {"a", "b"}, [OP_CROSS_ENTROPY] = {"logits", "labels"}};
  for (int i = 0; i < info->nin; i++)
    names[i] = tensor_names[op][i] ? tensor_names[op][i] : "x";
  for (int i = 0; i < nsig; i++)
    names[info->nin + i] = sig[i].name;
  int nslots = info->nin + nsig;
  Ast *slots[10];
  match_args(E, call, format("%s()", info->name), names, nslots, slots);

  /* inputs and attributes first: nodes they create must come before this one */
  Node tmp = {.op = op}, *n = &tmp;
  n->nin = info->nin;
  for (int i = 0; i < info->nin; i++) {
    if (!slots[i])
      elab_error(E, call->loc, "%s: missing input '%s'", info->name, names[i]);
    Value v = eval(E, s, slots[i]);
    if (v.kind != V_TENSOR)
      elab_error(E, slots[i]->loc, "%s: input '%s' must be a tensor, got %s", info->name, names[i],
                 describe(E->g, v));
    n->in[i] = (int)v.i;
  }
  for (int i = 0; i < nsig; i++) {
    Ast *a = slots[info->nin + i];
    SigEntry *e = &sig[i];
    if (a) {
      set_attr(E, n, info->name, e, eval(E, s, a), a->loc);
    } else if (!e->def[0]) {
      elab_error(E, call->loc, "%s: missing argument '%s'", info->name, e->name);
    } else if (strcmp(e->def, "true") == 0 || strcmp(e->def, "false") == 0) {
      set_attr(E, n, info->name, e, bool_value(e->def[0] == 't'), call->loc);
    } else if (e->def[0] >= '0' && e->def[0] <= '9' && (strchr(e->def, '.') || strchr(e->def, 'e'))) {
      set_attr(E, n, info->name, e, (Value){.kind = V_FLOAT, .f = strtod(e->def, NULL)}, call->loc);
    } else if (e->def[0] >= '0' && e->def[0] <= '9') {
      set_attr(E, n, info->name, e, int_value(strtoll(e->def, NULL, 10)), call->loc);
    } else { /* the default is another attribute: stride=kernel */
      int64_t *src = attr_field(n, e->def), *dst = attr_field(n, e->name);
      dst[0] = src[0];
      dst[1] = src[1];
    }
  }
  n = graph_add(E->g, op, call->loc, E->site);
  int id = n->id;
  *n = tmp;
  n->id = id;
  n->loc = call->loc;
  n->site = E->site;
  n->name = fresh_name(E, s, info->abbrev);
  if (op == OP_CROSS_ENTROPY) {
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
  if (E->depth >= 64)
    elab_error(E, call->loc, "block calls nested more than 64 deep (does '%s' call itself?)", b->name);
  Ast **slots = xalloc(sizeof(Ast *) * (size_t)(b->nparams + 1));
  match_args(E, call, format("block %s()", b->name), (const char **)b->params, b->nparams, slots);

  Scope inner = {.prefix = format("%s.", fresh_name(E, s, b->name))};
  /* arguments are evaluated in the caller's scope, defaults in the block's */
  for (int i = 0; i < b->nparams; i++) {
    Value v;
    if (slots[i])
      v = eval(E, s, slots[i]);
    else if (b->defaults[i])
      v = eval(E, &inner, b->defaults[i]);
    else
      elab_error(E, call->loc, "block %s(): missing argument '%s'", b->name, b->params[i]);
    bind(E, &inner, b->params[i], v, b->loc);
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

static void exec_input(Elab *E, Scope *s, Stmt *st) {
  if (E->g->input >= 0)
    elab_error(E, st->loc, "a model has one input; '%s' was declared already",
               E->g->nodes[E->g->input]->name);
  if (strcmp(st->dtype, "f32") != 0)
    elab_error(E, st->loc, "input '%s': unsupported dtype '%s' (nncc trains in f32)", st->name,
               st->dtype);
  Node *n = graph_add(E->g, OP_INPUT, st->name_loc, NULL);
  n->name = xstrdup(st->name);
  n->dtype = DT_F32;
  if (st->ndims > MAX_RANK)
    elab_error(E, st->dims[MAX_RANK]->loc, "input '%s': at most %d dimensions", st->name, MAX_RANK);
  n->rank = st->ndims;
  for (int i = 0; i < st->ndims; i++) {
    n->dims[i] = want_int(E, s, st->dims[i], "a dimension");
    if (n->dims[i] <= 0)
      elab_error(E, st->dims[i]->loc, "input '%s': dimension %d must be positive, got %lld",
                 st->name, i, (long long)n->dims[i]);
  }
  /* the data source: mnist or mnist(pad=P) */
  Ast *src = st->expr;
  if ((src->kind != A_NAME && src->kind != A_CALL) || strcmp(src->str, "mnist") != 0)
    elab_error(E, src->loc, "unknown data source; nncc reads 'mnist' or 'mnist(pad=P)' (28x28 IDX images)");
  E->g->source_loc = src->loc;
  if (src->kind == A_CALL) {
    const char *names[] = {"pad"};
    Ast *slot;
    match_args(E, src, "mnist()", names, 1, &slot);
    if (slot) {
      E->g->pad = want_int(E, s, slot, "mnist(): 'pad'");
      if (E->g->pad < 0 || E->g->pad > 1000)
        elab_error(E, slot->loc, "mnist(): 'pad' must be between 0 and 1000");
    }
  }
  E->g->input = n->id;
  bind(E, s, st->name, tensor_value(n), st->name_loc);
}

static void exec_label(Elab *E, Scope *s, Stmt *st) {
  if (E->g->label >= 0)
    elab_error(E, st->loc, "a model has one label; '%s' was declared already",
               E->g->nodes[E->g->label]->name);
  if (st->ndims != 2)
    elab_error(E, st->loc, "label '%s' has one dimension, the batch: class[N] of C", st->name);
  Node *n = graph_add(E->g, OP_LABEL, st->name_loc, NULL);
  n->name = xstrdup(st->name);
  n->dtype = DT_CLASS;
  n->rank = 1;
  n->dims[0] = want_int(E, s, st->dims[0], "the label's batch size");
  n->classes = want_int(E, s, st->dims[1], "the number of classes");
  if (n->dims[0] <= 0)
    elab_error(E, st->dims[0]->loc, "label '%s': batch size must be positive", st->name);
  if (n->classes < 2)
    elab_error(E, st->dims[1]->loc, "label '%s': needs at least 2 classes, got %lld", st->name,
               (long long)n->classes);
  E->g->label = n->id;
  bind(E, s, st->name, tensor_value(n), st->name_loc);
}

/* train adam(lr=, betas=, eps=, weight_decay=) | sgd(lr=, momentum=, weight_decay=)
 *       [epochs=N] [seed=S] */
static void exec_train(Elab *E, Scope *s, Stmt *st) {
  if (E->has_train)
    elab_error(E, st->loc, "training is already set up by an earlier 'train'");
  E->has_train = true;
  TrainCfg *t = &E->g->train;
  t->loc = st->loc;
  Ast *opt = st->expr;
  if ((opt->kind != A_NAME && opt->kind != A_CALL) ||
      (strcmp(opt->str, "adam") != 0 && strcmp(opt->str, "sgd") != 0))
    elab_error(E, opt->loc, "unknown optimizer; nncc has adam(...) and sgd(...)");
  bool adam = strcmp(opt->str, "adam") == 0;
  t->optim = adam ? OPT_ADAM : OPT_SGD;
  t->lr = adam ? 1e-3 : 0.01; /* torch.optim's defaults (SGD's lr is ours: torch requires one) */
  if (opt->kind == A_CALL) {
    const char *adam_names[] = {"lr", "betas", "eps", "weight_decay"};
    const char *sgd_names[] = {"lr", "momentum", "weight_decay"};
    Ast *slots[4];
    match_args(E, opt, adam ? "adam()" : "sgd()", adam ? adam_names : sgd_names, adam ? 4 : 3, slots);
    if (slots[0])
      t->lr = want_number(E, eval(E, s, slots[0]), slots[0]->loc, "lr");
    if (adam && slots[1]) {
      Value b = eval(E, s, slots[1]);
      if (b.kind != V_LIST || b.n != 2)
        elab_error(E, slots[1]->loc, "adam(): 'betas' must be a list of two numbers, got %s",
                   describe(E->g, b));
      t->beta1 = want_number(E, b.items[0], slots[1]->loc, "betas[0]");
      t->beta2 = want_number(E, b.items[1], slots[1]->loc, "betas[1]");
      if (!(t->beta1 >= 0 && t->beta1 < 1 && t->beta2 >= 0 && t->beta2 < 1))
        elab_error(E, slots[1]->loc, "adam(): betas must be in [0, 1)");
    }
    if (adam && slots[2]) {
      t->eps = want_number(E, eval(E, s, slots[2]), slots[2]->loc, "eps");
      if (!(t->eps > 0))
        elab_error(E, slots[2]->loc, "adam(): 'eps' must be positive");
    }
    if (!adam && slots[1]) {
      t->momentum = want_number(E, eval(E, s, slots[1]), slots[1]->loc, "momentum");
      if (!(t->momentum >= 0))
        elab_error(E, slots[1]->loc, "sgd(): 'momentum' must be non-negative");
    }
    Ast *wd = slots[adam ? 3 : 2];
    if (wd) {
      t->weight_decay = want_number(E, eval(E, s, wd), wd->loc, "weight_decay");
      if (!(t->weight_decay >= 0))
        elab_error(E, wd->loc, "'weight_decay' must be non-negative");
    }
    if (slots[0] && !(t->lr > 0))
      elab_error(E, slots[0]->loc, "'lr' must be positive");
  }
  for (int i = 0; i < st->nkeys; i++) {
    const char *k = st->keys[i];
    if (strcmp(k, "epochs") == 0) {
      t->epochs = want_int(E, s, st->vals[i], "epochs");
      if (t->epochs < 1)
        elab_error(E, st->vals[i]->loc, "'epochs' must be at least 1");
    } else if (strcmp(k, "seed") == 0) {
      t->seed = want_int(E, s, st->vals[i], "seed");
      if (t->seed < 0)
        elab_error(E, st->vals[i]->loc, "'seed' must be non-negative");
    } else {
      const char *names[] = {"epochs", "seed"};
      elab_error(E, st->vals[i]->loc, "unknown training setting '%s'%s", k, suggest(k, names, 2));
    }
  }
}

static void exec_import(Elab *E, Scope *s, Stmt *st);

static void exec(Elab *E, Scope *s, Stmt *st, Value *ret) {
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
    return;
  }
  case S_ASSIGN: {
    Value v = eval(E, s, st->expr);
    if (v.kind == V_NONE)
      elab_error(E, st->expr->loc, "this has no value to assign");
    bind(E, s, st->name, v, st->name_loc);
    return;
  }
  case S_FOR: {
    Value list = eval(E, s, st->expr);
    if (list.kind != V_LIST)
      elab_error(E, st->expr->loc, "'for' needs a list, got %s", describe(E->g, list));
    for (int i = 0; i < list.n && ret->kind == V_NONE; i++) {
      bind(E, s, st->name, list.items[i], st->name_loc);
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
  for (int i = 0; i < list->n && ret->kind == V_NONE; i++)
    exec(E, s, list->v[i], ret);
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
    elab_error(E, st->name_loc, "cannot import '%s': %s", path, strerror(errno));
  StmtList prog = parse(f);
  bool was = s->library;
  s->library = true;
  Value ret = {.kind = V_NONE};
  exec_list(E, s, &prog, &ret);
  s->library = was;
}

Graph *elaborate(SrcFile *file, StmtList prog) {
  Elab E = {.g = graph_new(file)};
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
