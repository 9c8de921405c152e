/*
 * main.c -- the nncc driver.  The whole compiler, one call per pass:
 *
 *   text  = read_source(path)
 *   prog  = parse(text)          lex.c, parse.c
 *   graph = elaborate(prog)      elab.c     (blocks, loops -> flat graph)
 *   shape_pass(graph)            shape.c    (types, parameters, user errors)
 *   fuse_pass(graph)             passes/fuse.c  (conv/linear + relu; -O1)
 *   buffers_build(graph)         passes/plan.c  (the step's tensors)
 *   plan_pass(graph)             passes/plan.c  (liveness, one arena; -O0: naive)
 *   emit_c(graph)                emit_c.c   (the C trainer)
 *
 * ir_verify() runs after every pass; --dump-after=PASS prints the IR there.
 */
#include "nncc.h"
#include "plot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct Options {
  const char *input, *output;
  bool dump_ir, dump_dot;
  const char *dump_after; /* pass name, or NULL for the last */
  int opt_level;
  int ranks, groups; /* --ranks N, --groups G (0: the default) */
  /* nncc build FILE.nn [-o TRAINER] */
  bool build;
  /* nncc run [--no-jit] [--no-cache] FILE.nn COMMAND...: the trainer's arguments */
  bool run;
  RunOptions run_opt;
  int run_argc;
  char **run_argv;
} Options;

static const char *pass_names[] = {"parse", "shape", "fuse", "plan"};
enum { NPASSES = sizeof pass_names / sizeof *pass_names };

static void usage(FILE *fp) {
  fprintf(fp,
          "usage: nncc [options] FILE.nn -o OUT.c   compile a model to a C trainer\n"
          "       nncc --dump-ir FILE.nn            print the typed IR and its totals\n"
          "       nncc --dump-dot FILE.nn           print the graph as Graphviz DOT\n"
          "       nncc [options] build FILE.nn [-o TRAINER]\n"
          "                                         compile a model to an executable trainer\n"
          "                                         with cc and the installed runtime\n"
          "       nncc import MODEL.onnx [-o OUT.nn] [--weights W.safetensors] [--batch N]\n"
          "                   [--input SOURCE]       an ONNX model as a .nn file (docs/onnx.md)\n"
          "       nncc export FILE.nn --load CKPT.safetensors -o OUT.onnx\n"
          "                                         a trained model's inference graph as ONNX\n"
          "       nncc --infer FILE.nn --load CKPT.safetensors -o OUT.c [--infer-weights W.bin]\n"
          "                                         a trained model's forward pass as plain C99\n"
          "                                         (and OUT.h) to embed (docs/infer.md);\n"
          "                                         --dump-ir prints its plan instead\n"
          "       nncc plot -o OUT.png LOG.jsonl...   draw training curves (--log, --step-log\n"
          "                                         files; one run each) with gnuplot\n"
          "       nncc [options] run [--no-jit] [--no-cache] FILE.nn COMMAND [trainer flags]\n"
          "                                         compile in memory and run the trainer\n"
          "                                         (COMMAND: train, eval, grads; docs/jit.md)\n"
          "\n"
          "options:\n"
          "  -o FILE             write the output to FILE (atomically) instead of stdout\n"
          "  --dump-ir           print the IR (after the last pass)\n"
          "  --dump-after=PASS   print the IR after PASS: parse, shape, fuse, plan\n"
          "  --dump-dot          print the graph in Graphviz DOT\n"
          "  --ranks N           compile for N MPI ranks, each training batch/N images\n"
          "                      of every batch (mpirun -np N; docs/distributed.md)\n"
          "  --groups G          sum the batch in G groups (default: the largest power\n"
          "                      of two up to 8 dividing it); N ranks need N <= G\n"
          "  -O0, -O1            -O0: no fusion, every tensor its own memory;\n"
          "                      -O1 (default): fuse conv/linear+relu, plan memory\n"
          "  --help              this text\n"
          "  --version           nncc's version and its runtime's ABI\n"
          "\n"
          "environment:\n"
          "  CC, CFLAGS          the C compiler of build and of run's fallback (cc), and\n"
          "                      its optimization flags (-O3 -march=native); -std=c11\n"
          "                      -fopenmp -ffp-contract=off are always added\n"
          "  NNCC_NO_JIT=1       run compiles with cc, as with --no-jit\n"
          "  NNCC_NO_CACHE=1     run neither reads nor writes its cache, as with --no-cache\n"
          "  NNCC_CACHE_DIR      run's cache of compiled objects (default:\n"
          "                      $XDG_CACHE_HOME/nncc, else ~/.cache/nncc)\n"
          "  TMPDIR              where build and run's fallback put their temporary files\n"
          "\n"
          "build writes TRAINER (default: the model's name, here) only when it is\n"
          "complete.  Documentation: docs/ of the source tree, or share/doc/nncc/.\n");
}

