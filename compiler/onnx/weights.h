/*
 * weights.h -- reading and writing a model's parameters with the
 * runtime's checkpoint code (runtime/ckpt.c), for the commands that
 * read a model and its checkpoint without training: import, export, --infer.
 */
#ifndef NNCC_WEIGHTS_H
#define NNCC_WEIGHTS_H

#include "nncc.h"
#include "rt.h"

/* A zeroed parameter block of g (g->params_floats floats, malloc'd). */
float *weights_alloc(const Graph *g);
/* Writes g's parameters and buffers from w as a safetensors file with no
 * optimizer state or metadata, atomically; false after the runtime's
 * one-line message ("nncc: ..."). */
bool weights_save(const Graph *g, const char *path, const float *w);
/* Reads a checkpoint of g (a trainer's, or weights_save's) into w with
 * every check the trainer's --load makes; false after its message. */
bool weights_load(const Graph *g, const char *path, float *w);
/* weights_alloc and weights_load: a new block with the checkpoint's
 * values, or NULL after its message. */
float *weights_read(const Graph *g, const char *path);
/* The model file at path through the front end for one process, its
 * parameters laid out: what export and --infer start from.  A front-end
 * error exits with its message. */
Graph *model_load(const char *path);

#endif
