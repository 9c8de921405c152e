/*
 * ops/io.c -- the ends of the graph: the model's input, its labels and the
 * loss.  They have no kernels of their own: the runtime fills the input
 * and the labels, and computes the loss and its gradient from the logits.
 */
#include "../nncc.h"

#include <math.h>

/* ---- input x: f32[N, C, H, W] = mnist(pad=...) ----------------------- */

/* The declared input must match its data source: MNIST's 1x28x28 images,
 * placed at (top, left) of the input. */
static void shape_input(Graph *g, Node *n) {
  if (n->rank != 4)
    shape_error(n, "input '%s' must be 4-D [N, C, H, W], got %d dimensions", n->name, n->rank);
  int64_t t = g->pad_top, l = g->pad_left;
  bool fits = g->pad_pair ? n->dims[2] >= 28 + t && n->dims[3] >= 28 + l
                          : n->dims[2] == 28 + 2 * t && n->dims[3] == 28 + 2 * l;
  if (n->dims[1] != 1 || !fits) {
    const char *src = g->pad_pair ? format("(pad=[%lld, %lld])", (long long)t, (long long)l)
                      : t       ? format("(pad=%lld)", (long long)t)
                                : "";
    if (g->pad_pair)
      diag_error(g->source_loc, "input '%s' is %s, but mnist%s needs 1 channel and at least "
                 "%lldx%lld to place 28x28 images at row %lld, column %lld", n->name, type_str(n),
                 src, (long long)(28 + t), (long long)(28 + l), (long long)t, (long long)l);
    else
      diag_error(g->source_loc, "input '%s' is %s, but mnist%s gives 1x%lldx%lld images", n->name,
                 type_str(n), src, (long long)(28 + 2 * t), (long long)(28 + 2 * t));
    if (!g->pad_pair && n->dims[1] == 1 && n->dims[2] == n->dims[3] && n->dims[2] > 28 &&
        (n->dims[2] - 28) % 2 == 0)
      diag_note(NULL, "to place 28x28 images in %lldx%lld, use mnist(pad=%lld)",
                (long long)n->dims[2], (long long)n->dims[3], (long long)(n->dims[2] - 28) / 2);
    diag_fail();
  }
}

const OpDesc op_input = {
    .abbrev = "input",
    .flags = OPF_NO_KERNELS,
    .shape = shape_input,
};

/* ---- label y: class[N] of C ------------------------------------------ */

static void shape_label(Graph *g, Node *n) {
  Node *x = g->nodes[g->input];
  if (n->dims[0] != x->dims[0])
    shape_error(n, "label '%s' has batch %lld but input '%s' has batch %lld", n->name,
                (long long)n->dims[0], x->name, (long long)x->dims[0]);
}

const OpDesc op_label = {
    .abbrev = "label",
    .flags = OPF_NO_KERNELS | OPF_NO_BUFFER,
    .shape = shape_label,
};

/* ---- cross_entropy(logits, labels, label_smoothing=0.0) ---------------
 * nn.CrossEntropyLoss(label_smoothing=e): the mean over the batch of
 * (1 - e) * -log softmax(logits)[label] + e * mean_c -log softmax(logits)[c].
 */
typedef struct CrossEntropyAttrs {
  double label_smoothing;
} CrossEntropyAttrs;

static void shape_cross_entropy(Graph *g, Node *n) {
  Node *logits = node_in(g, n, 0), *y = node_in(g, n, 1);
  double e = ATTRS(n, CrossEntropyAttrs)->label_smoothing;
  if (y->id != g->label)
    shape_error(n, "cross_entropy: 'labels' must be the model's label, got %s %%%s", type_str(y),
                y->name);
  if (logits->rank != 2)
    shape_error(n, "cross_entropy: logits must be 2-D [N, classes], got %s %%%s", type_str(logits),
                logits->name);
  if (logits->dims[0] != y->dims[0])
    shape_error(n, "cross_entropy: logits have batch %lld but label '%s' has batch %lld",
                (long long)logits->dims[0], y->name, (long long)y->dims[0]);
  if (logits->dims[1] != y->classes)
    shape_error(n, "cross_entropy: logits have %lld classes (%s) but label '%s' has %lld",
                (long long)logits->dims[1], type_str(logits), y->name, (long long)y->classes);
  if (!(e >= 0 && e <= 1))
    shape_error(n, "cross_entropy: label_smoothing must be in [0, 1], got %g", e);
  set_type(n, 0, 0, 0, 0, 0);
}

/* log-softmax and the sum forward, the softmax difference backward */
static int64_t flops_cross_entropy_fwd(const Graph *g, const Node *n) {
  return 4 * node_numel(node_in(g, n, 0));
}
static int64_t flops_cross_entropy_bwd(const Graph *g, const Node *n) {
  return 2 * node_numel(node_in(g, n, 0));
}

static void model_fields_cross_entropy(Emit *E, Node *n) {
  double e = ATTRS(n, CrossEntropyAttrs)->label_smoothing;
  if (e != 0)
    buf_printf(emit_out(E), "    .label_smoothing = %s,\n", emit_real(e, false));
}

static const char *const cross_entropy_inputs[] = {"logits", "labels"};
static const AttrDesc cross_entropy_attrs[] = {
    ATTR(CrossEntropyAttrs, label_smoothing, AT_FLOAT, "0.0", true),
};

const OpDesc op_cross_entropy = {
    .name = "cross_entropy",
    .abbrev = "loss",
    .inputs = cross_entropy_inputs,
    .nin = 2,
    .attrs = cross_entropy_attrs,
    .nattrs = 1,
    .attrs_size = sizeof(CrossEntropyAttrs),
    .flags = OPF_NO_KERNELS | OPF_NO_BUFFER | OPF_LOSS,
    .shape = shape_cross_entropy,
    .flops_fwd = flops_cross_entropy_fwd,
    .flops_bwd = flops_cross_entropy_bwd,
    .model_fields = model_fields_cross_entropy,
};
