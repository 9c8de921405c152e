/*
 * test_front.c -- unit tests for the lexer, the parser, the elaborator and
 * the shape pass, fed from in-memory strings.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "nncc.h"

/* ---- helpers ---------------------------------------------------------- */

static char *diag_text;
static size_t diag_len;

/* One stage of the front end, for trapped(). */
typedef struct Stage {
  const char *data; /* compile: the source bytes */
  size_t len;
  Graph *g;         /* plan: the graph from compile() */
  int opt;          /* plan: -O1 (fused, packed) or -O0 */
} Stage;

static void stage_compile(Stage *s) {
  SrcFile *file = source_from_bytes("t.nn", s->data, s->len);
  Graph *r = elaborate(file, parse(file));
  ir_verify(r, "parse");
  shape_pass(r);
  ir_verify(r, "shape");
  s->g = r;
}

static void stage_plan(Stage *s) {
  measure_naive(s->g);
  if (s->opt)
    fuse_pass(s->g);
  buffers_build(s->g);
  if (s->opt)
    plan_pass(s->g);
  else
    plan_naive(s->g);
  ir_verify(s->g, "plan");
}

/* Runs run(s) with user errors trapped and the diagnostics captured in
 * diag_text (replacing the previous ones); s->g on success, NULL on a user
 * error. */
static Graph *trapped(void (*run)(Stage *), Stage *s) {
  free(diag_text);
  diag_text = NULL;
  FILE *f = open_memstream(&diag_text, &diag_len);
  diag_out = f;
  jmp_buf jb;
  diag_trap = &jb;
  Graph *volatile g = NULL;
  if (setjmp(jb) == 0) {
    run(s);
    g = s->g;
  }
  fclose(f);
  diag_out = NULL;
  diag_trap = NULL;
  return g;
}

/* compile() on a file's bytes, NULs and all. */
static Graph *compile_bytes(const char *data, size_t len) {
  Stage s = {.data = data, .len = len};
  return trapped(stage_compile, &s);
}

/* Compile src through the shape pass.  NULL on a user error; the
 * diagnostics are in diag_text either way. */
static Graph *compile(const char *src) { return compile_bytes(src, strlen(src)); }

/* compile(), then the rest of the front end: -O1 (fused, packed) or -O0. */
static Graph *compile_plan(const char *src, int opt) {
  Graph *g = compile(src);
  if (!g)
    return NULL;
  Stage s = {.g = g, .opt = opt};
  return trapped(stage_plan, &s);
}

/* n copies of s, in the pool. */
static char *repeat(const char *s, int n) {
  size_t len = strlen(s);
  char *r = xalloc(len * (size_t)n + 1);
  for (int i = 0; i < n; i++)
    memcpy(r + len * (size_t)i, s, len);
  return r;
}

/* The first line of the diagnostics. */
static char *first_error(void) {
  static char line[512];
  if (!diag_text)
    return "";
  size_t n = strcspn(diag_text, "\n");
  if (n >= sizeof line)
    n = sizeof line - 1;
  memcpy(line, diag_text, n);
  line[n] = '\0';
  return line;
}

#define HEADER                                                                 \
  "model t\ninput x: f32[8, 1, 28, 28] = mnist\nlabel y: class[8] of 10\n"
#define TAIL "loss = cross_entropy(logits, y)\n"

static Node *node_named(Graph *g, const char *name) {
  for (int i = 0; i < g->nnodes; i++)
    if (strcmp(g->nodes[i]->name, name) == 0)
      return g->nodes[i];
  ck_abort_msg("no node %s", name);
  return NULL;
}

static void teardown(void) { pool_free_all(); }

/* A model body (HEADER before it, TAIL after it unless it has its own loss)
 * and the first diagnostic line it must produce. */
typedef struct ErrorCase {
  const char *body, *want;
} ErrorCase;

static void expect_errors(const ErrorCase *cases, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char *src = format(HEADER "%s%s", cases[i].body, strstr(cases[i].body, "loss") ? "" : TAIL);
    ck_assert_msg(compile(src) == NULL, "case %zu compiled", i);
    ck_assert_msg(strcmp(first_error(), cases[i].want) == 0, "case %zu:\n got: %s\nwant: %s", i,
                  first_error(), cases[i].want);
  }
}

/* ---- lexer ------------------------------------------------------------ */

START_TEST(lex_kinds) {
  SrcFile *f = source_from_string("t.nn", "h = conv2d(x, 16, kernel=5) # c\n1e-5 0.25 'M' == !=\n");
  int n;
  Token *t = lex(f, &n);
  const char *want[] = {"h", "=", "conv2d", "(", "x", ",", "16", ",", "kernel", "=", "5", ")",
                        "\\n", "1e-5", "0.25", "M", "==", "!=", "\\n", "end of file"};
  ck_assert_int_eq(n, 20);
  for (int i = 0; i < n; i++) /* numbers have no string: their text is at loc */
    ck_assert_str_eq(t[i].str ? t[i].str : xstrndup(f->text + t[i].loc.off, (size_t)t[i].loc.len),
                     want[i]);
  ck_assert_int_eq(t[6].kind, T_INT);
  ck_assert_int_eq(t[6].ival, 16);
  ck_assert_int_eq(t[13].kind, T_FLOAT);
  ck_assert_double_eq_tol(t[13].fval, 1e-5, 1e-12);
  ck_assert_int_eq(t[15].kind, T_STRING);
  ck_assert_int_eq(t[12].kind, T_NEWLINE);
}
END_TEST

START_TEST(lex_newlines_inside_brackets) {
  SrcFile *f = source_from_string("t.nn", "a = [1,\n 2,\n\n 3]\n\n\nb = f(\nx)\n");
  int n;
  Token *t = lex(f, &n);
  int newlines = 0;
  for (int i = 0; i < n; i++)
    newlines += t[i].kind == T_NEWLINE;
  ck_assert_int_eq(newlines, 2);
}
END_TEST

START_TEST(lex_locations) {
  SrcFile *f = source_from_string("t.nn", "a = 1\n  bb = 22\n");
  int n;
  Token *t = lex(f, &n);
  int line, col;
  loc_line_col(t[4].loc, &line, &col);
  ck_assert_str_eq(t[4].str, "bb");
  ck_assert_int_eq(line, 2);
  ck_assert_int_eq(col, 3);
  ck_assert_int_eq(t[4].loc.len, 2);
}
END_TEST