static noreturn void usage_error(const char *fmt, const char *arg) {
  command_usage("(run 'nncc --help' for usage)\n", fmt, arg);
}

static Options parse_args(int argc, char **argv) {
  Options o = {.opt_level = 1, .ranks = 1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    } else if (strcmp(a, "--version") == 0) {
      printf("nncc %s (runtime ABI %d)\n", NNCC_VERSION, NNCC_RT_ABI);
      exit(0);
    } else if (strcmp(a, "-o") == 0) {
      if (i + 1 == argc)
        usage_error("%s needs a file name", a);
      o.output = argv[++i];
    } else if (strcmp(a, "--dump-ir") == 0) {
      o.dump_ir = true;
    } else if (strncmp(a, "--dump-after=", 13) == 0) {
      o.dump_ir = true;
      o.dump_after = a + 13;
      bool known = false;
      for (int p = 0; p < NPASSES; p++)
        known |= strcmp(o.dump_after, pass_names[p]) == 0;
      if (!known)
        usage_error("unknown pass '%s' (passes: parse, shape, fuse, plan)", o.dump_after);
    } else if (strcmp(a, "--dump-dot") == 0) {
      o.dump_dot = true;
    } else if (strcmp(a, "--ranks") == 0 || strcmp(a, "--groups") == 0) {
      if (i + 1 == argc)
        usage_error("%s needs a number", a);
      char *end;
      errno = 0;
      long v = strtol(argv[++i], &end, 10);
      bool is_ranks = a[2] == 'r';
      if (errno || *end || end == argv[i] || v < 1 || v > NNCC_MAX_GROUPS || (v & (v - 1)))
        usage_error(is_ranks ? "--ranks takes a power of two from 1 to 64, not '%s'"
                             : "--groups takes a power of two from 1 to 64, not '%s'", argv[i]);
      *(is_ranks ? &o.ranks : &o.groups) = (int)v;
    } else if (strcmp(a, "-O0") == 0 || strcmp(a, "-O1") == 0) {
      o.opt_level = a[2] - '0';
    } else if (strcmp(a, "build") == 0 && !o.input && !o.build) {
      o.build = true;
    } else if (strcmp(a, "run") == 0 && !o.input && !o.build) {
      /* ---- run: everything after FILE.nn belongs to the trainer */
      o.run = true;
      for (; i + 1 < argc && argv[i + 1][0] == '-' && argv[i + 1][1] == '-'; i++) {
        if (strcmp(argv[i + 1], "--no-jit") == 0)
          o.run_opt.no_jit = true;
        else if (strcmp(argv[i + 1], "--no-cache") == 0)
          o.run_opt.no_cache = true;
        else if (strcmp(argv[i + 1], "--ranks") == 0)
          o.ranks = 0; /* refused below, with the way to train on ranks */
        else
          usage_error("unknown run option '%s' (run's options: --no-jit, --no-cache)", argv[i + 1]);
      }
      if (i + 1 == argc)
        usage_error("run needs a model file%s", "");
      o.input = argv[++i];
      o.run_argc = argc - i - 1;
      o.run_argv = argv + i + 1;
      break;
    } else if (a[0] == '-' && a[1]) {
      usage_error("unknown option '%s'", a);
    } else if (o.input) {
      usage_error("more than one input file ('%s')", a);
    } else {
      o.input = a;
    }
  }
  if (!o.input)
    usage_error("no input file%s", "");
  if (o.run && (o.dump_ir || o.dump_dot || o.output))
    usage_error("run takes no -o, --dump-ir or --dump-dot%s", "");
  if (o.build && (o.dump_ir || o.dump_dot || o.dump_after))
    usage_error("build takes no --dump-ir, --dump-after or --dump-dot%s", "");
  if (o.build && o.ranks > 1)
    usage_error("build links the installed runtime, which has no MPI; for --ranks, write the C "
                "(nncc --ranks N FILE.nn -o OUT.c) and build it with make -C generated in nncc's "
                "source tree (docs/distributed.md)%s", "");
  if (o.run && o.ranks != 1)
    usage_error("run trains in one process; for --ranks, compile a trainer (nncc --ranks N "
                "FILE.nn -o OUT.c) and start it with mpirun (docs/distributed.md)%s", "");
  if (o.dump_ir && o.dump_dot)
    usage_error("--dump-ir and --dump-dot are exclusive%s", "");
  return o;
}

static bool stop_after(const Options *o, const char *pass) {
  return o->dump_after && strcmp(o->dump_after, pass) == 0;
}

