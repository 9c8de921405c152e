/*
 * import.c -- `nncc import MODEL.onnx -o MODEL.nn [--weights W.safetensors]
 * [--batch N] [--input SOURCE]`: an ONNX model as a readable .nn file.
 *
 * The protobuf is read by protobuf-c with bindings generated at build time
 * from Debian's onnx.proto (CMakeLists.txt).  The graph's nodes, in their
 * (topological) file order, become one .nn statement each, bound to a name
 * made from the ONNX node's name; a node that holds parameters is named
 * after its initializers (`conv2d(..., name="features.0")` for
 * "features.0.weight"), so the parameters keep the ONNX names.  The text is
 * then compiled by nncc's own front end before anything is written: what
 * import writes is a model nncc accepts, and --weights writes its
 * parameters, in the trainer's checkpoint format, from the initializers.
 *
 * Every problem is one line naming the file and the node, and nothing is
 * written.  docs/onnx.md lists the ops and what each maps to.
 */
#include "onnx.pb-c.h"
#include "weights.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The largest ONNX file import reads: protobuf's own limit is 2 GiB. */
#define ONNX_MAX_BYTES ((size_t)2 << 30)
/* Opsets whose ops (those below) nncc reads the same way. */
#define OPSET_MIN 7
#define OPSET_MAX 18

/* An ONNX value, by its tensor name. */
typedef struct Val {
  enum { VAL_TENSOR, VAL_CONST } kind;
  char *var;                  /* VAL_TENSOR: the .nn name bound to it */
  int rank;                   /* VAL_TENSOR: 2 or 4 */
  const Onnx__TensorProto *t; /* VAL_CONST: an initializer or a Constant's value */
  bool is_init;               /* VAL_CONST: an initializer (a parameter source) */
} Val;

/* A parameter tensor to fill: the .nn node on `line` gets its k-th
 * parameter from `src` (transposed when it is a [in, out] matrix). */
typedef struct Fill {
  const Onnx__NodeProto *node; /* for messages */
  int line, k;
  const Onnx__TensorProto *src;
  bool transpose;
} Fill;

typedef struct Imp {
  const char *path;
  Onnx__GraphProto *g;
  int64_t opset;
  Buf nn;            /* the .nn text */
  int line;          /* lines in nn so far */
  StrMap vals;       /* tensor name -> index in v */
  Val *v;
  int nv, vcap;
  StrMap vars;       /* .nn names in use */
  StrMap nodes;      /* node names in the model, and their C forms (elab.c's rule) */
  StrMap counters;   /* per op abbreviation: the last automatic number */
  Fill *fills;
  int nfills, fcap;
  int64_t batch;
  const char *source;/* --input */
  bool *skip;        /* per node: read already (an Add merged into a linear) */
  StrMap nreaders, first_reader; /* per tensor name: count_readers() */
  bool compiling;    /* the front end has the text: its errors name the .nn */
  Onnx__ModelProto *m; /* freed by onnx_import() on every path */
} Imp;

/* ---- errors ---------------------------------------------------------- */

static const Onnx__NodeProto *cur_node; /* the node being read, for messages */

