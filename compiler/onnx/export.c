/*
 * export.c -- `nncc export MODEL.nn --load CKPT.safetensors -o MODEL.onnx`:
 * a trained model's inference graph as ONNX (opset 13).
 *
 * The model is compiled by the front end (typed, unfused), its checkpoint
 * read by the runtime's checkpoint loader with every check the trainer's
 * --load makes; then each node's op adds its ONNX nodes through its
 * descriptor's onnx() hook (compiler/ops/), batch norm with its running
 * statistics, dropout as nothing.  The input is "input" [N, C, H, W] and
 * the output "logits" [N, classes], N a symbolic batch; the parameters
 * are initializers under their state_dict names.  The file is packed by
 * protobuf-c and written atomically.  docs/onnx.md.
 */
#include "onnx.pb-c.h"
#include "weights.h"

#include <stdlib.h>
#include <string.h>

#define OPSET 13
#define IR_VERSION 7 /* the IR of opset 13 (ONNX 1.8) */

struct Onnx {
  const Graph *g;
  const char *path;        /* the .nn file, for messages */
  const float *w;          /* the parameter block */
  const Node *logits;      /* the node whose output is "logits" */
  const char **tensor;     /* per node id: its output's tensor name */
  Onnx__NodeProto **nodes;
  int nnodes, ncap;
  Onnx__TensorProto **inits;
  int ninits, icap;
  Onnx__NodeProto *last;   /* the node onnx_attr_*() add to */
};

/* ---- the helpers the ops call ------------------------------------------ */

noreturn void onnx_refuse(Onnx *X, const Node *n, const char *why) {
  fprintf(stderr, "nncc: error: %s: node %s (%s) cannot be exported to ONNX: %s\n", X->path, n->name,
          op_name(n->op), why);
  diag_fail();
}

const char *onnx_in(Onnx *X, const Node *n, int j) { return X->tensor[n->in[j]]; }

