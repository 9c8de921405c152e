/*
 * jit.cpp -- compile C held in memory with clang and run it in-process.
 *
 * The only C++ in nncc, behind the C ABI of jit.h.  One call does what
 * `make -f generated/Makefile` does, without files or a compiler on PATH:
 *
 *   driver   clang's Driver turns the Makefile's flags (-O3 -march=native
 *            -fopenmp -ffp-contract=off) into one cc1 job per .c file, so
 *            system include paths, host CPU and features come out exactly
 *            as for `clang -c`
 *   compile  the jobs run on one thread per core: CompilerInstance +
 *            EmitObjAction (front end, -O3, code generation, all as in
 *            `clang -c`) over an in-memory overlay of the sources, writing
 *            an ELF object into memory
 *   split    with two or more cores the trainer's unit is compiled in one
 *            part per core, at once: its front end runs once (runtime
 *            units compile beside it), and each part reads its module
 *            back and keeps its share of the kernels (the generated
 *            KERNEL functions, each a noinline function with its sizes as
 *            constants), dealt out by size so that the parts take about
 *            as long; part 0 also keeps all the rest (forward(),
 *            backward(), the tables).  -O3 and code generation, the bulk
 *            of the time, then run on all parts in parallel
 *   link     the objects go into one ORC LLJIT; OpenMP symbols resolve from
 *            libomp (loaded first), everything else from this process
 *
 * libclang's C API cannot generate code, hence clang's C++ API.  LLVM and
 * clang are used as the shared libLLVM-14.so and libclang-cpp.so.14 (mixing
 * in LLVM's static component libraries registers options twice and aborts).
 */
#include "jit.h"

#include <clang/Basic/Diagnostic.h>
#include <clang/Basic/DiagnosticOptions.h>
#include <clang/Basic/Version.h>
#include <clang/CodeGen/BackendUtil.h>
#include <clang/CodeGen/CodeGenAction.h>
#include <clang/Driver/Compilation.h>
#include <clang/Driver/Driver.h>
#include <clang/Driver/Job.h>
#include <clang/Driver/Tool.h>
#include <clang/Frontend/CompilerInstance.h>
#include <clang/Frontend/CompilerInvocation.h>
#include <clang/Frontend/TextDiagnosticPrinter.h>
#include <llvm/Bitcode/BitcodeReader.h>
#include <llvm/Bitcode/BitcodeWriter.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Transforms/IPO/GlobalDCE.h>
#include <llvm/Transforms/IPO/AlwaysInliner.h>
#include <llvm/Transforms/Scalar/SROA.h>
#include <llvm/Support/Host.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/CommandLine.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/VirtualFileSystem.h>
#include <llvm/Support/raw_ostream.h>

#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace llvm;

/* The in-memory files live under this directory; clang's diagnostics name
 * them by it ("/nncc/mnist_cnn.c:12:3: error: ..."). */
static const char kRoot[] = "/nncc/";

/* The JIT'd runtime calls zlib (idx.c).  nncc itself does not, so without
 * this reference an --as-needed link would drop libz from the process and
 * the JIT could not resolve gzopen & co. */
__attribute__((used)) static const char *(*const keep_zlib)(void) = zlibVersion;
/* The same for libpng (predict reads PNG images, runtime/image.c). */
__attribute__((used)) static png_uint_32 (*const keep_png)(void) = png_access_version_number;

struct Jit {
  std::unique_ptr<orc::LLJIT> lljit;
};

/* A unit compiles all of its file (part WHOLE: the runtime's), or runs
 * the trainer's front end once (FRONT), or compiles part `part` of
 * `nparts` of the module that made (keep_part: one part at least). */
enum { WHOLE = -1, FRONT = -2, kMaxParts = 16 };

/* The trainer's module as its front end left it, for every part: bitcode,
 * since each part optimizes in an LLVMContext of its own (a context is
 * one thread's), and reading it back costs a part a fifth of running the
 * front end again (mnist_cnn: 220 KB, about 0.05 s against 0.3 s). */
struct Front {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false, ok = false;
  SmallVector<char, 0> bitcode;
};

/* One translation unit: its cc1 command line, then the object file and the
 * diagnostics clang printed while compiling it. */
struct Unit {
  int file; /* its index in the caller's files[] */
  int part, nparts; /* WHOLE, FRONT, or which part of a split trainer it compiles */
  std::vector<std::string> cc1_args;
  std::string diags;
  SmallVector<char, 0> object; /* ELF relocatable, as `clang -c` writes it */
  bool ok = false;
};