static noreturn void imp_error(const Imp *I, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static noreturn void imp_error(const Imp *I, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(diag_out ? diag_out : stderr, "%s: error: ", I->path);
  if (cur_node)
    fprintf(diag_out ? diag_out : stderr, "node '%s' (%s): ", cur_node->name ? cur_node->name : "",
            cur_node->op_type ? cur_node->op_type : "?");
  vfprintf(diag_out ? diag_out : stderr, fmt, ap);
  fputc('\n', diag_out ? diag_out : stderr);
  va_end(ap);
  diag_fail();
}

/* ---- names ------------------------------------------------------------ */

static bool is_reserved(const char *s) {
  static const char *const words[] = {"model", "import", "input", "label", "block", "train", "for",
                                      "in", "if", "else", "return", "and", "or", "not", "true",
                                      "false", "range", "len"};
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (strcmp(s, words[i]) == 0)
      return true;
  for (int op = 0; op < OP_COUNT; op++)
    if (strcmp(s, op_name((OpKind)op)) == 0)
      return true;
  return false;
}

/* An identifier for an ONNX name: itself when it is one, else its
 * letters and digits with `_` between ("/conv1/Conv" -> conv1_Conv);
 * `fallback` when nothing is left. */
static char *identifier(const char *onnx, const char *fallback) {
  size_t n = onnx ? strlen(onnx) : 0;
  char *s = xalloc(n + 8);
  size_t k = 0;
  for (size_t i = 0; i < n && k < 60; i++) {
    char c = onnx[i];
    bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (word)
      s[k++] = c;
    else if (k && s[k - 1] != '_')
      s[k++] = '_';
  }
  while (k && s[k - 1] == '_')
    k--;
  s[k] = '\0';
  if (!k)
    s = xstrdup(fallback);
  else if (s[0] >= '0' && s[0] <= '9')
    s = format("t_%s", s);
  if (is_reserved(s))
    s = format("%s_", s);
  return s;
}

/* A new .nn variable for an ONNX name (identifier(), made unique). */
static char *var_name(Imp *I, const char *onnx, const char *fallback) {
  char *s = identifier(onnx, fallback);
  char *name = s;
  for (int i = 2; strmap_get(&I->vars, name) >= 0; i++)
    name = format("%s_%d", s, i);
  strmap_put(&I->vars, name, 1);
  return name;
}

/* A name as the generated C spells it (emit_fn: dots as '_'). */
static char *c_form(const char *name) { return emit_fn(&(Node){.name = (char *)name}); }

static bool node_name_taken(Imp *I, const char *name) {
  return strmap_get(&I->nodes, name) >= 0 || strmap_get(&I->nodes, c_form(name)) >= 0;
}

static void take_node_name(Imp *I, const char *name) {
  strmap_put(&I->nodes, name, 1);
  strmap_put(&I->nodes, c_form(name), 1);
}

/* The name elaboration gives the next unnamed node of op (elab.c's
 * fresh_name at the top level): import keeps track of them, so that a
 * name it gives a later node is never one already taken. */
static void auto_name(Imp *I, OpKind op) {
  const char *key = node_desc(&(Node){.op = op})->abbrev;
  int n = strmap_get(&I->counters, key);
  if (n < 0)
    n = 0;
  size_t klen = strlen(key);
  const char *sep = klen && key[klen - 1] >= '0' && key[klen - 1] <= '9' ? "_" : "";
  char *name;
  do
    name = format("%s%s%d", key, sep, ++n);
  while (node_name_taken(I, name));
  strmap_put(&I->counters, key, n);
  take_node_name(I, name);
}

/* The name of a node whose parameters come from initializers: their common
 * stem ("features.0" for "features.0.weight" and "features.0.bias") when
 * every one is stem + its nncc suffix and the name is free; else a name
 * made from the ONNX node's. */
static char *param_node_name(Imp *I, const Onnx__TensorProto *const *src, const char *const *suffix,
                             int n) {
  char *stem = NULL;
  for (int k = 0; k < n; k++) {
    if (!src[k])
      continue;
    size_t len = strlen(src[k]->name), sl = strlen(suffix[k]);
    if (len <= sl || strcmp(src[k]->name + len - sl, suffix[k]) != 0) {
      stem = NULL;
      break;
    }
    char *s = xstrndup(src[k]->name, len - sl);
    if (stem && strcmp(stem, s) != 0) {
      stem = NULL;
      break;
    }
    stem = s;
  }
  if (!stem || !node_name_valid(stem) || node_name_taken(I, stem)) {
    char *base = identifier(cur_node->name && *cur_node->name ? cur_node->name : cur_node->output[0],
                            cur_node->op_type);
    stem = base;
    for (int i = 2; node_name_taken(I, stem); i++)
      stem = format("%s_%d", base, i);
  }
  take_node_name(I, stem);
  return stem;
}

/* ---- values ----------------------------------------------------------- */

static int val_index(Imp *I, const char *name) { return name ? strmap_get(&I->vals, name) : -1; }

static int add_val(Imp *I, const char *name, Val v) {
  if (val_index(I, name) >= 0)
    imp_error(I, "tensor '%s' is defined twice", name);
  VEC_PUSH(I->v, I->nv, I->vcap, v);
  strmap_put(&I->vals, name, I->nv - 1);
  return I->nv - 1;
}

/* Input j of the current node: a tensor (a .nn value), or an error. */
static Val *in_tensor(Imp *I, int j) {
  if (j >= (int)cur_node->n_input || !cur_node->input[j][0])
    imp_error(I, "input %d is missing", j + 1);
  int i = val_index(I, cur_node->input[j]);
  if (i < 0)
    imp_error(I, "input '%s' is not defined before the node", cur_node->input[j]);
  if (I->v[i].kind != VAL_TENSOR)
    imp_error(I, "input '%s' is a constant; nncc reads it only as the %s's weights", cur_node->input[j],
              cur_node->op_type);
  return &I->v[i];
}

/* Input j as a constant (an initializer or a Constant node's value), NULL
 * when it is absent (optional), or an error when it is computed. */
static const Onnx__TensorProto *in_const(Imp *I, int j, bool *is_init) {
  if (j >= (int)cur_node->n_input || !cur_node->input[j][0])
    return NULL;
  int i = val_index(I, cur_node->input[j]);
  if (i < 0)
    imp_error(I, "input '%s' is not defined before the node", cur_node->input[j]);
  if (I->v[i].kind != VAL_CONST)
    imp_error(I, "input %d ('%s') must be a constant (an initializer), not computed", j + 1,
              cur_node->input[j]);
  if (is_init)
    *is_init = I->v[i].is_init;
  return I->v[i].t;
}

/* A name for messages: an optional string of the file may be absent. */
static const char *str(const char *s) { return s ? s : ""; }

/* An ONNX data type's name (TensorProto.DataType). */
static const char *dtype_name(int32_t t) {
  static const char *const names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16",
                                      "INT32", "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE",
                                      "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
  return t >= 0 && t < (int32_t)(sizeof names / sizeof *names) ? names[t] : format("type %d", (int)t);
}

static int64_t tensor_numel(Imp *I, const Onnx__TensorProto *t) {
  int64_t n = 1;
  for (size_t d = 0; d < t->n_dims; d++) {
    if (t->dims[d] < 0 || t->dims[d] > NNCC_MAX_ELEMENTS)
      imp_error(I, "tensor '%s' has dimension %lld", str(t->name), (long long)t->dims[d]);
    n *= t->dims[d];
    if (n > NNCC_MAX_ELEMENTS)
      imp_error(I, "tensor '%s' has more than 2^30 elements (nncc's limit)", str(t->name));
  }
  return n;
}

/* Checks a constant's storage: inline (not external), the dtype, and as
 * many elements stored as its shape says. */
static int64_t check_tensor(Imp *I, const Onnx__TensorProto *t, int dtype, const char *what) {
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    imp_error(I, "tensor '%s' keeps its data in an external file; nncc imports only self-contained "
              "models (onnx.load(path) then onnx.save(model, path, save_as_external_data=False))",
              str(t->name));
  if (t->data_type != dtype)
    imp_error(I, "tensor '%s' is %s; %s must be %s", str(t->name), dtype_name(t->data_type), what,
              dtype_name(dtype));
  int64_t n = tensor_numel(I, t);
  size_t have = t->has_raw_data ? t->raw_data.len / (dtype == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? 4 : 8)
                : dtype == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? t->n_float_data : t->n_int64_data;
  size_t unit = dtype == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? 4 : 8;
  if ((int64_t)have != n || (t->has_raw_data && t->raw_data.len % unit))
    imp_error(I, "tensor '%s' holds %zu values, its shape %s needs %lld", str(t->name), have,
              dims_str(t->dims, (int)t->n_dims), (long long)n);
  return n;
}

static float tensor_f(const Onnx__TensorProto *t, int64_t i) {
  if (!t->has_raw_data)
    return t->float_data[i];
  float f;
  memcpy(&f, t->raw_data.data + 4 * i, 4);
  return f;
}

static int64_t tensor_i(const Onnx__TensorProto *t, int64_t i) {
  if (!t->has_raw_data)
    return t->int64_data[i];
  int64_t v;
  memcpy(&v, t->raw_data.data + 8 * i, 8);
  return v;
}

/* A float scalar constant (Clip's min and max, Dropout's ratio). */
static double scalar_input(Imp *I, int j, double def) {
  const Onnx__TensorProto *t = in_const(I, j, NULL);
  if (!t)
    return def;
  if (check_tensor(I, t, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, "this input") != 1)
    imp_error(I, "input %d must be a single float", j + 1);
  return tensor_f(t, 0);
}

/* ---- attributes ------------------------------------------------------- */

static const Onnx__AttributeProto *attr(const char *name) {
  for (size_t i = 0; i < cur_node->n_attribute; i++)
    if (cur_node->attribute[i]->name && strcmp(cur_node->attribute[i]->name, name) == 0)
      return cur_node->attribute[i];
  return NULL;
}

static int64_t attr_int(Imp *I, const char *name, int64_t def) {
  const Onnx__AttributeProto *a = attr(name);
  if (!a)
    return def;
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)
    imp_error(I, "attribute %s must be an int", name);
  return a->i;
}

static double attr_float(Imp *I, const char *name, double def) {
  const Onnx__AttributeProto *a = attr(name);
  if (!a)
    return def;
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
    imp_error(I, "attribute %s must be a float", name);
  return a->f;
}

