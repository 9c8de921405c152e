/*
 * test_files.c -- what the runtime's files may be (fileio.c): outputs that
 * are regular files (replaced atomically, mode kept), devices and FIFOs
 * (written through, never replaced; no reader is an error at once, a
 * reader that leaves is EPIPE), symlinks (followed) and the rest
 * (refused); inputs that are not regular files (refused, never waited
 * on); logs that fail (training stops, the checkpoint is saved, exit 1);
 * and temp files that never pile up, even when a save is killed.
 */
#define _DEFAULT_SOURCE /* mknod, makedev */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define TINY_FLOATS (3 * 36 + 7)

static char *dir;
static char out[1 << 16];

static void setup(void) {
  dir = tmpdir_new();
  write_dataset(dir, 22, 9, 1); /* 5 steps per epoch */
}
static void teardown(void) {
  rm_rf(dir);
  free(dir);
}

static char *P(const char *name) { return path_in(dir, name); }

static mode_t kind(const char *path) {
  struct stat st;
  ck_assert_msg(lstat(path, &st) == 0, "%s: %s", path, strerror(errno));
  return st.st_mode & S_IFMT;
}

static void put(const char *path, const char *text) {
  ck_assert_int_eq(fio_write_file(path, text, strlen(text)), 0);
}

static char *text_of(const char *path) {
  size_t len;
  char *p = (char *)slurp(path, &len);
  ck_assert_msg(p != NULL, "%s: cannot read", path);
  p[len] = 0;
  return p;
}

/* Files in dir whose name says temp ("nncc-tmp", or the old ".tmp."). */
static int temp_files(void) {
  int n = 0;
  DIR *d = opendir(dir);
  for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, "tmp") != NULL;
  closedir(d);
  return n;
}

/* A checkpoint of the tiny model into path (in this process). */
static int save_tiny(const char *path) {
  float params[TINY_FLOATS], state[2 * TINY_FLOATS] = {0};
  NnccProgress p = {3, 0, 3, 1.5, 1, 0};
  params_init(&tiny_model, params, 7);
  return ckpt_save(path, &tiny_model, &tiny_model.defaults, params, state, &p);
}
static int save_child(void *arg) { return save_tiny(arg) ? 1 : 0; }

/* _i: 0 with O_TMPFILE, 1 with the named temp file (NNCC_NO_TMPFILE). */
static void temp_mode(int i) {
  if (i) setenv("NNCC_NO_TMPFILE", "1", 1);
  else unsetenv("NNCC_NO_TMPFILE");
}

START_TEST(regular_file_replaced_whole_keeping_its_mode) {
  temp_mode(_i);
  put(P("a"), "old");
  ck_assert_int_eq(chmod(P("a"), 0640), 0);
  int fd = open(P("a"), O_RDONLY); /* a reader of the old file keeps it */
  put(P("a"), "new contents");
  char *t = text_of(P("a"));
  ck_assert_str_eq(t, "new contents");
  free(t);
  char old[8] = {0};
  ck_assert_int_eq(read(fd, old, sizeof old - 1), 3);
  ck_assert_str_eq(old, "old");
  close(fd);
  struct stat st;
  stat(P("a"), &st);
  ck_assert_int_eq(st.st_mode & 07777, 0640);
  put(P("fresh"), "x"); /* a new file */
  ck_assert_int_eq(temp_files(), 0);
}
END_TEST

/* As root (who could replace the system's) a private copy of /dev/NAME,
 * else /dev/NAME itself. */
static const char *device(const char *name, unsigned minor) {
  const char *own = P(name);
  if (mknod(own, S_IFCHR | 0666, makedev(1, minor)) == 0) return own;
  return minor == 3 ? "/dev/null" : "/dev/full";
}

START_TEST(character_device_is_written_through) {
  const char *null = device("null", 3), *full = device("full", 7);
  ck_assert_int_eq(save_tiny(null), 0);
  ck_assert_int_eq(fio_write_file(null, "x", 1), 0);
  ck_assert_int_eq(kind(null), S_IFCHR);
  /* A device that fails writes fails the save. */
  errno = 0;
  ck_assert_int_eq(fio_write_file(full, "x", 1), -1);
  ck_assert_int_eq(errno, ENOSPC);
  ck_assert_int_eq(kind(full), S_IFCHR);
  ck_assert_int_eq(temp_files(), 0);
}
END_TEST

