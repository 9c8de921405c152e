/*
 * infer.c -- `nncc --infer MODEL.nn --load CKPT.safetensors -o OUT.c`: a
 * trained model's forward pass as one plain C99 file and a header beside
 * it, for embedding in another program (docs/infer.md).
 *
 *   graph   the front end, as `nncc export` runs it (typed, unfused)
 *   params  the checkpoint, read with every check the trainer's --load makes
 *   plan    every node's infer() hook (compiler/ops/), planning: the
 *           helpers below fold a batch norm into the conv2d or linear
 *           before it, fuse an activation into their output loop, make
 *           dropout nothing and flatten a view
 *   arena   liveness over the forward schedule; first fit, in place where
 *           an elementwise node's input dies
 *   code    every hook again, printing its node's function; then
 *           forward(), the API and the weights: baked in as static const
 *           arrays, or with --infer-weights FILE.bin a raw file that
 *           MODEL_load_weights() reads
 *
 * `nncc --infer --dump-ir MODEL.nn` prints the plan instead (no
 * checkpoint needed).  The output is a pure function of the model and the
 * checkpoint, generated in memory and written only when complete.
 */
#include "weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* What a node became in the inference plan. */
typedef enum Role {
  R_NONE,     /* not computed: off the logits' path (or not yet planned) */
  R_INPUT,    /* the model's input: the caller's memory */
  R_FUNCTION, /* computed by a function of its own */
  R_IDENTITY, /* the identity at inference (dropout): input 0's memory */
  R_VIEW,     /* input 0's memory in another shape (flatten) */
  R_FOLDED,   /* a per-channel affine folded into a weighted node before it */
  R_FUSED,    /* an activation applied in a weighted node's output loop */
} Role;

/* The plan of one node (Infer.st, by node id). */
typedef struct Step {
  Role role;
  int src;             /* aliases (identity, view, folded, fused): input 0 */
  int users;           /* computed nodes reading it, +1 for the logits */
  int step;            /* its place in the forward schedule */
  bool elementwise;    /* R_FUNCTION: y[i] depends on x[i] alone (in place) */
  bool weighted;       /* conv2d, linear: takes a fold and an activation */
  bool affine;         /* a per-channel affine (batch norm at eval) */
  int fold, fuse;      /* weighted: the folded affine, the fused activation, or -1 */
  const char *act;     /* an activation: its expression in the float v */
  const float *scale, *shift; /* an affine: per channel (NULL without weights) */
  int64_t macs;        /* multiply-accumulates per image */
  int slot;            /* where its output lives (roots only) */
  char *stem;          /* R_FUNCTION: the prefix of its C names */
} Step;

/* A tensor of the forward pass: in the arena, or the caller's memory. */
typedef struct Slot {
  const char *external; /* "input", "logits", or NULL: the arena */
  int64_t offset, floats;
  int first, last;      /* live over these steps of the schedule */
} Slot;

/* A weight array of the generated code. */
typedef struct Array {
  char *name;          /* C identifier (baked) */
  char *what;          /* comment: "conv1.weight with bn1 folded in, f32[16,1,5,5]" */
  const float *data;
  int64_t n, offset;   /* offset: in the --infer-weights file, in floats */
} Array;

struct Infer {
  const Graph *g;
  const char *path, *ckpt; /* the .nn file, the checkpoint (messages, comments) */
  const float *w;          /* the parameter block; NULL when only planning */
  const char *bin;         /* --infer-weights: the raw weights file, else NULL */
  bool planning;
  Step *st;
  int logits;              /* the node whose output is the logits */
  Slot *slots;
  int nslots, slotcap;
  int64_t arena_floats, weight_floats, macs;
  bool libm;               /* some function calls <math.h> */
  /* printing */
  bool open;               /* its function is open */
  Buf fns, calls;
  Array *arrays;
  int narrays, acap;
};

/* Weights files (--infer-weights): magic, then the float count and the
 * FNV-1a 64 checksum of the data, each 8 bytes little-endian; then the
 * floats, little-endian IEEE single. */
#define WEIGHTS_MAGIC "NNCCWTS1"
#define WEIGHTS_HEADER 24

static Step *st(Infer *I, const Node *n) { return &I->st[n->id]; }

/* A node's tensor for one image: f32[16,24,24] */
static char *img_type(const Node *n) { return format("f32%s", dims_str(n->dims + 1, n->rank - 1)); }
static int64_t img_numel(const Node *n) { return node_numel(n) / n->dims[0]; }

/* A literal: 45056, or 4294967296LL past int's range. */
static char *lit(int64_t v) { return format(v > 2147483647 ? "%lldLL" : "%lld", ll(v)); }

/* ---- the plan: what the helpers decide ---------------------------------- */

/* The weighted node whose output loop can take over n's input (a fold or
 * an activation), or NULL.  Its output must reach n through nothing but
 * identities, folds and fused activations, each read by one node only,
 * and n must be its only reader; then n's computation may move into it. */
static Step *taker(Infer *I, const Node *n) {
  if (n->nin != 1)
    return NULL;
  int s = n->in[0];
  while (I->st[s].role == R_IDENTITY || I->st[s].role == R_FOLDED || I->st[s].role == R_FUSED) {
    if (I->st[s].users != 1)
      return NULL;
    s = I->st[s].src;
  }
  Step *t = &I->st[s];
  return t->role == R_FUNCTION && t->weighted && t->users == 1 ? t : NULL;
}

