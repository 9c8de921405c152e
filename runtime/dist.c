/*
 * dist.c -- the trainer's ranks: one process, or MPI data parallelism.
 *
 * Built two ways from this one file.  The runtime library (libnncc_rt.a,
 * and the copy inside nncc for `nncc run`) has no MPI: one rank, every
 * sum a no-op, and a refusal to run as one of several processes that
 * mpirun started (each would train alone and overwrite the others'
 * checkpoints).  With -DNNCC_MPI and mpicc (generated/Makefile builds
 * that library for trainers compiled with nncc --ranks N) it is Open MPI:
 *
 *   - sums over the ranks go pairwise with MPI_Sendrecv: at distance 1,
 *     2, 4 ... each rank adds its partner's partial to its own (recursive
 *     doubling; for large vectors recursive halving then doubling, the
 *     same pairs and sums with less traffic).  That is the complete
 *     binary tree over the ranks' contiguous slices of the batch, the
 *     order the kernels use inside a rank (nncc_kernels.h, "batch
 *     reductions"), and float
 *     addition is commutative, so both partners get the same bits and the
 *     result is one process's.  MPI_Allreduce is not used: its order is
 *     unspecified.
 *   - agreement (dist_all_ok) is an MPI_Allreduce of integers, exact in
 *     any order.
 *   - a rank that fails alone calls dist_abort, which takes the job down
 *     (MPI_Abort): the others never wait on it.
 *
 * MPI is process-wide, so this is the runtime's one piece of state beside
 * the signal flag; it is set once, before any model runs.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#ifdef NNCC_MPI
#include <mpi.h>
#endif

static int my_rank, my_size = 1;
static int agreed; /* every rank knows the run failed: no need to abort the job */

int dist_rank(void) { return my_rank; }
int dist_size(void) { return my_size; }
void dist_agree_failed(void) { agreed = 1; }

#ifndef NNCC_MPI

/* The launchers' variables: Open MPI's, then PMI's (MPICH, Slurm). */
static int launched_as(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
    const char *v = getenv(vars[i]);
    if (v && atoi(v) > 1) return atoi(v);
  }
  return 1;
}

int dist_init(int *argc, char ***argv, const NnccModel *m) {
  (void)argc, (void)argv;
  int n = launched_as();
  if (m->ranks > 1) {
    rt_error("model %s was compiled for %d MPI ranks (nncc --ranks %d) but this trainer was built "
             "without MPI; build it with make -C generated %s where mpicc is installed "
             "(docs/distributed.md)", m->name, m->ranks, m->ranks, m->name);
    return -1;
  }
  if (n > 1) {
    rt_error("started as one of %d processes, but this trainer was built without MPI for one: "
             "each would train alone and overwrite the others' checkpoints; compile the model "
             "with nncc --ranks %d and build it with mpicc (docs/distributed.md)", n, n);
    return -1;
  }
  return 0;
}
void dist_finish(int rc) { (void)rc, (void)agreed; }
noreturn void dist_abort(int rc) { exit(rc); }
int dist_reserve(size_t bytes) { (void)bytes; return 0; }
void dist_sum_f(float *v, size_t n) { (void)v, (void)n; }
void dist_reduce_scatter_f(float *v, size_t n) { (void)v, (void)n; }
void dist_allgather_f(float *v, size_t n) { (void)v, (void)n; }
void dist_shard(size_t n, size_t *lo, size_t *hi) { *lo = 0, *hi = n; }
void dist_sum_d(double *v, size_t n) { (void)v, (void)n; }
int dist_all_ok(int ok) { return ok; }
int dist_any(int flag) { return flag; }
void dist_bcast(void *p, size_t bytes) { (void)p, (void)bytes; }
void dist_allgather(const void *mine, void *all, size_t bytes) {
  if (all != mine) memmove(all, mine, bytes);
}
int dist_check_model(const NnccModel *m) { (void)m; return 0; }
int dist_check_same(uint64_t h, const char *what, const char *hint) {
  (void)h, (void)what, (void)hint;
  return 0;
}
double dist_comm_seconds(void) { return 0.0; }

#else /* NNCC_MPI */

static void *tmp;         /* the partner's partial: dist_reserve'd */
static double comm_s;     /* seconds in the calls that talk to the other ranks */
double dist_comm_seconds(void) { return comm_s; }
static size_t tmp_bytes;
static int inited;

int dist_init(int *argc, char ***argv, const NnccModel *m) {
  int provided;
  /* FUNNELED: the batch-norm kernels call the sums from the master thread
   * of their OpenMP team */
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    rt_error("MPI_Init_thread failed");
    return -1;
  }
  inited = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &my_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &my_size);
  int want = m->ranks > 0 ? m->ranks : 1;
  if (my_size != want) {
    if (my_rank == 0)
      rt_error("model %s was compiled for %d rank%s (nncc --ranks %d), but mpirun started %d; "
               "start it with mpirun -np %d, or compile it with nncc --ranks %d",
               m->name, want, want == 1 ? "" : "s", want, my_size, want, my_size);
    MPI_Finalize();
    return -1;
  }
  if (provided < MPI_THREAD_FUNNELED) {
    if (my_rank == 0) rt_error("this MPI library does not support MPI_THREAD_FUNNELED");
    MPI_Finalize();
    return -1;
  }
  return 0;
}

