/*
 * test_passes.c -- unit tests of the middle and back end on small graphs
 * built in C, node by node (as QBE tests a pass): what fuse_pass() folds
 * and why not, which buffers buffers_build() makes, where the plan puts
 * them and what liveness keeps, and what emit_c() writes for them --
 * including the check that an emitter never reads a tensor the plan has
 * given away.
 */
#include "../compiler/nncc.h"

#include <check.h>
#include <stdarg.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

/* ---- building graphs ------------------------------------------------------- */

static SrcFile *src;

/* A graph with input x: f32[n, c, h, w] and label y: class[n] of 10. */
static Graph *graph(int64_t n, int64_t c, int64_t h, int64_t w) {
  src = source_from_string("t.nn", "model t\n");
  Graph *g = graph_new(src);
  g->name = "t";
  Loc loc = {src, 0, 5};
  Node *x = node_new(OP_INPUT, 0, loc, NULL);
  x->name = "x";
  x->dtype = DT_F32;
  x->rank = 4;
  int64_t d[4] = {n, c, h, w};
  memcpy(x->dims, d, sizeof d);
  graph_push(g, x);
  g->input = x->id;
  g->pad_top = g->pad_left = (h - 28) / 2;
  Node *y = node_new(OP_LABEL, 0, loc, NULL);
  y->name = "y";
  y->dtype = DT_CLASS;
  y->rank = 1;
  y->dims[0] = n;
  y->classes = 10;
  graph_push(g, y);
  g->label = y->id;
  return g;
}

/* Append op(inputs...) named `name`; attributes are set with the helpers
 * below (all of them: there are no defaults here). */
static Node *add(Graph *g, OpKind op, const char *name, int nin, ...) {
  Node *n = node_new(op, nin, (Loc){src, 0, 5}, NULL);
  n->name = (char *)name;
  va_list ap;
  va_start(ap, nin);
  for (int j = 0; j < nin; j++)
    n->in[j] = va_arg(ap, Node *)->id;
  va_end(ap);
  graph_push(g, n);
  if (op == OP_CROSS_ENTROPY)
    g->loss = n->id;
  return n;
}

static void *attr(Node *n, const char *name) {
  void *p = (void *)node_attr(n, name);
  ck_assert_msg(p != NULL, "%s has no attribute %s", op_name(n->op), name);
  return p;
}
static void set_int(Node *n, const char *a, int64_t v) { *(int64_t *)attr(n, a) = v; }
static void set_pair(Node *n, const char *a, int64_t v) { ((int64_t *)attr(n, a))[0] = ((int64_t *)attr(n, a))[1] = v; }
static void set_bool(Node *n, const char *a, bool v) { *(bool *)attr(n, a) = v; }
static void set_real(Node *n, const char *a, double v) { *(double *)attr(n, a) = v; }

static Node *conv(Graph *g, const char *name, Node *x, int64_t out, int64_t k, int64_t pad) {
  Node *n = add(g, OP_CONV2D, name, 1, x);
  set_int(n, "out", out);
  set_pair(n, "kernel", k);
  set_pair(n, "stride", 1);
  *(Padding *)attr(n, "padding") = (Padding){pad, pad, false};
  set_pair(n, "dilation", 1);
  set_int(n, "groups", 1);
  set_bool(n, "bias", true);
  return n;
}

static Node *linear(Graph *g, const char *name, Node *x, int64_t out) {
  Node *n = add(g, OP_LINEAR, name, 1, x);
  set_int(n, "out", out);
  set_bool(n, "bias", true);
  return n;
}

static Node *bn(Graph *g, const char *name, Node *x) {
  Node *n = add(g, OP_BATCHNORM2D, name, 1, x);
  set_real(n, "eps", 1e-5);
  set_real(n, "momentum", 0.1);
  return n;
}

/* ... -> flatten -> fc (10) -> cross_entropy */
static void head(Graph *g, Node *h) {
  Node *f = add(g, OP_FLATTEN, "flat", 1, h);
  Node *fc = linear(g, "fc", f, 10);
  add(g, OP_CROSS_ENTROPY, "loss", 2, fc, g->nodes[g->label]);
}