static void plan_alias(Infer *I, const Node *n, Role role) {
  st(I, n)->role = role;
  st(I, n)->src = n->in[0];
}

void infer_alias(Infer *I, const Node *n) {
  if (!I->planning)
    return;
  const Node *x = I->g->nodes[n->in[0]];
  bool same = x->rank == n->rank && memcmp(x->dims, n->dims, sizeof n->dims) == 0;
  plan_alias(I, n, same ? R_IDENTITY : R_VIEW);
}

/* ---- printing a node's function ----------------------------------------- */

const char *infer_in(Infer *I, const Node *n, int j) {
  (void)I;
  const OpDesc *d = node_desc(n);
  return d->nin == 1 ? "x" : d->nin > 1 ? d->inputs[j] : format("x%d", j);
}

/* The comment and signature of n's function: its output y, its inputs,
 * then its arrays (`params`, a signature fragment or ""). */
static Buf *open_function(Infer *I, const Node *n, const char *params) {
  const Graph *g = I->g;
  Step *s = st(I, n);
  Buf *o = &I->fns;
  const char *restrict_ = s->elementwise ? "" : "restrict ";
  char *attrs = attr_str(n);
  buf_printf(o, "/* %s: %s%s%s", n->name, op_name(n->op), *attrs ? " " : "", attrs);
  if (s->fold >= 0)
    buf_printf(o, ", then %s (folded into w and b)", g->nodes[s->fold]->name);
  if (s->fuse >= 0)
    buf_printf(o, ", then %s (fused)", g->nodes[s->fuse]->name);
  buf_puts(o, "\n *  ");
  for (int j = 0; j < n->nin; j++)
    buf_printf(o, " %s %s", infer_in(I, n, j), img_type(node_in(g, n, j)));
  buf_printf(o, " -> y %s */\n", img_type(n));
  buf_printf(o, "static void %s_forward(float *%sy", s->stem, restrict_);
  for (int j = 0; j < n->nin; j++)
    buf_printf(o, ", const float *%s%s", restrict_, infer_in(I, n, j));
  buf_printf(o, "%s) {\n", params);
  I->open = true;
  return o;
}

Buf *infer_begin(Infer *I, const Node *n, bool elementwise) {
  if (I->planning) {
    st(I, n)->role = R_FUNCTION;
    st(I, n)->elementwise = elementwise;
    return NULL;
  }
  return open_function(I, n, "");
}

Buf *infer_weighted(Infer *I, const Node *n, int64_t macs) {
  Step *s = st(I, n);
  if (I->planning) {
    s->role = R_FUNCTION;
    s->weighted = true;
    s->macs = macs;
    return NULL;
  }
  bool bias = n->nparams > 1 || s->fold >= 0;
  return open_function(I, n, bias ? ", const float *restrict w, const float *restrict b"
                                  : ", const float *restrict w");
}

const char *infer_bias(Infer *I, const Node *n, const char *index) {
  return n->nparams > 1 || st(I, n)->fold >= 0 ? format(" + b[%s]", index) : "";
}

const char *infer_epilogue(Infer *I, const Node *n) {
  int f = st(I, n)->fuse;
  return f >= 0 ? I->st[f].act : "v";
}

/* "a * ka + b * kb + k" without the terms that vanish: "oh * 2 + kh - 1" */
char *infer_index(const char *a, int64_t ka, const char *b, int64_t kb, int64_t k) {
  Buf s = {0};
  const char *v[2] = {a, b};
  int64_t m[2] = {ka, kb};
  for (int i = 0; i < 2; i++)
    if (m[i])
      buf_printf(&s, "%s%s%s", s.len ? " + " : "", v[i], m[i] == 1 ? "" : format(" * %lld", ll(m[i])));
  if (!s.len)
    buf_printf(&s, "%lld", ll(k));
  else if (k)
    buf_printf(&s, " %c %lld", k < 0 ? '-' : '+', ll(k < 0 ? -k : k));
  char *r = xstrdup(s.data);
  buf_free(&s);
  return r;
}

const float *infer_param(Infer *I, const Node *n, int k) { return I->w ? I->w + n->params[k].offset : NULL; }

void infer_use_libm(Infer *I) { I->libm = true; }

void infer_activation(Infer *I, const Node *n, const char *expr) {
  Step *s = st(I, n);
  if (I->planning) {
    s->act = expr;
    Step *t = taker(I, n);
    if (t && t->fuse < 0) {
      t->fuse = n->id;
      plan_alias(I, n, R_FUSED);
    } else {
      infer_begin(I, n, true);
    }
    return;
  }
  if (s->role != R_FUNCTION)
    return;
  Buf *o = open_function(I, n, "");
  buf_printf(o,
             "  for (int i = 0; i < %lld; i++) {\n"
             "    float v = x[i];\n"
             "    y[i] = %s;\n"
             "  }\n",
             ll(img_numel(n)), expr);
}

void infer_channel_affine(Infer *I, const Node *n, const float *scale, const float *shift) {
  Step *s = st(I, n);
  if (I->planning) {
    s->affine = true;
    s->scale = scale, s->shift = shift;
    Step *t = taker(I, n);
    if (t && t->fuse < 0 && t->fold < 0) {
      t->fold = n->id;
      plan_alias(I, n, R_FOLDED);
    } else {
      infer_begin(I, n, true);
    }
    return;
  }
  if (s->role != R_FUNCTION)
    return;
  Buf *o = open_function(I, n, ", const float *restrict scale, const float *restrict shift");
  int64_t plane = img_numel(n) / n->dims[1];
  buf_printf(o,
             "  for (int c = 0; c < %lld; c++)\n"
             "    for (int i = 0; i < %lld; i++)\n"
             "      y[c * %lld + i] = x[c * %lld + i] * scale[c] + shift[c];\n",
             ll(n->dims[1]), ll(plane), ll(plane), ll(plane));
}

