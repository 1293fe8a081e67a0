#!/bin/bash
# test_systemd.sh: gpuqd under a real systemd. Boots systemd in a throwaway
# container over this machine's /usr, with the tree `make install` produced
# laid over it, and checks socket activation, Type=notify, reload and stop.
#
# Runs from the build directory (GPUQ_BUILDDIR; GPUQ_SRCDIR is the top of the
# source tree). Exits 77 (skipped) when not root, without systemd-nspawn, or
# when the container does not boot. GPUQ_KEEP_TMP=1 keeps the scratch
# directory (installed tree, console log) for a look afterwards.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail

skip() { echo "SKIP: $*"; exit 77; }
hard() { echo "ERROR: $*"; exit 99; }

[ "$(id -u)" -eq 0 ] || skip "needs root to boot a container"
command -v systemd-nspawn >/dev/null 2>&1 || skip "systemd-nspawn missing (Debian package systemd-container)"

builddir=${GPUQ_BUILDDIR:-$PWD}
srcdir=${GPUQ_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
[ -f "$builddir/Makefile" ] || hard "no Makefile in $builddir: set GPUQ_BUILDDIR"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpuq-systemd.XXXXXX")
trap '[ -n "${GPUQ_KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT

# nspawn refuses to clean up under /run unless that is a tmpfs; where /run
# lives on the root disk, give it one (it stays mounted for later runs).
mkdir -p /run/systemd/nspawn
mountpoint -q /run/systemd/nspawn || mount -t tmpfs tmpfs /run/systemd/nspawn ||
    skip "cannot mount a tmpfs on /run/systemd/nspawn"

# Install into a scratch root. The variables of an enclosing `make check`
# would tie this make to the outer one's jobserver.
echo "# make install DESTDIR=$tmp/root"
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$builddir" install DESTDIR="$tmp/root" \
    >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; hard "make install failed"; }

# Finds one installed file by name under the scratch root.
installed() {
    local f where=()
    [ $# -lt 2 ] || where=(-path "$2")
    f=$(find "$tmp/root" -name "$1" \( -type f -o -type l \) "${where[@]}" | head -n 1)
    [ -n "$f" ] || return 1
    printf '%s\n' "$f"
}
gpuqd=$(installed gpuqd '*/sbin/*') || hard "make install installed no sbin/gpuqd"
gpuqctl=$(installed gpuqctl '*/bin/*') || hard "make install installed no bin/gpuqctl"
service=$(installed gpuqd.service) || hard "make install installed no gpuqd.service"
socket=$(installed gpuqd.socket) || hard "make install installed no gpuqd.socket"
conf=$(installed gpuqd.conf '*/gpuq/*') || hard "make install installed no gpuq/gpuqd.conf"
sysusers=$(installed gpuq.conf '*/sysusers.d/*') || sysusers=$srcdir/systemd/gpuq-sysusers.conf
tmpfiles=$(installed gpuq.conf '*/tmpfiles.d/*') || tmpfiles=$srcdir/systemd/gpuq-tmpfiles.conf
libgpuq=$(installed 'libgpuq.so*') || libgpuq=

# The container sees this machine's /usr read-only, where new files cannot be
# bind-mounted (no mount point can be made), so the installed programs go in
# through an overlay over /usr, at the paths the units name whatever the
# configured prefix was. libgpuq goes in a folder of its own, named by
# LD_LIBRARY_PATH inside, so that no system library is shadowed.
up=$tmp/up/usr
mkdir -p "$up/sbin" "$up/bin" "$up/lib/gpuq-test"
cp -p "$gpuqd" "$up/sbin/gpuqd"
cp -p "$gpuqctl" "$up/bin/gpuqctl"
[ -z "$libgpuq" ] || cp -P "$(dirname "$libgpuq")"/libgpuq.so* "$up/lib/gpuq-test/"

# The checks, run inside the container by probe.service as root. Each prints
# "GPUQ-CHECK ok NAME" or "GPUQ-CHECK FAIL NAME: why"; the caller requires an
# ok for every name in $checks below.
cat >"$tmp/probe.sh" <<'PROBE'
#!/bin/bash
set -u
export LD_LIBRARY_PATH=/usr/lib/gpuq-test
sock=/run/gpuqd/gpuqd.sock
failed=0
ok() { echo "GPUQ-CHECK ok $1"; }
fail() { echo "GPUQ-CHECK FAIL $1: $(printf '%s' "$2" | tr '\n' ' ' | cut -c1-400)"; failed=1; }
state() { systemctl is-active "$1" 2>/dev/null; }
prop() { systemctl show -P "$2" "$1"; }
# Waits up to $3 tenths of a second for unit $1 to reach state $2.
wait_state() {
    local i
    for ((i = 0; i < $3; i++)); do
        [ "$(state "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

echo "GPUQ-PROBE begin"

if out=$(timeout 10 systemctl start gpuqd.socket 2>&1); then ok socket-start; else fail socket-start "$out"; fi
perm=$(stat -c '%a %U %G' "$sock" 2>&1)
if [ -S "$sock" ] && [ "$perm" = "660 root gpuq" ]; then ok socket-perms
else fail socket-perms "$perm; $(ls -ld /run/gpuqd 2>&1)"; fi
st=$(state gpuqd.service)
if [ "$st" = inactive ]; then ok service-waits; else fail service-waits "gpuqd.service is $st before any client"; fi

# The first connection starts gpuqd.service; gpuqctl's request waits in the
# socket's queue meanwhile.
if out=$(timeout 15 gpuqctl status 2>&1); then ok activation; else fail activation "rc $?: $out"; fi
echo "$out"
if wait_state gpuqd.service active 50; then ok notify-active
else fail notify-active "gpuqd.service is $(state gpuqd.service), SubState $(prop gpuqd.service SubState)"; fi
pid=$(prop gpuqd.service MainPID)
user=$(stat -c %U "/proc/$pid" 2>&1)
if [ "$user" = gpuq ]; then ok runs-as-gpuq; else fail runs-as-gpuq "MainPID $pid runs as $user"; fi
text=$(prop gpuqd.service StatusText)
if [ -n "$text" ]; then ok status-text; else fail status-text "no STATUS= from gpuqd"; fi
echo "StatusText: $text"

# The socket's group is the boundary: members of gpuq get in, others get 4.
timeout 10 setpriv --reuid=nobody --regid=nogroup --clear-groups gpuqctl status >/dev/null 2>&1
rc=$?
if [ $rc -eq 4 ]; then ok denied-outsider; else fail denied-outsider "gpuqctl as nobody exited $rc, want 4"; fi
if out=$(timeout 10 setpriv --reuid=nobody --regid=nogroup --groups=gpuq gpuqctl status 2>&1); then
    ok allowed-member
else fail allowed-member "gpuqctl as nobody in group gpuq: $out"; fi

if out=$(timeout 10 systemctl reload gpuqd.service 2>&1); then ok reload; else fail reload "$out"; fi
reloaded=no
for ((i = 0; i < 30; i++)); do
    if [ "$(state gpuqd.service)" = active ] &&
        timeout 5 gpuqctl --json status 2>/dev/null | grep -Eq '"reloads": *[1-9]'; then
        reloaded=yes
        break
    fi
    sleep 0.1
done
if [ $reloaded = yes ] && [ "$(prop gpuqd.service MainPID)" = "$pid" ]; then ok reload-in-place
else fail reload-in-place "state $(state gpuqd.service), MainPID $(prop gpuqd.service MainPID) (was $pid), $(timeout 5 gpuqctl --json status 2>&1)"; fi

if out=$(timeout 15 systemctl stop gpuqd.service 2>&1); then ok stop; else fail stop "$out"; fi
st=$(state gpuqd.service)
res=$(prop gpuqd.service Result)
code=$(prop gpuqd.service ExecMainStatus)
if [ "$st" = inactive ] && [ "$res" = success ] && [ "$code" = 0 ]; then ok stop-clean
else fail stop-clean "gpuqd.service is $st, Result=$res, ExecMainStatus=$code"; fi

# The socket outlives the service, and the next client starts it again.
if [ "$(state gpuqd.socket)" = active ] && [ -S "$sock" ] &&
    out=$(timeout 15 gpuqctl status 2>&1) && wait_state gpuqd.service active 50; then
    ok reactivation
else fail reactivation "socket $(state gpuqd.socket), $(ls -l "$sock" 2>&1), $out"; fi
timeout 15 systemctl stop gpuqd.socket gpuqd.service

if [ $failed -ne 0 ]; then
    echo "---- journal of gpuqd.service and gpuqd.socket ----"
    journalctl -b --no-pager -o short-monotonic -u gpuqd.service -u gpuqd.socket | tail -n 60
fi
echo "GPUQ-PROBE end"
PROBE

cat >"$tmp/probe.service" <<'UNIT'
[Unit]
After=multi-user.target
[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=25
ExecStart=/bin/bash /etc/gpuq-test/probe.sh
# ExecStopPost= also runs when the probe fails, so the container always ends.
ExecStopPost=/bin/systemctl --no-block poweroff
UNIT

# On a first boot systemd applies the presets, which on Debian enable every
# unit; the test starts the socket itself and needs gpuqd.service down.
printf 'disable gpuqd.service\ndisable gpuqd.socket\n' >"$tmp/gpuq-test.preset"

# LeakSanitizer stops the world with ptrace, which the unit's system call
# filter forbids; in a sanitizer build, gpuqd would then fail at every exit.
# The leak checks run in the other tests.
mkdir -p "$tmp/gpuqd.service.d"
if ldd "$gpuqd" 2>/dev/null | grep -q libasan; then
    printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' >"$tmp/gpuqd.service.d/asan.conf"
fi

checks="socket-start socket-perms service-waits activation notify-active runs-as-gpuq status-text
    denied-outsider allowed-member reload reload-in-place stop stop-clean reactivation"

echo "# booting systemd in a container"
rc=0
timeout -k 5 30 systemd-nspawn -q --keep-unit --register=no -D / --volatile=yes \
    --overlay-ro="/usr:$tmp/up/usr:/usr" \
    --bind-ro="$service:/etc/systemd/system/gpuqd.service" \
    --bind-ro="$socket:/etc/systemd/system/gpuqd.socket" \
    --bind-ro="$tmp/gpuqd.service.d:/etc/systemd/system/gpuqd.service.d" \
    --bind-ro="$conf:/etc/gpuq/gpuqd.conf" \
    --bind-ro="$sysusers:/etc/sysusers.d/gpuq.conf" \
    --bind-ro="$tmpfiles:/etc/tmpfiles.d/gpuq.conf" \
    --bind-ro="$tmp/probe.sh:/etc/gpuq-test/probe.sh" \
    --bind-ro="$tmp/probe.service:/etc/systemd/system/gpuq-probe.service" \
    --bind-ro="$tmp/gpuq-test.preset:/etc/systemd/system-preset/00-gpuq-test.preset" \
    -b systemd.firstboot=off systemd.wants=gpuq-probe.service systemd.show_status=false \
    >"$tmp/console.log" 2>&1 </dev/null || rc=$?

# Console lines carry a "[time] unit[pid]: " prefix and end in CR LF; keep
# what lies between.
tr -d '\r' <"$tmp/console.log" | grep -o 'GPUQ-[A-Z]*.*' >"$tmp/markers" || true
if ! grep -q '^GPUQ-PROBE begin' "$tmp/markers"; then
    cat "$tmp/console.log"
    skip "the container did not boot to the probe (systemd-nspawn exit $rc)"
fi

status=0
grep '^GPUQ-CHECK' "$tmp/markers" || true
for c in $checks; do
    if ! grep -qx "GPUQ-CHECK ok $c" "$tmp/markers"; then
        grep -q "^GPUQ-CHECK FAIL $c:" "$tmp/markers" || echo "missing: $c"
        status=1
    fi
done
if ! grep -q '^GPUQ-PROBE end' "$tmp/markers"; then
    echo "the probe did not finish (systemd-nspawn exit $rc)"
    status=1
fi
if [ $status -ne 0 ]; then
    echo "---- container console ----"
    cat "$tmp/console.log"
fi
exit $status