/* An ints attribute of exactly n values (absent: def, n of them). */
static void attr_ints(Imp *I, const char *name, int64_t *out, int n, int64_t def) {
  const Onnx__AttributeProto *a = attr(name);
  for (int i = 0; i < n; i++)
    out[i] = def;
  if (!a)
    return;
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS || (int)a->n_ints != n)
    imp_error(I, "attribute %s must be %d ints", name, n);
  for (int i = 0; i < n; i++) {
    if (a->ints[i] < 0 || a->ints[i] > NNCC_MAX_SIZE)
      imp_error(I, "attribute %s has %lld", name, (long long)a->ints[i]);
    out[i] = a->ints[i];
  }
}

/* Refuses any attribute not in the list: an attribute nncc would ignore
 * could change what the op computes. */
static void only_attrs(Imp *I, const char *const *names) {
  for (size_t i = 0; i < cur_node->n_attribute; i++) {
    const char *a = cur_node->attribute[i]->name ? cur_node->attribute[i]->name : "";
    bool known = false;
    for (int k = 0; names[k]; k++)
      known |= strcmp(a, names[k]) == 0;
    if (!known)
      imp_error(I, "attribute '%s' is not supported", a);
  }
}

/* auto_pad must be NOTSET (explicit pads) or VALID (none). */
static void no_auto_pad(Imp *I) {
  const Onnx__AttributeProto *a = attr("auto_pad");
  if (!a)
    return;
  char s[16] = "";
  if (a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING && a->s.len < sizeof s)
    memcpy(s, a->s.data, a->s.len);
  if (strcmp(s, "NOTSET") != 0 && strcmp(s, "VALID") != 0)
    imp_error(I, "auto_pad %s is not supported (only NOTSET with explicit pads, or VALID); "
              "export with explicit padding", s[0] ? s : "(not a short string)");
}

/* kernel_shape, strides, pads, dilations of a 2-D window op: the pads must
 * be the same on both sides (nncc's padding, as PyTorch's), except that a
 * convolution (allow_same) may have exactly padding="same"'s at stride 1:
 * per axis dilation*(kernel-1) in all, the odd pixel at the bottom/right,
 * as nncc export writes it for an even kernel (then same is set). */
typedef struct Win {
  int64_t k[2], s[2], p[2], d[2];
  bool same;
} Win;

/* pads [top, left, bottom, right] are padding="same"'s for w (stride 1).
 * The dilation is at most NNCC_MAX_SIZE (attr_ints); a kernel taken from
 * the weight's dims is not yet checked, so a larger one is not "same"
 * (and the product stays below 2^60). */
static bool pads_are_same(const Win *w, const int64_t *pads) {
  for (int i = 0; i < 2; i++) {
    if (w->k[i] > NNCC_MAX_SIZE)
      return false;
    int64_t total = w->d[i] * (w->k[i] - 1);
    if (w->s[i] != 1 || pads[i] != total / 2 || pads[i + 2] != total - total / 2)
      return false;
  }
  return true;
}

static Win window(Imp *I, const int64_t *kernel_default, bool allow_same) {
  Win w = {.same = false};
  no_auto_pad(I);
  const Onnx__AttributeProto *ka = attr("kernel_shape");
  if (ka || !kernel_default)
    attr_ints(I, "kernel_shape", w.k, 2, 1);
  else
    w.k[0] = kernel_default[0], w.k[1] = kernel_default[1];
  if (!ka && !kernel_default)
    imp_error(I, "attribute kernel_shape is missing");
  attr_ints(I, "strides", w.s, 2, 1);
  attr_ints(I, "dilations", w.d, 2, 1);
  int64_t pads[4];
  attr_ints(I, "pads", pads, 4, 0);
  for (int i = 0; i < 2; i++)
    if (w.k[i] < 1 || w.s[i] < 1 || w.d[i] < 1)
      imp_error(I, "kernel, strides and dilations must be positive");
  if (pads[0] != pads[2] || pads[1] != pads[3]) {
    w.same = allow_same && pads_are_same(&w, pads);
    if (!w.same)
      imp_error(I, "pads [%lld, %lld, %lld, %lld] differ between the two sides; nncc pads both sides "
                "alike%s", (long long)pads[0], (long long)pads[1], (long long)pads[2], (long long)pads[3],
                allow_same ? " (or as padding=\"same\" at stride 1: the odd pixel at the bottom/right)" : "");
  }
  w.p[0] = pads[0], w.p[1] = pads[1];
  return w;
}

/* The shortest decimal that reads back as the float f: ONNX stores
 * attributes as floats, and 1e-05 reads better than 9.99999974737875e-06. */
static double shortest(float f) {
  char s[32];
  for (int p = 1; p <= 9; p++) {
    snprintf(s, sizeof s, "%.*g", p, (double)f);
    if ((float)strtod(s, NULL) == f)
      return strtod(s, NULL);
  }
  return f;
}

/* A double as the .nn writes it: %.15g, so 1 - 0.9 prints as 0.1. */
static char *real(double v) {
  char *s = format("%.15g", v);
  return strpbrk(s, ".en") ? s : format("%s.0", s);
}

/* s followed by the formatted text, in the pool (an op's call text: short,
 * and nothing to free when an error ends the import half-way). */