static Node *named(Graph *g, const char *name) {
  for (int i = 0; i < g->nnodes; i++)
    if (strcmp(g->nodes[i]->name, name) == 0)
      return g->nodes[i];
  ck_abort_msg("no node %s", name);
  return NULL;
}

/* shape, then fuse and plan as main.c does at -O1 */
static void compile_o1(Graph *g) {
  shape_pass(g);
  ir_verify(g, "shape");
  measure_naive(g);
  fuse_pass(g);
  ir_verify(g, "fuse");
  buffers_build(g);
  plan_pass(g);
  ir_verify(g, "plan");
}

static char *emit(Graph *g) {
  Buf b = {0};
  emit_c(g, &b);
  return b.data;
}

/* ---- fuse ---------------------------------------------------------------------- */

START_TEST(fuse_relu_into_conv) {
  Graph *g = graph(2, 1, 28, 28);
  Node *c = conv(g, "c1", g->nodes[0], 4, 5, 0);
  Node *r = add(g, OP_RELU, "r1", 1, c);
  r->binding = "h";
  head(g, r);
  shape_pass(g);
  fuse_pass(g);
  ir_verify(g, "fuse");
  ck_assert_int_eq(g->nnodes, 6); /* x y c1 flat fc loss */
  Node *c1 = named(g, "c1");
  ck_assert_ptr_nonnull(c1->epilogue);
  ck_assert_str_eq(c1->epilogue->name, "r1");
  ck_assert_str_eq(c1->binding, "h");
  ck_assert_int_eq(named(g, "flat")->in[0], c1->id); /* the relu's user reads the conv */
}
END_TEST

START_TEST(fuse_relu6_and_leaky) {
  Graph *g = graph(2, 1, 28, 28);
  Node *r6 = add(g, OP_RELU6, "r6", 1, conv(g, "c1", g->nodes[0], 4, 3, 1));
  Node *lk = add(g, OP_LEAKY_RELU, "lk", 1, conv(g, "c2", r6, 4, 3, 1));
  set_real(lk, "negative_slope", 0.2);
  Node *neg = add(g, OP_LEAKY_RELU, "neg", 1, conv(g, "c3", lk, 4, 3, 1));
  set_real(neg, "negative_slope", -0.5);
  Node *sg = add(g, OP_SIGMOID, "sg", 1, conv(g, "c4", neg, 4, 3, 1));
  head(g, sg);
  shape_pass(g);
  fuse_pass(g);
  ir_verify(g, "fuse");
  ck_assert_int_eq(named(g, "c1")->epilogue->op, OP_RELU6);
  ck_assert_int_eq(named(g, "c2")->epilogue->op, OP_LEAKY_RELU);
  /* a negative slope: y's sign is not x's, the gate would be wrong */
  ck_assert_ptr_null(named(g, "c3")->epilogue);
  ck_assert_str_eq(named(g, "neg")->note, "not fused: its backward needs the input c3");
  /* sigmoid has no fused form, and no note either */
  ck_assert_ptr_null(named(g, "c4")->epilogue);
  ck_assert_ptr_null(named(g, "sg")->note);
  Buf out = {0};
  emit_c((buffers_build(g), plan_pass(g), g), &out);
  ck_assert_ptr_nonnull(strstr(out.data, "NNCC_ACT_RELU6, 0.0f"));
  ck_assert_ptr_nonnull(strstr(out.data, "NNCC_ACT_LEAKY, 0.2f"));
  ck_assert_ptr_nonnull(strstr(out.data, "nncc_leaky_relu_forward_team(y, x, -0.5f, "));
  /* backward of the unfused negative-slope leaky_relu reads its input x */
  ck_assert_ptr_nonnull(strstr(out.data, "nncc_leaky_relu_backward_team(dx, dy, x, -0.5f, "));
  buf_free(&out);
}
END_TEST