START_TEST(fifo_with_a_reader_gets_the_data) {
  ck_assert_int_eq(mkfifo(P("fifo"), 0600), 0);
  int rd = open(P("fifo"), O_RDONLY | O_NONBLOCK);
  ck_assert_int_ge(rd, 0);
  ck_assert_int_eq(save_tiny(P("fifo")), 0); /* a small checkpoint fits the pipe */
  ck_assert_int_eq(save_tiny(P("regular")), 0);
  size_t len;
  unsigned char *want = slurp(P("regular"), &len), got[8192];
  ck_assert_uint_lt(len, sizeof got);
  ck_assert_int_eq(read(rd, got, sizeof got), (int)len);
  ck_assert_mem_eq(got, want, len);
  free(want);
  close(rd);
  ck_assert_int_eq(kind(P("fifo")), S_IFIFO);
}
END_TEST

START_TEST(fifo_without_a_reader_fails_at_once) {
  ck_assert_int_eq(mkfifo(P("fifo"), 0600), 0);
  ck_assert_int_eq(capture(save_child, P("fifo"), out, sizeof out), 1);
  ck_assert_contains(out, "fifo: cannot write checkpoint: FIFO has no reader\n");
  ck_assert_int_eq(kind(P("fifo")), S_IFIFO);
  ck_assert_int_eq(temp_files(), 0);
}
END_TEST

/* The reader leaves after the open: EPIPE, not death by SIGPIPE. */
static int write_to_gone_reader(void *arg) {
  FioOut f;
  int rd = open(arg, O_RDONLY | O_NONBLOCK);
  if (rd < 0 || fio_out_open(&f, arg)) return 2;
  close(rd);
  if (fio_out_write(&f, "x", 1) == 0 || errno != EPIPE) return 3;
  fio_out_abort(&f);
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGPIPE) ? 4 : 0; /* none left behind either */
}

START_TEST(reader_that_leaves_is_an_error_not_a_signal) {
  ck_assert_int_eq(mkfifo(P("fifo"), 0600), 0);
  ck_assert_int_eq(capture(write_to_gone_reader, P("fifo"), out, sizeof out), 0);
}
END_TEST

START_TEST(symlinks_are_followed_and_stay) {
  temp_mode(_i);
  ck_assert_int_eq(mkdir(P("sub"), 0755), 0);
  put(P("real"), "old");
  ck_assert_int_eq(symlink("real", P("link")), 0);
  ck_assert_int_eq(symlink("link", P("chain")), 0);
  ck_assert_int_eq(symlink("../real", P("sub/up")), 0);
  put(P("chain"), "via chain");
  ck_assert_int_eq(kind(P("link")), S_IFLNK);
  ck_assert_int_eq(kind(P("chain")), S_IFLNK);
  char *t = text_of(P("real"));
  ck_assert_str_eq(t, "via chain");
  free(t);
  put(P("sub/up"), "relative to its directory");
  t = text_of(P("real"));
  ck_assert_str_eq(t, "relative to its directory");
  free(t);
  /* A dangling link gets its target created. */
  ck_assert_int_eq(symlink("sub/new", P("dangling")), 0);
  put(P("dangling"), "created");
  ck_assert_int_eq(kind(P("dangling")), S_IFLNK);
  t = text_of(P("sub/new"));
  ck_assert_str_eq(t, "created");
  free(t);
  /* A loop is an error. */
  ck_assert_int_eq(symlink("loop2", P("loop1")), 0);
  ck_assert_int_eq(symlink("loop1", P("loop2")), 0);
  errno = 0;
  ck_assert_int_eq(fio_write_file(P("loop1"), "x", 1), -1);
  ck_assert_int_eq(errno, ELOOP);
  ck_assert_int_eq(temp_files(), 0);
}
END_TEST