static char *cat(char *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *cat(char *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char piece[1024];
  vsnprintf(piece, sizeof piece, fmt, ap);
  va_end(ap);
  return format("%s%s", s, piece);
}

/* "5" or "[3, 5]" */
static char *pair(const int64_t *v) {
  return v[0] == v[1] ? format("%lld", (long long)v[0]) : format("[%lld, %lld]", (long long)v[0], (long long)v[1]);
}

/* ---- writing the .nn -------------------------------------------------- */

/* The current node's output 0 as a new .nn value: `name = expr   # node`. */
static void bind(Imp *I, int rank, const char *expr) {
  if (cur_node->n_output < 1 || !cur_node->output[0][0])
    imp_error(I, "the node has no output");
  char *var = var_name(I, cur_node->name && *cur_node->name ? cur_node->name : cur_node->output[0],
                       "h");
  buf_printf(&I->nn, "%s = ", var);
  buf_puts(&I->nn, expr); /* a concat's list may be long */
  buf_puts(&I->nn, "\n");
  I->line++;
  add_val(I, cur_node->output[0], (Val){.kind = VAL_TENSOR, .var = var, .rank = rank});
}

static void fill(Imp *I, int k, const Onnx__TensorProto *src, bool transpose) {
  VEC_PUSH(I->fills, I->nfills, I->fcap, ((Fill){.node = cur_node, .line = I->line + 1, .k = k,
                                                 .src = src, .transpose = transpose}));
}

/* A parameter from input j: an initializer of float dtype and the given
 * shape (rank dims; -1 = any), or an error naming what it should be. */
static const Onnx__TensorProto *param_input(Imp *I, int j, const char *what, int rank,
                                            const int64_t *dims) {
  bool is_init;
  const Onnx__TensorProto *t = in_const(I, j, &is_init);
  if (!t)
    return NULL;
  if (!is_init)
    imp_error(I, "the %s ('%s') must be an initializer", what, cur_node->input[j]);
  check_tensor(I, t, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, format("the %s", what));
  bool ok = (int)t->n_dims == rank;
  for (int d = 0; ok && d < rank; d++)
    ok = dims[d] < 0 || t->dims[d] == dims[d];
  if (!ok)
    imp_error(I, "the %s '%s' has shape %s", what, str(t->name), dims_str(t->dims, (int)t->n_dims));
  return t;
}

/* ---- the ops ---------------------------------------------------------- */

static void read_conv(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  static const char *const ok[] = {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", NULL};
  only_attrs(I, ok);
  Val *x = in_tensor(I, 0);
  if (x->rank != 4)
    imp_error(I, "only 2-D convolutions (4-D input) are supported");
  const Onnx__TensorProto *w = param_input(I, 1, "weight", 4, (int64_t[]){-1, -1, -1, -1});
  if (!w)
    imp_error(I, "the weight is missing");
  int64_t out = w->dims[0];
  const Onnx__TensorProto *b = param_input(I, 2, "bias", 1, &out);
  Win win = window(I, w->dims + 2, true);
  if (win.k[0] != w->dims[2] || win.k[1] != w->dims[3])
    imp_error(I, "kernel_shape differs from the weight's %s", dims_str(w->dims, 4));
  int64_t groups = attr_int(I, "group", 1);
  if (groups < 1 || out % groups)
    imp_error(I, "group %lld does not divide the %lld output channels", (long long)groups, (long long)out);
  char *name = param_node_name(I, (const Onnx__TensorProto *[]){w, b}, (const char *[]){".weight", ".bias"},
                               2);
  char *a = "";
  a = cat(a, "conv2d(%s, %lld, kernel=%s", x->var, (long long)out, pair(win.k));
  if (win.s[0] != 1 || win.s[1] != 1)
    a = cat(a, ", stride=%s", pair(win.s));
  if (win.same)
    a = cat(a, "%s", ", padding=\"same\"");
  else if (win.p[0] || win.p[1])
    a = cat(a, ", padding=%s", pair(win.p));
  if (win.d[0] != 1 || win.d[1] != 1)
    a = cat(a, ", dilation=%s", pair(win.d));
  if (groups != 1)
    a = cat(a, ", groups=%lld", (long long)groups);
  if (!b)
    a = cat(a, "%s", ", bias=false");
  a = cat(a, ", name=\"%s\")", name);
  fill(I, 0, w, false);
  if (b)
    fill(I, 1, b, false);
  bind(I, 4, a);
}

/* linear from Gemm (B as [out, in] with transB=1, else [in, out]) or from
 * MatMul (B as [in, out]) followed by an Add of the bias. */
static void emit_linear(Imp *I, Val *x, const Onnx__TensorProto *w, bool w_in_out,
                        const Onnx__TensorProto *b) {
  if (x->rank != 2)
    imp_error(I, "the input must be 2-D [N, features]: flatten it first");
  int64_t out = w->dims[w_in_out ? 1 : 0];
  if (b && !((b->n_dims == 1 && b->dims[0] == out) || (b->n_dims == 2 && b->dims[0] == 1 && b->dims[1] == out)))
    imp_error(I, "the bias '%s' has shape %s, not [%lld]", b->name, dims_str(b->dims, (int)b->n_dims),
              (long long)out);
  char *name = param_node_name(I, (const Onnx__TensorProto *[]){w, b}, (const char *[]){".weight", ".bias"},
                               2);
  fill(I, 0, w, w_in_out);
  if (b)
    fill(I, 1, b, false);
  bind(I, 2, format("linear(%s, %lld%s, name=\"%s\")", x->var, (long long)out, b ? "" : ", bias=false", name));
}

static void read_gemm(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  static const char *const ok[] = {"alpha", "beta", "transA", "transB", NULL};
  only_attrs(I, ok);
  if (attr_float(I, "alpha", 1.0) != 1.0 || attr_float(I, "beta", 1.0) != 1.0)
    imp_error(I, "alpha and beta must be 1");
  if (attr_int(I, "transA", 0) != 0)
    imp_error(I, "transA must be 0");
  bool trans_b = attr_int(I, "transB", 0) != 0;
  Val *x = in_tensor(I, 0);
  const Onnx__TensorProto *w = param_input(I, 1, "weight", 2, (int64_t[]){-1, -1});
  if (!w)
    imp_error(I, "the weight is missing");
  bool is_init = true;
  const Onnx__TensorProto *b = in_const(I, 2, &is_init);
  if (b && !is_init)
    imp_error(I, "the bias ('%s') must be an initializer", cur_node->input[2]);
  if (b)
    check_tensor(I, b, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, "the bias");
  emit_linear(I, x, w, !trans_b, b);
}

/* Who reads each tensor: the number of node inputs and graph outputs
 * that name it, and the first node that does (-1: none).  One pass, so a
 * hostile graph costs linear time. */
static void count_readers(Imp *I) {
  for (size_t k = 0; k < I->g->n_node; k++) {
    const Onnx__NodeProto *n = I->g->node[k];
    for (size_t j = 0; j < n->n_input; j++) {
      if (!n->input[j][0])
        continue;
      int c = strmap_get(&I->nreaders, n->input[j]);
      strmap_put(&I->nreaders, n->input[j], c < 0 ? 1 : c + 1);
      if (c < 0)
        strmap_put(&I->first_reader, n->input[j], (int)k);
    }
  }
  for (size_t q = 0; q < I->g->n_output; q++) {
    const char *o = I->g->output[q]->name ? I->g->output[q]->name : "";
    int c = strmap_get(&I->nreaders, o);
    strmap_put(&I->nreaders, o, c < 0 ? 1 : c + 1);
  }
}

/* MatMul(x, W[in, out]), and the Add of a bias [out] that is the
 * product's only reader: one linear. */
static void read_matmul(Imp *I, int index, int arg) {
  (void)arg;
  only_attrs(I, (const char *const[]){NULL});
  Val *x = in_tensor(I, 0);
  const Onnx__TensorProto *w = param_input(I, 1, "weight", 2, (int64_t[]){-1, -1});
  if (!w)
    imp_error(I, "the weight is missing");
  const char *prod = cur_node->output[0];
  const Onnx__NodeProto *add = NULL;
  const Onnx__TensorProto *b = NULL;
  int k = strmap_get(&I->first_reader, prod);
  if (strmap_get(&I->nreaders, prod) == 1 && k > index) {
    const Onnx__NodeProto *n = I->g->node[k];
    int j = n->n_input != 2 ? -1 : strcmp(n->input[0], prod) == 0 ? 0 : 1;
    int vi = j < 0 ? -1 : val_index(I, n->input[1 - j]);
    if (n->op_type && strcmp(n->op_type, "Add") == 0 && n->n_output == 1 && vi >= 0 &&
        I->v[vi].kind == VAL_CONST && I->v[vi].is_init) {
      add = n;
      b = I->v[vi].t;
      check_tensor(I, b, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, "the bias");
      I->skip[k] = true;
    }
  }
  emit_linear(I, x, w, true, b);
  if (add)
    add_val(I, add->output[0], I->v[I->nv - 1]);
}

static void read_batchnorm(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  static const char *const ok[] = {"epsilon", "momentum", "spatial", NULL};
  only_attrs(I, ok);
  if (attr_int(I, "spatial", 1) != 1)
    imp_error(I, "spatial=0 is not supported");
  if (cur_node->n_output > 1)
    for (size_t k = 1; k < cur_node->n_output; k++)
      if (cur_node->output[k][0])
        imp_error(I, "the training-mode outputs (running mean and variance) are not supported; "
                  "export the model in eval mode");
  Val *x = in_tensor(I, 0);
  if (x->rank != 4 && x->rank != 2)
    imp_error(I, "the input must be 2-D or 4-D");
  const Onnx__TensorProto *t[4];
  static const char *const what[] = {"scale", "bias", "running mean", "running variance"};
  for (int k = 0; k < 4; k++) {
    t[k] = param_input(I, k + 1, what[k], 1, (int64_t[]){k ? t[0]->dims[0] : -1});
    if (!t[k])
      imp_error(I, "the %s is missing", what[k]);
  }
  double eps = shortest((float)attr_float(I, "epsilon", 1e-5));
  double momentum = shortest((float)attr_float(I, "momentum", 0.9));
  if (!(eps > 0) || !(momentum >= 0 && momentum <= 1))
    imp_error(I, "epsilon must be positive and momentum in [0, 1]");
  char *name = param_node_name(I, t, (const char *[]){".weight", ".bias", ".running_mean", ".running_var"},
                               4);
  for (int k = 0; k < 4; k++)
    fill(I, k, t[k], false);
  /* ONNX's momentum weighs the running statistic, PyTorch's the batch's;
   * the float ONNX stores is printed as the double nncc reads back */
  bind(I, x->rank, format("%s(%s, eps=%s, momentum=%s, name=\"%s\")", x->rank == 4 ? "batchnorm2d" : "batchnorm1d",
                          x->var, real(eps), real(1.0 - momentum), name));
}

/* Pooling: MaxPool, AveragePool and the global ones. */
static void read_pool(Imp *I, int index, int max) {
  (void)index;
  static const char *const okmax[] = {"kernel_shape", "strides", "pads", "dilations", "ceil_mode",
                                      "auto_pad", "storage_order", NULL};
  static const char *const okavg[] = {"kernel_shape", "strides", "pads", "ceil_mode", "auto_pad",
                                      "count_include_pad", NULL};
  only_attrs(I, max ? okmax : okavg);
  Val *x = in_tensor(I, 0);
  if (x->rank != 4)
    imp_error(I, "the input must be 4-D [N, C, H, W]");
  if (cur_node->n_output > 1 && cur_node->output[1][0])
    imp_error(I, "the Indices output is not supported");
  if (attr_int(I, "storage_order", 0) != 0)
    imp_error(I, "storage_order 1 is not supported");
  Win w = window(I, NULL, false);
  if (w.d[0] != 1 || w.d[1] != 1)
    imp_error(I, "dilated pooling is not supported");
  char *a = "";
  a = cat(a, "%s(%s, %s", max ? "maxpool2d" : "avgpool2d", x->var, pair(w.k));
  if (w.s[0] != w.k[0] || w.s[1] != w.k[1])
    a = cat(a, ", stride=%s", pair(w.s));
  if (w.p[0] || w.p[1])
    a = cat(a, ", padding=%s", pair(w.p));
  if (attr_int(I, "ceil_mode", 0))
    a = cat(a, "%s", ", ceil_mode=true");
  /* ONNX counts only the real pixels by default, PyTorch all of them */
  if (!max && (w.p[0] || w.p[1]) && !attr_int(I, "count_include_pad", 0))
    a = cat(a, "%s", ", count_include_pad=false");
  a = cat(a, "%s", ")");
  auto_name(I, max ? OP_MAXPOOL2D : OP_AVGPOOL2D);
  bind(I, 4, a);
}

static void read_global_pool(Imp *I, int index, int max) {
  (void)index;
  only_attrs(I, (const char *const[]){NULL});
  Val *x = in_tensor(I, 0);
  if (x->rank != 4)
    imp_error(I, "the input must be 4-D [N, C, H, W]");
  auto_name(I, max ? OP_ADAPTIVE_MAXPOOL2D : OP_ADAPTIVE_AVGPOOL2D);
  bind(I, 4, format("%s(%s, 1)", max ? "adaptive_maxpool2d" : "adaptive_avgpool2d", x->var));
}

/* An op of one tensor that keeps its shape. */
static void unary(Imp *I, OpKind op, const char *args) {
  Val *x = in_tensor(I, 0);
  auto_name(I, op);
  bind(I, x->rank, format("%s(%s%s)", op_name(op), x->var, args));
}

static void read_clip(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  double lo, hi;
  if (I->opset < 11) {
    only_attrs(I, (const char *const[]){"min", "max", NULL});
    lo = attr_float(I, "min", -3.4028234663852886e38);
    hi = attr_float(I, "max", 3.4028234663852886e38);
  } else {
    only_attrs(I, (const char *const[]){NULL});
    lo = scalar_input(I, 1, -INFINITY);
    hi = scalar_input(I, 2, INFINITY);
  }
  if (lo == 0 && hi == 6)
    unary(I, OP_RELU6, "");
  else if (lo == 0 && hi >= 3.4028234663852886e38)
    unary(I, OP_RELU, "");
  else if (lo < hi && isfinite(lo) && isfinite(hi))
    unary(I, OP_HARDTANH, format(", min_val=%s, max_val=%s", real(shortest((float)lo)), real(shortest((float)hi))));
  else
    imp_error(I, "Clip(min=%g, max=%g) has no nncc op (relu6 is [0, 6], hardtanh a finite range)", lo, hi);
}

static void read_flatten(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  only_attrs(I, (const char *const[]){"axis", NULL});
  Val *x = in_tensor(I, 0);
  if (attr_int(I, "axis", 1) != 1)
    imp_error(I, "only axis=1 (keep the batch) is supported");
  auto_name(I, OP_FLATTEN);
  bind(I, 2, format("flatten(%s)", x->var));
}

/* Reshape to [N, -1] (or [N, features]): flatten. */
static void read_reshape(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  only_attrs(I, (const char *const[]){"allowzero", NULL});
  Val *x = in_tensor(I, 0);
  const Onnx__TensorProto *s = in_const(I, 1, NULL);
  if (!s)
    imp_error(I, "the shape must be a constant");
  int64_t n = check_tensor(I, s, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, "the shape");
  int64_t d0 = n == 2 ? tensor_i(s, 0) : 0, d1 = n == 2 ? tensor_i(s, 1) : 0;
  if (n != 2 || !(d0 == 0 || d0 == -1 || d0 == I->batch || d0 == 1) || !(d1 == -1 || d1 > 0))
    imp_error(I, "only a reshape to [N, -1] (flatten) is supported");
  if (x->rank == 2 && d1 == -1) { /* already flat */
    add_val(I, cur_node->output[0], *x);
    return;
  }
  auto_name(I, OP_FLATTEN);
  bind(I, 2, format("flatten(%s)", x->var));
}

static void read_add(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  only_attrs(I, (const char *const[]){NULL});
  int i0 = val_index(I, cur_node->n_input > 0 ? cur_node->input[0] : NULL);
  int i1 = val_index(I, cur_node->n_input > 1 ? cur_node->input[1] : NULL);
  if (cur_node->n_input != 2 || i0 < 0 || i1 < 0)
    imp_error(I, "Add needs two defined inputs");
  if (I->v[i0].kind != VAL_TENSOR || I->v[i1].kind != VAL_TENSOR)
    imp_error(I, "adding a constant is supported only as a bias after MatMul");
  Val *a = &I->v[i0], *b = &I->v[i1];
  auto_name(I, OP_ADD);
  bind(I, a->rank, format("add(%s, %s)", a->var, b->var));
}

static void read_concat(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  only_attrs(I, (const char *const[]){"axis", NULL});
  if (attr_int(I, "axis", 1) != 1)
    imp_error(I, "only axis=1 (channels) is supported");
  if (cur_node->n_input < 1 || cur_node->n_input > NNCC_MAX_ARGS)
    imp_error(I, "Concat needs 1 to %d inputs", NNCC_MAX_ARGS);
  char *a = "";
  a = cat(a, "%s", "concat([");
  int rank = 0;
  for (size_t j = 0; j < cur_node->n_input; j++) {
    Val *x = in_tensor(I, (int)j);
    rank = x->rank;
    a = cat(a, "%s%s", j ? ", " : "", x->var);
  }
  a = cat(a, "%s", "])");
  auto_name(I, OP_CONCAT);
  bind(I, rank, a);
}

static void read_dropout(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  only_attrs(I, (const char *const[]){"ratio", "seed", "is_test", NULL});
  if (cur_node->n_output > 1 && cur_node->output[1][0])
    imp_error(I, "the mask output is not supported");
  double p = I->opset >= 12 ? scalar_input(I, 1, 0.5) : attr_float(I, "ratio", 0.5);
  if (I->opset >= 12 && cur_node->n_input > 2 && cur_node->input[2][0])
    imp_error(I, "the training_mode input is not supported (nncc's dropout is active in training, "
              "off in eval)");
  if (!(p >= 0 && p < 1))
    imp_error(I, "ratio %g is not in [0, 1)", p);
  unary(I, OP_DROPOUT, format(", p=%s", real(shortest((float)p))));
}

static void read_identity(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  only_attrs(I, (const char *const[]){NULL});
  add_val(I, cur_node->output[0], *in_tensor(I, 0));
}

static void read_constant(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  const Onnx__AttributeProto *a = attr("value");
  if (cur_node->n_attribute != 1 || !a || a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR || !a->t)
    imp_error(I, "only a Constant given as a tensor 'value' is supported");
  add_val(I, cur_node->output[0], (Val){.kind = VAL_CONST, .t = a->t});
}

/* An activation of no attributes: arg is its OpKind. */
static void read_activation(Imp *I, int index, int arg) {
  (void)index;
  only_attrs(I, (const char *const[]){NULL});
  unary(I, (OpKind)arg, "");
}

static void read_leaky_relu(Imp *I, int index, int arg) {
  (void)index, (void)arg;
  only_attrs(I, (const char *const[]){"alpha", NULL});
  unary(I, OP_LEAKY_RELU, format(", negative_slope=%s", real(shortest((float)attr_float(I, "alpha", 0.01f)))));
}

/* The ONNX ops import reads (docs/onnx.md has what each becomes): the
 * reader of the node at `index`, given `arg`. */
static const struct {
  const char *type, *note; /* note: what the error's list adds */
  void (*read)(Imp *I, int index, int arg);
  int arg;
} onnx_ops[] = {
    {"Conv", "", read_conv, 0},
    {"Gemm", "", read_gemm, 0},
    {"MatMul", " (+ Add)", read_matmul, 0},
    {"BatchNormalization", "", read_batchnorm, 0},
    {"Relu", "", read_activation, OP_RELU},
    {"Sigmoid", "", read_activation, OP_SIGMOID},
    {"Tanh", "", read_activation, OP_TANH},
    {"LeakyRelu", "", read_leaky_relu, 0},
    {"Clip", "", read_clip, 0},
    {"MaxPool", "", read_pool, 1},
    {"AveragePool", "", read_pool, 0},
    {"GlobalAveragePool", "", read_global_pool, 0},
    {"GlobalMaxPool", "", read_global_pool, 1},
    {"Flatten", "", read_flatten, 0},
    {"Reshape", " (to [N, -1])", read_reshape, 0},
    {"Add", "", read_add, 0},
    {"Concat", "", read_concat, 0},
    {"Dropout", "", read_dropout, 0},
    {"Identity", "", read_identity, 0},
    {"Constant", "", read_constant, 0},
};

static void read_node(Imp *I, int index) {
  const char *op = cur_node->op_type;
  if (I->skip[index])
    return;
  if (cur_node->domain && cur_node->domain[0] && strcmp(cur_node->domain, "ai.onnx") != 0)
    imp_error(I, "ops of domain '%s' are not supported", cur_node->domain);
  if (cur_node->n_output < 1 || !cur_node->output[0][0])
    imp_error(I, "the node has no output");
  size_t nops = sizeof onnx_ops / sizeof *onnx_ops;
  for (size_t i = 0; i < nops; i++)
    if (strcmp(op, onnx_ops[i].type) == 0) {
      onnx_ops[i].read(I, index, onnx_ops[i].arg);
      return;
    }
  char *list = "";
  for (size_t i = 0; i < nops; i++)
    list = format("%s%s%s%s", list, i ? ", " : "", onnx_ops[i].type, onnx_ops[i].note);
  imp_error(I, "op %s is not supported; nncc imports %s", op[0] ? op : "(unnamed)", list);
}

/* ---- the model -------------------------------------------------------- */

static Onnx__ModelProto *read_model(Imp *I, const uint8_t *data, size_t len) {
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, data);
  if (!m || !m->graph) {
    if (m)
      onnx__model_proto__free_unpacked(m, NULL);
    imp_error(I, "not an ONNX model (a truncated file, or not an ONNX protobuf)");
  }
  I->m = m;
  bool found = false;
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    if (!o->domain || !o->domain[0] || strcmp(o->domain, "ai.onnx") == 0) {
      found = true;
      I->opset = o->version;
    }
  }
  if (!found)
    imp_error(I, "the model imports no opset of the ONNX domain");
  if (I->opset < OPSET_MIN || I->opset > OPSET_MAX)
    imp_error(I, "opset %lld is not supported (nncc reads opsets %d to %d)", (long long)I->opset,
              OPSET_MIN, OPSET_MAX);
  if (m->graph->n_sparse_initializer)
    imp_error(I, "sparse initializers are not supported");
  return m;
}