static void init_llvm() {
  /* The native target must be registered before clang runs its -O3
   * pipeline: without a TargetMachine the vectorizers see no vector
   * registers and generate scalar code. */
  static std::once_flag once;
  std::call_once(once, [] {
    InitializeNativeTarget();
    InitializeNativeTargetAsmPrinter();
    InitializeNativeTargetAsmParser();
    /* The post-RA list scheduler takes 40% of compiling a model at -O3 on
     * AVX-512 CPUs and gains nothing measurable on out-of-order cores; it
     * reorders instructions only, so results stay bit-identical. */
    auto &opts = cl::getRegisteredOptions();
    auto it = opts.find("post-RA-scheduler");
    if (it != opts.end())
      it->second->addOccurrence(1, "post-RA-scheduler", "false");
  });
}

static IntrusiveRefCntPtr<vfs::FileSystem> source_fs(const JitFile *files, int nfiles) {
  IntrusiveRefCntPtr<vfs::InMemoryFileSystem> mem(new vfs::InMemoryFileSystem);
  for (int i = 0; i < nfiles; i++)
    /* A copy: clang's lexer needs the NUL after the text. */
    mem->addFile(std::string(kRoot) + files[i].path, 0,
                 MemoryBuffer::getMemBufferCopy(StringRef(files[i].text, files[i].len),
                                                files[i].path));
  IntrusiveRefCntPtr<vfs::OverlayFileSystem> fs(
      new vfs::OverlayFileSystem(vfs::getRealFileSystem()));
  fs->pushOverlay(mem);
  return fs;
}

/* The cc1 command lines for every .c file, as `clang -c` would run them:
 * the driver finds the system headers, and -march=native becomes
 * -target-cpu and -target-feature from getHostCPUName/getHostCPUFeatures
 * (AVX-512 where the CPU has it: the kernels' intrinsics need it). */
static bool driver_jobs(const JitFile *files, const std::vector<int> &todo,
                        const char *const *defines, std::vector<Unit> &units, std::string &err) {
  std::vector<std::string> args = {
      "clang", "-c", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-O3", "-march=native",
      "-fopenmp", "-ffp-contract=off", "-resource-dir", NNCC_CLANG_RESOURCE_DIR,
      std::string("-I") + kRoot + "runtime"};
  for (const char *const *d = defines; d && *d; d++)
    args.push_back(*d);
  for (int i : todo)
    args.push_back(std::string(kRoot) + files[i].path);
  std::vector<const char *> argv;
  for (auto &a : args)
    argv.push_back(a.c_str());

  IntrusiveRefCntPtr<clang::DiagnosticOptions> opts(new clang::DiagnosticOptions);
  raw_string_ostream os(err);
  clang::TextDiagnosticPrinter printer(os, opts.get());
  clang::DiagnosticsEngine diags(new clang::DiagnosticIDs, opts, &printer, false);
  clang::driver::Driver driver(NNCC_CLANG_EXE, sys::getDefaultTargetTriple(), diags);
  driver.setCheckInputsExist(false); /* the inputs exist only in memory */
  std::unique_ptr<clang::driver::Compilation> comp(driver.BuildCompilation(argv));
  if (!comp || diags.hasErrorOccurred())
    return false;
  for (const clang::driver::Command &cmd : comp->getJobs()) {
    if (StringRef(cmd.getCreator().getName()) != "clang") {
      os << "nncc: run: unexpected clang driver job '" << cmd.getCreator().getName() << "'\n";
      return false;
    }
    if (units.size() == todo.size()) {
      os << "nncc: run: the clang driver made more jobs than files\n";
      return false;
    }
    Unit u;
    u.file = todo[units.size()]; /* one job per input, in their order */
    u.part = WHOLE, u.nparts = 1;
    for (const char *a : cmd.getArguments())
      u.cc1_args.emplace_back(a);
    units.push_back(std::move(u));
  }
  if (units.size() != todo.size()) {
    os << "nncc: run: the clang driver made fewer jobs than files\n";
    return false;
  }
  return true;
}

/* A kernel of the generated trainer: a noinline function of its own
 * (KERNEL in the generated C) that something calls.  OpenMP's outlined
 * bodies (".omp_outlined.") are not kernels: they stay with their caller. */