START_TEST(fuse_refusals_say_why) {
  Graph *g = graph(2, 1, 28, 28);
  Node *c1 = conv(g, "c1", g->nodes[0], 4, 3, 1);
  Node *r1 = add(g, OP_RELU, "r1", 1, c1);
  Node *s = add(g, OP_ADD, "s", 2, r1, c1); /* c1 has two users */
  Node *b = bn(g, "b1", s);
  Node *r2 = add(g, OP_RELU, "r2", 1, b);
  Node *c2 = conv(g, "c2", r2, 4, 3, 1);
  Node *r3 = add(g, OP_RELU, "r3", 1, c2);
  Node *r4 = add(g, OP_RELU, "r4", 1, r3);
  Node *r5 = add(g, OP_RELU, "r5", 1, add(g, OP_ADD, "s2", 2, r4, r4));
  head(g, r5);
  shape_pass(g);
  fuse_pass(g);
  ir_verify(g, "fuse");
  ck_assert_str_eq(named(g, "r1")->note, "not fused: c1 has 2 users and they need it before the relu");
  ck_assert_str_eq(named(g, "r4")->note, "not fused: c2 already ends in a relu");
  ck_assert_str_eq(named(g, "r5")->note, "not fused: input s2 (add) is not a conv2d, linear or batch norm");
  ck_assert_ptr_null(named(g, "c1")->epilogue);
  /* a relu after batch norm fuses into its apply loop; the backward gates */
  ck_assert_str_eq(named(g, "b1")->epilogue->name, "r2");
  ck_assert_int_eq(node_saves(named(g, "b1")), SAVES_IN | SAVES_OUT);
}
END_TEST

static Node *pool(Graph *g, OpKind op, const char *name, Node *x, int64_t k) {
  Node *n = add(g, op, name, 1, x);
  set_pair(n, "kernel", k);
  set_pair(n, "stride", k);
  set_pair(n, "padding", 0);
  set_bool(n, "ceil_mode", false);
  if (op == OP_AVGPOOL2D)
    set_bool(n, "count_include_pad", true);
  return n;
}

/* A fused activation's gate moves into a max pool that is the conv's only
 * user; not into an avg pool, not past a second user, and nothing moves
 * from a conv without an activation. */
START_TEST(fuse_gate_into_maxpool) {
  Graph *g = graph(2, 1, 28, 28);
  Node *p1 = pool(g, OP_MAXPOOL2D, "p1", add(g, OP_RELU, "r1", 1, conv(g, "c1", g->nodes[0], 4, 5, 0)), 2);
  Node *r2 = add(g, OP_RELU6, "r2", 1, conv(g, "c2", p1, 4, 3, 1));
  Node *s = add(g, OP_ADD, "s", 2, pool(g, OP_MAXPOOL2D, "p2", r2, 2), pool(g, OP_AVGPOOL2D, "a2", r2, 2));
  Node *p3 = pool(g, OP_MAXPOOL2D, "p3", conv(g, "c3", s, 4, 3, 1), 2);
  Node *p4 = pool(g, OP_AVGPOOL2D, "p4", add(g, OP_RELU, "r4", 1, conv(g, "c4", p3, 4, 1, 0)), 1);
  head(g, p4);
  compile_o1(g);
  ck_assert_ptr_eq(named(g, "c1")->gated_by, named(g, "p1"));
  ck_assert_str_eq(named(g, "p1")->note, "its backward applies r1's gate");
  ck_assert_int_eq(node_saves(named(g, "c1")), SAVES_IN); /* no mask */
  ck_assert_ptr_null(named(g, "c2")->gated_by);           /* two users */
  ck_assert_ptr_null(named(g, "p2")->note);
  ck_assert_int_eq(node_saves(named(g, "c2")), SAVES_IN | SAVES_OUT);
  ck_assert_ptr_null(named(g, "c3")->gated_by); /* no activation */
  ck_assert_ptr_null(named(g, "c4")->gated_by); /* an avg pool reads no y */
  char *c = emit(g);
  ck_assert_ptr_nonnull(strstr(c, "nncc_maxpool2d_backward_team(dx, dy, x, 2, 4, 24, 24, 2, 2, 2, 2, 0, 0, 12, "
                                  "12, NNCC_ACT_RELU, 0.0f); /* r1's gate */"));
  /* c1 reads the model's input: its backward computes dw and db alone */
  ck_assert_ptr_nonnull(strstr(c, "nncc_conv2d_backward_weight_team(dw, db, dy, NULL, x, scratch, 2, 1, 28, 28, "
                                  "4, 5, 5, 1, 1, 0, 0, NNCC_ACT_NONE, 0.0f, "));
  ck_assert_ptr_nonnull(strstr(c, "nncc_conv2d_backward_team(dx, dw, db, dy, y, x, w, scratch, 2, 4, 12, 12, "));
  ck_assert_ptr_nonnull(strstr(c, "nncc_maxpool2d_backward_team(dx, dy, x, 2, 4, 12, 12, 2, 2, 2, 2, 0, 0, 6, 6, "
                                  "NNCC_ACT_NONE, 0.0f);\n"));
  ck_assert_ptr_nonnull(strstr(c, "NNCC_ACT_RELU6, 0.0f, ")); /* c2 gates itself */
  free(c);
}
END_TEST

