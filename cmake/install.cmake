# install.cmake -- nncc as an installed C tool (docs/install.md):
#
#   bin/nncc                                    the compiler
#   LIBDIR/nncc/libnncc_jit.so                  the JIT of `nncc run` (component jit)
#   LIBDIR/libnncc_rt.a, include/nncc/*.h       the runtime generated trainers link
#   LIBDIR/pkgconfig/nncc-runtime.pc            pkg-config --cflags --libs nncc-runtime
#   LIBDIR/cmake/nncc/                          find_package(nncc): nncc::runtime, nncc::nncc,
#                                               nncc_add_trainer()
#   share/nncc/models/                          the shipped models and their lib/
#   share/doc/nncc/, share/man/man1/nncc.1      README, docs, the manual page
#
# Every path is relative to the prefix, so `cmake --install build --prefix P`
# gives a tree that works wherever P is (nncc finds its runtime and JIT
# relative to its own executable; the .pc file relative to itself).
# Components: "nncc" (all but the JIT) and "jit"; cpack -G DEB makes one
# Debian package of each.
include(CMakePackageConfigHelpers)

set(NNCC_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/nncc)

install(TARGETS nncc nncc_rt EXPORT nnccTargets
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT nncc
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT nncc
  PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/nncc COMPONENT nncc)
if(NNCC_HAVE_JIT)
  # A private library: nncc dlopens it by path, nothing links it.
  install(TARGETS nncc_jit LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/nncc COMPONENT jit
    NAMELINK_SKIP)
endif()

# pkg-config: relative to the .pc file's own directory, so that it stays
# right under any --prefix given at install time.
file(RELATIVE_PATH NNCC_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" NNCC_PC_TO_PREFIX "${NNCC_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/nncc-runtime.pc.in
  ${PROJECT_BINARY_DIR}/nncc-runtime.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/nncc-runtime.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT nncc)

# find_package(nncc)
install(EXPORT nnccTargets NAMESPACE nncc:: DESTINATION ${NNCC_CMAKEDIR} COMPONENT nncc)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/nnccConfig.cmake.in
  ${PROJECT_BINARY_DIR}/nnccConfig.cmake INSTALL_DESTINATION ${NNCC_CMAKEDIR})
# The runtime ABI may change between minor versions (NNCC_RT_ABI), so a
# request for 0.1 is met by 0.1.x only.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/nnccConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/nnccConfig.cmake ${PROJECT_BINARY_DIR}/nnccConfigVersion.cmake
  DESTINATION ${NNCC_CMAKEDIR} COMPONENT nncc)

# Models, documentation, manual page.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/models/ DESTINATION ${CMAKE_INSTALL_DATADIR}/nncc/models
  COMPONENT nncc FILES_MATCHING PATTERN "*.nn")
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT nncc)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}
  COMPONENT nncc FILES_MATCHING PATTERN "*.md")
# The manual page compressed, as Debian policy wants (gzip -n: no time stamp).
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/nncc.1.gz
  COMMAND sh -c "gzip -9n -c '${PROJECT_SOURCE_DIR}/docs/nncc.1' > '${PROJECT_BINARY_DIR}/nncc.1.gz'"
  DEPENDS ${PROJECT_SOURCE_DIR}/docs/nncc.1 VERBATIM)
add_custom_target(nncc_manpage ALL DEPENDS ${PROJECT_BINARY_DIR}/nncc.1.gz)
install(FILES ${PROJECT_BINARY_DIR}/nncc.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
  COMPONENT nncc)

# ---- cpack -G DEB: packages nncc and nncc-jit --------------------------------
set(CPACK_PACKAGE_NAME nncc)
set(CPACK_PACKAGE_VENDOR "nncc developers")
set(CPACK_PACKAGE_CONTACT "nncc developers <nncc@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_RESOURCE_FILE_README ${PROJECT_SOURCE_DIR}/README.md)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL nncc)
if(NNCC_HAVE_JIT)
  list(APPEND CPACK_COMPONENTS_ALL jit)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
# Library dependencies from dpkg-shlibdeps (libc6, libgomp1, libllvm14,
# libclang-cpp14, ...), plus what building and running a trainer needs:
# a C compiler with OpenMP and zlib's header and library.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_NNCC_PACKAGE_NAME nncc)
set(CPACK_DEBIAN_NNCC_PACKAGE_DEPENDS "gcc | clang, libc6-dev, libgomp1, zlib1g-dev, libpng-dev")
set(CPACK_DEBIAN_NNCC_PACKAGE_RECOMMENDS "pkg-config, nncc-jit, gnuplot-nox")
# Descriptions: the synopsis line, then the text (CPack indents it).
set(CPACK_DEBIAN_NNCC_DESCRIPTION "graph compiler from fixed neural networks to C trainers
nncc reads a small model language (.nn), checks every shape before anything
runs, and compiles the network into one readable OpenMP C file that trains
it, forward and backward, linked against a small runtime (MNIST loading,
cross-entropy, Adam/SGD, safetensors checkpoints).  This package holds the
compiler, the runtime library and headers, the pkg-config and CMake files,
the shipped models and the documentation.")
# The JIT: clang's headers (resource directory) and LLVM's OpenMP runtime
# are read at run time, by path.
set(CPACK_DEBIAN_JIT_PACKAGE_NAME nncc-jit)
set(CPACK_DEBIAN_JIT_PACKAGE_DEPENDS "nncc (= ${PROJECT_VERSION}), libclang-common-14-dev, libomp5-14, libc6-dev, zlib1g-dev, libpng-dev")
set(CPACK_DEBIAN_JIT_DESCRIPTION "in-process JIT for nncc run (clang/LLVM 14)
With this package, nncc run MODEL.nn train ... compiles the generated
trainer in memory with clang and LLVM 14 instead of running cc.")
include(CPack)