/* The one input that is not an initializer: f32[N, C, H, W], N free (a
 * name, absent or 1: --batch) or fixed.  Writes the input line. */
static char *read_input(Imp *I, const char *source) {
  const Onnx__ValueInfoProto *in = NULL;
  int n = 0;
  for (size_t i = 0; i < I->g->n_input; i++)
    if (I->g->input[i]->name && val_index(I, I->g->input[i]->name) < 0)
      in = I->g->input[i], n++;
  if (n != 1)
    imp_error(I, "the graph has %d inputs besides its initializers; nncc trains a model of one input "
              "(the image batch)", n);
  const Onnx__TypeProto *t = in->type;
  if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type)
    imp_error(I, "input '%s' is not a tensor", str(in->name));
  if (t->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
    imp_error(I, "input '%s' is %s; nncc trains FLOAT (float32) models", in->name,
              dtype_name(t->tensor_type->elem_type));
  const Onnx__TensorShapeProto *s = t->tensor_type->shape;
  if (!s || s->n_dim != 4)
    imp_error(I, "input '%s' must be 4-D [N, C, H, W]", str(in->name));
  int64_t d[4];
  for (int k = 0; k < 4; k++) {
    const Onnx__TensorShapeProto__Dimension *dim = s->dim[k];
    d[k] = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? dim->dim_value : -1;
    if (k && (d[k] < 1 || d[k] > NNCC_MAX_SIZE))
      imp_error(I, "input '%s': dimension %d must be a fixed size", str(in->name), k + 1);
  }
  if (!I->batch)
    I->batch = d[0] > 1 ? d[0] : 64;
  if (!source) {
    if (d[1] != 1 || d[2] < 28 || d[3] < 28)
      imp_error(I, "input '%s' is %lldx%lldx%lld; nncc's data are 1x28x28 images (MNIST's IDX "
                "format): give the input's source with --input", in->name, (long long)d[1],
                (long long)d[2], (long long)d[3]);
    int64_t t0 = (d[2] - 28) / 2, l0 = (d[3] - 28) / 2;
    source = t0 == 0 && l0 == 0 && d[2] == 28 && d[3] == 28 ? "mnist"
             : t0 == l0 && d[2] == d[3] && (d[2] - 28) % 2 == 0 ? format("mnist(pad=%lld)", (long long)t0)
             : format("mnist(pad=[%lld, %lld])", (long long)t0, (long long)l0);
  }
  char *var = var_name(I, in->name, "x");
  add_val(I, in->name, (Val){.kind = VAL_TENSOR, .var = var, .rank = 4});
  return format("input %s: f32[%lld, %lld, %lld, %lld] = %s\n", var, (long long)I->batch,
                (long long)d[1], (long long)d[2], (long long)d[3], source);
}