/* A max pool runs in the epilogue of the conv it reads when that conv is
 * on the engine and sums no batch norm's statistics there; one pool per
 * conv.  The pool's forward call and the barrier before it are gone, and
 * its output lives from the conv's forward step on. */
START_TEST(fuse_pool_into_conv) {
  Graph *g = graph(2, 1, 28, 28);
  Node *p1 = pool(g, OP_MAXPOOL2D, "p1", add(g, OP_RELU, "r1", 1, conv(g, "c1", g->nodes[0], 4, 5, 0)), 2);
  Node *c2 = conv(g, "c2", p1, 4, 3, 1); /* two pools read it: the first takes it */
  Node *p2 = pool(g, OP_MAXPOOL2D, "p2", c2, 2);
  Node *s = add(g, OP_ADD, "s", 2, p2, pool(g, OP_MAXPOOL2D, "p3", c2, 2));
  Node *c3 = conv(g, "c3", s, 4, 3, 1); /* dilated: the general kernel */
  set_pair(c3, "dilation", 2);
  Node *p4 = pool(g, OP_MAXPOOL2D, "p4", c3, 2);
  Node *p5 = pool(g, OP_MAXPOOL2D, "p5", bn(g, "b5", conv(g, "c5", p4, 4, 1, 0)), 1); /* c5 sums b5's */
  Node *p6 = pool(g, OP_AVGPOOL2D, "p6", conv(g, "c6", p5, 4, 1, 0), 1);               /* not a max pool */
  head(g, p6);
  compile_o1(g);
  ck_assert_ptr_eq(named(g, "c1")->pool_for, named(g, "p1"));
  ck_assert_str_eq(named(g, "c1")->note, "its epilogue computes p1");
  ck_assert_ptr_eq(named(g, "c2")->pool_for, named(g, "p2"));
  ck_assert_ptr_null(named(g, "c3")->pool_for);
  ck_assert_ptr_eq(named(g, "c5")->stats_for, named(g, "b5"));
  ck_assert_ptr_null(named(g, "c5")->pool_for);
  ck_assert_ptr_null(named(g, "b5")->pool_for);
  ck_assert_ptr_null(named(g, "c6")->pool_for);
  ck_assert_int_eq(g->bufs[buf_root(g, named(g, "p1")->act)].first, step_forward(g, named(g, "c1")));
  char *c = emit(g);
  ck_assert_ptr_nonnull(strstr(c, "    c1_forward(c1, p1, s->input, "));
  ck_assert_ptr_nonnull(strstr(c, "    if (s->check) s->check(s, 0, NNCC_FORWARD);\n"
                                  "    /* p1: computed in c1's epilogue */\n"
                                  "    if (s->check) s->check(s, 1, NNCC_FORWARD);\n"
                                  "#pragma omp barrier\n"));
  ck_assert_ptr_nonnull(strstr(c, "    p3_forward(p3, c2);")); /* the second pool */
  ck_assert_ptr_nonnull(strstr(c, "    p4_forward(p4, c3);"));
  ck_assert_ptr_nonnull(strstr(c, "    p5_forward(p5, b5);"));
  free(c);
}
END_TEST

