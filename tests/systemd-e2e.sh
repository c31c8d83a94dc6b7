#!/usr/bin/env bash
# End-to-end test of the packages under a real systemd, as SYSTEMD-E2E.md describes: a
# minimal Debian root (debootstrapped once, cached under /var/cache/memtftpd-e2e, kept
# pristine with --volatile=overlay) booted with systemd-nspawn; the freshly built .deb
# installed with dpkg -i and driven with systemctl, a real client and journalctl inside.
# On the host, the .rpm's files and scriptlets are checked and it is installed into a
# scratch root. Nothing is left behind, even on failure.
#
# Usage: tests/systemd-e2e.sh [DEB [RPM]]   (default: the newest under target/)
# Needs root. Under CI=true a missing tool fails the test; elsewhere it is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf -- '--- %s\n' "$*"; }
missing() {
    if [[ "${CI:-}" == true ]]; then echo "FAIL: $1 is missing (tests/run-all installs it)"; exit 1; fi
    echo "skipped: $1 is missing"; exit 0
}
for tool in systemd-nspawn debootstrap nsenter pgrep rpm dpkg-deb; do
    command -v "$tool" >/dev/null || missing "$tool"
done
[[ $(id -u) == 0 ]] || missing "root"

deb=${1:-$(ls -t target/debian/memtftpd_*.deb | head -n 1)}
rpm=${2:-$(ls -t target/generate-rpm/memtftpd-*.rpm | head -n 1)}
[[ -f $deb && -f $rpm ]] || { echo "FAIL: build the packages first (cargo deb, cargo generate-rpm)"; exit 1; }
started=$(date +%s)

# --- the container root, built once per package list ------------------------------
suite=bookworm
# busybox's tftp, because tftp-hpa asks getaddrinfo for AI_ADDRCONFIG, which finds no
# address in a network namespace that has only loopback.
packages=systemd,systemd-sysv,dbus,busybox
cache=/var/cache/memtftpd-e2e
root=$cache/root-$(printf '%s %s' "$suite" "$packages" | sha256sum | cut -c1-12)
if [[ ! -f $root/.complete ]]; then
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    say "building the container root in $root from $mirror (once)"
    rm -rf "$root.tmp" && mkdir -p "$cache"
    debootstrap --variant=minbase --include="$packages" "$suite" "$root.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
        { tail -n 20 "$cache/debootstrap.log"; exit 1; }
    touch "$root.tmp/.complete"
    mv "$root.tmp" "$root"
fi

