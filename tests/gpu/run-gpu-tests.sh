#!/bin/sh
# run-gpu-tests.sh: runs the GPU tests named on the command line (make check-gpu).
# Each exits 77 where no GPU is usable; this fails when any test failed and
# says so when all of them skipped.
pass=0 fail=0 skip=0
for t in "$@"; do
	case $t in
	*.sh) if [ -f "$t" ]; then sh "$t"; else sh "${GPUQ_SRCDIR:-.}/$t"; fi ;;
	*) "./$t" ;;
	esac
	rc=$?
	case $rc in
	0) echo "PASS: $t"; pass=$((pass + 1)) ;;
	77) echo "SKIP: $t"; skip=$((skip + 1)) ;;
	*) echo "FAIL: $t (exit status $rc)"; fail=$((fail + 1)) ;;
	esac
done
echo "# GPU tests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] || exit 1
[ "$pass" -gt 0 ] || echo "# no GPU here: every GPU test skipped"
exit 0