/* ---- plan ---------------------------------------------------------------------- */

START_TEST(plan_buffers_and_views) {
  Graph *g = graph(2, 1, 28, 28);
  Node *r0 = add(g, OP_RELU, "r0", 1, g->nodes[0]); /* before any parameter: no gradient */
  Node *c = conv(g, "c1", r0, 4, 5, 0);
  Node *b = bn(g, "b1", c);
  head(g, b);
  compile_o1(g);
  ck_assert(!named(g, "r0")->needs_grad);
  ck_assert_int_eq(named(g, "r0")->grad, -1);
  ck_assert_str_eq(g->bufs[g->nodes[g->input]->act].external, "s->input");
  Node *fc = named(g, "fc"), *flat = named(g, "flat"), *b1 = named(g, "b1");
  ck_assert_str_eq(g->bufs[fc->act].external, "s->logits");
  ck_assert_str_eq(g->bufs[fc->grad].external, "s->dlogits");
  /* flatten is a view of its only user's input: no memory, no code */
  ck_assert(node_is_view(g, flat));
  ck_assert_int_eq(buf_root(g, flat->act), b1->act);
  ck_assert_int_eq(buf_root(g, flat->grad), b1->grad);
  /* batchnorm keeps mean and 1/std per channel, and two double sums */
  ck_assert_int_eq(g->bufs[b1->aux].bytes, 2 * 4 * 4 + 2 * 4 * 8);
  ck_assert_str_eq(g->bufs[b1->aux].what, "[2,4]: mean, 1/std; [2,4] double sums");
  ck_assert_int_eq(g->tmp, -1); /* no tensor with two users */
  /* parameters: 64-byte aligned in node order */
  Node *c1 = named(g, "c1");
  ck_assert_int_eq(c1->params[0].offset, 0);
  ck_assert_int_eq(c1->params[1].offset, 112); /* 4*1*5*5 = 100 -> 112 */
  int a, bb;
  ck_assert(!plan_find_overlap(g, &a, &bb));
}
END_TEST

START_TEST(plan_flatten_copy_when_shared) {
  Graph *g = graph(2, 1, 28, 28);
  Node *c = conv(g, "c1", g->nodes[0], 4, 5, 0);
  Node *f1 = add(g, OP_FLATTEN, "f1", 1, c);
  Node *f2 = add(g, OP_FLATTEN, "f2", 1, c);
  Node *s = add(g, OP_ADD, "s", 2, f1, f2);
  Node *fc = linear(g, "fc", s, 10);
  add(g, OP_CROSS_ENTROPY, "loss", 2, fc, g->nodes[g->label]);
  compile_o1(g);
  ck_assert(!node_is_view(g, named(g, "f1")));
  ck_assert(!node_is_view(g, named(g, "f2")));
  /* c1's gradient has two contributions: the temporary holds one */
  ck_assert_int_ge(g->tmp, 0);
  ck_assert_int_eq(g->bufs[g->tmp].bytes, 2 * 4 * 24 * 24 * 4);
  char *c_src = emit(g);
  ck_assert_ptr_nonnull(strstr(c_src, "nncc_copy_team(f1, c1, 4608);"));
  ck_assert_ptr_nonnull(strstr(c_src, "nncc_accumulate_team(d_c1, grad_tmp, 4608);"));
  free(c_src);
}
END_TEST

/* sigmoid over a dying batch norm output takes its memory; forward and
 * backward */
