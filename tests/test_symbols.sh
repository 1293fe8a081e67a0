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
	local la=$1 map=$2 header=$3 macro=$4 so
	so=$(shared_of "$la") || { echo "$la: no shared library built"; return 1; }
	checked=$((checked + 1))
	echo "$so: against $map and $header"

	# The map: "name@@node" for each name in each node's global: list.
	sed -e '/\/\*/,/\*\//d' "$map" | awk '
		/^[A-Za-z_][A-Za-z0-9_.]* *\{/ { node = $1; global = 0; next }
		/global:/ { global = 1; next }
		/local:/ || /^}/ { global = 0; next }
		global && NF { gsub(/[[:space:];]/, ""); print $0 "@@" node }' | sort >"$tmp/map"
	if [ ! -s "$tmp/map" ]; then
		echo "FAIL: $map names no symbols"
		fail=1
		return 0
	fi
	if grep -q '[*?]' "$tmp/map"; then
		echo "FAIL: $map: a wildcard among the global names:"
		grep '[*?]' "$tmp/map"
		fail=1
	fi
	sed 's/@@.*//' "$tmp/map" | sort >"$tmp/mapnames"
	sed 's/.*@@//' "$tmp/map" | sort -u >"$tmp/nodes"

	# The header: the name of every function declared with the macro.
	sed -n "s/^$macro [^(]*[^A-Za-z0-9_(]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p" "$header" |
		sort >"$tmp/header"
	if [ ! -s "$tmp/header" ]; then
		echo "FAIL: $header declares nothing with $macro"
		fail=1
	fi

	# The library: every defined dynamic symbol but the version nodes themselves.
	nm -D --defined-only "$so" | awk '$2 == "A" { next } { print $3 }' | sort >"$tmp/lib"
	nm -D --defined-only "$so" | awk '$2 == "A" { print $3 }' | sort >"$tmp/libnodes"

	if ! diff -u --label "$map (names)" --label "$header" "$tmp/mapnames" "$tmp/header"; then
		echo "FAIL: $map and $header name different functions"
		fail=1
	fi
	if ! diff -u --label "$map" --label "$so" "$tmp/map" "$tmp/lib"; then
		echo "FAIL: $so exports other symbols (or versions) than $map lists"
		fail=1
	fi
	if ! diff -u --label "$map (nodes)" --label "$so (nodes)" "$tmp/nodes" "$tmp/libnodes"; then
		echo "FAIL: $so defines other version nodes than $map"
		fail=1
	fi
	echo "$(wc -l <"$tmp/lib") symbols in $(tr '\n' ' ' <"$tmp/nodes")"
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