static bool is_kernel(const Function &f) {
  return !f.isDeclaration() && f.hasLocalLinkage() && f.hasFnAttribute(Attribute::NoInline) &&
         !f.getName().startswith(".") && !f.use_empty();
}

/* Which part compiles each kernel (sizes[i]: kernel i's instruction
 * count once the always-inline functions are inlined): the largest first
 * onto the least loaded part, part 0 starting with `rest`, the size of all
 * that is not a kernel.  Every part computes the same deal from the same
 * module. */
static std::vector<int> deal_kernels(const std::vector<uint64_t> &sizes, uint64_t rest,
                                     int nparts) {
  std::vector<size_t> order(sizes.size());
  for (size_t i = 0; i < order.size(); i++)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });
  std::vector<uint64_t> load(nparts, 0);
  load[0] = rest;
  std::vector<int> owner(sizes.size());
  for (size_t i : order) {
    owner[i] = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    load[owner[i]] += sizes[i];
  }
  return owner;
}

/* Runs `mpm` over m. */
static void run_passes(Module &m, ModulePassManager &mpm) {
  LoopAnalysisManager lam;
  FunctionAnalysisManager fam;
  CGSCCAnalysisManager cgam;
  ModuleAnalysisManager mam;
  PassBuilder pb;
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  mpm.run(m, mam);
}

/* The name a kernel gets in every part, where it is no longer static. */
static const char kKernelPrefix[] = "nncc_jit_kernel_";

/* f's instruction count once the always-inline functions it calls are
 * inlined into it: its own, plus each such call's callee's, recursively
 * (memo: what is known; a callee in progress, which could not be inlined,
 * counts its own). */
static uint64_t inlined_size(const Function &f, DenseMap<const Function *, uint64_t> &memo) {
  auto it = memo.find(&f);
  if (it != memo.end())
    return it->second;
  uint64_t n = f.getInstructionCount();
  memo[&f] = n;
  for (const BasicBlock &b : f)
    for (const Instruction &i : b)
      if (const auto *call = dyn_cast<CallBase>(&i))
        if (const Function *g = call->getCalledFunction())
          if (!g->isDeclaration() && g->hasFnAttribute(Attribute::AlwaysInline))
            n += inlined_size(*g, memo);
  memo[&f] = n;
  return n;
}

/* Cuts the trainer's module down to part `part` of `nparts`: its kernels
 * (made external), and in part 0 also all that is not a kernel; other
 * parts' kernels become declarations.  What a part no longer reaches is
 * removed before -O3 spends time on it. */
static void keep_part(Module &m, int part, int nparts) {
  /* The deal weighs each kernel by its size with the always-inline
   * functions inlined, computed, not done: only the part's own kernels
   * are inlined into (below). */
  DenseMap<const Function *, uint64_t> memo;
  std::vector<Function *> kernels;
  std::vector<uint64_t> sizes;
  uint64_t rest = 0;
  for (Function &f : m)
    if (is_kernel(f))
      kernels.push_back(&f), sizes.push_back(inlined_size(f, memo));
    else if (!f.isDeclaration() && !f.hasFnAttribute(Attribute::AlwaysInline))
      rest += inlined_size(f, memo);
  std::vector<int> owner = deal_kernels(sizes, rest, nparts);
  if (part != 0)
    for (GlobalValue &g : m.global_values())
      if (!g.isDeclaration() && !g.hasLocalLinkage())
        g.setLinkage(GlobalValue::InternalLinkage);
  for (size_t i = 0; i < kernels.size(); i++) {
    if (owner[i] != part)
      kernels[i]->deleteBody();
    kernels[i]->setLinkage(GlobalValue::ExternalLinkage);
    kernels[i]->setName(kKernelPrefix + kernels[i]->getName().str());
  }
  /* Inlining the always-inline functions first spares -O3 optimizing the
   * kernels' generic bodies (nk_engine_team, ...) in every part before
   * inlining them anyway.  Dropping the other parts' kernels first spares
   * inlining into them, and SROA first (the front end's allocas and
   * loads into registers: -O3's first pass would do it anyway) shrinks
   * each body before it is copied: mnist_cnn's cut went from 0.9 to
   * 0.13 s a part. */
  ModulePassManager mpm;
  mpm.addPass(GlobalDCEPass());
  mpm.addPass(createModuleToFunctionPassAdaptor(SROAPass()));
  mpm.addPass(AlwaysInlinerPass());
  mpm.addPass(GlobalDCEPass());
  run_passes(m, mpm);
}