START_TEST(plan_in_place) {
  Graph *g = graph(2, 1, 28, 28);
  Node *c = conv(g, "c1", g->nodes[0], 4, 5, 0);
  Node *b = bn(g, "b1", c);
  Node *r = add(g, OP_SIGMOID, "r1", 1, b); /* no fused form */
  head(g, r);
  compile_o1(g);
  Node *b1 = named(g, "b1"), *r1 = named(g, "r1");
  ck_assert_ptr_null(named(g, "c1")->epilogue);
  ck_assert_int_eq(g->bufs[r1->act].offset, g->bufs[b1->act].offset);
  ck_assert_int_eq(g->bufs[r1->grad].offset, g->bufs[b1->grad].offset);
  /* sigmoid saves its output: live into backward; bn saves its input */
  Node *c1 = named(g, "c1");
  ck_assert_int_eq(g->bufs[buf_root(g, r1->act)].last, step_backward(g, r1));
  ck_assert_int_ge(g->bufs[c1->act].last, step_backward(g, b1));
  int a, bb;
  ck_assert(!plan_find_overlap(g, &a, &bb));
  /* the verifier catches two live buffers put on one place */
  g->bufs[c1->act].offset = g->bufs[b1->aux].offset;
  ck_assert(plan_find_overlap(g, &a, &bb));
}
END_TEST

/* concat's backward reads only its output gradient: its inputs die at its
 * forward step, and an input used twice gets two contributions */
START_TEST(plan_concat) {
  Graph *g = graph(2, 1, 28, 28);
  Node *c1 = conv(g, "c1", g->nodes[0], 4, 3, 1);
  Node *c2 = conv(g, "c2", g->nodes[0], 2, 3, 1);
  Node *cat = add(g, OP_CONCAT, "cat", 3, c1, c2, c1);
  head(g, cat);
  compile_o1(g);
  ck_assert_int_eq(named(g, "cat")->dims[1], 10);
  Node *k1 = named(g, "c1"), *k2 = named(g, "c2"), *kc = named(g, "cat");
  /* conv saves its input (the model's), not its output: c2's output dies at cat */
  ck_assert_int_eq(g->bufs[k2->act].last, step_forward(g, kc));
  char *c_src = emit(g);
  /* forward: one slice per input; backward: c1's second slice goes through grad_tmp */
  ck_assert_ptr_nonnull(strstr(c_src, "nncc_copy_channels_team(cat, 10, 0, c1, 4, 0, 2, 4, 784);"));
  ck_assert_ptr_nonnull(strstr(c_src, "nncc_copy_channels_team(cat, 10, 4, c2, 2, 0, 2, 2, 784);"));
  ck_assert_ptr_nonnull(strstr(c_src, "nncc_copy_channels_team(cat, 10, 6, c1, 4, 0, 2, 4, 784);"));
  ck_assert_ptr_nonnull(strstr(c_src, "nncc_copy_channels_team(d_c1, 4, 0, d_cat, 10, 0, 2, 4, 784);"));
  ck_assert_ptr_nonnull(strstr(c_src, "nncc_copy_channels_team(grad_tmp, 4, 0, d_cat, 10, 6, 2, 4, 784);"));
  ck_assert_ptr_nonnull(strstr(c_src, "nncc_accumulate_team(d_c1, grad_tmp, 6272);"));
  ck_assert_ptr_nonnull(strstr(c_src, "3, (const char *const[]){\"c1\", \"c2\", \"c1\"}"));
  free(c_src);
  (void)k1;
}
END_TEST

/* ---- emit ------------------------------------------------------------------------ */