static Onnx__TensorProto *new_tensor(Onnx *X, const char *name, int rank, const int64_t *dims,
                                     const float *data, int64_t numel) {
  Onnx__TensorProto *t = xalloc(sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = xstrdup(name);
  t->has_data_type = true;
  t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  t->n_dims = (size_t)rank;
  t->dims = xalloc(sizeof(int64_t) * (size_t)(rank ? rank : 1));
  memcpy(t->dims, dims, sizeof(int64_t) * (size_t)rank);
  t->has_raw_data = true; /* little-endian floats: the host's (runtime/rt.h checks) */
  t->raw_data.len = (size_t)numel * sizeof(float);
  t->raw_data.data = (uint8_t *)data;
  VEC_PUSH(X->inits, X->ninits, X->icap, t);
  return t;
}

const char *onnx_param(Onnx *X, const Node *n, int k) {
  const Param *p = &n->params[k];
  return new_tensor(X, p->name, p->rank, p->dims, X->w + p->offset, p->numel)->name;
}

const char *onnx_scalar(Onnx *X, const Node *n, const char *what, double v) {
  float *f = xalloc(sizeof *f);
  *f = (float)v;
  return new_tensor(X, format("%s.%s", n->name, what), 0, NULL, f, 1)->name;
}

void onnx_node(Onnx *X, const Node *n, const char *op_type, const char *const *in, int nin) {
  Onnx__NodeProto *p = xalloc(sizeof *p);
  onnx__node_proto__init(p);
  p->name = n->name;
  p->op_type = (char *)op_type;
  p->n_input = (size_t)nin;
  p->input = xalloc(sizeof(char *) * (size_t)(nin ? nin : 1));
  for (int j = 0; j < nin; j++)
    p->input[j] = (char *)in[j];
  p->n_output = 1;
  p->output = xalloc(sizeof(char *));
  p->output[0] = (char *)(n == X->logits ? "logits" : n->name);
  X->tensor[n->id] = p->output[0];
  VEC_PUSH(X->nodes, X->nnodes, X->ncap, p);
  X->last = p;
}

void onnx_unary(Onnx *X, const Node *n, const char *op_type) {
  onnx_node(X, n, op_type, (const char *[]){onnx_in(X, n, 0)}, 1);
}

static Onnx__AttributeProto *new_attr(Onnx *X, const char *name, Onnx__AttributeProto__AttributeType type) {
  Onnx__AttributeProto *a = xalloc(sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = (char *)name;
  a->has_type = true;
  a->type = type;
  Onnx__NodeProto *p = X->last;
  p->attribute = xrealloc_pool(p->attribute, sizeof(*p->attribute) * p->n_attribute,
                               sizeof(*p->attribute) * (p->n_attribute + 1));
  p->attribute[p->n_attribute++] = a;
  return a;
}

void onnx_attr_int(Onnx *X, const char *name, int64_t v) {
  Onnx__AttributeProto *a = new_attr(X, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  a->has_i = true;
  a->i = v;
}

void onnx_attr_float(Onnx *X, const char *name, double v) {
  Onnx__AttributeProto *a = new_attr(X, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  a->has_f = true;
  a->f = (float)v;
}

void onnx_attr_ints(Onnx *X, const char *name, const int64_t *v, int n) {
  Onnx__AttributeProto *a = new_attr(X, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  a->n_ints = (size_t)n;
  a->ints = xalloc(sizeof(int64_t) * (size_t)n);
  memcpy(a->ints, v, sizeof(int64_t) * (size_t)n);
}

void onnx_alias(Onnx *X, const Node *n) {
  if (n == X->logits) /* the output must be some node's: an Identity */
    onnx_unary(X, n, "Identity");
  else
    X->tensor[n->id] = onnx_in(X, n, 0);
}

/* ---- the model ---------------------------------------------------------- */

/* A ValueInfo: f32[N, d1, ...] with N the symbolic batch. */
static Onnx__ValueInfoProto *value_info(const char *name, const Node *n) {
  Onnx__ValueInfoProto *v = xalloc(sizeof *v);
  onnx__value_info_proto__init(v);
  v->name = (char *)name;
  Onnx__TypeProto *t = xalloc(sizeof *t);
  onnx__type_proto__init(t);
  Onnx__TypeProto__Tensor *tt = xalloc(sizeof *tt);
  onnx__type_proto__tensor__init(tt);
  tt->has_elem_type = true;
  tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  Onnx__TensorShapeProto *s = xalloc(sizeof *s);
  onnx__tensor_shape_proto__init(s);
  s->n_dim = (size_t)n->rank;
  s->dim = xalloc(sizeof(*s->dim) * (size_t)n->rank);
  for (int d = 0; d < n->rank; d++) {
    Onnx__TensorShapeProto__Dimension *dim = xalloc(sizeof *dim);
    onnx__tensor_shape_proto__dimension__init(dim);
    if (d == 0) {
      dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      dim->dim_param = "N";
    } else {
      dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      dim->dim_value = n->dims[d];
    }
    s->dim[d] = dim;
  }
  tt->shape = s;
  t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  t->tensor_type = tt;
  v->type = t;
  return v;
}

/* The ONNX model of g's inference graph with parameters w, packed. */
static uint8_t *export_model(Onnx *X, size_t *len) {
  const Graph *g = X->g;
  X->tensor = xalloc(sizeof(char *) * (size_t)g->nnodes);
  X->logits = g->nodes[g->nodes[g->loss]->in[0]];
  X->tensor[g->input] = "input";
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = g->nodes[i];
    if (node_desc(n)->flags & OPF_NO_KERNELS)
      continue; /* input, label, loss */
    if (!node_desc(n)->onnx)
      onnx_refuse(X, n, "the op has no ONNX form in nncc");
    node_desc(n)->onnx(X, g, n);
  }
  if (X->logits->id == g->input)
    onnx_refuse(X, X->logits, "the logits are the input itself");

  Onnx__GraphProto *gp = xalloc(sizeof *gp);
  onnx__graph_proto__init(gp);
  gp->name = g->name;
  gp->n_node = (size_t)X->nnodes;
  gp->node = X->nodes;
  gp->n_initializer = (size_t)X->ninits;
  gp->initializer = X->inits;
  gp->n_input = 1;
  gp->input = xalloc(sizeof(*gp->input));
  gp->input[0] = value_info("input", g->nodes[g->input]);
  gp->n_output = 1;
  gp->output = xalloc(sizeof(*gp->output));
  gp->output[0] = value_info("logits", X->logits);

  Onnx__OperatorSetIdProto *opset = xalloc(sizeof *opset);
  onnx__operator_set_id_proto__init(opset);
  opset->domain = "";
  opset->has_version = true;
  opset->version = OPSET;
  Onnx__ModelProto *m = xalloc(sizeof *m);
  onnx__model_proto__init(m);
  m->has_ir_version = true;
  m->ir_version = IR_VERSION;
  m->n_opset_import = 1;
  m->opset_import = xalloc(sizeof(*m->opset_import));
  m->opset_import[0] = opset;
  m->producer_name = "nncc";
  m->producer_version = NNCC_VERSION;
  m->graph = gp;
  *len = onnx__model_proto__get_packed_size(m);
  uint8_t *out = malloc(*len ? *len : 1);
  if (!out)
    fatal("out of memory for a %zu-byte ONNX file", *len);
  onnx__model_proto__pack(m, out);
  return out;
}

static noreturn void export_usage(const char *fmt, const char *arg) {
  command_usage("usage: nncc export MODEL.nn --load CKPT.safetensors -o MODEL.onnx\n", fmt, arg);
}

int onnx_export_main(int argc, char **argv) {
  const char *path = NULL, *load = NULL, *out = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-o") == 0 || strcmp(a, "--load") == 0) {
      if (i + 1 == argc)
        export_usage("%s needs a file name", a);
      *(a[1] == 'o' ? &out : &load) = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      export_usage("unknown export option '%s'", a);
    } else if (path) {
      export_usage("more than one model file ('%s')", a);
    } else {
      path = a;
    }
  }
  if (!path)
    export_usage("export needs a model file%s", "");
  if (!load)
    export_usage("export needs the trained parameters: --load CKPT.safetensors%s", "");
  if (!out)
    export_usage("export needs -o MODEL.onnx%s", "");

  refuse_clobber("-o", out, 2, (const char *[]){path, load},
                 (const char *[]){"the model file", "the checkpoint"});
  Graph *g = model_load(path);
  float *w = weights_read(g, load);
  if (!w)
    return 1;
  Onnx X = {.g = g, .path = path, .w = w};
  size_t len;
  uint8_t *bytes = export_model(&X, &len);
  int rc = write_output(out, (const char *)bytes, len);
  free(bytes);
  free(w);
  return rc;
}
