#!/bin/bash
# test_symbols.sh: libgpuq.so (and libgpuq-cuda.so when built) exports exactly
# the functions its header declares, each by name under its map's version node.
# Skips (77) when the libraries are built static only (--disable-shared).
set -u

b=${GPUQ_BUILDDIR:-$PWD}
s=${GPUQ_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
checked=0

command -v nm >/dev/null || { echo "SKIP: no nm"; exit 77; }

# The shared object a libtool library built, or nothing when it is static only.
shared_of() {
	local la=$1 dlname
	[ -f "$la" ] || return 1
	dlname=$(sed -n "s/^dlname='\(.*\)'$/\1/p" "$la")
	[ -n "$dlname" ] && [ -f "$(dirname "$la")/.libs/$dlname" ] || return 1
	echo "$(dirname "$la")/.libs/$dlname"
}

# check LIB.la MAP HEADER MACRO
check() {
	local la=$1 map=$2 header=$3 macro=$4 so node name
	so=$(shared_of "$la") || { echo "$la: no shared library built"; return 1; }
	checked=$((checked + 1))
	echo "$so: against $map and $header"

	# The map: one version node, every name spelled out, everything else local.
	node=$(sed -e 's,/\*.*\*/,,' "$map" | sed -n 's/^\([A-Za-z_][A-Za-z0-9_.]*\) *{.*/\1/p')
	if [ "$(echo "$node" | wc -w)" -ne 1 ]; then
		echo "FAIL: $map: expected one version node, found: $node"
		fail=1
		return 0
	fi
	sed -n '/global:/,/local:/p' "$map" | sed -e '1d;$d' -e 's/[[:space:];]//g' -e '/^$/d' |
		sort >"$tmp/map"
	if grep -q '[*?]' "$tmp/map"; then
		echo "FAIL: $map: a wildcard among the global names:"
		grep '[*?]' "$tmp/map"
		fail=1
	fi

	# The header: the name of every function declared with the macro.
	sed -n "s/^$macro [^(]*[^A-Za-z0-9_(]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p" "$header" |
		sort >"$tmp/header"
	if [ ! -s "$tmp/header" ]; then
		echo "FAIL: $header declares nothing with $macro"
		fail=1
	fi

	# The library: every defined dynamic symbol but the version node itself.
	nm -D --defined-only "$so" | awk -v node="$node" '
		$3 == node && $2 == "A" { next }
		{ print $3 }' | sort >"$tmp/all"
	grep -v "@@$node\$" "$tmp/all" >"$tmp/stray"
	if [ -s "$tmp/stray" ]; then
		echo "FAIL: $so: symbols outside version node $node:"
		cat "$tmp/stray"
		fail=1
	fi
	sed "s/@@$node\$//" "$tmp/all" | grep -v '@' | sort >"$tmp/lib"

	if ! diff -u --label "$map" --label "$header" "$tmp/map" "$tmp/header"; then
		echo "FAIL: $map and $header name different functions"
		fail=1
	fi
	if ! diff -u --label "$header" --label "$so" "$tmp/header" "$tmp/lib"; then
		echo "FAIL: $so exports other functions than $header declares"
		fail=1
	fi
	echo "$(wc -l <"$tmp/lib") symbols in $node"
}

check "$b/client/libgpuq.la" "$s/client/libgpuq.map" "$s/include/gpuq/gpuq.h" GPUQ_API ||
	{ echo "SKIP: libgpuq is built without a shared library"; exit 77; }
# libgpuq-cuda exists only in a build with CUDA.
if [ -f "$b/client/libgpuq-cuda.la" ]; then
	check "$b/client/libgpuq-cuda.la" "$s/client/libgpuq-cuda.map" \
		"$s/include/gpuq/gpuq_cuda.h" GPUQ_CUDA_API || fail=1
fi
[ "$checked" -gt 0 ] || exit 77
exit "$fail"
