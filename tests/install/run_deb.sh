#!/bin/sh
# run_deb.sh -- scripts/deb.sh builds the Debian packages; check what they
# hold and what they declare (docs/install.md):
#  - nncc: /usr/bin/nncc, the runtime (multiarch libdir), its headers, the
#    .pc and CMake files, the models, the docs, the gzipped manual page,
#    nothing of the JIT; depends on a C compiler, zlib1g-dev and libc6
#  - nncc-jit (when built): the JIT library only, depending on nncc of the
#    same version and on LLVM 14's packages by name
#  - the extracted nncc runs from where it was extracted (nncc --version,
#    nncc build with the packaged runtime)
set -u
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
export NNCC_CACHE_DIR="$tmp/cache" # nncc run caches here, not in ~/.cache
fail() { echo "FAIL: $*"; exit 1; }
sh scripts/deb.sh "$tmp/b" > "$tmp/deb.out" 2>&1 || { cat "$tmp/deb.out"; fail "scripts/deb.sh"; }
arch=$(dpkg --print-architecture) multi=$(gcc -print-multiarch)
ver=$(sed -n 's/^#define NNCC_VERSION "\(.*\)"/\1/p' runtime/nncc_rt.h)
deb=$tmp/b/nncc_${ver}_$arch.deb
[ -f "$deb" ] || fail "no $deb: $(ls "$tmp/b"/*.deb)"
dpkg-deb -c "$deb" | awk '{ print $6 }' > "$tmp/files"
for f in ./usr/bin/nncc ./usr/lib/$multi/libnncc_rt.a ./usr/include/nncc/nncc_rt.h \
         ./usr/include/nncc/nncc_kernels.h ./usr/include/nncc/nncc_simd.h \
         ./usr/lib/$multi/pkgconfig/nncc-runtime.pc \
         ./usr/lib/$multi/cmake/nncc/nnccConfig.cmake ./usr/lib/$multi/cmake/nncc/nnccTargets.cmake \
         ./usr/share/nncc/models/mnist_cnn.nn ./usr/share/nncc/models/lib/vgg.nn \
         ./usr/share/doc/nncc/README.md ./usr/share/man/man1/nncc.1.gz; do
  grep -qx -- "$f" "$tmp/files" || fail "nncc's package lacks $f"
done
grep -q "libnncc_jit" "$tmp/files" && fail "nncc's package holds the JIT"
grep -qv '^\./usr/' "$tmp/files" && fail "nncc's package installs outside /usr: $(grep -v '^\./usr/' "$tmp/files")"
depends=$(dpkg-deb -f "$deb" Depends)
for d in "gcc | clang" zlib1g-dev libpng-dev libc6; do
  echo "$depends" | grep -q "$d" || fail "nncc does not depend on '$d': $depends"
done
dpkg-deb -f "$deb" Recommends | grep -q gnuplot-nox || fail "nncc does not recommend gnuplot-nox (plot)"
[ "$(dpkg-deb -f "$deb" Version)" = "$ver" ] || fail "nncc's package is not version $ver"

jdeb=$tmp/b/nncc-jit_${ver}_$arch.deb
if [ -f "$tmp/b/libnncc_jit.so" ]; then
  [ -f "$jdeb" ] || fail "the JIT was built but has no package"
  dpkg-deb -c "$jdeb" | awk '{ print $6 }' | grep -v '/$' > "$tmp/jfiles"
  grep -qx "./usr/lib/$multi/nncc/libnncc_jit.so" "$tmp/jfiles" || fail "nncc-jit lacks the JIT: $(cat "$tmp/jfiles")"
  [ "$(grep -vc '^\./usr/share/doc/' "$tmp/jfiles")" = 1 ] || fail "nncc-jit holds more than the JIT: $(cat "$tmp/jfiles")"
  jdepends=$(dpkg-deb -f "$jdeb" Depends)
  for d in "nncc (= $ver)" libllvm14 libclang-cpp14 libomp5-14 libclang-common-14-dev; do
    echo "$jdepends" | grep -qF "$d" || fail "nncc-jit does not depend on '$d': $jdepends"
  done
fi

# extracted anywhere, the package's nncc finds its runtime
dpkg-deb -x "$deb" "$tmp/root" || fail "dpkg-deb -x"
"$tmp/root/usr/bin/nncc" --version > "$tmp/v.out" 2>&1 || fail "packaged nncc --version: $(cat "$tmp/v.out")"
(cd "$tmp" && "$tmp/root/usr/bin/nncc" build "$tmp/root/usr/share/nncc/models/lenet5.nn" -o lenet5) \
  > "$tmp/build.out" 2>&1 || { cat "$tmp/build.out"; fail "packaged nncc build"; }
"$tmp/lenet5" --version | grep -q "model lenet5" || fail "the packaged build's trainer: $("$tmp/lenet5" --version)"
echo "ok: nncc $ver packages ($(wc -l < "$tmp/files") entries$([ -f "$jdeb" ] && echo ", and nncc-jit"))"