/* One unit's work: WHOLE, the front end, -O3 and code generation into
 * u.object, as `clang -c`; FRONT, the front end into front.bitcode (and
 * front.done, which the parts wait for); a part, the front end's module
 * read back, cut (keep_part) and handed to the back end `clang -c` uses.
 * u.diags holds what clang printed. */
static void compile_unit(Unit &u, const JitFile *files, int nfiles, Front &front) {
  std::vector<const char *> argv;
  for (auto &a : u.cc1_args)
    if (a != "-cc1")
      argv.push_back(a.c_str());
  raw_string_ostream os(u.diags);
  IntrusiveRefCntPtr<clang::DiagnosticOptions> opts(new clang::DiagnosticOptions);
  auto *printer = new clang::TextDiagnosticPrinter(os, opts.get());

  clang::CompilerInstance ci;
  ci.createDiagnostics(printer, true);
  auto inv = std::make_shared<clang::CompilerInvocation>();
  bool made = clang::CompilerInvocation::CreateFromArgs(*inv, argv, ci.getDiagnostics());
  if (made) {
    /* The driver passes -disable-free (a process that exits anyway need
     * not free); compiling again and again in one process must. */
    inv->getFrontendOpts().DisableFree = false;
    inv->getCodeGenOpts().DisableFree = false; /* else each unit buries a TargetMachine */
    ci.setInvocation(std::move(inv));
    ci.createFileManager(source_fs(files, nfiles));
    ci.setVerboseOutputStream(os); /* "1 error generated." after the errors */
  }

  LLVMContext ctx;
  if (u.part == WHOLE) {
    if (!made)
      return;
    ci.setOutputStream(std::make_unique<raw_svector_ostream>(u.object));
    clang::EmitObjAction action(&ctx);
    u.ok = ci.ExecuteAction(action);
    return;
  }
  if (u.part == FRONT) {
    /* The module as -O3 makes it (TBAA, lifetimes, no optnone), but not
     * yet optimized: EmitLLVMOnlyAction would run -O3 on the whole. */
    bool ok = false;
    SmallVector<char, 0> bitcode;
    if (made) {
      ci.getCodeGenOpts().DisableLLVMPasses = true;
      clang::EmitLLVMOnlyAction action(&ctx);
      if (ci.ExecuteAction(action))
        if (std::unique_ptr<Module> m = action.takeModule()) {
          raw_svector_ostream out(bitcode);
          WriteBitcodeToFile(*m, out);
          ok = true;
        }
    }
    std::lock_guard<std::mutex> lock(front.mu);
    front.bitcode = std::move(bitcode);
    front.ok = u.ok = ok;
    front.done = true;
    front.cv.notify_all();
    return;
  }
  {
    std::unique_lock<std::mutex> lock(front.mu);
    front.cv.wait(lock, [&] { return front.done; });
  }
  /* the front end printed its errors once; a part adds none */
  if (!made || !front.ok || !ci.createTarget())
    return;
  Expected<std::unique_ptr<Module>> m = parseBitcodeFile(
      MemoryBufferRef(StringRef(front.bitcode.data(), front.bitcode.size()), "trainer"), ctx);
  if (!m) {
    os << "nncc: run: " << toString(m.takeError()) << "\n";
    return;
  }
  keep_part(**m, u.part, u.nparts);
  clang::EmitBackendOutput(ci.getDiagnostics(), ci.getHeaderSearchOpts(), ci.getCodeGenOpts(),
                           ci.getTargetOpts(), ci.getLangOpts(), (*m)->getDataLayoutStr(),
                           m->get(), clang::Backend_EmitObj,
                           std::make_unique<raw_svector_ostream>(u.object));
  u.ok = !ci.getDiagnostics().hasErrorOccurred();
}

/* What jit_compile() hands back per file, and takes back from the cache:
 * "NNCCJIT1", the object count (4 bytes), then each object's length (8
 * bytes, little-endian) and bytes. */
static const char kBundle[8] = {'N', 'N', 'C', 'C', 'J', 'I', 'T', '1'};

static void put_le(std::string &s, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    s.push_back(static_cast<char>(v >> (8 * i)));
}

static uint64_t get_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