/* ---- planning ------------------------------------------------------------ */

static noreturn void infer_refuse(Infer *I, const Node *n, const char *why) {
  fprintf(stderr, "nncc: error: %s: node %s (%s): %s\n", I->path, n->name, op_name(n->op), why);
  diag_fail();
}

/* Marks the nodes the logits need, counts their readers, and runs every
 * hook once, planning. */
static void plan_nodes(Infer *I) {
  const Graph *g = I->g;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    if (node_has_kernels(n) && !node_desc(n)->infer)
      infer_refuse(I, n, "the op has no inference form in nncc (its descriptor has no infer hook)");
  }
  I->st = xalloc(sizeof(Step) * (size_t)g->nnodes);
  bool *need = xalloc(sizeof(bool) * (size_t)g->nnodes);
  I->logits = g->nodes[g->loss]->in[0];
  need[I->logits] = true;
  for (int i = g->nnodes - 1; i >= 0; i--) /* inputs come before their users */
    for (int j = 0; need[i] && j < g->nodes[i]->nin; j++)
      need[g->nodes[i]->in[j]] = true;
  for (int i = 0; i < g->nnodes; i++) {
    Step *s = &I->st[i];
    s->fold = s->fuse = s->src = s->slot = -1;
    for (int j = 0; need[i] && j < g->nodes[i]->nin; j++)
      I->st[g->nodes[i]->in[j]].users++;
  }
  I->st[I->logits].users++;
  I->st[g->input].role = R_INPUT;
  I->planning = true;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    if (!need[i] || i == g->input)
      continue;
    if (!node_has_kernels(n))
      infer_refuse(I, n, "the logits depend on it, and it has no value at inference");
    node_desc(n)->infer(I, g, n);
    if (st(I, n)->role == R_NONE)
      ICE("the infer hook of %s planned nothing", n->name);
  }
  I->planning = false;
  for (int i = 0, step = 0; i < g->nnodes; i++)
    I->st[i].step = need[i] ? step++ : -1;
}

/* The node whose memory n's output is (itself, unless an alias). */
static int root(const Infer *I, int id) {
  while (I->st[id].src >= 0)
    id = I->st[id].src;
  return id;
}

static int new_slot(Infer *I, const char *external, int64_t floats, int first) {
  Slot s = {external, external ? -1 : 0, floats, first, first};
  VEC_PUSH(I->slots, I->nslots, I->slotcap, s);
  return I->nslots - 1;
}

/* The lowest 64-byte aligned offset where `floats` fit beside the arena
 * slots still live at step `at`. */
static int64_t first_fit(const Infer *I, int64_t floats, int at) {
  int64_t off = 0;
  for (bool moved = true; moved;) {
    moved = false;
    for (int i = 0; i < I->nslots; i++) {
      const Slot *s = &I->slots[i];
      if (s->external || s->last < at || s->floats == 0)
        continue;
      if (off < s->offset + s->floats && s->offset < off + floats) {
        off = (s->offset + s->floats + 15) / 16 * 16;
        moved = true;
      }
    }
  }
  return off;
}

/* Gives every computed node's output a slot: the caller's input and
 * logits, or the arena, where slots whose lifetimes over the forward
 * schedule do not overlap share memory and an elementwise node takes over
 * an input that dies there. */
static void plan_memory(Infer *I) {
  const Graph *g = I->g;
  int lroot = root(I, I->logits);
  I->st[g->input].slot = new_slot(I, "input", img_numel(g->nodes[g->input]), -1);
  /* the last step that reads each node's memory */
  int *last = xalloc(sizeof(int) * (size_t)g->nnodes);
  for (int i = 0; i < g->nnodes; i++) {
    last[i] = I->st[i].step;
    if (I->st[i].role == R_FUNCTION)
      for (int j = 0; j < g->nodes[i]->nin; j++)
        last[root(I, g->nodes[i]->in[j])] = I->st[i].step;
  }
  for (int i = 0; i < g->nnodes; i++) {
    Step *s = &I->st[i];
    const Node *n = g->nodes[i];
    if (s->role != R_FUNCTION)
      continue;
    if (i == lroot) {
      s->slot = new_slot(I, "logits", img_numel(n), s->step);
      continue;
    }
    for (int j = 0; s->elementwise && s->slot < 0 && j < n->nin; j++) {
      Slot *in = &I->slots[I->st[root(I, n->in[j])].slot];
      if (!in->external && in->last == s->step && in->floats == img_numel(n))
        s->slot = I->st[root(I, n->in[j])].slot;
    }
    if (s->slot < 0) {
      int64_t off = first_fit(I, img_numel(n), s->step);
      s->slot = new_slot(I, NULL, img_numel(n), s->step);
      I->slots[s->slot].offset = off;
    }
    Slot *sl = &I->slots[s->slot];
    sl->last = last[i] > sl->last ? last[i] : sl->last;
    if (sl->offset + sl->floats > I->arena_floats && !sl->external)
      I->arena_floats = sl->offset + sl->floats;
  }
  if (I->arena_floats * 4 > NNCC_MAX_BYTES)
    fatal("%s: the inference arena would be %s bytes, over nncc's limit", I->path,
          fmt_count(I->arena_floats * 4));
  /* no two slots live at one step share memory (a check of the above,
   * quadratic: skipped for models of thousands of tensors) */
  for (int a = 0; a < I->nslots && I->nslots <= 4096; a++)
    for (int b = a + 1; b < I->nslots; b++) {
      const Slot *x = &I->slots[a], *y = &I->slots[b];
      if (!x->external && !y->external && x->first <= y->last && y->first <= x->last &&
          x->offset < y->offset + y->floats && y->offset < x->offset + x->floats)
        ICE("inference slots %d and %d overlap", a, b);
    }
  /* the figures: node_arrays() makes the arrays counted here */
  for (int i = 0; i < g->nnodes; i++) {
    const Step *s = &I->st[i];
    const Node *n = g->nodes[i];
    if (s->role != R_FUNCTION)
      continue;
    I->macs += s->macs;
    if (s->weighted)
      I->weight_floats += n->params[0].numel + (n->nparams > 1 || s->fold >= 0 ? n->params[0].dims[0] : 0);
    else if (s->affine)
      I->weight_floats += 2 * n->dims[1];
  }
}