START_TEST(directories_sockets_and_block_devices_are_refused) {
  ck_assert_int_eq(mkdir(P("d"), 0755), 0);
  errno = 0;
  ck_assert_int_eq(fio_write_file(P("d"), "x", 1), -1);
  ck_assert_int_eq(errno, EISDIR);
  ck_assert_int_lt(fio_open_append(P("d")), 0);
  ck_assert_int_eq(errno, EISDIR);
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", P("sock"));
  ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  ck_assert_int_eq(fio_write_file(P("sock"), "x", 1), -1);
  ck_assert_int_eq(errno, FIO_ENOTFILE);
  ck_assert_int_lt(fio_open_append(P("sock")), 0);
  ck_assert_int_eq(errno, FIO_ENOTFILE);
  ck_assert_int_lt(fio_open_read(P("sock")), 0);
  ck_assert_int_eq(errno, FIO_ENOTREG);
  close(s);
  ck_assert_int_eq(kind(P("sock")), S_IFSOCK);
  if (mknod(P("blk"), S_IFBLK | 0600, makedev(7, 200)) == 0) { /* root only */
    ck_assert_int_eq(fio_write_file(P("blk"), "x", 1), -1);
    ck_assert_int_eq(errno, FIO_ENOTFILE);
    ck_assert_int_lt(fio_open_append(P("blk")), 0);
    ck_assert_int_eq(errno, FIO_ENOTFILE);
    ck_assert_int_eq(kind(P("blk")), S_IFBLK);
  }
  ck_assert_str_eq(fio_strerror(FIO_ENOTFILE), "not a regular file, character device or FIFO");
  ck_assert_int_eq(temp_files(), 0);
}
END_TEST

/* Inputs: a FIFO (which would block open() until a writer came), a device
 * or a directory is "not a regular file", at once. */
START_TEST(inputs_must_be_regular_files) {
  ck_assert_int_eq(mkfifo(P("fifo"), 0600), 0);
  ck_assert_int_eq(mkdir(P("d"), 0755), 0);
  const char *bad[] = {P("fifo"), P("d"), device("null", 3)};
  for (int i = 0; i < 3; i++) {
    errno = 0;
    ck_assert_int_lt(fio_open_read(bad[i]), 0);
    ck_assert_int_eq(errno, FIO_ENOTREG);
  }
  put(P("r"), "x");
  int fd = fio_open_read(P("r"));
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  close(fd);
  /* --load FIFO */
  int rc = run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("fifo"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "nncc: checkpoint ");
  ck_assert_contains(out, "fifo: not a regular file\n");
  /* an IDX file that is a FIFO */
  remove(P("t10k-labels-idx1-ubyte.gz"));
  ck_assert_int_eq(mkfifo(P("t10k-labels-idx1-ubyte"), 0600), 0);
  ck_assert_int_eq(save_tiny(P("c")), 0);
  rc = run_cli(&tiny_model, out, sizeof out, "eval", "--data", dir, "--load", P("c"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "t10k-labels-idx1-ubyte: not a regular file\n");
}
END_TEST

START_TEST(stale_temp_files_are_removed) {
  /* 999999999 is above any pid_max, so never a running process; the
   * parent of this test is running. */
  char live[64], mine[64];
  snprintf(live, sizeof live, ".c.nncc-tmp.%ld", (long)getppid());
  snprintf(mine, sizeof mine, ".c.nncc-tmp.%ld", (long)getpid());
  const char *keep[] = {live, ".c.nncc-tmp.x1", ".other.nncc-tmp.999999999", ".c.nncc-tmp.0"};
  put(P(".c.nncc-tmp.999999999"), "stale");
  for (int i = 0; i < 4; i++) put(P(keep[i]), "keep");
  ck_assert_int_eq(save_tiny(P("c")), 0);
  ck_assert_int_eq(access(P(".c.nncc-tmp.999999999"), F_OK), -1);
  for (int i = 0; i < 4; i++) ck_assert_msg(access(P(keep[i]), F_OK) == 0, "%s removed", keep[i]);
  ck_assert_int_eq(access(P(mine), F_OK), -1);
}
END_TEST

static int train_forever(void *arg) {
  (void)arg;
  char *argv[] = {"tiny", "train", "--data", dir, "--epochs", "1000000", "--save", P("c"),
                  "--threads", "1", "--quiet", NULL};
  return nncc_main(11, argv, &tiny_model);
}

static int load_ok(const char *path) {
  float params[TINY_FLOATS], state[2 * TINY_FLOATS];
  NnccTrainConfig c = tiny_model.defaults;
  NnccProgress p = {0};
  return ckpt_load(path, &tiny_model, &c, params, state, &p) == 0;
}

/* SIGKILL at random moments of a trainer that saves after every epoch: at
 * most the killed save's temp file is left, the next save removes it, and
 * the checkpoint is always whole. */
START_TEST(sigkill_during_save_leaves_no_temp_files) {
  temp_mode(_i);
  unsigned x = 12345;
  for (int round = 0; round < 25; round++) {
    fflush(stdout);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      _exit(train_forever(NULL));
    }
    /* an epoch of the tiny model takes a few ms, much of it its save */
    x = x * 1103515245u + 12345u;
    struct timespec t = {0, (long)((x >> 16) % 30000) * 1000L};
    nanosleep(&t, NULL);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFSIGNALED(status), "the trainer stopped by itself");
    int temps = temp_files();
    ck_assert_msg(temps <= 1, "round %d: %d temp files", round, temps);
    if (access(P("c"), F_OK) == 0) ck_assert_msg(load_ok(P("c")), "round %d: a broken checkpoint", round);
  }
  int rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "1", "--save",
                   P("c"), "--quiet", NULL);
  ck_assert_msg(rc == 0, "%s", out);
  ck_assert_int_eq(temp_files(), 0);
}
END_TEST