/* The front end, stopping early for --dump-after. */
static Graph *front_end(const char *path, const Options *o, const char **last) {
  SrcFile *file = read_source(path);
  if (!file)
    fatal("cannot read '%s': %s", path, fio_strerror(errno));
  Graph *g = elaborate(file, parse(file));
  ir_verify(g, *last = "parse");
  if (stop_after(o, "parse"))
    return g;
  ranks_pass(g, o->ranks, o->groups);
  shape_pass(g);
  ir_verify(g, *last = "shape");
  if (stop_after(o, "shape"))
    return g;
  measure_naive(g);
  if (o->opt_level > 0) {
    fuse_pass(g);
    ir_verify(g, *last = "fuse");
    if (stop_after(o, "fuse"))
      return g;
  }
  buffers_build(g);
  if (o->opt_level > 0)
    plan_pass(g);
  else
    plan_naive(g);
  ir_verify(g, *last = "plan");
  return g;
}

/* nncc plot -o OUT.png LOG.jsonl...: each file one run, labelled by its
 * name without .jsonl (runtime/plot.c draws them). */
static int plot_main(int argc, char **argv) {
  const char *out = NULL;
  PlotRun *runs = xalloc(sizeof *runs * (size_t)(argc > 0 ? argc : 1));
  int n = 0, rc = 1;
  char err[600];
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "-o") == 0) {
      if (i + 1 == argc)
        usage_error("%s needs a file name", "plot -o");
      out = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1]) {
      usage_error("unknown plot option '%s' (plot takes -o OUT.png and log files)", argv[i]);
    } else {
      const char *base = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
      size_t len = strlen(base);
      char *label = len > 6 && strcmp(base + len - 6, ".jsonl") == 0 ? xstrndup(base, len - 6) : xstrdup(base);
      if (plot_read_jsonl(argv[i], label, &runs[n], err, sizeof err)) {
        fprintf(stderr, "nncc: plot: %s\n", err);
        goto out;
      }
      n++;
    }
  }
  if (!out)
    usage_error("plot needs -o OUT.png%s", "");
  if (n == 0)
    usage_error("plot needs at least one --log or --step-log file%s", "");
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "-o") != 0 && (i == 0 || strcmp(argv[i - 1], "-o") != 0))
      refuse_clobber("-o", out, 1, (const char *[]){argv[i]}, (const char *[]){"a log to plot"});
  if (plot_png(out, runs, n, err, sizeof err))
    fprintf(stderr, "nncc: plot: %s\n", err);
  else
    rc = 0;
out:
  for (int i = 0; i < n; i++)
    plot_free(&runs[i]);
  return rc;
}

int main(int argc, char **argv) {
  if (argc >= 2 && (strcmp(argv[1], "import") == 0 || strcmp(argv[1], "export") == 0)) {
    int rc = (argv[1][0] == 'i' ? onnx_import_main : onnx_export_main)(argc - 2, argv + 2);
    pool_free_all();
    return rc;
  }
  if (argc >= 2 && strcmp(argv[1], "plot") == 0) {
    int rc = plot_main(argc - 2, argv + 2);
    pool_free_all();
    return rc;
  }
  /* nncc --infer ...: the predictor has options of its own (infer.c) */
  for (int i = 1; i < argc && strcmp(argv[i], "run") != 0; i++) {
    if (strcmp(argv[i], "--infer") == 0 && strcmp(argv[i - 1], "-o") != 0) {
      int rc = infer_main(argc, argv);
      pool_free_all();
      return rc;
    }
  }
  Options o = parse_args(argc, argv);
  refuse_clobber("-o", o.output, 1, (const char *[]){o.input}, (const char *[]){"the model file"});
  const char *last;
  Graph *g = front_end(o.input, &o, &last);
  Buf out = {0};
  int rc;
  if (o.dump_ir) {
    ir_dump(g, &out, last);
    rc = write_output(o.output, out.data, out.len);
  } else if (o.dump_dot) {
    ir_dump_dot(g, &out);
    rc = write_output(o.output, out.data, out.len);
  } else if (o.run) {
    emit_c(g, &out);
    rc = run_trainer(g->name, &out, o.run_argc, o.run_argv, o.run_opt);
  } else if (o.build) {
    refuse_clobber("the trainer", o.output ? o.output : g->name, 1, (const char *[]){o.input},
                   (const char *[]){"the model file"});
    emit_c(g, &out);
    rc = build_trainer(g->name, &out, o.output ? o.output : g->name);
  } else if (!o.output) {
    usage_error("nothing to do for '%s': give -o OUT.c, --dump-ir or --dump-dot", o.input);
  } else {
    emit_c(g, &out);
    rc = write_output(o.output, out.data, out.len);
  }
  buf_free(&out);
  pool_free_all();
  return rc;
}