/* The C names' prefixes: the node's name with '_' for '.' (emit_fn();
 * elaboration makes them unique). */
static void name_functions(Infer *I) {
  for (int i = 0; i < I->g->nnodes; i++)
    if (I->st[i].role == R_FUNCTION)
      I->st[i].stem = emit_fn(I->g->nodes[i]);
}

/* ---- the dump: nncc --infer --dump-ir -------------------------------------- */

static char *where(const Infer *I, int id) {
  const Slot *s = &I->slots[I->st[root(I, id)].slot];
  return s->external ? xstrdup(s->external) : format("arena+%s", fmt_count(s->offset * 4));
}

static void dump_plan(Infer *I, Buf *out) {
  const Graph *g = I->g;
  enum { NCOL = 5 };
  char ***cells = xalloc(sizeof(char **) * (size_t)g->nnodes);
  int width[NCOL] = {0};
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    const Step *s = &I->st[i];
    if (s->role == R_NONE)
      continue;
    char **c = cells[i] = xalloc(sizeof(char *) * NCOL);
    for (int k = 0; k < NCOL; k++)
      c[k] = "";
    c[0] = format("%%%s", n->name);
    Buf call = {0};
    buf_puts(&call, i == g->input ? "input" : op_name(n->op));
    if (s->fold >= 0)
      buf_printf(&call, "+%s", g->nodes[s->fold]->name);
    if (s->fuse >= 0)
      buf_printf(&call, "+%s", g->nodes[s->fuse]->name);
    buf_puts(&call, "(");
    for (int j = 0; j < n->nin; j++)
      buf_printf(&call, "%s%%%s", j ? ", " : "", g->nodes[n->in[j]]->name);
    buf_puts(&call, ")");
    c[1] = xstrdup(call.data);
    buf_free(&call);
    const char *src = s->src >= 0 ? g->nodes[s->src]->name : "";
    switch (s->role) {
    case R_INPUT: c[2] = "the caller's input"; break;
    case R_FUNCTION: c[2] = attr_str(n); break;
    case R_IDENTITY: c[2] = format("removed: the identity at inference"); break;
    case R_VIEW: c[2] = format("a view of %s", src); break;
    case R_FOLDED: c[2] = format("folded into the weights and bias of %s", g->nodes[root(I, i)]->name); break;
    case R_FUSED: c[2] = format("fused into %s", g->nodes[root(I, i)]->name); break;
    case R_NONE: unreachable();
    }
    c[3] = img_type(n);
    if (s->role == R_FUNCTION || s->role == R_INPUT) {
      bool in_place = s->role == R_FUNCTION && I->slots[s->slot].first != s->step;
      c[4] = format("%s%s%s", where(I, i), in_place ? " (in place)" : "",
                    s->macs ? format("  macs=%s", fmt_count(s->macs)) : "");
    } else if (i == I->logits) {
      c[4] = "logits";
    }
    table_fit(width, c, NCOL);
  }
  buf_printf(out, "; nncc %s inference plan of model %s (%s), one image\n", NNCC_VERSION, g->name,
             g->file->name);
  for (int i = 0; i < g->nnodes; i++)
    if (cells[i])
      buf_printf(out, "%s\n", table_row(cells[i], width, NCOL));
  buf_printf(out, "; arena %s bytes, weights %s bytes, %s MACs per image\n", fmt_count(I->arena_floats * 4),
             fmt_count(I->weight_floats * 4), fmt_count(I->macs));
}

/* ---- the generated files ------------------------------------------------- */

static void add_array(Infer *I, char *name, char *what, const float *data, int64_t n) {
  int64_t off = I->narrays ? I->arrays[I->narrays - 1].offset + I->arrays[I->narrays - 1].n : 0;
  for (int64_t k = 0; k < n; k++)
    if (!isfinite(data[k]))
      fatal("%s: %s holds a value that is not finite (%g at %lld)", I->ckpt, what, data[k], ll(k));
  Array a = {name, what, data, n, off};
  VEC_PUSH(I->arrays, I->narrays, I->acap, a);
}

/* The C expression of array a in a call: its name, or its place in the
 * weights file's block. */