START_TEST(emit_kernels_and_sizes) {
  Graph *g = graph(2, 1, 28, 28);
  Node *c = conv(g, "c1", g->nodes[0], 4, 5, 0);
  Node *r = add(g, OP_RELU, "r1", 1, c);
  Node *p = add(g, OP_MAXPOOL2D, "p1", 1, r);
  set_pair(p, "kernel", 3);
  set_pair(p, "stride", 2);
  set_pair(p, "padding", 0);
  set_bool(p, "ceil_mode", true);
  Node *d = add(g, OP_CONV2D, "dw", 1, p); /* depthwise, dilated, "same" */
  set_int(d, "out", 4);
  set_pair(d, "kernel", 2);
  set_pair(d, "stride", 1);
  *(Padding *)attr(d, "padding") = (Padding){0, 0, true};
  set_pair(d, "dilation", 3);
  set_int(d, "groups", 4);
  set_bool(d, "bias", false);
  head(g, d);
  compile_o1(g);
  ck_assert_int_eq(named(g, "p1")->dims[2], 12); /* ceil((24 - 3) / 2) + 1 = 12 */
  ck_assert_int_eq(named(g, "dw")->dims[2], 12);
  char *c_src = emit(g);
  ck_assert_ptr_nonnull(strstr(c_src, "_Static_assert(NNCC_CONV_OUT(28, 5, 1, 0, 0, 1) == 24, \"c1: output size\");"));
  /* the pool runs in c1's epilogue, with its window */
  ck_assert_ptr_nonnull(strstr(c_src, "nncc_conv2d_forward_pool_team(y, py, x, w, b, scratch, 2, 1, 28, 28, 4, 5, 5, 1, 1, 0, 0, NNCC_ACT_RELU, 0.0f,\n"
                                      "                                3, 3, 2, 2, 0, 0, 12, 12); /* p1's window */"));
  ck_assert_ptr_nonnull(strstr(c_src, "_Static_assert(NNCC_POOL_OUT(24, 3, 2, 0, 1) == 12, \"p1: output size\");"));
  ck_assert_ptr_nonnull(strstr(c_src, "/* forward: in c1's epilogue (c1_forward) */"));
  ck_assert_ptr_null(strstr(c_src, "nncc_maxpool2d_forward_team("));
  /* total padding 3*(2-1) = 3: one at the top/left, two at the bottom/right */
  ck_assert_ptr_nonnull(strstr(c_src, "nncc_conv2d_general_forward_team(y, x, w, b, 2, 4, 12, 12, 4, 2, 2, 1, 1, 1, 1, 3, 3, 4, 12, 12, NNCC_ACT_NONE, 0.0f);"));
  /* the model's input needs no gradient: dw's backward passes none */
  ck_assert_ptr_nonnull(strstr(c_src, "c1_backward(NULL, G + 0 /* c1.weight */"));
  free(c_src);
}
END_TEST

/* The emitter reads only what the plan keeps alive: a saved tensor whose
 * live range ended too early (liveness and an emitter disagreeing) is an
 * internal error, never a silently corrupted arena. */
START_TEST(emit_refuses_dead_tensor) {
  Graph *g = graph(2, 1, 28, 28);
  Node *c = conv(g, "c1", g->nodes[0], 4, 5, 0);
  Node *b = bn(g, "b1", c);
  head(g, b);
  compile_o1(g);
  Node *c1 = named(g, "c1");
  g->bufs[c1->act].last = step_forward(g, named(g, "b1")); /* bn's backward reads it */
  FILE *null = fopen("/dev/null", "w");
  dup2(fileno(null), 2);
  emit(g);
}
END_TEST

static Suite *passes_suite(void) {
  Suite *s = suite_create("passes");
  TCase *tc = tcase_create("fuse");
  tcase_add_test(tc, fuse_relu_into_conv);
  tcase_add_test(tc, fuse_relu6_and_leaky);
  tcase_add_test(tc, fuse_refusals_say_why);
  tcase_add_test(tc, fuse_gate_into_maxpool);
  tcase_add_test(tc, fuse_pool_into_conv);
  suite_add_tcase(s, tc);
  tc = tcase_create("plan");
  tcase_add_test(tc, plan_buffers_and_views);
  tcase_add_test(tc, plan_flatten_copy_when_shared);
  tcase_add_test(tc, plan_in_place);
  tcase_add_test(tc, plan_concat);
  suite_add_tcase(s, tc);
  tc = tcase_create("emit");
  tcase_add_test(tc, emit_kernels_and_sizes);
  tcase_add_exit_test(tc, emit_refuses_dead_tensor, 70);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(passes_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr), run = srunner_ntests_run(sr);
  srunner_free(sr);
  if (run == 0) {
    fprintf(stderr, "no tests ran\n");
    return 1;
  }
  return failed ? 1 : 0;
}