# --- boot it -------------------------------------------------------------------------
work=$(mktemp -d /tmp/memtftpd-e2e.XXXXXX)
mkdir "$work/debs" && cp "$deb" "$work/debs/"
nspawn_pid=""
container=""
cleanup() {
    if [[ -n $container ]] && kill -0 "$container" 2>/dev/null; then
        kill -s RTMIN+4 "$container" 2>/dev/null || true
    fi
    if [[ -n $nspawn_pid ]]; then
        for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

setsid systemd-nspawn -q -M "memtftpd-e2e-$$" --register=no --keep-unit --console=read-only \
    -D "$root" --volatile=overlay --private-network --bind-ro="$work/debs:/mnt/debs" -b \
    </dev/null >"$work/boot.log" 2>&1 &
nspawn_pid=$!
for _ in $(seq 200); do
    container=$(pgrep -P "$nspawn_pid" -x systemd || true)
    [[ -n $container ]] && break
    sleep 0.05
done
[[ -n $container ]] || { cat "$work/boot.log"; echo "FAIL: the container did not boot"; exit 1; }
inside() { nsenter -t "$container" -a "$@"; }
for _ in $(seq 200); do inside test -S /run/systemd/private 2>/dev/null && break; sleep 0.05; done
inside systemctl is-system-running --wait >/dev/null || true

fail() {
    echo "FAIL: $*"
    tail -n 5 "$work/client.log" 2>/dev/null || true
    inside systemctl status tftpd.service tftpd.socket --no-pager -l 2>&1 | tail -n 30 || true
    inside journalctl -u tftpd --no-pager 2>&1 | tail -n 30 || true
    exit 1
}
# Files inside the container are equal (by SHA-256).
same() {
    local a b
    a=$(inside sha256sum "$1" | cut -c1-64) && b=$(inside sha256sum "$2" | cut -c1-64) && [[ $a == "$b" ]]
}
# fetch HOST REMOTE LOCAL and put HOST LOCAL REMOTE, with busybox tftp inside the container.
# (Its progress bars go to a log, shown when a step fails.)
fetch() { inside busybox tftp -g -r "$2" -l "$3" "$1" 69 2>>"$work/client.log"; }
put() { inside busybox tftp -p -l "$2" -r "$3" "$1" 69 2>>"$work/client.log"; }

# --- 1. install, socket activation, fetch over IPv4 and IPv6, live status --------------
say "1. dpkg -i; socket activation; fetch over 127.0.0.1:69 and [::1]:69"
inside dpkg -i "/mnt/debs/$(basename "$deb")" >/dev/null
[[ $(inside systemctl is-enabled tftpd.socket) == enabled ]] || fail "tftpd.socket not enabled by the package"
inside systemctl start tftpd.socket
[[ $(inside systemctl is-active tftpd.service || true) == inactive ]] || fail "tftpd.service runs before any request"
inside sh -c 'head -c 3000000 /dev/urandom >/srv/tftp/pxelinux.0'
fetch 127.0.0.1 pxelinux.0 /tmp/v4 && same /tmp/v4 /srv/tftp/pxelinux.0 || fail "IPv4 fetch"
fetch ::1 pxelinux.0 /tmp/v6 && same /tmp/v6 /srv/tftp/pxelinux.0 || fail "IPv6 fetch"
[[ $(inside systemctl is-active tftpd.service) == active ]] || fail "tftpd.service not active"
status=$(inside systemctl show -p StatusText --value tftpd.service)
[[ $status == *files* && $status == *served* ]] || fail "status line: $status"
echo "    StatusText: $status"

# --- 2. the journal holds the transfer with its fields ----------------------------------
say "2. journalctl -u tftpd TFTP_OUTCOME=completed TFTP_FILE=pxelinux.0"
inside journalctl -u tftpd TFTP_OUTCOME=completed TFTP_FILE=pxelinux.0 -o verbose --no-pager >"$work/journal"
grep -q 'TFTP_BYTES=3000000' "$work/journal" || fail "no journal entry with the transfer's fields"
grep -q 'TFTP_PEER=' "$work/journal" && grep -q 'TFTP_DURATION_MS=' "$work/journal" || fail "fields missing"

# --- 3. reload with a new file and uploads enabled --------------------------------------
say "3. systemctl reload: a new file and uploads, same main PID"
pid=$(inside systemctl show -p MainPID --value tftpd.service)
inside sh -c 'echo "new file" >/srv/tftp/new.cfg && printf "enabled = true\nallow = [\"uploads/\"]\n" >>/etc/tftpd.toml'
inside systemctl reload tftpd || fail "reload"
fetch 127.0.0.1 new.cfg /tmp/new.cfg && same /tmp/new.cfg /srv/tftp/new.cfg || fail "new file not served right after the reload"
put 127.0.0.1 /tmp/v4 uploads/back.bin || fail "upload"
fetch ::1 uploads/back.bin /tmp/back.bin && same /tmp/back.bin /tmp/v4 || fail "upload round trip"
[[ $(inside systemctl show -p MainPID --value tftpd.service) == "$pid" ]] || fail "main PID changed"

# --- 4. a broken edit: reload fails and says why, the old config stays ------------------
say "4. a broken edit: systemctl reload fails, the service keeps running"
inside sed -i '1i max-blksize = 7' /etc/tftpd.toml
if inside systemctl reload tftpd 2>"$work/reload.err"; then fail "reload of a broken config succeeded"; fi
cat "$work/reload.err"
inside systemctl status tftpd --no-pager -l 2>&1 | grep -q 'max-blksize' || fail "systemctl status does not say why"
inside journalctl -u tftpd --no-pager | grep -q 'max-blksize' || fail "the journal does not say why"
[[ $(inside systemctl is-active tftpd.service) == active ]] || fail "service stopped after a failed reload"
fetch 127.0.0.1 new.cfg /tmp/new2.cfg || fail "not serving after a failed reload"
inside sed -i '1d' /etc/tftpd.toml

# --- 5. stop during a transfer: it completes, the unit stops cleanly ---------------------
say "5. systemctl stop during a transfer"
inside sh -c 'head -c 30000000 /dev/urandom >/srv/tftp/big.img'
inside systemctl reload tftpd
inside sh -c 'busybox tftp -g -r big.img -l /tmp/big.img 127.0.0.1 69 2>/dev/null; echo $? >/tmp/big.rc' &
fetcher=$!
for _ in $(seq 200); do
    size=$(inside stat -c %s /tmp/big.img 2>/dev/null || echo 0)
    [[ $size -gt 0 ]] && break
    sleep 0.02
done
inside systemctl stop tftpd.service tftpd.socket
wait "$fetcher" || true
[[ $(inside cat /tmp/big.rc) == 0 ]] && same /tmp/big.img /srv/tftp/big.img || fail "the transfer in flight did not complete"
result=$(inside systemctl show -p Result --value tftpd.service)
code=$(inside systemctl show -p ExecMainStatus --value tftpd.service)
[[ $result == success && $code == 0 ]] || fail "stop: Result=$result ExecMainStatus=$code"
! inside journalctl -u tftpd --no-pager | grep -qi 'SIGKILL' || fail "killed with SIGKILL"
echo "    transfer of $size+ bytes in flight completed; Result=$result, exit status $code"

# --- 6. hardening --------------------------------------------------------------------
say "6. systemd-analyze security tftpd.service"
exposure=$(inside systemd-analyze security tftpd.service --no-pager | awk '/Overall exposure level/ {print $(NF-2)}')
echo "    exposure: $exposure (target <= 1.2)"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 1.2) }' || fail "exposure $exposure above 1.2"

