# models.sh -- sourced by tests/CMakeLists.txt to register a ctest model_*
# (tests/run_model.sh: a slow path, trainer, predictor and ONNX) per model.
#
# test_models: the names of models/*.nn those tests check.  The eight VGGs
# are one definition (models/lib/vgg.nn) run with four of torchvision's
# cfgs lists, with and without batch norm: the same ops and attributes,
# only more or fewer convolutions per stage.  vgg16 and vgg16_bn stand for
# them; vgg11/13/19 and their _bn variants add minutes and no path.
# NNCC_ALL_MODELS=1 in CMake's environment when it configures registers all
# of them (before a release, or after a change to models/lib/vgg.nn).
# Their golden IR and compile tests still run each.
test_models() {
  for f in models/*.nn; do
    m=$(basename "$f" .nn)
    case ${NNCC_ALL_MODELS:-0}:$m in
      0:vgg11 | 0:vgg13 | 0:vgg19 | 0:vgg11_bn | 0:vgg13_bn | 0:vgg19_bn) continue ;;
    esac
    echo "$m"
  done
}