START_TEST(lex_errors) {
  ck_assert_ptr_null(compile("a = 1 $ 2\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:7: error: unexpected character '$'");
  ck_assert_ptr_null(compile("a = 'abc\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:5: error: unterminated string");
  ck_assert_ptr_null(compile("a = 12abc\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:5: error: invalid number '12a'");
  ck_assert_ptr_null(compile("a = 99999999999999999999\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:5: error: number '99999999999999999999' is out of range");
}
END_TEST

/* ---- parser ----------------------------------------------------------- */

START_TEST(parse_statements) {
  SrcFile *f = source_from_string(
      "t.nn", "model m\nimport \"lib.nn\"\nblock b(h, n=2) {\n  for v in [1, 2] {\n"
              "    if v == 1 { h = relu(h) } else { h = relu(h) }\n  }\n  return h\n}\n"
              "train sgd(lr=0.1, momentum=0.9) epochs=3 seed=7\nz = -1 + 2 * 3\n");
  StmtList p = parse(f);
  ck_assert_int_eq(p.n, 5);
  ck_assert_int_eq(p.v[0]->kind, S_MODEL);
  ck_assert_str_eq(p.v[0]->name, "m");
  ck_assert_int_eq(p.v[1]->kind, S_IMPORT);
  ck_assert_str_eq(p.v[1]->name, "lib.nn");
  BlockDef *b = p.v[2]->block;
  ck_assert_str_eq(b->name, "b");
  ck_assert_int_eq(b->nparams, 2);
  ck_assert_ptr_null(b->defaults[0]);
  ck_assert_int_eq(b->defaults[1]->ival, 2);
  ck_assert_int_eq(b->body.n, 2);
  ck_assert_int_eq(b->body.v[0]->kind, S_FOR);
  ck_assert_int_eq(b->body.v[0]->body.v[0]->kind, S_IF);
  ck_assert_int_eq(b->body.v[0]->body.v[0]->orelse.n, 1);
  ck_assert_int_eq(p.v[3]->kind, S_TRAIN);
  ck_assert_int_eq(p.v[3]->nkeys, 2);
  ck_assert_str_eq(p.v[3]->keys[1], "seed");
  /* precedence: -1 + (2 * 3) */
  Ast *e = p.v[4]->expr;
  ck_assert_int_eq(e->kind, A_BINOP);
  ck_assert_str_eq(e->str, "+");
  ck_assert_int_eq(e->lhs->kind, A_NEG);
  ck_assert_str_eq(e->rhs->str, "*");
}
END_TEST

START_TEST(parse_call_args) {
  SrcFile *f = source_from_string("t.nn", "h = conv2d(x, 16, kernel=[3, 5], padding=1)\n");
  StmtList p = parse(f);
  Ast *c = p.v[0]->expr;
  ck_assert_int_eq(c->kind, A_CALL);
  ck_assert_int_eq(c->nargs, 4);
  ck_assert_ptr_null(c->argnames[1]);
  ck_assert_str_eq(c->argnames[2], "kernel");
  ck_assert_int_eq(c->args[2]->kind, A_LIST);
  ck_assert_int_eq(c->args[2]->nargs, 2);
  /* the call's span covers the whole expression */
  ck_assert_int_eq(c->loc.off, 4);
  ck_assert_int_eq(c->loc.len, (int)strlen("conv2d(x, 16, kernel=[3, 5], padding=1)"));
}
END_TEST

START_TEST(parse_errors) {
  ck_assert_ptr_null(compile("h = relu(x\n"));
  ck_assert_str_eq(first_error(), "t.nn:2:1: error: expected ')', got end of file");
  ck_assert_ptr_null(compile("h relu(x)\n"));
  ck_assert_str_eq(first_error(),
                   "t.nn:1:3: error: expected '=' after 'h' (a statement is NAME = EXPRESSION), got 'relu'");
  ck_assert_ptr_null(compile("return 1\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:1: error: 'return' outside a block");
  ck_assert_ptr_null(compile("block b(x) {\n  model m\n}\n"));
  ck_assert_str_eq(first_error(), "t.nn:2:3: error: 'model' is only allowed at the top level, not inside a block");
  ck_assert_ptr_null(compile("a = f(x=1, 2)\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:12: error: positional argument after keyword argument");
  ck_assert_ptr_null(compile("a = 1 < 2 < 3\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:11: error: comparisons cannot be chained");
  ck_assert_ptr_null(compile("a = 1 2\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:7: error: expected end of line, got '2'");
}
END_TEST

/* ---- elaboration ------------------------------------------------------ */

/* An int attribute, or element k of a pair */
static int64_t attr_int(const Node *n, const char *name, int k) {
  const int64_t *v = node_attr(n, name);
  ck_assert_msg(v != NULL, "%s has no attribute %s", n->name, name);
  return v[k];
}

static bool attr_bool(const Node *n, const char *name) {
  const bool *v = node_attr(n, name);
  ck_assert_msg(v != NULL, "%s has no attribute %s", n->name, name);
  return *v;
}

START_TEST(elab_chain_names) {
  Graph *g = compile(HEADER "h = relu(conv2d(x, 4, kernel=3))\nh = flatten(h)\n"
                            "logits = linear(h, 10)\n" TAIL "train adam(lr=0.01)\n");
  ck_assert_msg(g != NULL, "%s", diag_text);
  ck_assert_int_eq(g->nnodes, 7);
  Node *c = node_named(g, "conv1");
  ck_assert_int_eq(attr_int(c, "out", 0), 4);
  ck_assert_int_eq(attr_int(c, "kernel", 0), 3);
  ck_assert_int_eq(attr_int(c, "stride", 0), 1);
  ck_assert_int_eq(attr_bool(c, "bias"), 1);
  ck_assert_str_eq(node_named(g, "relu1")->binding, "h");
  ck_assert_str_eq(node_named(g, "fc1")->binding, "logits");
  ck_assert_str_eq(c->params[0].name, "conv1.weight");
  ck_assert_double_eq_tol(g->train.lr, 0.01, 1e-12);
  ck_assert_int_eq(g->train.optim, OPT_ADAM);
}
END_TEST

START_TEST(elab_blocks_and_loops) {
  Graph *g = compile(HEADER
                     "cfg = [2, 'M', 3]\n"
                     "block feat(h, cfg, bn=false) {\n"
                     "  for v in cfg {\n"
                     "    if v == 'M' { h = maxpool2d(h, 2) } else {\n"
                     "      h = conv2d(h, v, kernel=3, padding=1)\n"
                     "      if bn { h = batchnorm2d(h) }\n"
                     "      h = relu(h)\n"
                     "    }\n"
                     "  }\n"
                     "  return h\n"
                     "}\n"
                     "h = feat(x, cfg, bn=true)\n"
                     "h = feat(h, [2 * 2])\n"
                     "logits = linear(flatten(h), 10)\n" TAIL);
  ck_assert_msg(g != NULL, "%s", diag_text);
  Node *c = node_named(g, "feat1.conv2");
  ck_assert_int_eq(attr_int(c, "out", 0), 3);
  ck_assert_str_eq(c->params[0].name, "feat1.conv2.weight");
  node_named(g, "feat1.bn2");
  Node *c2 = node_named(g, "feat2.conv1");
  ck_assert_int_eq(attr_int(c2, "out", 0), 4);
  ck_assert_int_eq(g->nodes[c2->in[0]]->op, OP_RELU);
  /* topological order holds for nested calls */
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i]->nin; j++)
      ck_assert_int_lt(g->nodes[i]->in[j], i);
}
END_TEST

START_TEST(elab_residual_add) {
  Graph *g = compile(HEADER "h = relu(conv2d(x, 4, kernel=3, padding=1))\n"
                            "r = conv2d(h, 4, kernel=3, padding=1)\n"
                            "h = h + r\n"
                            "h = add(h, relu(r))\n"
                            "logits = linear(flatten(h), 10)\n" TAIL);
  ck_assert_msg(g != NULL, "%s", diag_text);
  Node *a = node_named(g, "add1");
  ck_assert_int_eq(a->nin, 2);
  ck_assert_str_eq(g->nodes[a->in[1]]->name, "conv2");
  ck_assert_int_eq(node_named(g, "conv2")->nusers, 2);
  node_named(g, "add2");
}
END_TEST

START_TEST(elab_constants) {
  Graph *g = compile("n = 8\nc = 10\nk = 2 * 2 + 1\n"
                     "input x: f32[n, 1, 28, 28] = mnist\nlabel y: class[n] of c\n"
                     "logits = linear(flatten(conv2d(x, 3, kernel=k, stride=[1, 2])), c)\n" TAIL
                     "train sgd(lr=0.5 / 5, momentum=0.9, weight_decay=1e-4) epochs=2 seed=3\n");
  ck_assert_msg(g != NULL, "%s", diag_text);
  Node *c = node_named(g, "conv1");
  ck_assert_int_eq(attr_int(c, "kernel", 0), 5);
  ck_assert_int_eq(attr_int(c, "stride", 1), 2);
  ck_assert_int_eq(c->dims[3], 12);
  ck_assert_int_eq(g->train.optim, OPT_SGD);
  ck_assert_double_eq_tol(g->train.lr, 0.1, 1e-12);
  ck_assert_double_eq_tol(g->train.momentum, 0.9, 1e-12);
  ck_assert_int_eq(g->train.epochs, 2);
  ck_assert_int_eq(g->train.seed, 3);
  ck_assert_str_eq(g->name, "t");
  /* an optimizer without lr takes its default: adam 1e-3, sgd 0.01 */
  g = compile(HEADER "logits = linear(flatten(x), 10)\n" TAIL "train sgd(momentum=0.5)\n");
  ck_assert_msg(g != NULL, "%s", diag_text);
  ck_assert_double_eq_tol(g->train.lr, 0.01, 1e-12);
  g = compile(HEADER "logits = linear(flatten(x), 10)\n" TAIL "train adam(eps=1e-6)\n");
  ck_assert_msg(g != NULL, "%s", diag_text);
  ck_assert_double_eq_tol(g->train.lr, 1e-3, 1e-12);
}
END_TEST

START_TEST(elab_errors) {
  ErrorCase cases[] = {
      {"logits = linear(flatten(hh), 10)\n", "t.nn:4:25: error: undefined name 'hh'"},
      {"h = relu(x)\nh2 = relu(x)\nlogits = linear(flatten(h), 10)\n",
       "t.nn:5:1: error: 'h2' is assigned but never used"},
      {"logits = linear(flatten(conv3d(x, 4)), 10)\n",
       "t.nn:4:25: error: unknown op or block 'conv3d' (did you mean 'conv2d'?)"},
      {"logits = linear(flatten(conv2d(x, 4, kernel_size=3)), 10)\n",
       "t.nn:4:38: error: conv2d() has no argument 'kernel_size' (did you mean 'kernel'?)"},
      {"logits = linear(flatten(conv2d(x, 4)), 10)\n",
       "t.nn:4:25: error: conv2d: missing argument 'kernel'"},
      {"logits = linear(flatten(conv2d(x, 4.5, kernel=3)), 10)\n",
       "t.nn:4:35: error: conv2d: 'out' must be an int, got float 4.5"},
      {"logits = linear(flatten(conv2d(x, 4, kernel=[1, 2, 3])), 10)\n",
       "t.nn:4:45: error: conv2d: 'kernel' must be an int or a list of two ints, got a list of 3"},
      {"logits = linear(flatten(relu(3)), 10)\n",
       "t.nn:4:30: error: relu: input 'x' must be a tensor, got int 3"},
      {"logits = linear(flatten(relu(x, x)), 10)\n",
       "t.nn:4:33: error: relu() takes at most 1 argument, got 2"},
      {"logits = linear(flatten(x), 10)\n" TAIL "loss2 = cross_entropy(logits, y)\n",
       "t.nn:6:9: error: a model has one loss, and cross_entropy was already used"},
      {"a = [1, 2][5]\nlogits = linear(flatten(x), a)\n",
       "t.nn:4:12: error: index out of range: the list has 2 items"},
      {"a = 1 / 0\nlogits = linear(flatten(x), a)\n", "t.nn:4:5: error: division by zero"},
      {"logits = linear(flatten(x * x), 10)\n",
       "t.nn:4:25: error: '*' on tensors: only a + b (add) is defined"},
      {"block b(h) { return h }\nblock b(h) { return h }\nlogits = linear(flatten(x), 10)\n",
       "t.nn:5:7: error: block 'b' is defined twice"},
      {"block b(h) { return b(h) }\nlogits = linear(flatten(b(x)), 10)\n",
       "t.nn:4:21: error: block calls nested more than 64 deep (does 'b' call itself?)"},
      {"block b(h) { h = relu(h) }\nlogits = linear(flatten(b(x)), 10)\n",
       "t.nn:4:7: error: block 'b' ends without 'return'"},
      {"if 1 { a = 2 }\nlogits = linear(flatten(x), 10)\n",
       "t.nn:4:4: error: an 'if' condition must be true or false, got int 1"},
      {"logits = linear(flatten(x), 10)\ntrain adam(lr=0.1) epochs=0\n",
       "t.nn:5:27: error: 'epochs' must be at least 1"},
      {"logits = linear(flatten(x), 10)\ntrain adam(lr=0.1) epoch=3\n",
       "t.nn:5:26: error: unknown training setting 'epoch' (did you mean 'epochs'?)"},
      {"logits = linear(flatten(x), 10)\ntrain rmsprop(lr=0.1)\n",
       "t.nn:5:7: error: unknown optimizer; nncc has adam(...), adamw(...) and sgd(...)"},
      {"logits = linear(flatten(x), 10)\ntrain adam(lr=-1)\n", "t.nn:5:15: error: 'lr' must be positive"},
  };
  expect_errors(cases, sizeof cases / sizeof *cases);
}
END_TEST

START_TEST(elab_block_error_notes) {
  ck_assert_ptr_null(compile(HEADER "block b(h) {\n  return relu(hh)\n}\n"
                                    "logits = linear(flatten(b(x)), 10)\n" TAIL));
  ck_assert_str_eq(first_error(), "t.nn:5:15: error: undefined name 'hh' (did you mean 'h'?)");
  ck_assert_ptr_nonnull(strstr(diag_text, "t.nn:7:25: note: in block 'b' called here"));
}
END_TEST

/* ---- shapes ----------------------------------------------------------- */

START_TEST(shape_ops) {
  Graph *g = compile(HEADER
                     "a = conv2d(x, 6, kernel=5, stride=2, padding=2, bias=false)\n" /* 14x14 */
                     "b = maxpool2d(a, 3, stride=2, padding=1)\n"                    /* 7x7 */
                     "c = avgpool2d(b, 2)\n"                                         /* 3x3 */
                     "d = adaptive_avgpool2d(c, [2, 1])\n"
                     "e = dropout(batchnorm2d(d), p=0.25)\n"
                     "logits = linear(flatten(e), 10, bias=false)\n" TAIL);
  ck_assert_msg(g != NULL, "%s", diag_text);
  Node *a = node_named(g, "conv1");
  ck_assert_str_eq(type_str(a), "f32[8,6,14,14]");
  ck_assert_int_eq(a->nparams, 1);
  ck_assert_str_eq(type_str(node_named(g, "maxpool1")), "f32[8,6,7,7]");
  ck_assert_str_eq(type_str(node_named(g, "avgpool1")), "f32[8,6,3,3]");
  ck_assert_str_eq(type_str(node_named(g, "avgpool2")), "f32[8,6,2,1]");
  Node *bn = node_named(g, "bn1");
  ck_assert_int_eq(bn->nparams, 5);
  ck_assert_str_eq(bn->params[3].name, "bn1.running_var");
  ck_assert_int_eq(bn->params[3].init, INIT_ONES);
  ck_assert_int_eq(node_params(bn), 12);
  ck_assert_double_eq_tol(*(const double *)node_attr(node_named(g, "dropout1"), "p"), 0.25, 1e-12);
  Node *fc = node_named(g, "fc1");
  ck_assert_int_eq(fc->params[0].dims[1], 12);
  ck_assert_int_eq(fc->nparams, 1);
  ck_assert_str_eq(type_str(node_named(g, "loss1")), "f32[]");
  /* PyTorch's default init bound 1/sqrt(fan_in) */
  ck_assert_double_eq_tol(a->params[0].bound, 1 / 5.0, 1e-12);
}
END_TEST

START_TEST(shape_mnist_cnn_counts) {
  Graph *g = compile(HEADER "h = relu(conv2d(x, 16, kernel=5))\nh = relu(conv2d(h, 32, kernel=5))\n"
                            "h = maxpool2d(h, 2)\nh = relu(conv2d(h, 64, kernel=5))\nh = maxpool2d(h, 2)\n"
                            "h = relu(linear(flatten(h), 100))\nlogits = linear(h, 10)\n" TAIL);
  ck_assert_msg(g != NULL, "%s", diag_text);
  int64_t params = 0;
  for (int i = 0; i < g->nnodes; i++)
    params += node_params(g->nodes[i]);
  ck_assert_int_eq(params, 123222);
  ck_assert_str_eq(type_str(node_named(g, "maxpool2")), "f32[8,64,3,3]");
}
END_TEST

START_TEST(shape_errors) {
  ErrorCase cases[] = {
      {"logits = linear(x, 10)\n",
       "t.nn:4:10: error: linear: input must be 2-D [N, features], got f32[8,1,28,28] %x; flatten() it first"},
      {"logits = linear(flatten(conv2d(x, 4, kernel=29)), 10)\n",
       "t.nn:4:25: error: conv2d: kernel 29x29 does not fit input 1x28x28 (output would be 0x0)"},
      {"logits = linear(flatten(maxpool2d(x, 4, padding=3)), 10)\n",
       "t.nn:4:25: error: maxpool2d: padding 3x3 is more than half the kernel 4x4"},
      {"logits = linear(flatten(conv2d(x, 4, kernel=3, stride=0)), 10)\n",
       "t.nn:4:25: error: conv2d: stride must be at least 1, got 0x0"},
      {"logits = linear(flatten(conv2d(x, 0, kernel=3)), 10)\n",
       "t.nn:4:25: error: conv2d: out channels must be at least 1, got 0"},
      {"logits = linear(flatten(x), 12)\n",
       "t.nn:5:8: error: cross_entropy: logits have 12 classes (f32[8,12]) but label 'y' has 10"},
      {"logits = linear(flatten(x), 10)\n_ = y\nloss = cross_entropy(logits, logits)\n",
       "t.nn:6:8: error: cross_entropy: 'labels' must be the model's label, got f32[8,10] %fc1"},
      {"logits = linear(flatten(add(x, conv2d(x, 1, kernel=3))), 10)\n",
       "t.nn:4:25: error: add: shapes differ: %x is f32[8,1,28,28] but %conv1 is f32[8,1,26,26]"},
      {"logits = linear(flatten(add(x, relu(y))), 10)\n",
       "t.nn:4:32: error: relu: 'y' is the label; only cross_entropy can take it"},
      {"logits = linear(flatten(dropout(x, 1.0)), 10)\n",
       "t.nn:4:25: error: dropout: p must be in [0, 1), got 1"},
      {"logits = linear(flatten(conv2d(flatten(x), 4, kernel=3)), 10)\n",
       "t.nn:4:25: error: conv2d: input must be 4-D [N, C, H, W], got f32[8,784] %flatten1"},
  };
  expect_errors(cases, sizeof cases / sizeof *cases);
}
END_TEST

START_TEST(shape_declarations) {
  ck_assert_ptr_null(compile("input x: f32[8, 1, 32, 32] = mnist\nlabel y: class[8] of 10\n"
                             "logits = linear(flatten(x), 10)\n" TAIL));
  ck_assert_str_eq(first_error(),
                   "t.nn:1:30: error: input 'x' is f32[8,1,32,32], but mnist gives 1x28x28 images");
  ck_assert_ptr_nonnull(strstr(diag_text, "note: to place 28x28 images in 32x32, use mnist(pad=2)"));
  ck_assert_ptr_null(compile("input x: f32[8, 1, 28, 28] = mnist\nlabel y: class[4] of 10\n"
                             "logits = linear(flatten(x), 10)\n" TAIL));
  ck_assert_str_eq(first_error(), "t.nn:2:7: error: label 'y' has batch 4 but input 'x' has batch 8");
  ck_assert_ptr_null(compile("input x: f64[8, 1, 28, 28] = mnist\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:1: error: input 'x': unsupported dtype 'f64' (nncc trains in f32)");
  ck_assert_ptr_null(compile("input x: f32[8, 1, 28, 28] = mnist\nlabel y: class[8] of 10\n"));
  ck_assert_str_eq(first_error(), "t.nn:2:24: error: the model has no loss (add: loss = cross_entropy(logits, y))");
  ck_assert_ptr_nonnull(compile("input x: f32[8, 1, 32, 32] = mnist(pad=2)\nlabel y: class[8] of 10\n"
                                "logits = linear(flatten(x), 10)\n" TAIL));
}
END_TEST

START_TEST(dump_is_deterministic) {
  const char *src = HEADER "h = relu(conv2d(x, 4, kernel=3))\nlogits = linear(flatten(h), 10)\n" TAIL;
  Buf a = {0}, b = {0}, d = {0};
  ir_dump(compile(src), &a, "shape");
  ir_dump(compile(src), &b, "shape");
  ck_assert_str_eq(a.data, b.data);
  ck_assert_ptr_nonnull(strstr(a.data, "; parameters: 27,090"));
  ir_dump_dot(compile(src), &d);
  ck_assert_ptr_nonnull(strstr(d.data, "n2 -> n3;"));
  buf_free(&a);
  buf_free(&b);
  buf_free(&d);
}
END_TEST


/* ---- hostile input: nesting, budgets, arithmetic, sizes ----------------- */

/* HEADER, `_ = <open * n> 1 <close * n>`, then a model. */
static char *nested(const char *open, const char *close, int n) {
  return format(HEADER "_ = %s1%s\nlogits = linear(flatten(x), 10)\n" TAIL, repeat(open, n),
                repeat(close, n));
}

START_TEST(parse_nesting_limit) {
  /* 11,000 parentheses (22 kB) once overflowed the stack */
  ck_assert_ptr_null(compile(nested("(", ")", 11000)));
  ck_assert_str_eq(first_error(), "t.nn:4:261: error: expression nested more than 256 deep (the limit)");
  ck_assert_ptr_null(compile(nested("[", "]", 11000)));
  ck_assert_str_eq(first_error(), "t.nn:4:261: error: expression nested more than 256 deep (the limit)");
  ck_assert_ptr_null(compile(nested("-", "", 11000)));
  ck_assert_str_eq(first_error(), "t.nn:4:260: error: expression nested more than 256 deep (the limit)");
  ck_assert_ptr_null(compile(nested("not ", "", 11000)));
  ck_assert_str_eq(first_error(), "t.nn:4:1025: error: expression nested more than 256 deep (the limit)");
  /* chains nest without recursion in the parser, but elab evaluates them by recursion */
  ck_assert_ptr_null(compile(nested("1 + ", "", 100000)));
  ck_assert_str_eq(first_error(), "t.nn:4:1027: error: expression nested more than 256 deep (the limit)");
  ck_assert_ptr_null(compile(format(HEADER "a = [0]\n_ = a%s\n", repeat("[0]", 5000))));
  ck_assert_str_eq(first_error(), "t.nn:5:771: error: expression nested more than 256 deep (the limit)");
  ck_assert_ptr_null(compile(format(HEADER "%s_ = 1\n%s", repeat("if true {\n", 5000), repeat("}\n", 5000))));
  ck_assert_str_eq(first_error(), "t.nn:260:9: error: statement nested more than 256 deep (the limit)");
  ck_assert_ptr_null(compile(format(HEADER "if false {\n}%s\n", repeat(" else if false {\n}", 5000))));
  ck_assert_str_eq(first_error(), "t.nn:260:17: error: statement nested more than 256 deep (the limit)");
  /* up to the limit is fine */
  Graph *g = compile(nested("(", ")", 250));
  ck_assert_msg(g != NULL, "%s", diag_text);
  g = compile(format(HEADER "_ = 1%s\nlogits = linear(flatten(x), 10)\n" TAIL, repeat(" + 1", 250)));
  ck_assert_msg(g != NULL, "%s", diag_text);
}
END_TEST

START_TEST(parse_size_limits) {
  ck_assert_ptr_null(compile(format(HEADER "_ = f(%s1)\n", repeat("1, ", 300))));
  ck_assert_str_eq(first_error(), "t.nn:4:775: error: a call has at most 256 arguments (the limit)");
  char *params = xalloc(300 * 8);
  for (int i = 0; i < 300; i++)
    strcat(params, format("p%d, ", i));
  ck_assert_ptr_null(compile(format(HEADER "block b(%sz) { return z }\n", params)));
  ck_assert_str_eq(first_error(), "t.nn:4:1435: error: a block has at most 256 parameters (the limit)");
  /* a 3 MB list: 1.5 million expressions are the most a program may have */
  ck_assert_ptr_null(compile(format(HEADER "_ = [%s1]\n", repeat("1,", 1500000))));
  ck_assert_str_eq(first_error(), "t.nn:4:2999982: error: the program has more than 1,500,000 expressions and statements (the limit)");
  /* the error shows the part of a long line around the caret */
  ck_assert_ptr_nonnull(strstr(diag_text, "\n    4 | ...1,1,1"));
  ck_assert_ptr_nonnull(strstr(diag_text, "1]\n      |    "));
  ck_assert_int_lt(strlen(diag_text), 500);
}
END_TEST

START_TEST(lex_encoding) {
  static const struct {
    const char *text;
    size_t len;
    const char *want;
  } cases[] = {
      {"a = 1\n_ = a\0\n", 13, "t.nn:2:6: error: NUL byte in the source (a .nn file is UTF-8 text)"},
      {"# caf\xe9\n", 7, "t.nn:1:6: error: invalid UTF-8 byte 0xe9 (a .nn file is UTF-8 text)"},
      {"# \xc0\x80 overlong\n", 14, "t.nn:1:3: error: invalid UTF-8 byte 0xc0 (a .nn file is UTF-8 text)"},
      {"# \xed\xa0\x80 surrogate\n", 16, "t.nn:1:3: error: invalid UTF-8 byte 0xed (a .nn file is UTF-8 text)"},
      {"# \xf5\x80\x80\x80\n", 7, "t.nn:1:3: error: invalid UTF-8 byte 0xf5 (a .nn file is UTF-8 text)"},
      {"x = 'ab\xe2\x82", 10, "t.nn:1:8: error: invalid UTF-8 byte 0xe2 (a .nn file is UTF-8 text)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ck_assert_ptr_null(compile_bytes(cases[i].text, cases[i].len));
    ck_assert_msg(strcmp(first_error(), cases[i].want) == 0, "case %zu: %s", i, first_error());
  }
  /* UTF-8 is fine in comments and strings */
  Graph *g = compile(HEADER "# café, 𝑥 → y\n_ = 'ü'\nlogits = linear(flatten(x), 10)\n" TAIL);
  ck_assert_msg(g != NULL, "%s", diag_text);
  ck_assert_ptr_null(compile("a = 1e999\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:5: error: number '1e999' is out of range");
}
END_TEST

START_TEST(elab_arithmetic) {
  ErrorCase cases[] = {
      {"_ = (-9223372036854775807 - 1) * -1\n",
       "t.nn:4:5: error: integer overflow: -9223372036854775808 * -1 does not fit in 64 bits"},
      {"_ = -(-9223372036854775807 - 1)\n",
       "t.nn:4:5: error: integer overflow: -(-9223372036854775808) does not fit in 64 bits"},
      {"_ = 9223372036854775807 + 1\n",
       "t.nn:4:5: error: integer overflow: 9223372036854775807 + 1 does not fit in 64 bits"},
      {"_ = -9223372036854775807 - 2\n",
       "t.nn:4:5: error: integer overflow: -9223372036854775807 - 2 does not fit in 64 bits"},
      {"_ = 4294967296 * 4294967296\n",
       "t.nn:4:5: error: integer overflow: 4294967296 * 4294967296 does not fit in 64 bits"},
      {"_ = 7 % 0\n", "t.nn:4:5: error: modulo by zero"},
      {"_ = 7.5 % 0\n", "t.nn:4:5: error: modulo by zero"},
      {"_ = 1 / 0.0\n", "t.nn:4:5: error: division by zero"},
      {"_ = 1e308 * 10\n", "t.nn:4:5: error: floating-point overflow: 1e+308 * 10 is too large"},
      {"_ = 1e308 + 1e308\n", "t.nn:4:5: error: floating-point overflow: 1e+308 + 1e+308 is too large"},
      {"_ = 1e300 / 1e-300\n", "t.nn:4:5: error: floating-point overflow: 1e+300 / 1e-300 is too large"},
  };
  expect_errors(cases, sizeof cases / sizeof *cases);
  /* INT64_MIN % -1 once killed nncc with SIGFPE; % follows Python: the
   * result takes the divisor's sign.  n is 10 exactly when all of it holds. */
  Graph *g = compile(HEADER "a = (-9223372036854775807 - 1) % -1\n"
                     "b = [-7 % 2, 7 % -2, -7 % -2, 7 % 2, 9223372036854775807 % -9223372036854775807]\n"
                     "c = [-1.5 % 1, 1.5 % -1]\n"
                     "n = 10 + a + (b[0] - 1) + (b[1] + 1) + (b[2] + 1) + (b[3] - 1) + b[4]\n"
                     "if c[0] != 0.5 or c[1] != -0.5 { n = 0 }\n"
                     "logits = linear(flatten(x), n)\n" TAIL);
  ck_assert_msg(g != NULL, "%s", diag_text);
}
END_TEST

START_TEST(elab_budgets) {
  ErrorCase cases[] = {
      /* 10^10 steps in 250 bytes */
      {"r = range(100000)\nfor _i in r {\n  for _j in r {\n    _ = 1\n  }\n}\n",
       "t.nn:7:5: error: the program runs more than 20,000,000 steps (the limit): a loop or a recursion too large?"},
      /* 400 GB of lists */
      {"for _i in range(100000) {\n  for _j in range(100000) {\n  }\n}\n",
       "t.nn:5:13: error: the program makes more than 4,000,000 list elements (the limit)"},
      /* 2^40 block calls */
      {"block b(n) {\n  if n == 0 { return 0 }\n  return b(n - 1) + b(n - 1)\n}\n_ = b(40)\n",
       "t.nn:6:10: error: the program calls blocks more than 500,000 times (the limit)"},
      {"h = x\nfor _i in range(100000) {\n  h = relu(h)\n}\nlogits = linear(flatten(h), 10)\n",
       "t.nn:6:7: error: the model has more than 50,000 nodes (the limit)"},
      /* 64 calls deep, 20 ifs each: too deep for nncc's own stack */
      {format("block b(n) {\n%s    if n == 0 { return 0 }\n    return b(n - 1)\n%s}\n_ = b(63)\n",
              repeat("if true {\n", 20), repeat("}\n", 20)),
       "t.nn:14:4: error: the program nests blocks, statements and expressions more than 1024 deep (the limit)"},
  };
  expect_errors(cases, sizeof cases / sizeof *cases);
}
END_TEST

START_TEST(elab_unused_paths) {
  /* ResNet's shortcut: s = h is read by the return whenever project is false */
  Graph *g = compile(HEADER "block res(h, project) {\n"
                            "  r = conv2d(h, 4, kernel=3, padding=1)\n"
                            "  s = h\n"
                            "  if project {\n"
                            "    s = conv2d(h, 4, kernel=1)\n"
                            "  }\n"
                            "  return relu(s + r)\n"
                            "}\n"
                            "h = conv2d(x, 4, kernel=3, padding=1)\n"
                            "h = res(h, true)\n"
                            "h = res(h, true)\n"
                            "logits = linear(flatten(h), 10)\n" TAIL);
  ck_assert_msg(g != NULL, "%s", diag_text);
  /* the same for a loop that may run no time, and a parameter read only in a branch */
  g = compile(HEADER "block b(h, n, extra) {\n"
                     "  s = h\n"
                     "  for _i in range(n) { s = relu(h) }\n"
                     "  if n > 5 { s = s + extra }\n"
                     "  return s\n"
                     "}\n"
                     "logits = linear(flatten(b(x, 1, x)), 10)\n" TAIL);
  ck_assert_msg(g != NULL, "%s", diag_text);
  ErrorCase cases[] = {
      /* rebound on every path before any read: still an error */
      {"s = x\nif true { s = relu(x) } else { s = relu(x) }\nlogits = linear(flatten(s), 10)\n",
       "t.nn:4:1: error: 's' is assigned but never used"},
      {"s = x\ns = relu(x)\nlogits = linear(flatten(s), 10)\n",
       "t.nn:4:1: error: 's' is assigned but never used"},
      {"block b(h) {\n  s = h\n  for i in [1] { s = relu(s) }\n  return s\n}\nlogits = linear(flatten(b(x)), 10)\n",
       "t.nn:6:7: error: 'i' is assigned but never used"},
      {"block b(h, unused) { return h }\nlogits = linear(flatten(b(x, 1)), 10)\n",
       "t.nn:4:7: error: 'unused' is assigned but never used"},
  };
  expect_errors(cases, sizeof cases / sizeof *cases);
}
END_TEST

START_TEST(elab_declarations_checked) {
  ErrorCase cases[] = {
      {"logits = linear(flatten(x), 10)\ntrain adam() epochs=9223372036854775807\n",
       "t.nn:5:21: error: 'epochs' must be at most 1,000,000, got 9223372036854775807"},
      {"logits = linear(flatten(x), 10)\ntrain adam(lr=1e308 * 10)\n",
       "t.nn:5:15: error: floating-point overflow: 1e+308 * 10 is too large"},
      {"logits = linear(flatten(x), 10)\ntrain adam(eps=-1e-8)\n",
       "t.nn:5:16: error: adam(): 'eps' must be non-negative"},
      {"logits = linear(flatten(x), 10)\ntrain adam(eps=0)\n",
       "t.nn:5:16: error: adam(): 'eps' must be positive"},
      {"logits = linear(flatten(x), 10)\ntrain sgd(momentum=-0.5)\n",
       "t.nn:5:20: error: sgd(): 'momentum' must be non-negative"},
      {"logits = linear(flatten(x), 10)\ntrain sgd(weight_decay=-1)\n",
       "t.nn:5:24: error: 'weight_decay' must be non-negative"},
      {"logits = linear(flatten(x), 10)\ntrain adam(betas=[0.9, 1])\n",
       "t.nn:5:18: error: adam(): betas must be in [0, 1)"},
      {"logits = linear(flatten(x), 10)\ntrain adam() seed=-1\n", "t.nn:5:19: error: 'seed' must be non-negative"},
      {"logits = linear(flatten(x), 10)\ntrain sgd(nesterov=true)\n",
       "t.nn:5:20: error: sgd(): nesterov=true needs a positive 'momentum'"},
      {"logits = linear(flatten(x), 10)\ntrain sgd(momentum=0.9, nesterov=1)\n",
       "t.nn:5:34: error: nesterov must be true or false, got int 1"},
      {"logits = linear(flatten(x), 10)\ntrain adam(nesterov=true)\n",
       "t.nn:5:12: error: adam() has no argument 'nesterov'"},
      {"logits = linear(flatten(x), 10)\ntrain adamw(betas=[1, 0])\n",
       "t.nn:5:19: error: adamw(): betas must be in [0, 1)"},
      {"logits = linear(flatten(x), 10)\ntrain adam() clip_grad_norm=0\n",
       "t.nn:5:29: error: 'clip_grad_norm' must be positive (leave it out to not clip)"},
      {"logits = linear(flatten(x), 10)\ntrain adam() clip_grad_value=-1\n",
       "t.nn:5:30: error: 'clip_grad_value' must be non-negative"},
      {"logits = linear(flatten(x), 10)\ntrain adam() clip_grad_nrom=1\n",
       "t.nn:5:29: error: unknown training setting 'clip_grad_nrom' (did you mean 'clip_grad_norm'?)"},
  };
  expect_errors(cases, sizeof cases / sizeof *cases);
  /* augmentation on the input: crop_padding, hflip */
  static const char *const aug_bad[][2] = {
      {"mnist(crop_padding=28)", "t.nn:1:49: error: mnist(): 'crop_padding' must be between 0 and 27, got 28"},
      {"mnist(crop_padding=1.5)", "t.nn:1:49: error: crop_padding must be an int, got float 1.5"},
      {"mnist(hflip=1)", "t.nn:1:42: error: hflip must be true or false, got int 1"},
      {"mnist(flip=true)", "t.nn:1:36: error: mnist() has no argument 'flip' (did you mean 'hflip'?)"},
  };
  for (size_t i = 0; i < sizeof aug_bad / sizeof *aug_bad; i++) {
    char *src = format("input x: f32[8, 1, 28, 28] = %s\nlabel y: class[8] of 10\n"
                       "logits = linear(flatten(x), 10)\n" TAIL, aug_bad[i][0]);
    ck_assert_msg(compile(src) == NULL, "%s compiled", aug_bad[i][0]);
    ck_assert_msg(strcmp(first_error(), aug_bad[i][1]) == 0, "%s:\n got: %s\nwant: %s", aug_bad[i][0],
                  first_error(), aug_bad[i][1]);
  }
  Graph *a = compile("input x: f32[8, 1, 32, 32] = mnist(pad=2, crop_padding=3, hflip=true)\n"
                     "label y: class[8] of 10\nlogits = linear(flatten(x), 10)\n" TAIL);
  ck_assert_msg(a != NULL, "%s", diag_text);
  ck_assert(a->aug_crop == 3 && a->aug_hflip && a->pad_top == 2);
  ErrorCase sched_cases[] = {
      {"logits = linear(flatten(x), 10)\ntrain adam() schedule=cosine()\n",
       "t.nn:5:23: error: cosine() needs 'T_max'"},
      {"logits = linear(flatten(x), 10)\ntrain adam() schedule=cosine(10)\n",
       "t.nn:5:30: error: cosine(): arguments are named, as in cosine(T_max=10)"},
      {"logits = linear(flatten(x), 10)\ntrain adam() schedule=cosine(T_max=0)\n",
       "t.nn:5:23: error: cosine(): 'T_max' must be an integer from 1 to 1000000000"},
      {"logits = linear(flatten(x), 10)\ntrain adam() schedule=cosin(T_max=3)\n",
       "t.nn:5:23: error: unknown schedule 'cosin'; nncc has step(...), multistep(...), "
       "exponential(...), cosine(...) and onecycle(...)"},
      {"logits = linear(flatten(x), 10)\ntrain adam() schedule=3\n",
       "t.nn:5:23: error: schedule must be a call like cosine(T_max=10)"},
      {"logits = linear(flatten(x), 10)\ntrain adam() warmup=cosine(T_max=3)\n",
       "t.nn:5:21: error: unknown warm-up 'cosine'; nncc has linear(...)"},
      {"logits = linear(flatten(x), 10)\ntrain adam() schedule=multistep(milestones=[3, nope])\n",
       "t.nn:5:48: error: undefined name 'nope'"},
      {"logits = linear(flatten(x), 10)\ntrain adam() schedule=onecycle(max_lr=1, anneal_strategy=\"Cos\")\n",
       "t.nn:5:58: error: onecycle(): 'anneal_strategy' must be a word, got \"Cos\""},
      {"logits = linear(flatten(x), 10)\ntrain adam() schedule=onecycle(max_lr=1) warmup=linear()\n",
       "t.nn:5:49: error: a warm-up does not go before onecycle(...), which warms up itself (pct_start)"},
      {"logits = linear(flatten(x), 10)\ntrain sgd() schedule=onecycle(max_lr=1)\n",
       "t.nn:5:1: error: onecycle(cycle_momentum=true) cycles SGD's momentum: give sgd a momentum > 0, "
       "or cycle_momentum=false"},
  };
  expect_errors(sched_cases, sizeof sched_cases / sizeof *sched_cases);
  Graph *t = compile(HEADER "logits = linear(flatten(x), 10)\n" TAIL
                     "train sgd(momentum=0.9) epochs=4 schedule=onecycle(max_lr=0.5, anneal_strategy=\"linear\") "
                     "warmup=none\n");
  ck_assert_msg(t != NULL, "%s", diag_text);
  ck_assert_str_eq(t->train.schedule,
                   "onecycle(max_lr=0.5, total_steps=0, pct_start=0.3, anneal_strategy=linear, "
                   "cycle_momentum=true, base_momentum=0.85, max_momentum=0.95, div_factor=25, "
                   "final_div_factor=10000, three_phase=false)");
  ck_assert_ptr_null(t->train.warmup);
  t = compile(HEADER "logits = linear(flatten(x), 10)\n" TAIL
              "e = 8\ntrain adam() schedule=multistep(milestones=[e / 2, e - 1], gamma=0.5) "
              "warmup=linear(total_iters=2)\n");
  ck_assert_msg(t != NULL, "%s", diag_text);
  ck_assert_str_eq(t->train.schedule, "multistep(milestones=[4, 7], gamma=0.5)");
  ck_assert_str_eq(t->train.warmup, "linear(start_factor=0.3333333333333333, end_factor=1, total_iters=2)");
  t = compile(HEADER "logits = linear(flatten(x), 10)\n" TAIL
                     "train adamw() clip_grad_norm=2.5 clip_grad_value=0.5\n");
  ck_assert_msg(t != NULL, "%s", diag_text);
  ck_assert(t->train.optim == OPT_ADAMW && t->train.weight_decay == 1e-2 && t->train.lr == 1e-3);
  ck_assert(t->train.clip_grad_norm == 2.5 && t->train.clip_grad_value == 0.5);
  t = compile(HEADER "logits = linear(flatten(x), 10)\n" TAIL
              "train sgd(lr=0.1, momentum=0.9, nesterov=true)\n");
  ck_assert_msg(t != NULL, "%s", diag_text);
  ck_assert(t->train.optim == OPT_SGD && t->train.nesterov && t->train.momentum == 0.9);
  Graph *g = compile(HEADER "logits = linear(flatten(x), 10)\n" TAIL
                     "train adam(eps=1e-300, weight_decay=0) epochs=1000000 seed=9223372036854775807\n");
  ck_assert_msg(g != NULL, "%s", diag_text);
  ck_assert_int_eq(g->train.epochs, 1000000);
  /* labels are bytes: at most NNCC_MAX_CLASSES */
  ck_assert_ptr_null(compile("input x: f32[16, 1, 28, 28] = mnist\nlabel y: class[16] of 1000\n"));
  ck_assert_str_eq(first_error(), "t.nn:2:23: error: label 'y': 1000 classes, more than the limit of 256 (labels are bytes)");
  g = compile("input x: f32[16, 1, 28, 28] = mnist\nlabel y: class[16] of 256\n"
              "logits = linear(flatten(x), 256)\n" TAIL);
  ck_assert_msg(g != NULL, "%s", diag_text);
  /* a node took the name first */
  ck_assert_ptr_null(compile("label y: class[8] of 10\n_ = relu(y)\ninput relu1: f32[8, 1, 28, 28] = mnist\n"));
  ck_assert_str_eq(first_error(), "t.nn:3:7: error: 'relu1' is already the name of node %relu1; declare inputs and labels before the ops");
}
END_TEST

START_TEST(shape_size_limits) {
  ErrorCase cases[] = {
      {"logits = linear(flatten(linear(flatten(x), 4611686018427387904)), 10)\n",
       "t.nn:4:25: error: linear: 'out' is 4611686018427387904, more than the limit of 2^30 (1,073,741,824)"},
      {"logits = linear(flatten(adaptive_avgpool2d(x, 3037000500)), 10)\n",
       "t.nn:4:25: error: adaptive_avgpool2d: 'output' is 3037000500, more than the limit of 2^30 (1,073,741,824)"},
      {"logits = linear(flatten(adaptive_avgpool2d(x, 20000)), 10)\n",
       "t.nn:4:25: error: adaptive_avgpool2d: the output f32[8,1,20000,20000] has 3,200,000,000 elements, more than the limit of 2^30 (1,073,741,824)"},
      {"logits = linear(flatten(x), 2097152)\n",
       "t.nn:4:10: error: linear: parameter fc1.weight [2097152,784] has 1,644,167,168 elements, more than the limit of 2^30 (1,073,741,824)"},
      {"logits = linear(flatten(conv2d(x, 1, kernel=3, padding=20000)), 10)\n",
       "t.nn:4:25: error: conv2d: the padded input [8,1,40028,40028] has 12,817,926,272 elements, more than the limit of 2^30 (1,073,741,824)"},
      {"logits = linear(flatten(maxpool2d(x, 28, stride=2000000000)), 10)\n",
       "t.nn:4:25: error: maxpool2d: 'stride' is 2000000000, more than the limit of 2^30 (1,073,741,824)"},
      {"h = conv2d(x, 1, kernel=1, padding=4000)\nlogits = linear(flatten(conv2d(h, 64, kernel=2000)), 10)\n",
       "t.nn:5:25: error: conv2d: the input gradient's work [8,64,10027,10027] has 51,476,853,248 elements, more than the limit of 2^30 (1,073,741,824)"},
  };
  expect_errors(cases, sizeof cases / sizeof *cases);
  /* a batch of 2^62 */
  ck_assert_ptr_null(compile("input x: f32[4611686018427387904, 1, 28, 28] = mnist\n"));
  ck_assert_str_eq(first_error(), "t.nn:1:14: error: input 'x': dimension 0 is 4611686018427387904, more than the limit of 2^30 (1,073,741,824)");
  ck_assert_ptr_null(compile("input x: f32[2000000, 1, 28, 28] = mnist\nlabel y: class[2000000] of 10\n"
                             "logits = linear(flatten(x), 10)\n" TAIL));
  ck_assert_str_eq(first_error(), "t.nn:1:7: error: input 'x' f32[2000000,1,28,28] has 1,568,000,000 elements, more than the limit of 2^30 (1,073,741,824)");
  /* FLOPs of a training step: 50 convolutions with 2^26-element kernels */
  ck_assert_ptr_null(compile("input x: f32[1, 1, 28, 28] = mnist\nlabel y: class[1] of 10\n"
                             "big = conv2d(x, 1, kernel=1, padding=12274)\n"
                             "for _i in range(50) {\n  _c = conv2d(big, 1, kernel=8192)\n}\n"
                             "logits = linear(flatten(adaptive_avgpool2d(big, 1)), 10)\n" TAIL));
  ck_assert_str_eq(first_error(), "t.nn:5:8: error: conv2d: a training step reaches 4,648,282,207,472,517,206 FLOPs here, more than the limit of 2^62 (4,611,686,018,427,387,904)");
  /* parameters: 2^40 bytes */
  ck_assert_ptr_null(compile("input x: f32[1, 1, 28, 28] = mnist\nlabel y: class[1] of 10\n"
                             "for _i in range(300) {\n  _f = linear(flatten(x), 1369000)\n}\n"
                             "logits = linear(flatten(x), 10)\n" TAIL));
  ck_assert_str_eq(first_error(), "t.nn:4:8: error: linear: the model's parameters reach 1,100,456,960,000 bytes here, more than the limit of 2^40 (1,099,511,627,776)");
}
END_TEST

START_TEST(plan_arena_limit) {
  /* 300 saved activations of 4 GB each: more than a 1 TiB arena */
  const char *src = "input x: f32[1, 1, 28, 28] = mnist\nlabel y: class[1] of 10\n"
                    "h = conv2d(x, 1, kernel=1, padding=16000)\n"
                    "for _i in range(300) {\n  h = relu(h)\n}\n"
                    "logits = linear(flatten(adaptive_avgpool2d(h, 1)), 10)\n" TAIL;
  ck_assert_ptr_null(compile_plan(src, 1));
  ck_assert_msg(strstr(first_error(), "error: the training step needs an activation arena of ") &&
                    strstr(first_error(), "more than the limit of 2^40 (1,099,511,627,776)"),
                "%s", first_error());
  ck_assert_ptr_null(compile_plan(src, 0));
  ck_assert_msg(strstr(first_error(), "more than the limit of 2^40"), "%s", first_error());
}
END_TEST


/* ---- the planner against the simple packer it replaced ------------------ */

/*
 * The packer before it was made fast, kept as the reference: every buffer,
 * largest first, goes to the lowest offset that fits among an in-place
 * partner's offset (the first in pair order), 0 and the ends of the placed
 * buffers, trying each candidate against every placed buffer.  O(n^3).
 */
typedef struct RefPair {
  int src, dst, step;
} RefPair;

static const Graph *ref_graph;

static int64_t ref_align(int64_t n) { return (n + 63) & ~(int64_t)63; }

static int ref_by_size(const void *pa, const void *pb) {
  const Buffer *a = &ref_graph->bufs[*(const int *)pa], *b = &ref_graph->bufs[*(const int *)pb];
  int64_t sa = ref_align(a->bytes), sb = ref_align(b->bytes);
  if (sa != sb)
    return sa > sb ? -1 : 1;
  if (a->first != b->first)
    return a->first < b->first ? -1 : 1;
  return *(const int *)pa - *(const int *)pb;
}

static bool ref_fits(const Graph *g, const RefPair *pairs, int npairs, int b, int64_t off,
                     const bool *placed, const int64_t *offset) {
  const Buffer *buf = &g->bufs[b];
  int64_t end = off + ref_align(buf->bytes);
  for (int o = 0; o < g->nbufs; o++) {
    const Buffer *other = &g->bufs[o];
    if (!placed[o] || !(buf->first <= other->last && other->first <= buf->last))
      continue;
    bool in_place = false;
    for (int i = 0; i < npairs; i++) {
      const RefPair *ip = &pairs[i];
      if (((ip->src == o && ip->dst == b) || (ip->src == b && ip->dst == o)) &&
          g->bufs[ip->src].last == ip->step && g->bufs[ip->dst].first == ip->step)
        in_place = true;
    }
    if (offset[o] == off && other->bytes == buf->bytes && in_place)
      continue;
    if (off < offset[o] + ref_align(other->bytes) && offset[o] < end)
      return false;
  }
  return true;
}

/* The reference offsets of g's buffers (live ranges from plan_pass). */
static int64_t *ref_plan(const Graph *g) {
  RefPair *pairs = xalloc(sizeof(RefPair) * (size_t)(4 * g->nnodes + 1));
  int npairs = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    if (!(node_desc(n)->flags & OPF_INPLACE))
      continue;
    for (int j = 0; j < n->nin; j++) {
      const Node *x = g->nodes[n->in[j]];
      int cand[2][3] = {{x->act, n->act, step_forward(g, n)}, {n->grad, x->grad, step_backward(g, n)}};
      for (int k = 0; k < (n->needs_grad && x->needs_grad ? 2 : 1); k++) {
        int src = buf_root(g, cand[k][0]), dst = buf_root(g, cand[k][1]);
        if (src >= 0 && dst >= 0 && !g->bufs[src].external && !g->bufs[dst].external)
          pairs[npairs++] = (RefPair){src, dst, cand[k][2]};
      }
    }
  }
  int *order = xalloc(sizeof(int) * (size_t)(g->nbufs + 1)), n = 0;
  for (int b = 0; b < g->nbufs; b++)
    if (!g->bufs[b].external && g->bufs[b].alias < 0 && g->bufs[b].first >= 0)
      order[n++] = b;
  ref_graph = g;
  qsort(order, (size_t)n, sizeof *order, ref_by_size);
  bool *placed = xalloc((size_t)g->nbufs + 1);
  int64_t *offset = xalloc(sizeof(int64_t) * (size_t)(g->nbufs + 1));
  for (int k = 0; k < n; k++) {
    int b = order[k];
    int64_t best = -1;
    for (int i = 0; i < npairs && best < 0; i++) {
      int other = pairs[i].src == b ? pairs[i].dst : pairs[i].dst == b ? pairs[i].src : -1;
      if (other >= 0 && placed[other] && ref_fits(g, pairs, npairs, b, offset[other], placed, offset))
        best = offset[other];
    }
    if (best < 0 && ref_fits(g, pairs, npairs, b, 0, placed, offset))
      best = 0;
    for (int o = 0; o < g->nbufs; o++) {
      int64_t off = offset[o] + ref_align(g->bufs[o].bytes);
      if (placed[o] && (best < 0 || off < best) && ref_fits(g, pairs, npairs, b, off, placed, offset))
        best = off;
    }
    offset[b] = best;
    placed[b] = true;
  }
  return offset;
}

/* A random model: a stem, then n random layers on 8x8 planes of 1-3
 * channels -- convs, relus, dropouts, batchnorms, residual adds of any
 * earlier tensor of the same shape, pools -- then a classifier. */
static char *random_model(unsigned *seed, int n) {
  Buf b = {0};
  buf_puts(&b, "input x: f32[2, 1, 28, 28] = mnist\nlabel y: class[2] of 10\n"
               "t0 = maxpool2d(conv2d(x, 2, kernel=5, padding=2), 4, stride=3)\n");
  int chans[256] = {2}, nt = 1;
  bool used[256] = {0};
  for (int i = 1; i <= n; i++) {
    *seed = *seed * 1103515245u + 12345u;
    unsigned r = *seed >> 8;
    int src = (int)(r % (unsigned)nt), c = chans[src];
    used[src] = true;
    r /= (unsigned)nt;
    switch (r % 7) {
    case 0: c = 1 + (int)(r / 7 % 3);
            buf_printf(&b, "t%d = conv2d(t%d, %d, kernel=3, padding=1)\n", i, src, c); break;
    case 1: buf_printf(&b, "t%d = relu(t%d)\n", i, src); break;
    case 2: buf_printf(&b, "t%d = dropout(t%d, 0.25)\n", i, src); break;
    case 3: buf_printf(&b, "t%d = batchnorm2d(t%d)\n", i, src); break;
    case 4: buf_printf(&b, "t%d = avgpool2d(t%d, 3, stride=1, padding=1)\n", i, src); break;
    default: {
      int other = -1;
      for (int j = nt - 1; j >= 0 && other < 0; j--)
        if (j != src && chans[j] == c && (r / 7 + (unsigned)j) % 3 == 0)
          other = j;
      if (other < 0) {
        buf_printf(&b, "t%d = relu(conv2d(t%d, %d, kernel=1))\n", i, src, c);
      } else {
        buf_printf(&b, "t%d = t%d + t%d\n", i, src, other);
        used[other] = true;
      }
    }
    }
    chans[nt++] = c;
  }
  /* the last tensor and every other one no layer read feed the classifier */
  buf_printf(&b, "logits = linear(flatten(t%d), 10)\n", nt - 1);
  for (int i = 0; i < nt - 1; i++)
    if (!used[i])
      buf_printf(&b, "logits = logits + linear(flatten(adaptive_avgpool2d(t%d, 1)), 10)\n", i);
  buf_puts(&b, TAIL);
  char *s = xstrdup(b.data);
  buf_free(&b);
  return s;
}

START_TEST(plan_matches_reference) {
  unsigned seed = 12345;
  int compared = 0;
  for (int m = 0; m < 60; m++) {
    char *src = random_model(&seed, 10 + m % 50);
    for (int opt = 0; opt < 2; opt++) {
      Graph *g = compile_plan(src, 1);
      ck_assert_msg(g != NULL, "%s\n%s", diag_text, src);
      if (opt) { /* the same graph, unfused: other in-place pairs */
        g = compile(src);
        measure_naive(g);
        buffers_build(g);
        plan_pass(g);
        ir_verify(g, "plan");
      }
      int64_t *want = ref_plan(g);
      for (int b = 0; b < g->nbufs; b++) {
        const Buffer *buf = &g->bufs[b];
        if (buf->external || buf->alias >= 0 || buf->first < 0)
          continue;
        ck_assert_msg(buf->offset == want[b], "model %d: %s at %lld, the reference says %lld\n%s", m,
                      buf->name, (long long)buf->offset, (long long)want[b], src);
      }
      compared++;
    }
  }
  ck_assert_int_ge(compared, 60);
}
END_TEST

START_TEST(plan_verifier_finds_overlaps) {
  Graph *g = compile_plan(HEADER "h = relu(conv2d(x, 4, kernel=3, padding=1))\n"
                                 "h = batchnorm2d(conv2d(h, 4, kernel=3, padding=1))\n"
                                 "logits = linear(flatten(h), 10)\n" TAIL, 1);
  ck_assert_msg(g != NULL, "%s", diag_text);
  int a, b;
  ck_assert(!plan_find_overlap(g, &a, &b));
  /* move a buffer onto one that lives at the same time */
  Node *c1 = node_named(g, "conv1"), *c2 = node_named(g, "conv2");
  Buffer *x = &g->bufs[c1->act], *y = &g->bufs[c2->act];
  ck_assert(x->first <= y->last && y->first <= x->last);
  y->offset = x->offset + 64;
  ck_assert(plan_find_overlap(g, &a, &b));
  ck_assert((a == c1->act && b == c2->act) || (a == c2->act && b == c1->act));
}
END_TEST

START_TEST(diag_lines_and_columns) {
  SrcFile *f = source_from_string("t.nn", "ab\n\ncd\tef\nlast");
  static const struct {
    int off, line, col;
  } cases[] = {{0, 1, 1}, {2, 1, 3}, {3, 2, 1}, {4, 3, 1}, {7, 3, 4}, {10, 4, 1}, {14, 4, 5}, {99, 4, 5}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int line, col;
    loc_line_col((Loc){f, cases[i].off, 1}, &line, &col);
    ck_assert_msg(line == cases[i].line && col == cases[i].col, "offset %d: %d:%d", cases[i].off,
                  line, col);
  }
}
END_TEST

static Suite *front_suite(void) {
  Suite *s = suite_create("front");
  struct {
    const char *name;
    const TTest *tests[12];
  } cases[] = {
      {"lex", {lex_kinds, lex_newlines_inside_brackets, lex_locations, lex_errors, lex_encoding,
               diag_lines_and_columns}},
      {"parse", {parse_statements, parse_call_args, parse_errors, parse_nesting_limit,
                 parse_size_limits}},
      {"elab", {elab_chain_names, elab_blocks_and_loops, elab_residual_add, elab_constants,
                elab_errors, elab_block_error_notes, elab_arithmetic, elab_budgets,
                elab_unused_paths, elab_declarations_checked}},
      {"shape", {shape_ops, shape_mnist_cnn_counts, shape_errors, shape_declarations,
                 dump_is_deterministic, shape_size_limits}},
      {"plan", {plan_arena_limit, plan_matches_reference, plan_verifier_finds_overlaps}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    TCase *tc = tcase_create(cases[i].name);
    tcase_add_checked_fixture(tc, NULL, teardown);
    for (int j = 0; j < 12 && cases[i].tests[j]; j++)
      tcase_add_test(tc, cases[i].tests[j]);
    suite_add_tcase(s, tc);
  }
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(front_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  free(diag_text);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
