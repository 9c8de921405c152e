# build_check.sh -- sourced by tests/run_model.sh and tests/infer/run_infer.sh:
# how a predictor nncc --infer wrote is built for checking.
#
# build_check DIR NAME [FLAGS...]: DIR/check from DIR/NAME_infer.c and
# tests/infer/check_infer.c, with $cc -std=c99 -Wall -Wextra -Werror
# -pedantic and FLAGS; the API's names (MODEL, UMODEL) come from
# DIR/NAME_infer.h, so it serves any model.  Run from the repository root.
build_check() {
  bc_dir=$1 bc_name=$2
  shift 2
  bc_id=$(sed -n 's/^int \(.*\)_predict(.*/\1/p' "$bc_dir/${bc_name}_infer.h")
  bc_uid=$(sed -n 's/^#define \(.*\)_CLASSES .*/\1/p' "$bc_dir/${bc_name}_infer.h")
  "$cc" -std=c99 -Wall -Wextra -Werror -pedantic "$@" -I"$bc_dir" -DINFER_H="\"${bc_name}_infer.h\"" \
    -DMODEL="$bc_id" -DUMODEL="$bc_uid" -o "$bc_dir/check" tests/infer/check_infer.c \
    "$bc_dir/${bc_name}_infer.c" -lm
}

# the sanitizers a predictor is checked under (with -O1)
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