/* Requires: the text compiled.  Copies each parameter from its
 * initializer (w NULL: only checks that each has the parameter's size, so
 * the block is allocated only for a model the initializers fill). */
static void fill_weights(Imp *I, Graph *g, int first_line, float *w) {
  for (int f = 0; f < I->nfills; f++) {
    const Fill *fl = &I->fills[f];
    Node *n = NULL;
    for (int i = 0; i < g->nnodes && !n; i++) {
      int line, col;
      loc_line_col(g->nodes[i]->loc, &line, &col);
      if (line == first_line + fl->line && g->nodes[i]->nparams)
        n = g->nodes[i];
    }
    if (!n || fl->k >= n->nparams)
      ICE("no parameter %d on line %d of the imported text", fl->k, first_line + fl->line);
    const Param *p = &n->params[fl->k];
    cur_node = fl->node;
    int64_t numel = tensor_numel(I, fl->src);
    if (numel != p->numel)
      imp_error(I, "initializer '%s' has %lld values, parameter %s needs %lld", fl->src->name,
                (long long)numel, p->name, (long long)p->numel);
    if (!w)
      continue;
    float *dst = w + p->offset;
    if (fl->transpose) { /* [in, out] -> [out, in] */
      int64_t rows = fl->src->dims[0], cols = fl->src->dims[1];
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
          dst[c * rows + r] = tensor_f(fl->src, r * cols + c);
    } else {
      for (int64_t i = 0; i < numel; i++)
        dst[i] = tensor_f(fl->src, i);
    }
  }
  cur_node = NULL;
}

