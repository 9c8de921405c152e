/*
 * weights.c -- a model's parameters as the runtime stores them, for the
 * commands that read or write a checkpoint without training: `nncc import
 * --weights`, `nncc export --load` and `nncc --infer --load`.  The
 * checkpoint format, its checks and its messages are runtime/ckpt.c's own,
 * so a file nncc writes is one the trainer loads, and nncc refuses what
 * the trainer would.
 */
#include "weights.h"

#include <errno.h>
#include <stdlib.h>

/* The NnccModel view of g's parameters (names, kinds, shapes, offsets):
 * what the generated trainer's params[] table says.  Requires:
 * params_layout(g). */
static NnccModel rt_model(const Graph *g) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++)
    n += g->nodes[i]->nparams;
  NnccParam *ps = xalloc(sizeof *ps * (size_t)(n ? n : 1));
  int k = 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i]->nparams; j++) {
      const Param *p = &g->nodes[i]->params[j];
      NnccParam *q = &ps[k++];
      q->name = p->name;
      q->kind = p->kind == P_WEIGHT ? NNCC_PARAM : p->kind == P_BUFFER ? NNCC_BUFFER : NNCC_BUFFER_COUNT;
      q->rank = p->rank;
      for (int d = 0; d < p->rank; d++)
        q->shape[d] = p->dims[d];
      q->numel = (size_t)p->numel;
      q->offset = (size_t)p->offset;
    }
  return (NnccModel){.abi = NNCC_RT_ABI, .name = g->name, .nparams = n, .params = ps,
                     .params_floats = (size_t)g->params_floats};
}

float *weights_alloc(const Graph *g) {
  float *w = calloc((size_t)g->params_floats + 1, sizeof *w);
  if (!w)
    fatal("out of memory for the %s parameters of model %s", fmt_count(g->params_floats), g->name);
  return w;
}

bool weights_save(const Graph *g, const char *path, const float *w) {
  NnccModel m = rt_model(g);
  return ckpt_save_weights(path, &m, w) == 0;
}

bool weights_load(const Graph *g, const char *path, float *w) {
  NnccModel m = rt_model(g);
  NnccTrainConfig c = {0};
  NnccProgress p = {0};
  return ckpt_load(path, &m, &c, w, NULL, &p) == 0;
}

float *weights_read(const Graph *g, const char *path) {
  float *w = weights_alloc(g);
  if (weights_load(g, path, w))
    return w;
  free(w);
  return NULL;
}

Graph *model_load(const char *path) {
  SrcFile *file = read_source(path);
  if (!file)
    fatal("cannot read '%s': %s", path, fio_strerror(errno));
  Graph *g = elaborate(file, parse(file));
  ranks_pass(g, 1, 0);
  shape_pass(g);
  params_layout(g);
  return g;
}
