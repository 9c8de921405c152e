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

/* Compile src through the shape pass.  NULL on a user error; the
 * diagnostics are in diag_text either way. */
static Graph *compile(const char *src) {
  free(diag_text);
  diag_text = NULL;
  FILE *f = open_memstream(&diag_text, &diag_len);
  diag_out = f;
  jmp_buf jb;
  diag_trap = &jb;
  Graph *volatile g = NULL;
  if (setjmp(jb) == 0) {
    SrcFile *file = source_from_string("t.nn", src);
    Graph *r = elaborate(file, parse(file));
    ir_verify(r, "parse");
    shape_pass(r);
    ir_verify(r, "shape");
    g = r;
  }
  fclose(f);
  diag_out = NULL;
  diag_trap = NULL;
  return g;
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
  for (int i = 0; i < n; i++)
    ck_assert_str_eq(t[i].str, want[i]);
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

START_TEST(elab_chain_names) {
  Graph *g = compile(HEADER "h = relu(conv2d(x, 4, kernel=3))\nh = flatten(h)\n"
                            "logits = linear(h, 10)\n" TAIL "train adam(lr=0.01)\n");
  ck_assert_msg(g != NULL, "%s", diag_text);
  ck_assert_int_eq(g->nnodes, 7);
  Node *c = node_named(g, "conv1");
  ck_assert_int_eq(c->out, 4);
  ck_assert_int_eq(c->kh, 3);
  ck_assert_int_eq(c->sh, 1);
  ck_assert_int_eq(c->bias, 1);
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
  ck_assert_int_eq(c->out, 3);
  ck_assert_str_eq(c->params[0].name, "feat1.conv2.weight");
  node_named(g, "feat1.bn2");
  Node *c2 = node_named(g, "feat2.conv1");
  ck_assert_int_eq(c2->out, 4);
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
  ck_assert_int_eq(c->kh, 5);
  ck_assert_int_eq(c->sw, 2);
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
       "t.nn:5:7: error: unknown optimizer; nncc has adam(...) and sgd(...)"},
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
  ck_assert_double_eq_tol(node_named(g, "dropout1")->p, 0.25, 1e-12);
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

static Suite *front_suite(void) {
  Suite *s = suite_create("front");
  struct {
    const char *name;
    const TTest *tests[8];
  } cases[] = {
      {"lex", {lex_kinds, lex_newlines_inside_brackets, lex_locations, lex_errors}},
      {"parse", {parse_statements, parse_call_args, parse_errors}},
      {"elab", {elab_chain_names, elab_blocks_and_loops, elab_residual_add, elab_constants,
                elab_errors, elab_block_error_notes}},
      {"shape", {shape_ops, shape_mnist_cnn_counts, shape_errors, shape_declarations,
                 dump_is_deterministic}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    TCase *tc = tcase_create(cases[i].name);
    tcase_add_checked_fixture(tc, NULL, teardown);
    for (int j = 0; j < 8 && cases[i].tests[j]; j++)
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