static noreturn void import_usage(const char *fmt, const char *arg) {
  command_usage("usage: nncc import MODEL.onnx [-o MODEL.nn] [--weights W.safetensors] "
                "[--batch N] [--input SOURCE]\n", fmt, arg);
}

/* The import of one ONNX file's bytes: see nncc.h. */
static void import_model(Imp *I, const uint8_t *data, size_t len, const char *model_name,
                         OnnxImport *res) {
  Onnx__ModelProto *m = read_model(I, data, len);
  I->g = m->graph;
  if (I->g->n_node > NNCC_MAX_NODES)
    imp_error(I, "the graph has %zu nodes, more than nncc's limit of %s", I->g->n_node,
              fmt_count(NNCC_MAX_NODES));
  for (size_t k = 0; k < I->g->n_node; k++) /* an absent optional string is NULL */
    if (!I->g->node[k]->op_type)
      imp_error(I, "node %zu has no op_type", k + 1);
  count_readers(I);
  I->skip = xalloc(sizeof(bool) * (I->g->n_node + 1));
  char *model = var_name(I, model_name, "model");

  for (size_t i = 0; i < I->g->n_initializer; i++) {
    const Onnx__TensorProto *t = I->g->initializer[i];
    if (!t->name || !t->name[0])
      imp_error(I, "initializer %zu has no name", i + 1);
    add_val(I, t->name, (Val){.kind = VAL_CONST, .t = t, .is_init = true});
  }
  if (I->g->n_output != 1)
    imp_error(I, "the graph has %zu outputs; nncc trains a model of one output (the logits)",
              I->g->n_output);
  char *head = read_input(I, I->source);
  char *label = var_name(I, "labels", "labels");
  char *loss = var_name(I, "loss", "loss");

  for (size_t i = 0; i < I->g->n_node; i++) {
    cur_node = I->g->node[i];
    read_node(I, (int)i);
  }
  cur_node = NULL;
  const Onnx__ValueInfoProto *o = I->g->output[0];
  int oi = val_index(I, o->name);
  if (oi < 0 || I->v[oi].kind != VAL_TENSOR || I->v[oi].rank != 2)
    imp_error(I, "the output '%s' must be computed from the input as [N, classes] logits",
              str(o->name));
  int64_t k = -1;
  const Onnx__TypeProto *ot = o->type;
  if (ot && ot->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && ot->tensor_type &&
      ot->tensor_type->shape && ot->tensor_type->shape->n_dim == 2 &&
      ot->tensor_type->shape->dim[1]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
    k = ot->tensor_type->shape->dim[1]->dim_value;
  /* else the classes are the last linear's outputs (checked once compiled) */
  for (int f = I->nfills - 1; f >= 0 && k < 1; f--)
    if (I->fills[f].k == 0 && I->fills[f].src->n_dims == 2)
      k = I->fills[f].transpose ? I->fills[f].src->dims[1] : I->fills[f].src->dims[0];
  if (k < 1 || k > NNCC_MAX_CLASSES)
    imp_error(I, "the output '%s' must have a fixed number of classes, 1 to %d", str(o->name),
              NNCC_MAX_CLASSES);

  /* the whole text: a header, the input and label, the nodes, the loss */
  Buf *text = &res->text;
  buf_printf(text, "# Imported from %s by nncc %s: ONNX IR %lld, opset %lld%s%s%s.\n", I->path,
             NNCC_VERSION, (long long)m->ir_version, (long long)I->opset,
             m->producer_name && m->producer_name[0] ? ", made by " : "",
             m->producer_name ? m->producer_name : "",
             m->producer_version && m->producer_version[0] ? format(" %s", m->producer_version) : "");
  buf_printf(text, "# Parameters keep the ONNX initializers' names (docs/onnx.md); the train line\n"
                   "# is nncc's default: edit it.\n");
  buf_printf(text, "model %s\n\n%s", model, head);
  buf_printf(text, "label %s: class[%lld] of %lld\n\n", label, (long long)I->batch, (long long)k);
  int first_line = 0;
  for (size_t i = 0; i < text->len; i++)
    first_line += text->data[i] == '\n';
  buf_puts(text, I->nn.data ? I->nn.data : "");
  buf_printf(text, "%s = cross_entropy(%s, %s)\n\ntrain adam(lr=0.001) epochs=10 seed=1\n", loss,
             I->v[oi].var, label);
  buf_free(&I->nn);

  /* compiled by the front end: what import writes is a model nncc takes */
  I->compiling = true;
  SrcFile *file = source_from_string(res->nn_name ? res->nn_name : "<import>", text->data);
  Graph *g = elaborate(file, parse(file));
  ranks_pass(g, 1, 0);
  shape_pass(g);
  params_layout(g);
  Node *logits = g->nodes[g->nodes[g->loss]->in[0]];
  if (logits->dims[1] != k)
    imp_error(I, "the output '%s' has %lld classes, its ValueInfo says %lld", str(o->name),
              (long long)logits->dims[1], (long long)k);
  fill_weights(I, g, first_line, NULL);
  res->graph = g;
  if (res->want_weights) {
    res->weights = weights_alloc(g);
    fill_weights(I, g, first_line, res->weights);
  }
}

bool onnx_import(const char *path, const uint8_t *data, size_t len, OnnxImport *res) {
  Imp I = {.path = path, .batch = res->batch, .source = res->input};
  /* the model's name: the output's file name, else the ONNX file's */
  const char *base = res->nn_name ? res->nn_name : path;
  base = strrchr(base, '/') ? strrchr(base, '/') + 1 : base;
  char *name = xstrndup(base, strcspn(base, "."));
  jmp_buf trap, *outer = diag_trap;
  diag_trap = &trap;
  bool ok = !setjmp(trap);
  if (ok)
    import_model(&I, data, len, name, res);
  diag_trap = outer;
  cur_node = NULL;
  if (I.m)
    onnx__model_proto__free_unpacked(I.m, NULL);
  if (!ok) {
    if (I.compiling) /* the front end's error quoted a line of text not written */
      fprintf(diag_out ? diag_out : stderr, "note: in the .nn text nncc import made of %s; nothing "
              "was written\n", path);
    buf_free(&I.nn);
    buf_free(&res->text);
    free(res->weights);
    res->weights = NULL;
  }
  return ok;
}

int onnx_import_main(int argc, char **argv) {
  OnnxImport res = {0};
  const char *path = NULL, *out = NULL, *weights = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-o") == 0 || strcmp(a, "--weights") == 0 || strcmp(a, "--batch") == 0 ||
        strcmp(a, "--input") == 0) {
      if (i + 1 == argc)
        import_usage("%s needs a value", a);
      const char *v = argv[++i];
      if (a[1] == 'o')
        out = v;
      else if (a[2] == 'w')
        weights = v;
      else if (a[2] == 'i')
        res.input = v;
      else {
        char *end;
        errno = 0;
        long long b = strtoll(v, &end, 10);
        if (errno || *end || end == v || b < 1 || b > 1 << 20)
          import_usage("--batch takes a batch size from 1 to 1048576, not '%s'", v);
        res.batch = b;
      }
    } else if (a[0] == '-' && a[1]) {
      import_usage("unknown import option '%s'", a);
    } else if (path) {
      import_usage("more than one input file ('%s')", a);
    } else {
      path = a;
    }
  }
  if (!path)
    import_usage("import needs an ONNX file%s", "");
  size_t len;
  char *data = fio_read_file(path, ONNX_MAX_BYTES, &len);
  if (!data) {
    fprintf(stderr, "nncc: error: cannot read '%s': %s\n", path,
            errno == EFBIG ? "larger than 2 GiB, protobuf's limit" : fio_strerror(errno));
    return 1;
  }
  refuse_clobber("-o", out, 2, (const char *[]){path, weights},
                 (const char *[]){"the ONNX file", "the --weights output"});
  refuse_clobber("--weights", weights, 1, (const char *[]){path}, (const char *[]){"the ONNX file"});
  res.nn_name = out;
  res.want_weights = weights != NULL;
  bool ok = onnx_import(path, (const uint8_t *)data, len, &res);
  free(data);
  if (!ok)
    return 1;
  int rc = 0;
  if (weights && !weights_save(res.graph, weights, res.weights))
    rc = 1;
  if (rc == 0)
    rc = write_output(out, res.text.data, res.text.len);
  buf_free(&res.text);
  free(res.weights);
  return rc;
}
