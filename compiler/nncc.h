/*
 * nncc.h -- the compiler's one internal header, a section per file.
 *
 * Pipeline (see main.c):
 *   .nn text -> lex -> parse (AST) -> elab (Graph) -> shape -> ... -> emit
 * Every pass takes a Graph and is followed by ir_verify().
 */
#ifndef NNCC_H
#define NNCC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdnoreturn.h>

/* NNCC_VERSION, NNCC_RT_ABI and NNCC_MAX_CLASSES are the runtime's: nncc
 * and the runtime it emits code for are one version. */
#include "nncc_rt.h"

/* ---- limits ----------------------------------------------------------
 * Every limit nncc enforces, decided here once (docs/language.md, "Limits").
 * A program or model beyond one is a located user error that names it:
 * never a crash, an internal error or a trainer that overflows.
 *
 * Sizes follow from the back end.  The kernels index tensors and add or
 * double a few sizes in C `int` (a padded plane, 2*Ho*Wo), so a tensor --
 * and the padded input a window op reads -- has at most 2^30 elements,
 * one bit of headroom below INT_MAX, and every size (a dimension, kernel,
 * stride, padding, out) is at most 2^30.  Byte counts and FLOPs are int64
 * and stay far from overflow.  The number of classes is the runtime's
 * NNCC_MAX_CLASSES (runtime/nncc_rt.h): labels are stored as bytes.
 *
 * The rest bound the compiler itself: on any input, well-formed or
 * hostile, it answers in about a second and a few hundred MB at most,
 * while leaving room for models of ~100k nodes.
 */
#define NNCC_MAX_SIZE (INT64_C(1) << 30)       /* one dimension or size attribute */
#define NNCC_MAX_ELEMENTS (INT64_C(1) << 30)   /* one tensor, parameter or padded input */
#define NNCC_MAX_BYTES (INT64_C(1) << 40)      /* all parameters; the activation arena */
#define NNCC_MAX_FLOPS (INT64_C(1) << 62)      /* one training step, forward + backward */
#define NNCC_MAX_SOURCE_BYTES (16 << 20)       /* a model's files together */
#define NNCC_MAX_NESTING 256                   /* brackets, operators, statement bodies */
/* The work budgets below are divided by NNCC_BUDGET_DIV: the fuzz build
 * (tests/fuzz) sets 10, so that an input filling a budget still fits
 * libFuzzer's 1 s timeout under ASan and UBSan, while the fuzzer still
 * checks that every budget is enforced.  bench/frontend_scale.sh times the
 * full budgets natively. */
#ifndef NNCC_BUDGET_DIV
#define NNCC_BUDGET_DIV 1
#endif
#define NNCC_MAX_SYNTAX (1500000 / NNCC_BUDGET_DIV) /* expressions and statements, all files */
#define NNCC_MAX_ARGS 256                      /* arguments of a call, parameters of a block */
#define NNCC_MAX_STEPS (20000000 / NNCC_BUDGET_DIV) /* statements and expressions elaborated */
#define NNCC_MAX_NODES (50000 / NNCC_BUDGET_DIV) /* graph nodes (~2 KB each, ~5.5 KB under ASan) */
#define NNCC_MAX_LIST_ITEMS (4000000 / NNCC_BUDGET_DIV) /* list elements created, all lists */
#define NNCC_MAX_CALLS (500000 / NNCC_BUDGET_DIV) /* block calls */
#define NNCC_MAX_CALL_DEPTH 64                 /* block calls inside block calls */
#define NNCC_MAX_EVAL_DEPTH 1024               /* elaboration's recursion (C stack) */

/* ---- util.c ---------------------------------------------------------- */