/* A rank that fails on its own (rc != 0 that the others did not agree to)
 * may leave them waiting in a sum: it takes the job down instead. */
void dist_finish(int rc) {
  if (rc != 0 && !agreed) dist_abort(rc);
  if (inited) MPI_Finalize();
  inited = 0;
  free(tmp);
  tmp = NULL, tmp_bytes = 0;
}

noreturn void dist_abort(int rc) {
  if (inited && my_size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
  exit(rc);
}

int dist_reserve(size_t bytes) {
  if (my_size == 1 || bytes <= tmp_bytes) return 0;
  void *p = realloc(tmp, bytes);
  if (!p) {
    rt_error("out of memory allocating %zu bytes for the sums over ranks", bytes);
    return -1;
  }
  tmp = p, tmp_bytes = bytes;
  return 0;
}

/* MPI counts are int: send and receive in pieces of at most 1 GiB (the
 * partner mirrors the sizes, so both loop the same number of times) */
enum { PIECE = 1 << 30 };

static size_t piece(size_t bytes, size_t off) {
  return off < bytes ? (bytes - off < PIECE ? bytes - off : PIECE) : 0;
}

static void sendrecv(const void *s, size_t sbytes, void *r, size_t rbytes, int partner) {
  double t0 = rt_now();
  size_t most = sbytes > rbytes ? sbytes : rbytes;
  for (size_t off = 0; off == 0 || off < most; off += PIECE)
    MPI_Sendrecv((const char *)s + (off < sbytes ? off : 0), (int)piece(sbytes, off), MPI_BYTE,
                 partner, 1, (char *)r + (off < rbytes ? off : 0), (int)piece(rbytes, off),
                 MPI_BYTE, partner, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  comm_s += rt_now() - t0;
}

static void add_f(float *v, const float *t, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) v[i] = v[i] + t[i];
}

/* The sum over the ranks in the tree order of the kernels (my_size a power
 * of two: nncc --ranks).  Small vectors: recursive doubling, each round
 * the whole vector to the partner at distance 1, 2, 4 ...  Large ones
 * (Rabenseifner): recursive halving at the same distances, each rank
 * keeping half of what it had and adding the partner's copy of that half,
 * so after log2(P) rounds it holds its shard, 1/P of the vector summed in
 * the same tree (the reduce-scatter); then recursive doubling in reverse
 * gathers the shards (the allgather).  Both add each element's partial
 * sums in the same pairs, so both give the same bits; halving sends
 * 2(P-1)/P of the vector instead of log2(P) times it. */
enum { LEVELS = 7 }; /* log2(NNCC_MAX_GROUPS) + 1 */

static int halves(size_t n) { return my_size > 1 && n >= (size_t)my_size * 4096; }

/* The segments of the halving: before round r this rank holds [from[r],
 * to[r]); its shard is [*lo, *hi) */
static int halving(size_t n, size_t *from, size_t *to, size_t *lo, size_t *hi) {
  int rounds = 0;
  *lo = 0, *hi = n;
  for (int k = 1; k < my_size; k <<= 1, rounds++) {
    size_t mid = *lo + (*hi - *lo) / 2;
    from[rounds] = *lo, to[rounds] = *hi;
    if (my_rank & k) *lo = mid;
    else *hi = mid;
  }
  return rounds;
}

void dist_shard(size_t n, size_t *lo, size_t *hi) {
  size_t from[LEVELS], to[LEVELS];
  if (!halves(n)) {
    *lo = 0, *hi = n;
    return;
  }
  halving(n, from, to, lo, hi);
}

void dist_reduce_scatter_f(float *v, size_t n) {
  if (my_size == 1) return;
  if (dist_reserve(n * sizeof *v)) dist_abort(1);
  float *t = tmp;
  if (!halves(n)) {
    for (int k = 1; k < my_size; k <<= 1) {
      sendrecv(v, n * sizeof *v, t, n * sizeof *v, my_rank ^ k);
      add_f(v, t, n);
    }
    return;
  }
  size_t from[LEVELS], to[LEVELS], lo, hi;
  int rounds = halving(n, from, to, &lo, &hi);
  for (int r = 0; r < rounds; r++) {
    int upper = (my_rank >> r) & 1;
    size_t mid = from[r] + (to[r] - from[r]) / 2, klo = upper ? mid : from[r], khi = upper ? to[r] : mid;
    size_t slo = upper ? from[r] : mid, shi = upper ? mid : to[r];
    sendrecv(v + slo, (shi - slo) * sizeof *v, t, (khi - klo) * sizeof *v, my_rank ^ (1 << r));
    add_f(v + klo, t, khi - klo);
  }
}

void dist_allgather_f(float *v, size_t n) {
  if (!halves(n)) return;
  size_t from[LEVELS], to[LEVELS], lo, hi;
  int rounds = halving(n, from, to, &lo, &hi);
  for (int r = rounds - 1; r >= 0; r--) { /* the partner of round r has the rest of [from, to) */
    int upper = (my_rank >> r) & 1;
    size_t plo = upper ? from[r] : hi, phi = upper ? lo : to[r];
    sendrecv(v + lo, (hi - lo) * sizeof *v, v + plo, (phi - plo) * sizeof *v, my_rank ^ (1 << r));
    lo = from[r], hi = to[r];
  }
}

void dist_sum_f(float *v, size_t n) {
  dist_reduce_scatter_f(v, n);
  dist_allgather_f(v, n);
}

/* Small (batch norm's sums): recursive doubling. */
void dist_sum_d(double *v, size_t n) {
  if (my_size == 1) return;
  if (dist_reserve(n * sizeof *v)) dist_abort(1);
  const double *t = tmp;
  for (int k = 1; k < my_size; k <<= 1) {
    sendrecv(v, n * sizeof *v, tmp, n * sizeof *v, my_rank ^ k);
    for (size_t i = 0; i < n; i++) v[i] = v[i] + t[i];
  }
}

/* an integer's MIN or MAX over the ranks: exact in any order */
static int allreduce_int(int v, MPI_Op op) {
  int all = v;
  double t0 = rt_now();
  if (my_size > 1) MPI_Allreduce(&v, &all, 1, MPI_INT, op, MPI_COMM_WORLD);
  comm_s += rt_now() - t0;
  return all;
}

int dist_all_ok(int ok) { return allreduce_int(ok ? 1 : 0, MPI_MIN); }
int dist_any(int flag) { return allreduce_int(flag, MPI_MAX); }

void dist_bcast(void *p, size_t bytes) {
  if (my_size == 1) return;
  for (size_t off = 0; off < bytes; off += PIECE)
    MPI_Bcast((char *)p + off, (int)piece(bytes, off), MPI_BYTE, 0, MPI_COMM_WORLD);
}

void dist_allgather(const void *mine, void *all, size_t bytes) {
  if (my_size == 1) {
    if (all != mine) memmove(all, mine, bytes);
    return;
  }
  double t0 = rt_now();
  MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
  comm_s += rt_now() - t0;
}

static uint64_t fnv_str(uint64_t h, const char *s) {
  return dist_fnv(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

/* -1, rank 0 naming the first rank whose h differs from its own, else 0 */
int dist_check_same(uint64_t h, const char *what, const char *hint) {
  if (my_size == 1) return 0;
  uint64_t *all = malloc((size_t)my_size * sizeof *all);
  if (!all) dist_abort(1);
  double t0 = rt_now();
  MPI_Allgather(&h, 8, MPI_BYTE, all, 8, MPI_BYTE, MPI_COMM_WORLD);
  comm_s += rt_now() - t0;
  int bad = -1;
  for (int r = 0; r < my_size && bad < 0; r++)
    if (all[r] != all[0]) bad = r;
  free(all);
  if (bad >= 0 && my_rank == 0) rt_error("rank %d %s than rank 0 (hash differs); %s", bad, what, hint);
  return bad >= 0 ? -1 : 0;
}

/* FNV-1a over what makes two trainers the same step: the model's shapes,
 * parameters, plan and build. */
int dist_check_model(const NnccModel *m) {
  if (my_size == 1) return 0;
  uint64_t h = DIST_FNV0;
  int ints[] = {m->abi, m->batch, m->in_c, m->in_h, m->in_w, m->classes, m->nparams, m->ranks,
                m->groups, m->nnodes, m->fp_contract};
  h = dist_fnv(h, ints, sizeof ints);
  h = fnv_str(fnv_str(fnv_str(h, m->name), m->nncc_version), NNCC_VERSION);
  h = dist_fnv(h, &m->params_floats, sizeof m->params_floats);
  h = dist_fnv(h, &m->arena_bytes, sizeof m->arena_bytes);
  for (int i = 0; i < m->nparams; i++) {
    const NnccParam *p = &m->params[i];
    h = fnv_str(h, p->name);
    h = dist_fnv(h, p->shape, sizeof p->shape);
    h = dist_fnv(h, &p->offset, sizeof p->offset);
  }
  return dist_check_same(h, "runs another model or trainer build",
                         "start the same trainer, built from the same nncc output, on every rank");
}

#endif

uint64_t dist_fnv(uint64_t h, const void *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
  return h;
}

/* nncc_rank_sum_fn for the batch-norm kernels */
void dist_rank_sum(void *ctx, double *v, size_t n) {
  (void)ctx;
  dist_sum_d(v, n);
}