/* The objects of a bundle, or false when it is not one. */
static bool unbundle(const JitObject &b, std::vector<StringRef> &objs) {
  const unsigned char *p = static_cast<const unsigned char *>(b.data);
  if (b.len < 12 || memcmp(p, kBundle, sizeof kBundle) != 0)
    return false;
  uint64_t n = get_le(p + 8, 4), off = 12;
  for (uint64_t i = 0; i < n; i++) {
    if (b.len - off < 8)
      return false;
    uint64_t len = get_le(p + off, 8);
    off += 8;
    if (len > b.len - off)
      return false;
    objs.emplace_back(reinterpret_cast<const char *>(p + off), len);
    off += len;
  }
  return off == b.len;
}

/* An LLJIT whose main library resolves OpenMP from libomp first (libgomp
 * must never join this process), then everything else from the process
 * itself: libc, libm, zlib. */
static std::unique_ptr<orc::LLJIT> make_jit(const char *libomp) {
  auto jit = orc::LLJITBuilder().create();
  if (!jit) {
    errs() << "nncc: run: cannot create the JIT: " << toString(jit.takeError()) << "\n";
    return nullptr;
  }
  orc::JITDylib &lib = (*jit)->getMainJITDylib();
  char prefix = (*jit)->getDataLayout().getGlobalPrefix();
  auto omp = orc::DynamicLibrarySearchGenerator::Load(libomp, prefix);
  if (!omp) {
    errs() << "nncc: run: cannot load the OpenMP runtime: " << toString(omp.takeError())
           << " (install libomp5-14, or set NNCC_LIBOMP to its path)\n";
    return nullptr;
  }
  lib.addGenerator(std::move(*omp));
  auto process = orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(prefix);
  if (!process) {
    errs() << "nncc: run: " << toString(process.takeError()) << "\n";
    return nullptr;
  }
  lib.addGenerator(std::move(*process));
  return std::move(*jit);
}