static char *array_ref(const Infer *I, const Array *a) {
  return I->bin ? format("weights + %s", lit(a->offset)) : a->name;
}

/* The arrays n's function takes: a weighted node's weight and bias (a
 * folded affine scaled into them, computed in double and rounded once),
 * or an unfolded affine's scale and shift.  Their references, ", w, b". */
static char *node_arrays(Infer *I, const Node *n) {
  const Graph *g = I->g;
  const Step *s = st(I, n);
  int first = I->narrays;
  if (s->weighted) {
    const Param *pw = &n->params[0];
    const float *w = infer_param(I, n, 0), *b = n->nparams > 1 ? infer_param(I, n, 1) : NULL;
    char *wdims = dims_str(pw->dims, pw->rank), *bdims = format("[%lld]", ll(pw->dims[0]));
    if (s->fold < 0) {
      add_array(I, format("%s_weight", s->stem), format("%s, f32%s", pw->name, wdims), w, pw->numel);
      if (b)
        add_array(I, format("%s_bias", s->stem), format("%s, f32%s", n->params[1].name, bdims), b,
                  pw->dims[0]);
    } else {
      const Step *f = &I->st[s->fold];
      const char *fname = g->nodes[s->fold]->name;
      int64_t out = pw->dims[0], per = pw->numel / out;
      float *fw = xalloc(sizeof(float) * (size_t)pw->numel), *fb = xalloc(sizeof(float) * (size_t)out);
      for (int64_t o = 0; o < out; o++) {
        for (int64_t k = 0; k < per; k++)
          fw[o * per + k] = (float)((double)w[o * per + k] * f->scale[o]);
        fb[o] = (float)((b ? (double)b[o] : 0.0) * f->scale[o] + f->shift[o]);
      }
      add_array(I, format("%s_weight", s->stem), format("%s with %s folded in, f32%s", pw->name, fname, wdims),
                fw, pw->numel);
      add_array(I, format("%s_bias", s->stem),
                format("%s folded into %s's bias, f32%s", fname, n->name, bdims), fb, out);
    }
  } else if (s->affine) {
    char *c = format("[%lld]", ll(n->dims[1]));
    add_array(I, format("%s_scale", s->stem), format("%s's scale at eval, f32%s", n->name, c), s->scale,
              n->dims[1]);
    add_array(I, format("%s_shift", s->stem), format("%s's shift at eval, f32%s", n->name, c), s->shift,
              n->dims[1]);
  }
  Buf refs = {0};
  for (int k = first; k < I->narrays; k++)
    buf_printf(&refs, ", %s", array_ref(I, &I->arrays[k]));
  char *r = xstrdup(refs.data ? refs.data : "");
  buf_free(&refs);
  return r;
}

/* The pointer to node id's output inside forward(). */
static char *tensor_ref(const Infer *I, int id) {
  const Slot *s = &I->slots[I->st[root(I, id)].slot];
  return s->external ? xstrdup(s->external) : s->offset ? format("arena + %s", lit(s->offset)) : "arena";
}

/* Runs every hook again, printing each function and its call. */
static void print_nodes(Infer *I) {
  const Graph *g = I->g;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    const Step *s = &I->st[i];
    if (s->role == R_NONE || s->role == R_INPUT)
      continue;
    I->open = false;
    node_desc(n)->infer(I, g, n);
    if (s->role != R_FUNCTION) {
      if (I->open)
        ICE("the infer hook of %s printed a function for an alias", n->name);
      continue;
    }
    if (!I->open)
      ICE("the infer hook of %s printed no function", n->name);
    buf_puts(&I->fns, "}\n\n");
    buf_printf(&I->calls, "  %s_forward(%s", s->stem, tensor_ref(I, i));
    for (int j = 0; j < n->nin; j++)
      buf_printf(&I->calls, ", %s", tensor_ref(I, n->in[j]));
    buf_printf(&I->calls, "%s); /* %s */\n", node_arrays(I, n), img_type(n));
  }
  if (root(I, I->logits) == g->input) /* the logits are the input itself */
    buf_printf(&I->calls, "  for (int i = 0; i < %lld; i++)\n    logits[i] = input[i];\n",
               ll(img_numel(g->nodes[I->logits])));
  int64_t total = I->narrays ? I->arrays[I->narrays - 1].offset + I->arrays[I->narrays - 1].n : 0;
  if (total != I->weight_floats)
    ICE("the weights are %lld floats, the plan said %lld", ll(total), ll(I->weight_floats));
}

/* The C identifier of the model's name, and its upper case for macros. */
static char *c_ident(const char *name, bool upper) {
  char *s = format("%s%s", name[0] >= '0' && name[0] <= '9' ? "m_" : "", name);
  for (char *p = s; *p; p++) {
    bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9');
    *p = !ok ? '_' : upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
  }
  return s;
}

/* s as the text of a C comment: no end of it, no control characters. */
static char *in_comment(const char *s) {
  char *r = xstrdup(s);
  for (char *p = r; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f || (p[0] == '*' && p[1] == '/'))
      *p = '?';
  return r;
}

/* The file name of a path, for the generated files' comments. */
static char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return in_comment(s ? s + 1 : path);
}