/* All compiler memory comes from one pool, released by pool_free_all(). */
void *xalloc(size_t n);            /* zeroed, from the pool */
void *xrealloc_pool(void *p, size_t old, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pool_free_all(void);

/* A growable byte string (heap memory, not the pool: outputs can be big). */
typedef struct Buf {
  char *data;
  size_t len, cap;
} Buf;
void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_puts(Buf *b, const char *s);
void buf_free(Buf *b);

/* Growable pointer array in the pool. */
#define VEC_PUSH(arr, n, cap, x)                                            \
  do {                                                                      \
    if ((n) == (cap)) {                                                     \
      size_t nc_ = (cap) ? 2 * (size_t)(cap) : 8;                           \
      (arr) = xrealloc_pool((arr), sizeof(*(arr)) * (cap), sizeof(*(arr)) * nc_); \
      (cap) = (int)nc_;                                                     \
    }                                                                       \
    (arr)[(n)++] = (x);                                                     \
  } while (0)

/* Files are opened and written by runtime/fileio.c's rules (a FIFO is
 * never waited on, /dev/null never replaced, no temp file left behind);
 * errno may hold a FIO_E* code, so messages use fio_strerror(errno). */
#include "fileio.h"
/* Writes a whole file atomically (or through, to a device or FIFO); false
 * on failure, errno set. */
bool write_file_atomic(const char *path, const char *data, size_t len);
/* A command's output: written atomically to path, or to stdout when path
 * is NULL; 0, or 1 after "nncc: error: cannot write ..." */
int write_output(const char *path, const char *data, size_t len);
/* A subcommand's usage error: "nncc: error: " fmt (with arg), then its
 * usage lines, and exit status 2. */
noreturn void command_usage(const char *usage, const char *fmt, const char *arg);
/* True when an output at path `out` would replace the file `other` reads
 * or writes: the same name, or the same regular file by another name (a
 * link, "./x").  Device nodes and FIFOs may be named twice (/dev/null). */
bool same_file(const char *out, const char *other);
/* Exits with a usage error (status 2, nothing written) when output `out`
 * is the same file as one of the n paths (NULLs skipped):
 * "nncc: error: -o 'x.nn' is also the model file; nothing was written". */
void refuse_clobber(const char *flag, const char *out, int n, const char *const *paths,
                    const char *const *roles);
/* Format n with thousands separators: 33,637,066 */
char *fmt_count(int64_t n);

/* ---- diag.c ---------------------------------------------------------- */

typedef struct SrcFile {
  char *name;  /* as given on the command line or in an import */
  char *text;  /* len bytes, then a NUL (the bytes may hold NULs: lex rejects them) */
  int len;
  int *line_starts;  /* offset of each line, built by the first loc_line_col() */
  int nlines;
  int syntax;        /* expressions and statements parse() made of it */
} SrcFile;

/* A span of source text. */
typedef struct Loc {
  SrcFile *file;
  int off, len;
} Loc;

/* The block calls that led to a node (innermost first): notes in errors. */
typedef struct CallSite {
  const char *block;
  Loc loc;
  struct CallSite *parent;
} CallSite;

SrcFile *read_source(const char *path); /* NULL + errno (fio_strerror) on failure */
/* When set (tests/fuzz), read_source() asks it instead of the file system,
 * so a fuzzed `import` never opens a real file. */
extern SrcFile *(*read_source_hook)(const char *path);
SrcFile *source_from_string(const char *name, const char *text);
SrcFile *source_from_bytes(const char *name, const char *data, size_t len);
void loc_line_col(Loc loc, int *line, int *col);

/*
 * User errors.  diag_error() prints "file:line:col: error: msg", the line
 * and a caret; diag_note() adds context; diag_fail() ends compilation (exit
 * status 1, or a longjmp to the trap a test installed).  error_at() is the
 * three in one.
 */
void diag_error(Loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_note(const Loc *loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_callsites(const CallSite *site);
noreturn void diag_fail(void);
noreturn void error_at(Loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Tests redirect diagnostics into a buffer and catch diag_fail(). */
#include <setjmp.h>
extern FILE *diag_out;
extern jmp_buf *diag_trap;
/* Fuzzers (tests/fuzz) set diag_abort: an internal error or running out of
 * memory then abort()s, a crash the fuzzer reports with a stack trace,
 * instead of exiting with status 70 or 1. */
extern bool diag_abort;

/* Internal errors: bugs in nncc, never the user's fault. */
noreturn void internal_error(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define unreachable() internal_error(__FILE__, __LINE__, "unreachable")
#define ICE(...) internal_error(__FILE__, __LINE__, __VA_ARGS__)

/* ---- lex.c ----------------------------------------------------------- */

typedef enum TokKind {
  T_IDENT, T_INT, T_FLOAT, T_STRING, T_PUNCT, T_NEWLINE, T_EOF,
} TokKind;

typedef struct Token {
  TokKind kind;
  Loc loc;
  int64_t ival;
  double fval;
  char *str;   /* identifier, punctuator or the string literal's contents;
                  NULL for numbers (their text is at loc) */
} Token;

/* The lexer hands out one token at a time, so a file's tokens are never
 * all in memory.  Newlines inside (), [] are not tokens. */
typedef struct Lexer {
  SrcFile *file;
  const char *p;  /* next character */
  int depth;      /* open ( and [ */
  TokKind last;   /* kind of the previous token; T_EOF before the first */
} Lexer;
/* Requires: file->text is UTF-8 without NUL bytes, or a located error. */
void lex_init(Lexer *L, SrcFile *file);
Token lex_next(Lexer *L);     /* T_EOF at the end, again and again */
/* Tokenize a whole file (tests). */
Token *lex(SrcFile *file, int *ntok);
bool tok_is(const Token *t, const char *s);  /* punctuator or keyword s */

/* ---- parse.c --------------------------------------------------------- */

typedef enum AstKind {
  A_INT, A_FLOAT, A_STR, A_BOOL, A_NAME, A_LIST, A_CALL, A_BINOP, A_NOT, A_NEG,
  A_INDEX,
} AstKind;

typedef struct Ast Ast;
struct Ast {
  AstKind kind;
  int height;     /* 1 + the height of the deepest operand (<= NNCC_MAX_NESTING) */
  Loc loc;
  int64_t ival;   /* A_INT, A_BOOL */
  double fval;    /* A_FLOAT */
  char *str;      /* A_STR text, A_NAME/A_CALL name, A_BINOP operator */
  Ast *lhs, *rhs; /* A_BINOP, A_NOT/A_NEG (lhs), A_INDEX (lhs[rhs]) */
  Ast **args;     /* A_LIST items, A_CALL arguments */
  char **argnames;/* A_CALL: keyword or NULL for positional */
  int nargs;
};

typedef enum StmtKind {
  S_MODEL, S_IMPORT, S_INPUT, S_LABEL, S_BLOCK, S_TRAIN, S_ASSIGN, S_FOR,
  S_IF, S_RETURN,
} StmtKind;

typedef struct Stmt Stmt;
typedef struct StmtList {
  Stmt **v;
  int n, cap;
} StmtList;

typedef struct BlockDef {
  char *name;
  Loc loc;
  char **params;
  Ast **defaults;     /* NULL where the parameter has none */
  int nparams;
  StmtList body;
  signed char *param_read; /* elab's cache: 1 if parameter i may be read, 0 not */
} BlockDef;

struct Stmt {
  StmtKind kind;
  Loc loc;            /* the whole statement's first token .. */
  char *name;         /* model/input/label/assign/for target, import path */
  Loc name_loc;
  Ast *expr;          /* assign value, for iterable, if condition, return value,
                         input source, train optimizer call */
  char *dtype;        /* S_INPUT */
  Ast **dims;         /* S_INPUT shape, S_LABEL: dims[0] batch, dims[1] classes */
  int ndims;
  StmtList body, orelse;
  BlockDef *block;    /* S_BLOCK */
  char **keys;        /* S_TRAIN: epochs=, seed= ... */
  Ast **vals;
  int nkeys;
  /* where the statement sits: parent is the for/if whose body or orelse
   * holds it (NULL at the top of a file or block); list[index] is it, in
   * a list of nlist statements */
  Stmt *parent;
  Stmt **list;
  int nlist, index;
  signed char read_later; /* elab's cache: 1 if the value it binds may be read, 0 not, -1 unknown */
};

/* Parse a file into its list of top-level statements; file->syntax counts
 * the expressions and statements made (at most NNCC_MAX_SYNTAX). */
StmtList parse(SrcFile *file);

/* ---- ir.c ------------------------------------------------------------ */

typedef enum OpKind {
#define OP(e, desc) OP_##e,
#include "ops.def"
#undef OP
  OP_COUNT
} OpKind;

typedef struct OpDesc OpDesc;
extern const OpDesc *const op_desc[OP_COUNT];
const char *op_name(OpKind op);  /* "conv2d", or "input"/"label" */

typedef enum DType { DT_UNKNOWN, DT_F32, DT_CLASS } DType;

#define MAX_RANK 4
#define MAX_PARAMS 5

typedef enum ParamKind { P_WEIGHT, P_BUFFER, P_COUNT } ParamKind;

/* A parameter or state_dict buffer owned by a node. */
typedef struct Param {
  char *name;          /* full state_dict name: "block1.conv2.weight" */
  ParamKind kind;
  int rank;
  int64_t dims[MAX_RANK];
  int64_t numel;
  enum { INIT_UNIFORM, INIT_ZEROS, INIT_ONES } init;
  double bound;        /* INIT_UNIFORM: U(-bound, bound), PyTorch 1.13 default */
  int64_t offset;      /* in the parameter block, in floats: set by params_layout() */
} Param;

/*
 * A node: one operator application.  What every op has is here; what one
 * op has is in its own attribute struct (`attrs`, the type its descriptor
 * names: Conv2dAttrs, PoolAttrs ...).
 */
typedef struct Node {
  int id;
  OpKind op;
  char *name;          /* unique: "conv1", "block2.relu3" */
  char *binding;       /* the source name it was bound to, if any ("h") */
  Loc loc;
  CallSite *site;
  int *in;             /* input node ids, nin of them */
  int nin;
  void *attrs;         /* the op's attributes, op_desc[op]->attrs_size bytes */

  /* Type, set by the shape pass. */
  DType dtype;
  int rank;
  int64_t dims[MAX_RANK];
  int64_t classes;             /* DT_CLASS: class[dims] of classes */

  Param params[MAX_PARAMS];
  int nparams;

  int nusers;                  /* recomputed by ir_count_users() */

  /* Set by fuse_pass(). */
  struct Node *epilogue;       /* an activation folded into this node's output
                                  loop (conv2d, linear, batch norm): the
                                  removed node itself */
  struct Node *gated_by;       /* the sole user whose backward applies the
                                  epilogue's gradient gate (a maxpool2d), so
                                  this node's backward reads no mask */
  struct Node *stats_for;      /* a batch norm reading this node, whose
                                  per-plane statistics this node's forward
                                  writes in its epilogue (conv2d) */
  struct Node *pool_for;       /* a max pool reading this node, whose output
                                  this node's forward writes in its epilogue
                                  (conv2d); the pool's own forward is gone */
  char *note;                  /* why an activation was not fused; what a
                                  node's backward took over */
  bool dead;                   /* removed by the next graph_compact() */

  /* Set by buffers_build() (plan.c): where the node's tensors live. */
  bool needs_grad;             /* some parameter's gradient flows through it */
  int act, grad, aux, work;    /* buffer ids, -1 for none */
} Node;

/* The node's attributes, as its op's struct: ATTRS(n, Conv2dAttrs)->out */
#define ATTRS(n, T) ((T *)(n)->attrs)

/* ---- the op table ------------------------------------------------------
 * Each op is one OpDesc (compiler/ops/), listed in ops.def.  The passes
 * never switch over ops: elaboration reads the signature, the shape pass
 * calls shape(), the dumps print the attributes from the signature and
 * the costs from flops_*(), the plan reads the flags and saves(), and the
 * back end calls the emitters.  docs/adding-an-op.md walks through one.
 */
typedef enum AttrType {
  AT_INT,     /* int64_t */
  AT_FLOAT,   /* double */
  AT_BOOL,    /* bool */
  AT_PAIR,    /* int64_t[2]: an int n (= [n, n]) or a list [h, w] */
  AT_PADDING, /* Padding: an int, [h, w], "same" or "valid" */
} AttrType;

typedef struct Padding {
  int64_t h, w;   /* explicit padding (top = bottom, left = right) */
  bool same;      /* "same": shape() decides */
} Padding;

typedef struct AttrDesc {
  const char *name;
  AttrType type;
  const char *def;     /* default, as source text ("1", "true", "0.5"); an
                          attribute's name ("kernel") copies that one; NULL:
                          required */
  bool quiet;          /* the dump shows it only when not the default */
  size_t offset;       /* in the op's attribute struct */
} AttrDesc;
#define ATTR(T, field, type, def, quiet) {#field, type, def, quiet, offsetof(T, field)}

/* What an op's backward reads besides its output gradient (liveness and
 * the emitter both use it, through node_saves()). */
enum { SAVES_IN = 1, SAVES_OUT = 2 };

/* Op flags */
enum {
  OPF_NO_KERNELS = 1 << 0, /* input, label, loss: the runtime's, no kernels */
  OPF_NO_BUFFER = 1 << 1,  /* no output tensor in the step (label, loss) */
  OPF_INPLACE = 1 << 2,    /* elementwise: output may take a dying input's
                              memory, an input's gradient its own gradient */
  OPF_VIEW = 1 << 3,       /* output may be a view of its first input */
  OPF_EPILOGUE = 1 << 4,   /* an activation may be fused into its output
                              (conv2d, linear, batch norm) */
  OPF_SCRATCH = 1 << 5,    /* its kernels need scratch memory (SCRATCH()) */
  OPF_LOSS = 1 << 6,       /* the loss: its last input may be the label */
  OPF_SYNCED = 1 << 7,     /* its kernels sum its parameters' gradients over
                            * the MPI ranks themselves (NnccParam.synced) */
  OPF_TAKES_GATE = 1 << 8, /* its backward writes its input's whole gradient
                            * and can gate it by the input's fused activation
                            * (NNCC_ACT_* on the dx it writes), read from the
                            * input it saves anyway */
  OPF_TAKES_STATS = 1 << 9, /* batch norm: in training it can take its input's
                             * per-plane statistics from the input's forward
                             * (OpDesc.plane_epilogue) */
  OPF_POOLS_PLANES = 1 << 10, /* max pool: its forward works plane by plane and
                               * can run in its input's forward epilogue
                               * (OpDesc.plane_epilogue, epilogue_args) */
};

typedef struct Graph Graph;
typedef struct Emit Emit;
typedef struct Onnx Onnx;
typedef struct Infer Infer;

struct OpDesc {
  const char *name;          /* what the .nn source calls it (NULL: not callable) */
  const char *abbrev;        /* stem of automatic node names: conv1, fc2, bn3 */
  const char *const *inputs; /* names of the tensor inputs, the leading arguments */
  int nin;                   /* their number; -1: one argument, a list of tensors */
  const AttrDesc *attrs;     /* the signature after the inputs, in positional order */
  int nattrs;
  size_t attrs_size;         /* sizeof its attribute struct */
  unsigned flags;            /* OPF_* */
  int saves;                 /* SAVES_IN | SAVES_OUT, unless saves_fn */
  int (*saves_fn)(const Node *n);

  /* Type the node from its inputs, shape its parameters, or report a user
   * error (shape.c has the helpers). */
  void (*shape)(Graph *g, Node *n);
  /* FLOPs of forward and of backward (docs/language.md, "Costs"); NULL: 0. */
  int64_t (*flops_fwd)(const Graph *g, const Node *n);
  int64_t (*flops_bwd)(const Graph *g, const Node *n);
  /* An activation's fused form: the NNCC_ACT_* code conv2d, linear and
   * batch norm apply in their output loop and its parameter, or NULL: not fusible.
   * fusible() says whether this node's fusion is exact. */
  const char *act_code;
  double (*act_alpha)(const Node *n);
  bool (*fusible)(const Node *n);
  /* Whether this node's forward has an epilogue per output plane, which
   * can write the per-plane statistics an OPF_TAKES_STATS user (batch norm)
   * needs, or the output of an OPF_POOLS_PLANES user (max pool); NULL: never. */
  bool (*plane_epilogue)(const Node *n);
  /* An OPF_POOLS_PLANES op's arguments to the forward of the node whose
   * epilogue runs it (its window and output size, "2, 2, 2, 2, 0, 0, 10, 10"). */
  char *(*epilogue_args)(Emit *E, Node *n);
  /* Per-node saved state in the arena (batch-norm statistics): its bytes
   * and what it holds, for the generated code's comment; NULL: none. */
  int64_t (*aux_bytes)(const Node *n, const char **what);
  /* Working memory of its forward alone (batch norm's per-plane
   * statistics): live in its forward step, and in that of the node whose
   * epilogue fills it (stats_for); its bytes and what it holds; NULL: none. */
  int64_t (*work_bytes)(const Node *n, const char **what);

  /* The back end (emit_c.c has the helpers): define_kernels() prints the
   * node's KERNEL functions, forward() its call in forward(), backward()
   * its call in backward() given where each input's gradient goes (dx[j],
   * "NULL" where none is needed); model_fields() extra NnccModel fields. */
  void (*define_kernels)(Emit *E, Node *n);
  void (*forward)(Emit *E, Node *n);
  void (*backward)(Emit *E, Node *n, const char *const *dx);
  void (*model_fields)(Emit *E, Node *n);

  /* ONNX export (onnx/export.c has the helpers): the ONNX nodes of the
   * eval-mode forward of n; NULL: the op has no ONNX form. */
  void (*onnx)(Onnx *X, const Graph *g, const Node *n);

  /* nncc --infer (infer.c has the helpers): plans and prints the node's
   * eval-mode forward for one image; every op with kernels has one. */
  void (*infer)(Infer *I, const Graph *g, const Node *n);
};

/* The input list of the many ops with one tensor input: {"x"}. */
extern const char *const op_x_input[];

typedef enum OptimKind { OPT_ADAM, OPT_SGD, OPT_ADAMW } OptimKind;

typedef struct TrainCfg {
  OptimKind optim;
  double lr, beta1, beta2, eps, weight_decay, momentum;
  bool nesterov;                         /* sgd(nesterov=true) */
  double clip_grad_norm, clip_grad_value; /* 0: off */
  char *schedule, *warmup;                /* runtime/schedule.c's canonical text; NULL: none */
  int64_t epochs, seed;
  Loc loc;
} TrainCfg;

/*
 * A tensor of the training step that lives in the activation arena, or
 * outside it (the runtime's input, logits and dlogits buffers).
 */
typedef enum BufKind { BUF_ACT, BUF_GRAD, BUF_AUX, BUF_TMP } BufKind;

typedef struct Buffer {
  char *name;          /* C identifier in the generated code: conv1, d_conv1 */
  BufKind kind;
  int node;            /* owner, -1 for the shared temporary */
  const char *what;    /* its shape, or what it holds, for a comment */
  int64_t bytes;
  int64_t offset;      /* in the arena, 64-byte aligned; -1 when external */
  const char *external;/* "s->input", "s->logits", "s->dlogits" or NULL */
  int alias;           /* another buffer this one is a view of, or -1 */
  int first, last;     /* live range: steps of the training step schedule */
} Buffer;

struct Graph {
  char *name;
  SrcFile *file;
  Node **nodes;
  int nnodes, cap;
  int input, label, loss;   /* node ids; -1 until known */
  int64_t pad_top, pad_left;/* input source: mnist(pad=[top, left]) */
  bool pad_pair;            /* ... written as a pair (else pad=P, square) */
  int64_t aug_crop;         /* mnist(crop_padding=P): RandomCrop(28, padding=P) in training */
  bool aug_hflip;           /* mnist(hflip=true): RandomHorizontalFlip() in training */
  Loc source_loc;
  TrainCfg train;

  Buffer *bufs;             /* set by buffers_build() and a plan */
  int nbufs, bufcap;
  int tmp;                  /* buffer for gradient contributions that add up */
  int64_t arena_bytes;      /* planned size of all arena buffers */
  int64_t naive_bytes;      /* the sum of their sizes, before any pass */
  int64_t params_floats;    /* the parameter block, set by params_layout() */
  bool planned;

  /* Data parallelism (ranks_pass): the batch as the .nn file writes it,
   * the MPI ranks that share it (the input's batch is this process's
   * share, batch / ranks), and the number of groups its sums are taken in
   * (nncc_kernels.h: batch reductions), batch / groups images each. */
  int64_t batch;
  int ranks, groups;
};

Graph *graph_new(SrcFile *file);
/* A node of op with nin inputs (ids to fill in) and default-zero attributes. */
Node *node_new(OpKind op, int nin, Loc loc, CallSite *site);
void graph_push(Graph *g, Node *n);       /* append a node built elsewhere */
void graph_compact(Graph *g);             /* drop dead nodes, renumber */
static inline const OpDesc *node_desc(const Node *n) { return op_desc[n->op]; }
static inline Node *node_in(const Graph *g, const Node *n, int j) { return g->nodes[n->in[j]]; }
int64_t node_numel(const Node *n);
char *type_str(const Node *n);            /* "f32[256,16,24,24]" */
char *dims_str(const int64_t *dims, int rank); /* "[256,16,24,24]" */
char *attr_str(const Node *n);            /* "out=16 kernel=5x5 ..." from the signature */
/* Attribute `name` of n's op, its field in n->attrs, or NULL (tests, tools). */
const void *node_attr(const Node *n, const char *name);
int64_t node_params(const Node *n);       /* trainable parameter count */
int64_t node_flops_fwd(const Graph *g, const Node *n);
int64_t node_flops_bwd(const Graph *g, const Node *n);
int node_saves(const Node *n);            /* SAVES_IN | SAVES_OUT */
bool node_bwd_gates(const Node *n);       /* its backward gates by its epilogue */
bool node_has_kernels(const Node *n);     /* not input, label or loss */
void ir_count_users(Graph *g);
void ir_verify(Graph *g, const char *after);
void ir_dump(Graph *g, Buf *out, const char *after);
void ir_dump_dot(Graph *g, Buf *out);
/* The dumps' column tables (--dump-ir, nncc --infer --dump-ir): table_fit
 * widens width[] to a row's ncol cells; table_row is the row with each
 * cell padded to its width, two blanks between, none at the end. */
void table_fit(int *width, char *const *row, int ncol);
char *table_row(char *const *row, const int *width, int ncol);

/* A hash map from strings to ints, in the pool: node names, scopes.  The
 * keys are not copied; they must live as long as the map. */
typedef struct StrMap {
  const char **keys;
  int *vals;
  int cap, n;          /* cap is 0 or a power of two */
} StrMap;
int strmap_get(const StrMap *m, const char *key);     /* -1 when absent */
void strmap_put(StrMap *m, const char *key, int val);  /* insert or replace */

/* ---- elab.c ---------------------------------------------------------- */

/* Run the program: expand blocks and loops into a flat graph (untyped). */
Graph *elaborate(SrcFile *file, StmtList prog);
/* A name `name="..."` may give a node: letters, digits and '_' in parts
 * joined by single dots, not starting with a digit, at most 200
 * characters ("features.0"). */
bool node_name_valid(const char *name);

/* ---- shape.c --------------------------------------------------------- */

/* Requires: an elaborated graph (ranks_pass run, else it runs it for one
 * process).  Guarantees: every node typed, every parameter shaped, the
 * model well-formed; or a user error. */
void shape_pass(Graph *g);

/* Requires: an elaborated graph, ranks >= 1, groups 0 (the default: the
 * largest power of two up to 8 that divides the batch) or the user's.
 * Guarantees: g->batch, g->ranks, g->groups set, the input's and label's
 * batch divided by the ranks; or a user error when the ranks cannot split
 * the batch's groups evenly. */
void ranks_pass(Graph *g, int ranks, int groups);

/* Helpers for the ops' shape rules. */
noreturn void shape_error(Node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The elements of a tensor of that shape, or an error naming the limit. */
int64_t shape_elements(Node *n, const char *what, const int64_t *dims, int rank);
void set_type(Node *n, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
void copy_type(Node *n, const Node *from);
void add_param(Node *n, const char *suffix, ParamKind kind, int rank, const int64_t *dims,
               int init, double bound);
/* Input j must be 4-D [N, C, H, W], or an error "what: input must be 4-D". */
void need_rank4(Graph *g, Node *n, int j, const char *what);
/* A window (kernel kh x kw, stride, padding top/bottom, left/right, kernel
 * dilation) over input 0's H x W: checks the sizes, reports a window that
 * does not fit with the spatial history, and returns the output size. */
typedef struct Window {
  int64_t kh, kw, sh, sw, pt, pb, pl, pr, dh, dw;
  bool ceil_mode;
} Window;
void shape_window(Graph *g, Node *n, const char *what, Window w, int64_t *ho, int64_t *wo);

/* ---- passes/fuse.c -------------------------------------------------- */

/* Requires: a typed graph.  Guarantees: every activation with a fused
 * form (relu ...) whose input is an OPF_EPILOGUE node (conv2d, linear, bn)
 * read by nothing else is folded into that node (its epilogue); a node
 * with an epilogue whose only user is OPF_TAKES_GATE (maxpool2d) has that
 * user as gated_by. */
void fuse_pass(Graph *g);

/* ---- passes/plan.c -------------------------------------------------- */

/* Decide which tensors the training step needs and give each a buffer. */
void buffers_build(Graph *g);
/* g->naive_bytes: the unplanned, unfused sum of those tensors. */
void measure_naive(Graph *g);
/* Requires: buffers_build().  Guarantees: every arena buffer has its own
 * offset, none shared (the -O0 layout); an arena over NNCC_MAX_BYTES is a
 * user error. */
void plan_naive(Graph *g);
/* Requires: buffers_build().  Guarantees: buffers whose lifetimes over the
 * training step do not overlap share memory; an elementwise op may write
 * over an input that dies there; an arena over NNCC_MAX_BYTES is a user
 * error. */
void plan_pass(Graph *g);
/* Every parameter's offset in the parameter block (64-byte aligned, in
 * node order); g->params_floats.  Part of both plans. */
void params_layout(Graph *g);
/* The first two arena buffers live at the same step in overlapping memory
 * (an elementwise op writing exactly over its dying input excepted), or
 * false.  O(n log n): ir_verify() runs it after planning. */
bool plan_find_overlap(const Graph *g, int *a, int *b);
int buf_root(const Graph *g, int b);          /* the buffer a view stands for */
bool node_is_view(const Graph *g, const Node *n); /* its output is its input's memory */
int step_forward(const Graph *g, const Node *n);
int step_backward(const Graph *g, const Node *n);

/* ---- emit_c.c -------------------------------------------------------- */

/* The C trainer for a planned graph. */
void emit_c(Graph *g, Buf *out);

/* Helpers for the ops' emitters.  Pointers are C expressions valid in the
 * current step function; each checks that the plan keeps the tensor alive
 * at the step being emitted, so an emitter can never read memory the plan
 * gave away (an internal error instead). */
Buf *emit_out(Emit *E);                          /* where code goes */
const char *emit_act(Emit *E, const Node *n);    /* n's output */
const char *emit_grad(Emit *E, const Node *n);   /* n's output gradient */
const char *emit_aux(Emit *E, const Node *n);    /* n's saved state */
const char *emit_work(Emit *E, const Node *n);   /* n's forward working memory */
const char *emit_param(Emit *E, const Node *n, int k);      /* P + offset */
const char *emit_param_grad(Emit *E, const Node *n, int k); /* G + offset */
Node *emit_in(Emit *E, const Node *n, int j);   /* n's input j */
/* Is a gradient target dx[j] wanted ("NULL": no input needs it)? */
bool emit_needed(const char *dx);
/* Backward: input j's gradient is n's own gradient's memory (in place). */
bool emit_grad_in_place(Emit *E, const Node *n, int j);
char *emit_fn(const Node *n);                    /* C name stem: block1_conv2 */
char *emit_real(double v, bool as_float);        /* 0.1, 1e-05, 2.0f */
/* The same into out, allocating nothing (the many weights of nncc --infer). */
#define EMIT_REAL_MAX 40
void emit_real_to(char out[EMIT_REAL_MAX], double v, bool as_float);
/* A compile-time check in the generated C that a kernel's own size formula
 * (a macro of nncc_kernels.h) gives the planned output size: rows, then
 * columns (one check when the two read alike). */
void emit_static_assert(Emit *E, const Node *n, const char *rows, const char *cols);
/* The fused activation's "act, alpha" kernel arguments:
 * "NNCC_ACT_NONE, 0.0f", "NNCC_ACT_RELU, 0.0f" ... */
char *emit_act_args(const Node *n);
/* A backward kernel's "act, alpha": the fused activation's, or NONE when
 * there is none or the node's user applies the gate (gated_by).
 * emit_bwd_act_args(): ", act, alpha, S", S the batch's group size
 * (emit_group).  Where the backward gates: emit_mask_param() is the
 * backward KERNEL's mask parameter y (with its comment), emit_mask_arg()
 * "y" for the runtime kernel's ymask (else "NULL"), emit_mask_ref() the
 * node's output and ", " for the call in backward() (else ""). */
char *emit_bwd_act(const Node *n);
char *emit_bwd_act_args(Emit *E, const Node *n);
const char *emit_mask_param(const Node *n);
const char *emit_mask_arg(const Node *n);
const char *emit_mask_ref(Emit *E, const Node *n);
char *emit_group(Emit *E);
const Graph *emit_graph(Emit *E);                /* the graph being emitted */
/* The common unary forms: forward `f_forward(y, x);`, backward
 * `f_backward(dx, dy, saved);` with saved the tensor node_saves() names
 * (none, x or y), and nothing when dx is not needed. */
void emit_forward_unary(Emit *E, Node *n);
void emit_backward_unary(Emit *E, Node *n, const char *const *dx);
long long ll(int64_t v);

/* ---- cc.c: the system's C compiler, what nncc installs beside itself --- */

#include <sys/types.h>

/* $CC, else "cc". */
const char *cc_program(void);
/* A compile command with room for `extra` more arguments and a NULL: the
 * compiler, the same-bits flags, then $CFLAGS (else -O3 -march=native);
 * *n is the count so far. */
const char **cc_command(int extra, int *n);
/* Starts args[0] with args (NULL-terminated); its pid, or -1 after a
 * message naming `who` ("build", "run") -- a missing compiler says so. */
pid_t cc_spawn(const char *const *args, const char *who);
/* Waits for pid: true if it exited 0 and no signal of the guard below
 * came (one that does is passed on to pid). */
bool cc_wait(pid_t pid);
/* The directory of the running nncc executable, or NULL. */
char *self_dir(void);
/* The runtime's include directory and libnncc_rt.a: the installed ones
 * beside nncc, else those of the build tree nncc was built in.  False with
 * *why when neither exists. */
bool find_runtime(char **include_dir, char **lib, char **why);
/* A new directory $TMPDIR/nncc-WHO-XXXXXX (else /tmp/...), or NULL after a
 * message.  From then on SIGINT, SIGTERM and SIGHUP wait until
 * cc_end_guard() (call it once the directory is gone), which restores them
 * and re-raises one that came; cc_interrupted() says whether one did, and
 * then nothing may be committed. */
char *cc_temp_dir(const char *who);
void cc_end_guard(void);
bool cc_interrupted(void);

/* ---- cache.c: nncc run's compiled objects (docs/jit.md) ---------------- */

/* A 128-bit cache key: FNV-1a 64 and CRC-32 over length-prefixed parts. */
typedef struct Hash {
  uint64_t fnv, len;
  uint32_t crc;
} Hash;
void hash_init(Hash *h);
void hash_add(Hash *h, const void *data, size_t len);
void hash_str(Hash *h, const char *s);
char *hash_hex(const Hash *h); /* 32 hex digits */

typedef struct Cache Cache;
/* The cache directory ($NNCC_CACHE_DIR, else $XDG_CACHE_HOME/nncc, else
 * $HOME/.cache/nncc; created 0700), or NULL after one line saying why it
 * cannot be used (another user's, writable by others, ...).  `who` names
 * the command in messages ("run"). */
Cache *cache_open(const char *who);
/* The object stored under key (malloc'd, *len bytes), or NULL: none, or a
 * damaged one, which is removed after one line. */
char *cache_get(Cache *c, const char *key, size_t *len, const char *who);
/* Stores an object under key, atomically; a failure says so once and is
 * otherwise ignored (the run goes on). */
void cache_put(Cache *c, const char *key, const void *data, size_t len, const char *who);

/* ---- build.c ----------------------------------------------------------- */

/* `nncc build`: compiles the trainer's C `csrc` with cc against the
 * runtime find_runtime() finds, into the executable `out` (written
 * atomically).  0, or 1 after a message on stderr. */
int build_trainer(const char *name, const Buf *csrc, const char *out);

/* ---- run.c ------------------------------------------------------------ */

#include "jit.h"

/* The runtime's .c and .h files as built into nncc (cmake/embed.cmake), by path
 * relative to the repository: "runtime/nncc_rt.h". */
extern const JitFile embedded_runtime[];
extern const int embedded_runtime_count;

/* `nncc run`: compile the trainer's C source `csrc` (emit_c) with the
 * embedded runtime -- in-process with the JIT when built with it and not
 * `no_jit`, else with cc into a shared object -- and call nncc_main() with
 * argv[0] = `name` followed by argv[0..argc).  Returns its exit status, or
 * 1 when compiling failed (the diagnostics are on stderr). */
typedef struct RunOptions {
  bool no_jit;   /* --no-jit: compile with cc */
  bool no_cache; /* --no-cache: neither read nor write the cache */
} RunOptions;
int run_trainer(const char *name, const Buf *csrc, int argc, char **argv, RunOptions opt);

/* ---- onnx/: ONNX in and out (docs/onnx.md) ---------------------------- */

/* `nncc import MODEL.onnx ...` (argv after "import"): its exit status. */
int onnx_import_main(int argc, char **argv);
/* The import of an ONNX file's bytes (`path` names it in messages): the
 * .nn text, compiled by the front end (graph: typed, params laid out),
 * and with want_weights the parameter block filled from the initializers
 * (malloc'd).  False after a one-line message; nothing is left allocated
 * but pool memory. */
typedef struct OnnxImport {
  int64_t batch;        /* in: --batch, 0: the file's, else 64 */
  const char *input;    /* in: --input SOURCE, NULL: inferred */
  const char *nn_name;  /* in: the .nn's path (its name, messages), NULL: none */
  bool want_weights;    /* in */
  Buf text;             /* out */
  Graph *graph;         /* out */
  float *weights;       /* out, with want_weights */
} OnnxImport;
bool onnx_import(const char *path, const uint8_t *data, size_t len, OnnxImport *res);
/* `nncc export MODEL.nn --load CKPT -o MODEL.onnx` (argv after "export"). */
int onnx_export_main(int argc, char **argv);

/* Helpers for the ops' onnx() hooks.  onnx_node() adds op_type(in...) with
 * n's output, then onnx_attr_*() give that node's attributes. */
const char *onnx_in(Onnx *X, const Node *n, int j);    /* input j's tensor */
const char *onnx_param(Onnx *X, const Node *n, int k); /* parameter k (its initializer) */
/* A float scalar initializer "<node>.<what>" (Clip's bounds). */
const char *onnx_scalar(Onnx *X, const Node *n, const char *what, double v);
void onnx_node(Onnx *X, const Node *n, const char *op_type, const char *const *in, int nin);
void onnx_attr_int(Onnx *X, const char *name, int64_t v);
void onnx_attr_float(Onnx *X, const char *name, double v);
void onnx_attr_ints(Onnx *X, const char *name, const int64_t *v, int n);
/* n computes nothing at eval time (dropout): its output is input 0's. */
void onnx_alias(Onnx *X, const Node *n);
/* The op cannot be exported as this node has it: an error naming n. */
noreturn void onnx_refuse(Onnx *X, const Node *n, const char *why);
/* One tensor in, one out, no attributes: Relu, Sigmoid, Tanh, Flatten... */
void onnx_unary(Onnx *X, const Node *n, const char *op_type);

/* ---- infer.c: nncc --infer, a trained model's forward pass as plain C99
 * for embedding (docs/infer.md) ------------------------------------------ */

/* `nncc --infer MODEL.nn --load CKPT -o OUT.c [--infer-weights W.bin]` or
 * `nncc --infer --dump-ir MODEL.nn`: argv is nncc's whole command line. */
int infer_main(int argc, char **argv);

/* Helpers for the ops' infer() hooks.  Every hook runs twice, in node
 * order, making the same calls both times: first planning (the helpers
 * decide what folds, fuses, aliases and runs in place), then printing.
 * The helpers that open the node's function return NULL while planning,
 * and nothing is printed then; the driver closes the function and calls
 * it.  In the function, per image and in [C][H][W] (or [F]) order, `y` is
 * the output and infer_in() names the inputs. */
const char *infer_in(Infer *I, const Node *n, int j);   /* "x"; "a", "b"; "x0", "x1".. */
/* Any op: opens n's function.  elementwise: y[i] depends on the inputs'
 * element i alone, so y may be an input's memory (no restrict). */
Buf *infer_begin(Infer *I, const Node *n, bool elementwise);
/* conv2d, linear: opens n's function of (y, x, w, b), w the weights with
 * the output channel first, b the bias (see infer_bias); `macs` per image.
 * A batch norm after it may fold into w and b, an activation into its
 * output loop, which ends y = <infer_epilogue> of the float v. */
Buf *infer_weighted(Infer *I, const Node *n, int64_t macs);
const char *infer_bias(Infer *I, const Node *n, const char *index); /* " + b[co]" or "" */
const char *infer_epilogue(Infer *I, const Node *n);  /* an expression in v; "v": none */
/* An elementwise activation y = expr, a C expression in the float v; fused
 * into the conv2d or linear before it when that has no other reader. */
void infer_activation(Infer *I, const Node *n, const char *expr);
/* y[c][..] = x[c][..] * scale[c] + shift[c] (batch norm at eval; the arrays
 * are NULL when planning without a checkpoint): folded into the conv2d or
 * linear before it when that has no other reader. */
void infer_channel_affine(Infer *I, const Node *n, const float *scale, const float *shift);
/* n's output is input 0's memory: the identity (dropout) or a view (flatten). */
void infer_alias(Infer *I, const Node *n);
/* Parameter k's values, or NULL when planning without a checkpoint. */
const float *infer_param(Infer *I, const Node *n, int k);
/* "a * ka + b * kb + k" without the terms that vanish: "oh * 2 + kh - 1". */
char *infer_index(const char *a, int64_t ka, const char *b, int64_t kb, int64_t k);
/* The function calls <math.h> (expf, tanhf): the file says to link -lm. */
void infer_use_libm(Infer *I);

#endif