/* A log that cannot be written stops training with an error naming it;
 * the checkpoint is saved; exit 1. */
START_TEST(failing_logs_stop_training_and_save) {
  static const char *flag[] = {"--log", "--step-log"};
  const char *step = _i ? "1" : "5"; /* the first step's line; the first epoch's */
  const char *full = device("full", 7);
  char want[4200];
  int rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "3", "--save",
                   P("c"), flag[_i], full, NULL);
  ck_assert_msg(rc == 1, "rc %d: %s", rc, out);
  snprintf(want, sizeof want, "nncc: %s: cannot write log: No space left on device; training stopped\n", full);
  ck_assert_contains(out, want);
  ck_assert_msg(load_ok(P("c")), "no checkpoint");
  float params[TINY_FLOATS], state[2 * TINY_FLOATS];
  NnccTrainConfig c = tiny_model.defaults;
  NnccProgress p = {0};
  ck_assert_int_eq(ckpt_load(P("c"), &tiny_model, &c, params, state, &p), 0);
  ck_assert_int_eq((int)p.step, atoi(step));
  ck_assert_int_eq(kind(full), S_IFCHR);
}
END_TEST

START_TEST(logs_follow_the_file_rules) {
  static const char *flag[] = {"--log", "--step-log"};
  ck_assert_int_eq(mkfifo(P("fifo"), 0600), 0);
  int rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "2", flag[_i],
                   P("fifo"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "fifo: FIFO has no reader\n");
  ck_assert_int_eq(mkdir(P("d"), 0755), 0);
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--steps", "2", flag[_i], P("d"), NULL);
  ck_assert_int_eq(rc, 1);
  ck_assert_contains(out, "/d: Is a directory\n");
  const char *null = device("null", 3);
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "1", flag[_i], null, NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, out);
  ck_assert_int_eq(kind(null), S_IFCHR);
  /* appended through a symlink, which stays */
  put(P("real.jsonl"), "{\"old\":1}\n");
  ck_assert_int_eq(symlink("real.jsonl", P("link.jsonl")), 0);
  rc = run_cli(&tiny_model, out, sizeof out, "train", "--data", dir, "--epochs", "1", flag[_i],
               P("link.jsonl"), NULL);
  ck_assert_msg(rc == 0, "rc %d: %s", rc, out);
  ck_assert_int_eq(kind(P("link.jsonl")), S_IFLNK);
  char *t = text_of(P("real.jsonl"));
  ck_assert_msg(strncmp(t, "{\"old\":1}\n{\"", 12) == 0, "%s", t);
  int lines = 0;
  for (char *c = t; *c; c++) lines += *c == '\n';
  ck_assert_int_eq(lines, _i ? 1 + 5 : 1 + 1);
  free(t);
}
END_TEST

int main(void) {
  Suite *s = suite_create("files");
  TCase *tc = tcase_create("all");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, regular_file_replaced_whole_keeping_its_mode, 0, 2);
  tcase_add_test(tc, character_device_is_written_through);
  tcase_add_test(tc, fifo_with_a_reader_gets_the_data);
  tcase_add_test(tc, fifo_without_a_reader_fails_at_once);
  tcase_add_test(tc, reader_that_leaves_is_an_error_not_a_signal);
  tcase_add_loop_test(tc, symlinks_are_followed_and_stay, 0, 2);
  tcase_add_test(tc, directories_sockets_and_block_devices_are_refused);
  tcase_add_test(tc, inputs_must_be_regular_files);
  tcase_add_test(tc, stale_temp_files_are_removed);
  tcase_add_loop_test(tc, sigkill_during_save_leaves_no_temp_files, 0, 2);
  tcase_add_loop_test(tc, failing_logs_stop_training_and_save, 0, 2);
  tcase_add_loop_test(tc, logs_follow_the_file_rules, 0, 2);
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