/* What both files say about the input and the sizes. */
static void describe(const Infer *I, Buf *o) {
  const Graph *g = I->g;
  const Node *x = g->nodes[g->input];
  buf_printf(o,
             " * Input: one image as the trainer feeds it, f32[%lld][%lld][%lld] ([C][H][W]):\n"
             " * its 28x28 pixels as pixel / 255.0f at row %lld, column %lld, zeros around.\n"
             " * Output: the %lld logits (the class is the largest; softmax for\n"
             " * probabilities).\n"
             " * Sizes: arena %s bytes (static), weights %s bytes, %s MACs per image.\n",
             ll(x->dims[1]), ll(x->dims[2]), ll(x->dims[3]), ll(g->pad_top), ll(g->pad_left),
             ll(g->nodes[I->logits]->dims[1]), fmt_count(I->arena_floats * 4), fmt_count(I->weight_floats * 4),
             fmt_count(I->macs));
}

static void gen_header(const Infer *I, const char *hname, const char *cname, Buf *o) {
  const Graph *g = I->g;
  const Node *x = g->nodes[g->input];
  char *m = c_ident(g->name, false), *M = c_ident(g->name, true);
  buf_printf(o,
             "/*\n"
             " * %s -- the API of %s, the forward pass of model %s,\n"
             " * generated by nncc %s (nncc --infer) from %s; do not edit.\n"
             " *\n",
             hname, cname, in_comment(g->name), NNCC_VERSION, in_comment(g->file->name));
  describe(I, o);
  buf_printf(o,
             " * The functions share one static arena: not reentrant, so calls from\n"
             " * several threads need a lock.\n"
             " * Build: cc -std=c99 -O2 -c %s%s\n"
             " */\n"
             "#ifndef %s_INFER_H\n#define %s_INFER_H\n\n",
             cname, I->libm ? " (link with -lm: sigmoid/tanh use expf/tanhf)" : "", M, M);
  buf_printf(o,
             "#define %s_INPUT_C %lld\n#define %s_INPUT_H %lld\n#define %s_INPUT_W %lld\n"
             "#define %s_PAD_TOP %lld  /* the 28x28 image's first row in the input */\n"
             "#define %s_PAD_LEFT %lld /* ... and first column */\n"
             "#define %s_CLASSES %lld\n"
             "#define %s_ARENA_BYTES %s  /* the activations: %s bytes */\n"
             "#define %s_WEIGHT_BYTES %s /* %s bytes */\n"
             "#define %s_MACS %s         /* multiply-accumulates per image: %s */\n\n",
             M, ll(x->dims[1]), M, ll(x->dims[2]), M, ll(x->dims[3]), M, ll(g->pad_top), M, ll(g->pad_left),
             M, ll(g->nodes[I->logits]->dims[1]), M, lit(I->arena_floats * 4), fmt_count(I->arena_floats * 4),
             M, lit(I->weight_floats * 4), fmt_count(I->weight_floats * 4), M, lit(I->macs),
             fmt_count(I->macs));
  buf_puts(o, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
  const char *unloaded = I->bin ? ", -2 before the weights are loaded" : "";
  buf_printf(o,
             "/* The logits of one image: 0, or nonzero (-1: a NULL pointer%s). */\n"
             "int %s_predict(const float *input, float *logits);\n"
             "/* The logits of n images, one after another in input and in logits:\n"
             " * 0, or nonzero (-1: n < 0 or a NULL pointer%s). */\n"
             "int %s_predict_batch(const float *input, float *logits, int n);\n",
             unloaded, m, unloaded, m);
  if (I->bin)
    buf_printf(o,
               "/* Reads the weights file nncc wrote with --infer-weights (%s):\n"
               " * 0, or nonzero for a file that cannot be read, is not this model's or\n"
               " * is damaged; then the weights loaded before stay as they were. */\n"
               "int %s_load_weights(const char *path);\n",
               base_name(I->bin), m);
  buf_printf(o, "\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
}

/* The loader of the weights file: it checks the header, then reads the
 * data twice, first to check its size and checksum, then into the array,
 * so a bad file changes nothing. */
static void gen_loader(const Infer *I, const char *m, Buf *o) {
  buf_printf(o,
             "/* The weights file: \"%s\", then the float count and an FNV-1a 64\n"
             " * checksum of the data (8 bytes little-endian each), then the floats,\n"
             " * little-endian IEEE.  Read twice: checked, then stored. */\n"
             "static unsigned long long le64(const unsigned char *p) {\n"
             "  unsigned long long v = 0;\n"
             "  for (int i = 7; i >= 0; i--)\n"
             "    v = v << 8 | p[i];\n"
             "  return v;\n"
             "}\n\n"
             "/* Reads the data after the header: its bytes and checksum, stored\n"
             " * into weights when `store`.  0 when it is all the file holds. */\n"
             "static int read_data(FILE *f, int store, unsigned long long *sum) {\n"
             "  unsigned char buf[4096], q[4];\n"
             "  unsigned long long total = 0;\n"
             "  size_t got;\n"
             "  *sum = 14695981039346656037ull;\n"
             "  while ((got = fread(buf, 1, sizeof buf, f)) > 0) {\n"
             "    if (total + got > %lldull)\n"
             "      return 1;\n"
             "    for (size_t i = 0; i < got; i++, total++) {\n"
             "      *sum = (*sum ^ buf[i]) * 1099511628211ull;\n"
             "      q[total %% 4] = buf[i];\n"
             "      if (store && total %% 4 == 3) {\n"
             "        uint32_t u = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |\n"
             "                     (uint32_t)q[3] << 24;\n"
             "        memcpy(&weights[total / 4], &u, 4);\n"
             "      }\n"
             "    }\n"
             "  }\n"
             "  return ferror(f) || total != %lldull;\n"
             "}\n\n"
             "int %s_load_weights(const char *path) {\n"
             "  unsigned char head[%d];\n"
             "  unsigned long long sum;\n"
             "  FILE *f = path ? fopen(path, \"rb\") : NULL;\n"
             "  if (!f)\n"
             "    return 1;\n"
             "  int bad = fread(head, 1, sizeof head, f) != sizeof head || memcmp(head, \"%s\", 8) != 0 ||\n"
             "            le64(head + 8) != %lldull || read_data(f, 0, &sum) || sum != le64(head + 16) ||\n"
             "            fseek(f, %d, SEEK_SET) != 0;\n"
             "  if (!bad) {\n"
             "    /* the file changed since? then no weights at all */\n"
             "    weights_loaded = 0;\n"
             "    bad = read_data(f, 1, &sum) || sum != le64(head + 16);\n"
             "    weights_loaded = !bad;\n"
             "  }\n"
             "  fclose(f);\n"
             "  return bad;\n"
             "}\n\n",
             WEIGHTS_MAGIC, ll(I->weight_floats * 4), ll(I->weight_floats * 4), m, WEIGHTS_HEADER,
             WEIGHTS_MAGIC, ll(I->weight_floats), WEIGHTS_HEADER);
}

static void gen_source(Infer *I, const char *cname, const char *hname, Buf *o) {
  const Graph *g = I->g;
  char *m = c_ident(g->name, false);
  const Node *x = g->nodes[g->input], *lg = g->nodes[I->logits];
  buf_printf(o,
             "/*\n"
             " * %s -- the forward pass of model %s, for embedding.\n"
             " * Generated by nncc %s (nncc --infer) from %s and the checkpoint\n"
             " * %s; do not edit.  The API, the sizes as macros: %s.\n"
             " *\n",
             cname, in_comment(g->name), NNCC_VERSION, in_comment(g->file->name), base_name(I->ckpt), hname);
  describe(I, o);
  buf_printf(o,
             " * Build: cc -std=c99 -O2 -c %s%s\n"
             " * (nothing else: no nncc runtime, no malloc; -fopenmp runs the\n"
             " * convolutions' output channels in parallel, with the same results).\n",
             cname, I->libm ? ", and link with -lm" : "");
  if (I->bin)
    buf_printf(o, " * The weights are read at run time from %s: %s_load_weights().\n", base_name(I->bin), m);
  buf_puts(o, " */\n#include <stddef.h>\n");
  if (I->bin)
    buf_puts(o, "#include <stdint.h>\n#include <stdio.h>\n#include <string.h>\n");
  if (I->libm)
    buf_puts(o, "#include <math.h>\n");
  buf_puts(o, "\n");
  const char *unloaded = I->bin ? "  if (!weights_loaded)\n    return -2;\n" : "";
  buf_printf(o,
             "int %s_predict(const float *input, float *logits);\n"
             "int %s_predict_batch(const float *input, float *logits, int n);\n",
             m, m);
  if (I->bin)
    buf_printf(o, "int %s_load_weights(const char *path);\n", m);
  if (I->arena_floats)
    buf_printf(o,
               "\n/* The activations, %s bytes: tensors whose lifetimes over the forward\n"
               " * pass do not overlap share memory (see forward()). */\n"
               "static float arena[%s];\n",
               fmt_count(I->arena_floats * 4), lit(I->arena_floats));
  if (I->bin && I->weight_floats)
    buf_printf(o,
               "\n/* The weights, %s bytes, as %s_load_weights() reads them. */\n"
               "static float weights[%s];\nstatic int weights_loaded;\n",
               fmt_count(I->weight_floats * 4), m, lit(I->weight_floats));
  else if (I->bin)
    buf_puts(o, "\nstatic int weights_loaded;\n");
  for (int k = 0; !I->bin && k < I->narrays; k++) {
    const Array *a = &I->arrays[k];
    buf_printf(o, "\n/* %s */\nstatic const float %s[%s] = {", a->what, a->name, lit(a->n));
    char v[EMIT_REAL_MAX];
    for (int64_t i = 0; i < a->n; i++) {
      emit_real_to(v, a->data[i], true);
      buf_printf(o, "%s%s,", i % 8 ? " " : "\n  ", v);
    }
    buf_puts(o, "\n};\n");
  }
  buf_printf(o, "\n%s", I->fns.data ? I->fns.data : "");
  buf_printf(o,
             "/* One image: input f32%s -> logits f32%s. */\n"
             "static void forward(const float *restrict input, float *restrict logits) {\n",
             dims_str(x->dims + 1, x->rank - 1), dims_str(lg->dims + 1, lg->rank - 1));
  if (!I->calls.data || !strstr(I->calls.data, "input"))
    buf_puts(o, "  (void)input;\n");
  buf_printf(o, "%s}\n\n", I->calls.data ? I->calls.data : "");
  if (I->bin)
    gen_loader(I, m, o);
  buf_printf(o,
             "int %s_predict(const float *input, float *logits) {\n"
             "  if (!input || !logits)\n"
             "    return -1;\n"
             "%s"
             "  forward(input, logits);\n"
             "  return 0;\n"
             "}\n\n"
             "int %s_predict_batch(const float *input, float *logits, int n) {\n"
             "  if (n < 0 || (n > 0 && (!input || !logits)))\n"
             "    return -1;\n"
             "%s"
             "  for (int i = 0; i < n; i++)\n"
             "    forward(input + (size_t)i * %lld, logits + (size_t)i * %lld);\n"
             "  return 0;\n"
             "}\n",
             m, unloaded, m, unloaded, ll(img_numel(x)), ll(img_numel(lg)));
}

/* The raw weights file of --infer-weights. */
static void gen_weights(const Infer *I, Buf *o) {
  uint64_t sum = 14695981039346656037ull, n = (uint64_t)I->weight_floats;
  for (int k = 0; k < I->narrays; k++) {
    const unsigned char *p = (const unsigned char *)I->arrays[k].data; /* the host is little-endian (rt.h) */
    for (size_t i = 0; i < (size_t)I->arrays[k].n * 4; i++)
      sum = (sum ^ p[i]) * 1099511628211ull;
  }
  unsigned char head[WEIGHTS_HEADER];
  memcpy(head, WEIGHTS_MAGIC, 8);
  for (int i = 0; i < 8; i++) {
    head[8 + i] = (unsigned char)(n >> 8 * i);
    head[16 + i] = (unsigned char)(sum >> 8 * i);
  }
  size_t len = WEIGHTS_HEADER + (size_t)n * 4;
  o->data = malloc(len ? len : 1);
  if (!o->data)
    fatal("out of memory for a %zu-byte weights file", len);
  o->len = o->cap = len;
  memcpy(o->data, head, WEIGHTS_HEADER);
  for (int k = 0; k < I->narrays; k++)
    memcpy(o->data + WEIGHTS_HEADER + I->arrays[k].offset * 4, I->arrays[k].data, (size_t)I->arrays[k].n * 4);
}

/* ---- the command ----------------------------------------------------------- */

static noreturn void infer_usage(const char *fmt, const char *arg) {
  command_usage("usage: nncc --infer MODEL.nn --load CKPT.safetensors -o OUT.c [--infer-weights W.bin]\n"
                "       nncc --infer --dump-ir MODEL.nn [-o OUT]\n", fmt, arg);
}

int infer_main(int argc, char **argv) {
  const char *path = NULL, *load = NULL, *out = NULL, *bin = NULL;
  bool dump = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--infer") == 0) {
      continue;
    } else if (strcmp(a, "--dump-ir") == 0) {
      dump = true;
    } else if (strcmp(a, "-o") == 0 || strcmp(a, "--load") == 0 || strcmp(a, "--infer-weights") == 0) {
      if (i + 1 == argc)
        infer_usage("%s needs a file name", a);
      *(a[1] == 'o' ? &out : a[2] == 'l' ? &load : &bin) = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      infer_usage("--infer takes a model, --load, -o, --infer-weights and --dump-ir, not '%s'", a);
    } else if (path) {
      infer_usage("more than one model file ('%s')", a);
    } else {
      path = a;
    }
  }
  if (!path)
    infer_usage("--infer needs a model file%s", "");
  size_t olen = out ? strlen(out) : 0;
  if (dump && bin)
    infer_usage("--dump-ir prints the plan and writes no weights: drop --infer-weights%s", "");
  if (!dump && !load)
    infer_usage("--infer needs the trained parameters: --load CKPT.safetensors%s", "");
  if (!dump && !out)
    infer_usage("--infer needs -o OUT.c (the header is written beside it, OUT.h)%s", "");
  if (!dump && (olen < 3 || strcmp(out + olen - 2, ".c") != 0 || out[olen - 3] == '/'))
    infer_usage("-o '%s' must name a .c file (the header goes beside it, as .h)", out);
  char *hpath = out && !dump ? format("%.*sh", (int)olen - 1, out) : NULL;
  const char *inputs[] = {path, load, hpath, out};
  const char *roles[] = {"the model file", "the checkpoint", "the header", "the C file"};
  refuse_clobber("-o", out, 2, inputs, roles);
  refuse_clobber("the header", hpath, 2, inputs, roles);
  refuse_clobber("--infer-weights", bin, 4, inputs, roles);

  Graph *g = model_load(path);
  float *w = NULL;
  if (load && !(w = weights_read(g, load)))
    return 1;
  Infer I = {.g = g, .path = path, .ckpt = load, .w = w, .bin = bin};
  plan_nodes(&I);
  plan_memory(&I);
  name_functions(&I);
  int rc = 0;
  if (dump) {
    Buf b = {0};
    dump_plan(&I, &b);
    rc = write_output(out, b.data, b.len);
    buf_free(&b);
  } else {
    Buf c = {0}, h = {0}, wb = {0};
    print_nodes(&I);
    gen_source(&I, base_name(out), base_name(hpath), &c);
    gen_header(&I, base_name(hpath), base_name(out), &h);
    if (bin)
      gen_weights(&I, &wb);
    rc = (bin ? write_output(bin, wb.data, wb.len) : 0) || write_output(hpath, h.data, h.len) ||
         write_output(out, c.data, c.len);
    if (rc == 0 && !bin && I.weight_floats * 4 > (INT64_C(16) << 20))
      fprintf(stderr, "nncc: note: %s bytes of weights baked into %s (%s bytes of C); "
              "--infer-weights FILE.bin keeps them out of the source\n",
              fmt_count(I.weight_floats * 4), out, fmt_count((int64_t)c.len));
    buf_free(&c);
    buf_free(&h);
    buf_free(&wb);
  }
  buf_free(&I.fns);
  buf_free(&I.calls);
  free(w);
  return rc;
}