# --- 7. remove and purge -----------------------------------------------------------------
say "7. dpkg -r stops and disables; dpkg --purge removes the conffile"
inside systemctl start tftpd.socket
inside dpkg -r memtftpd >/dev/null
[[ $(inside systemctl is-active tftpd.socket || true) != active ]] || fail "socket still active after remove"
[[ $(inside systemctl is-enabled tftpd.socket 2>/dev/null || true) != enabled ]] || fail "socket still enabled after remove"
inside test -f /etc/tftpd.toml || fail "conffile removed by dpkg -r"
inside dpkg --purge memtftpd >/dev/null
! inside test -e /etc/tftpd.toml || fail "conffile left after purge"
inside test -d /srv/tftp || fail "purge removed /srv/tftp"

# --- the .rpm, on the host ----------------------------------------------------------------
say "rpm: file list, scriptlets, install into a scratch root"
rpm -qlp "$rpm" | sort >"$work/rpm.files"
rpm -qp --scripts "$rpm" >"$work/rpm.scripts"
grep -q 'systemctl enable tftpd.socket' "$work/rpm.scripts" || { cat "$work/rpm.scripts"; echo "FAIL: rpm %post"; exit 1; }
grep -q 'systemctl disable tftpd.socket' "$work/rpm.scripts" || { echo "FAIL: rpm %preun"; exit 1; }
[[ $(rpm -qpc "$rpm") == /etc/tftpd.toml ]] || { echo "FAIL: rpm config files"; exit 1; }
mkdir "$work/rpmroot"
rpm -i --root "$work/rpmroot" --nodeps --noscripts "$rpm" 2>&1 | grep -v -e 'should not be used directly' -e 'assuming you know' || true
[[ -x $work/rpmroot/usr/sbin/tftpd ]] || { echo "FAIL: rpm -i --root"; exit 1; }
(cd "$work/rpmroot" && find . -type f ! -path './var/lib/rpm*' ! -path './usr/lib/sysimage/*' ! -path './root/.rpmdb/*' | sed 's|^\.||; s|\.gz$||' | sort) >"$work/rpm.landed"
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $NF}' | sed 's|^\.||; s|\.gz$||' | grep -v '/copyright$' | sort >"$work/deb.files"
diff -u "$work/deb.files" "$work/rpm.landed" || { echo "FAIL: the .rpm puts files elsewhere than the .deb"; exit 1; }

echo "systemd e2e: 7 steps and the rpm checks passed in $(($(date +%s) - started)) s"
