/*
 * cc.c -- running the system's C compiler, for `nncc build` (build.c) and
 * `nncc run`'s fallback (run.c), and finding what nncc installs beside
 * itself (docs/install.md).
 *
 * The compiler is $CC, else `cc`; its flags are the same-bits flags
 * (-std=c11 -fopenmp -ffp-contract=off), then $CFLAGS split at blanks,
 * else -O3 -march=native: generated/Makefile's defaults.
 */
#include "nncc.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *const same_bits_flags[] = {"-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fopenmp",
                                              "-ffp-contract=off"};
enum { NSAME = sizeof same_bits_flags / sizeof *same_bits_flags };

const char *cc_program(void) {
  const char *cc = getenv("CC");
  return cc && *cc ? cc : "cc";
}

const char **cc_command(int extra, int *n) {
  const char *cflags = getenv("CFLAGS");
  if (!cflags || !*cflags)
    cflags = "-O3 -march=native";
  const char **args = xalloc(sizeof *args * (size_t)(1 + NSAME + strlen(cflags) / 2 + 1 + extra + 1));
  int k = 0;
  args[k++] = cc_program();
  for (int i = 0; i < NSAME; i++)
    args[k++] = same_bits_flags[i];
  char *copy = xstrdup(cflags);
  for (char *save = NULL, *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save))
    args[k++] = w;
  *n = k;
  return args;
}

/* cc runs in a process group of its own, so that a signal for nncc alone
 * reaches cc's own children (cc1, as, ld) through cc_wait(): the gcc
 * driver, killed, leaves cc1 running. */
pid_t cc_spawn(const char *const *args, const char *who) {
  pid_t pid;
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  int err = posix_spawnp(&pid, args[0], NULL, &attr, (char *const *)args, environ);
  posix_spawnattr_destroy(&attr);
  if (err == ENOENT) {
    fprintf(stderr, "nncc: %s: no C compiler: '%s' is not on PATH (install gcc or clang, or set CC)\n",
            who, args[0]);
    return -1;
  }
  if (err) {
    fprintf(stderr, "nncc: %s: cannot run '%s': %s\n", who, args[0], strerror(err));
    return -1;
  }
  return pid;
}

static volatile sig_atomic_t caught;

bool cc_wait(pid_t pid) {
  int status;
  bool forwarded = false;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      return false;
    if (caught && !forwarded) /* cc and its children stop too */
      kill(-pid, SIGTERM), forwarded = true;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 && !caught;
}

char *self_dir(void) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return NULL;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  return slash ? format("%.*s", (int)(slash - exe) > 0 ? (int)(slash - exe) : 1, exe) : NULL;
}

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Installed: DIR/REL_INCLUDEDIR/nncc/nncc_rt.h and DIR/REL_LIBDIR/libnncc_rt.a,
 * where DIR is nncc's own directory.  Else, for an nncc run from the build
 * tree it was built in (and only then), that tree's runtime. */
bool find_runtime(char **include_dir, char **lib, char **why) {
  char *dir = self_dir();
  if (!dir) {
    *why = "cannot find nncc's own directory (/proc/self/exe)";
    return false;
  }
  char *inc = format("%s/%s/nncc", dir, NNCC_REL_INCLUDEDIR);
  char *a = format("%s/%s/libnncc_rt.a", dir, NNCC_REL_LIBDIR);
  if (is_file(format("%s/nncc_rt.h", inc)) && is_file(a)) {
    *include_dir = inc, *lib = a;
    return true;
  }
  *why = format("not in %s or %s", inc, a);
  struct stat self, built;
  if (stat(dir, &self) == 0 && stat(NNCC_BUILD_DIR, &built) == 0 && self.st_dev == built.st_dev &&
      self.st_ino == built.st_ino && is_file(NNCC_BUILD_RT_INCLUDE "/nncc_rt.h") &&
      is_file(NNCC_BUILD_RT_LIB)) {
    *include_dir = NNCC_BUILD_RT_INCLUDE, *lib = NNCC_BUILD_RT_LIB;
    return true;
  }
  return false;
}

/* While nncc's temp files exist, SIGINT, SIGTERM and SIGHUP only take
 * note (cc, started afterwards, gets the default action back at exec and
 * dies of them, or cc_wait() passes them on): the caller removes its
 * files, then cc_end_guard() re-raises the signal so that nncc dies of it
 * too.  A signal nncc was started ignoring stays ignored. */
static struct sigaction saved[3];
static const int guarded[3] = {SIGINT, SIGTERM, SIGHUP};

static void note_signal(int sig) { caught = sig; }

static void cc_begin_guard(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = note_signal; /* no SA_RESTART: waitpid() returns EINTR */
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < 3; i++) {
    sigaction(guarded[i], NULL, &saved[i]);
    if (saved[i].sa_handler != SIG_IGN)
      sigaction(guarded[i], &sa, NULL);
  }
}

bool cc_interrupted(void) { return caught != 0; }

void cc_end_guard(void) {
  for (int i = 0; i < 3; i++)
    sigaction(guarded[i], &saved[i], NULL);
  if (caught) {
    signal(caught, SIG_DFL);
    raise(caught);
  }
}

char *cc_temp_dir(const char *who) {
  const char *tmp = getenv("TMPDIR");
  char *dir = format("%s/nncc-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", who);
  cc_begin_guard();
  if (mkdtemp(dir))
    return dir;
  fprintf(stderr, "nncc: %s: cannot create a directory '%s': %s\n", who, dir, strerror(errno));
  cc_end_guard();
  return NULL;
}