extern "C" Jit *jit_compile(const JitFile *files, int nfiles, const char *const *defines,
                            const char *libomp, JitObject *objects) {
  init_llvm();
  auto result = std::make_unique<Jit>();
  result->lljit = make_jit(libomp); /* first: a missing libomp fails fast */
  if (!result->lljit)
    return nullptr;
  std::vector<int> todo; /* the .c files without an object given */
  for (int i = 0; i < nfiles; i++)
    if (StringRef(files[i].path).endswith(".c") && !(objects && objects[i].data))
      todo.push_back(i);
  std::vector<Unit> jobs, units;
  std::string err;
  if (!todo.empty() && !driver_jobs(files, todo, defines, jobs, err)) {
    errs() << err << "nncc: run: the clang driver failed\n";
    return nullptr;
  }
  /* The trainer (the one unit outside runtime/) first, in one part per
   * core (at most kMaxParts): it takes far longer than any other.  On one
   * core it is still cut (one part of one), which spares -O3 optimizing
   * the kernel library's generic bodies (keep_part): mnist_cnn's trainer
   * on one core, 4.7-5.1 s whole, 2.9 s as one part. */
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  int nparts = static_cast<int>(std::min<unsigned>(cores, kMaxParts));
  if (const char *e = getenv("NNCC_JIT_PARTS")) { /* tests and tuning */
    char *end;
    long n = strtol(e, &end, 10);
    if (end == e || *end || n < 1 || n > kMaxParts) {
      errs() << "nncc: run: NNCC_JIT_PARTS='" << e << "': want a number of parts from 1 to "
             << static_cast<int>(kMaxParts) << "\n";
      return nullptr;
    }
    nparts = static_cast<int>(n);
  }
  /* The order the threads take them in: the trainer's front end, then as
   * many runtime units as there are other threads (they compile beside
   * the front end, which the parts wait for), the parts, the rest of the
   * runtime; the runtime's units longest first (by their text), so that
   * a long one does not come last and keep the others waiting (train.c,
   * 0.3 s, alone at the end of a cold mnist_cnn compile). */
  std::vector<Unit> parts, runtime;
  for (auto &u : jobs) {
    if (StringRef(files[u.file].path).contains('/')) {
      runtime.push_back(std::move(u));
      continue;
    }
    units.push_back(u);
    units.back().part = FRONT;
    for (int p = 0; p < nparts; p++) {
      parts.push_back(u);
      parts.back().part = p, parts.back().nparts = nparts;
    }
  }
  std::stable_sort(runtime.begin(), runtime.end(),
                   [&](const Unit &a, const Unit &b) { return files[a.file].len > files[b.file].len; });
  size_t beside = parts.empty() ? 0 : std::min<size_t>(cores - 1, runtime.size());
  units.insert(units.end(), runtime.begin(), runtime.begin() + beside);
  units.insert(units.end(), parts.begin(), parts.end());
  units.insert(units.end(), runtime.begin() + beside, runtime.end());

  /* One thread per hardware thread, each taking the next unit. */
  std::unique_ptr<Front[]> fronts(new Front[nfiles]); /* a trainer's, by file */
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < units.size();)
      compile_unit(units[i], files, nfiles, fronts[units[i].file]);
  };
  unsigned nthreads = std::max(1u, std::min<unsigned>(cores, (unsigned)units.size()));
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < nthreads; t++)
    threads.emplace_back(worker);
  worker();
  for (auto &t : threads)
    t.join();

  bool ok = true;
  for (auto &u : units) {
    errs() << u.diags;
    ok &= u.ok;
  }
  if (!ok) {
    errs() << "nncc: run: compiling in memory failed; nothing was run\n";
    return nullptr;
  }

  /* Per file, in the files' order (so linking does not depend on which
   * came from where): its objects, compiled (then bundled for the caller)
   * or unbundled from what the caller gave. */
  std::vector<std::unique_ptr<MemoryBuffer>> objs;
  for (int i = 0; i < nfiles; i++) {
    std::vector<StringRef> mine;
    if (objects && objects[i].data) {
      if (!unbundle(objects[i], mine)) {
        errs() << "nncc: run: the object given for '" << files[i].path << "' is not the JIT's\n";
        return nullptr;
      }
    } else {
      for (auto &u : units) /* one object, or a trainer's parts */
        if (u.file == i && u.part != FRONT)
          mine.emplace_back(u.object.data(), u.object.size());
      if (mine.empty())
        continue;
      if (objects) {
        std::string b(kBundle, sizeof kBundle);
        put_le(b, mine.size(), 4);
        for (auto &o : mine) {
          put_le(b, o.size(), 8);
          b.append(o.data(), o.size());
        }
        void *copy = malloc(b.size());
        if (!copy) {
          errs() << "nncc: run: out of memory\n";
          return nullptr;
        }
        memcpy(copy, b.data(), b.size());
        objects[i] = JitObject{copy, b.size()};
      }
    }
    /* Copies: the JIT links lazily, at the first lookup. */
    for (auto &o : mine)
      objs.push_back(MemoryBuffer::getMemBufferCopy(o, "nncc-jit.o"));
  }
  orc::LLJIT &lljit = *result->lljit;
  for (auto &o : objs) {
    if (Error e = lljit.addObjectFile(std::move(o))) {
      errs() << "nncc: run: " << toString(std::move(e)) << "\n";
      return nullptr;
    }
  }
  if (Error e = lljit.initialize(lljit.getMainJITDylib())) {
    errs() << "nncc: run: " << toString(std::move(e)) << "\n";
    return nullptr;
  }
  return result.release();
}

extern "C" void *jit_lookup(Jit *jit, const char *symbol) {
  auto sym = jit->lljit->lookup(symbol);
  if (!sym) {
    errs() << "nncc: run: " << toString(sym.takeError()) << "\n";
    return nullptr;
  }
  return reinterpret_cast<void *>(static_cast<uintptr_t>(sym->getAddress()));
}

extern "C" void jit_free(Jit *jit) {
  if (!jit)
    return;
  if (Error e = jit->lljit->deinitialize(jit->lljit->getMainJITDylib()))
    consumeError(std::move(e));
  delete jit;
}

extern "C" const char *jit_target(void) {
  static const std::string t = [] {
    std::string s = sys::getDefaultTargetTriple() + " " + sys::getHostCPUName().str() + " ";
    StringMap<bool> features;
    std::vector<std::string> names;
    if (sys::getHostCPUFeatures(features))
      for (auto &f : features)
        names.push_back((f.second ? "+" : "-") + f.first().str());
    std::sort(names.begin(), names.end()); /* StringMap's order is a hash's */
    for (size_t i = 0; i < names.size(); i++)
      s += (i ? "," : "") + names[i];
    return s;
  }();
  return t.c_str();
}

extern "C" const char *jit_version(void) {
  static const std::string v = "clang " CLANG_VERSION_STRING;
  return v.c_str();
}
