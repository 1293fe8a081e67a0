#!/bin/sh
# run-cuda-integration.sh: runs the integration suites against a gpuqd on the cuda backend; skips (77) without a GPU.
#
# GPUQ_BUILDDIR is the build tree (make check sets it); by default the tree
# this script sits in. Exit status: 0 when every suite passed or skipped and
# at least one ran, 77 when all skipped, 1 when any failed, 99 when the
# build is incomplete.

if [ -z "${GPUQ_BUILDDIR:-}" ]; then
	GPUQ_BUILDDIR=$(cd "$(dirname "$0")/../.." && pwd) || exit 99
fi
export GPUQ_BUILDDIR

probe="$GPUQ_BUILDDIR/tests/gpu/gpu-probe"
if [ ! -x "$probe" ]; then
	echo "run-cuda-integration: $probe not built" >&2
	exit 99
fi
"$probe" || exit 77

GPUQ_TEST_BACKEND=cuda
export GPUQ_TEST_BACKEND

failed=0
passed=0
for t in test_daemon test_badinput test_gpuqctl test_datapath test_soak; do
	"$GPUQ_BUILDDIR/tests/integration/$t"
	rc=$?
	case $rc in
	0)
		echo "PASS: $t (cuda)"
		passed=$((passed + 1))
		;;
	77)
		echo "SKIP: $t (cuda)"
		;;
	*)
		echo "FAIL: $t (cuda), exit status $rc"
		failed=$((failed + 1))
		;;
	esac
done

[ "$failed" -eq 0 ] || exit 1
[ "$passed" -gt 0 ] || exit 77
exit 0
