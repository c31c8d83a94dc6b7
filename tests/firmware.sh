#!/usr/bin/env bash
# Real network firmware boots from the tftpd binary under QEMU (issue 17).
#
# Three firmwares, each in its own QEMU (software emulation, no KVM), each reading the
# test's files from tftpd and printing on its serial console what it fetched:
#   bios   SeaBIOS with QEMU's e1000 iPXE option ROM (ipxe-qemu): DHCP gives bios.ipxe,
#          which chains bios2.ipxe, which fetches a 2 MiB file and prints its size
#          (iPXE asks blksize 1432 and tsize);
#   uefi   OVMF's own UEFI PXE client on virtio-net (ovmf): a size probe of ipxe.efi
#          (tsize, blksize 1468, windowsize 4; the client answers the OACK with ERROR 8),
#          the download, then Debian's ipxe.efi (ipxe) runs, fetches efi.ipxe and with it the
#          2 MiB file;
#   uboot  U-Boot qemu_arm64 (u-boot-qemu) in qemu-system-aarch64: the stock distro boot
#          fetches boot.scr.uimg by DHCP, which tftpboots the 2 MiB file twice (blksize 1468,
#          timeout 5; then windowsize 8) and prints each CRC-32.
# A boot passes when the console shows the exact size or CRC-32 the test expects AND the
# server log shows each of its transfers completed with the options it negotiated (the UEFI
# probe as outcome `probe` at INFO), and the server logged no WARN or ERROR line at all.
#
# Each firmware boots against three servers in turn (variants): the defaults; single-port
# = true; max-blksize = 1024 and max-windowsize = 2 (lowered options). Within a variant the
# three firmwares boot at once on one server, unless --one-at-a-time (their boots overlap;
# their transfers, each under 2 s, seldom do).
#
# Measured on a 2-vCPU machine (software emulation): about 75 s in all (72-82 s over five
# runs; 150 s with both CPUs kept busy by other work). One boot at a time: iPXE under SeaBIOS
# 6 s, OVMF 20-23 s, U-Boot 3-4 s; 96 s in all.
#
# Everything runs inside a network namespace the test creates (a bridge at 192.0.2.1/24 and
# 2001:db8::1/64, one tap per firmware, dnsmasq as DHCP and router advertisements only,
# tftpd on 192.0.2.1:69); nothing leaves it. Namespace, processes and files are removed on
# exit, even on failure; a failure keeps the logs in target/firmware-logs/.
#
# Usage: tests/firmware.sh [--tftpd PATH] [--variant NAME]... [--firmware NAME]...
#                          [--one-at-a-time]
#   --tftpd PATH       the binary to test (default: what `cargo build --bin tftpd` builds)
#   --variant NAME     default, single-port or small-options (repeatable; default all)
#   --firmware NAME    bios, uefi or uboot (repeatable; default all)
#   --one-at-a-time    boot the firmwares of a variant one after the other
# Environment:
#   CI=true                   a missing tool or privilege fails the test instead of skipping it
#   FIRMWARE_BOOT_LIMIT=SECS  how long one boot may take (default 120)
#
# Needs root (network namespace, taps) and the Debian packages tests/run-all installs:
# qemu-system-x86 qemu-system-arm seabios ipxe-qemu ovmf ipxe u-boot-qemu u-boot-tools
# dnsmasq-base iproute2. Its last line reads `firmware: N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

BOOT_LIMIT=${FIRMWARE_BOOT_LIMIT:-120}
PAYLOAD_SIZE=2097152
SERVER=192.0.2.1

# What each firmware needs from the Debian packages.
SEABIOS_IPXE_ROM=/usr/lib/ipxe/qemu/efi-e1000.rom
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
IPXE_EFI=/usr/lib/ipxe/ipxe.efi
UBOOT=/usr/lib/u-boot/qemu_arm64/u-boot.bin

# Each firmware's MAC, fixed address (so the server log tells the firmwares apart) and tap.
declare -A MAC=([bios]=52:54:00:17:00:01 [uefi]=52:54:00:17:00:02 [uboot]=52:54:00:17:00:03)
declare -A ADDR=([bios]=192.0.2.11 [uefi]=192.0.2.12 [uboot]=192.0.2.13)
declare -A TAP=([bios]=fwtap0 [uefi]=fwtap1 [uboot]=fwtap2)

# What each variant adds to the server's configuration, and the caps it sets.
declare -A VARIANT_CONFIG=(
    [default]=''
    [single-port]='single-port = true'
    [small-options]=$'max-blksize = 1024\nmax-windowsize = 2'
)
declare -A MAX_BLKSIZE=([default]=65464 [single-port]=65464 [small-options]=1024)
declare -A MAX_WINDOWSIZE=([default]=64 [single-port]=64 [small-options]=2)

say() { printf 'firmware: %s\n' "$*"; }
die() {
    say "FAIL: $*"
    exit 1
}
# Under CI a missing prerequisite is a failure; elsewhere the test is skipped.
skip() {
    if [ "${CI:-}" = true ]; then
        die "$*"
    fi
    say "SKIP: $*"
    exit 0
}

tftpd=
variants=()
firmwares=()
at_once=true
while [ $# -gt 0 ]; do
    case "$1" in
        --tftpd) tftpd=$2; shift 2 ;;
        --variant) variants+=("$2"); shift 2 ;;
        --firmware) firmwares+=("$2"); shift 2 ;;
        --one-at-a-time) at_once=false; shift ;;
        -h | --help) sed -n '2,46p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
((${#variants[@]})) || variants=(default single-port small-options)
((${#firmwares[@]})) || firmwares=(bios uefi uboot)
for variant in "${variants[@]}"; do
    [ -n "${MAX_BLKSIZE[$variant]:-}" ] || die "unknown variant $variant"
done
for firmware in "${firmwares[@]}"; do
    [ -n "${MAC[$firmware]:-}" ] || die "unknown firmware $firmware"
done

# ---------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || skip "needs root (network namespace and taps)"
for tool in ip dnsmasq qemu-system-x86_64 qemu-system-aarch64 mkimage gzip od timeout; do
    command -v "$tool" >/dev/null || skip "$tool is not installed (tests/run-all installs it)"
done
for file in "$SEABIOS_IPXE_ROM" "$OVMF_CODE" "$OVMF_VARS" "$IPXE_EFI" "$UBOOT"; do
    [ -r "$file" ] || skip "$file is missing (tests/run-all installs it)"
done
[ -c /dev/net/tun ] || skip "no /dev/net/tun"

if [ -z "$tftpd" ]; then
    # The binary cargo builds, wherever its target directory is.
    tftpd=$(cargo build --quiet --bin tftpd --message-format=json-render-diagnostics |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
fi
[ -x "$tftpd" ] || die "no tftpd binary at '$tftpd'"

# ---------------------------------------------------------------------------------------
# Clean-up: whatever was started is stopped, whatever was made is removed
# ---------------------------------------------------------------------------------------
work=$(mktemp -d /tmp/memtftpd-firmware.XXXXXX)
ns=memtftpd-fw-$$
pids=()
netns_made=false
keep_logs=false
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if $netns_made; then
        ip netns del "$ns" 2>/dev/null || true
    fi
    if $keep_logs; then
        rm -rf target/firmware-logs
        mkdir -p target/firmware-logs
        cp "$work"/*.log target/firmware-logs/ 2>/dev/null || true
        say "logs kept in target/firmware-logs/"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Drops a pid from the list the clean-up kills.
forget() {
    local pid kept=()
    for pid in "${pids[@]}"; do
        [ "$pid" = "$1" ] || kept+=("$pid")
    done
    pids=("${kept[@]}")
}

# A console or log without colours, cursor moves, backspaces and carriage returns.
readable() {
    sed -e 's/\x1b\[[0-9;=?]*[A-Za-z]//g' -e 's/\x1b[78c]//g' -e 's/\x08 \x08//g' \
        -e 's/\x08//g' -e 's/\r//g' "$1"
}

# Prints the last lines of a log under a title.
show_tail() {
    printf -- '--- %s (last %s lines) ---\n' "$1" "$3"
    if [ -s "$2" ]; then
        readable "$2" | grep -v '^[[:space:]]*$' | tail -n "$3"
    else
        echo '(empty)'
    fi
}

# ---------------------------------------------------------------------------------------
# Boot content
# ---------------------------------------------------------------------------------------
files=$work/files
mkdir -p "$files"
# 2 MiB of random bytes (new each run; the CRC-32 U-Boot must print is computed here): a
# whole number of 1024-byte blocks (the last DATA is then empty), not of 1432 or 1468.
head -c "$PAYLOAD_SIZE" /dev/urandom >"$files/payload.bin"
payload_crc=$(gzip -c "$files/payload.bin" | tail -c 8 | od -An -tx4 -N4 | tr -d ' ')
cp -L "$IPXE_EFI" "$files/ipxe.efi"
ipxe_efi_size=$(stat -c %s "$files/ipxe.efi")

cat >"$files/bios.ipxe" <<'EOF'
#!ipxe
echo FWTEST bios script 1 at ${net0/ip}
chain bios2.ipxe || echo FWTEST bios failed
shell
EOF
cat >"$files/bios2.ipxe" <<'EOF'
#!ipxe
echo FWTEST bios script 2
imgfetch payload.bin || goto failed
imgstat
echo FWTEST bios done
shell
:failed
echo FWTEST bios failed
shell
EOF
cat >"$files/efi.ipxe" <<'EOF'
#!ipxe
echo FWTEST uefi ipxe.efi script at ${net0/ip}
imgfetch payload.bin || goto failed
imgstat
echo FWTEST uefi done
shell
:failed
echo FWTEST uefi failed
shell
EOF
# U-Boot's distro boot sources boot.scr.uimg from the DHCP server; the script ends in a
# reset, which QEMU (-no-reboot) turns into an exit.
cat >"$work/boot.cmd" <<'EOF'
echo FWTEST uboot script at ${ipaddr} from ${serverip}
setenv tftpblocksize 1468
setenv tftptimeout 5000
if tftpboot ${kernel_addr_r} payload.bin; then crc32 ${kernel_addr_r} ${filesize}; else echo FWTEST uboot failed; reset; fi
setenv tftpwindowsize 8
if tftpboot ${kernel_addr_r} payload.bin; then crc32 ${kernel_addr_r} ${filesize}; else echo FWTEST uboot failed; reset; fi
echo FWTEST uboot done
reset
EOF
mkimage -A arm64 -T script -C none -n memtftpd-firmware-test -d "$work/boot.cmd" \
    "$files/boot.scr.uimg" >/dev/null

# ---------------------------------------------------------------------------------------
# The namespace: a bridge with the server's addresses, a tap per firmware, dnsmasq
# ---------------------------------------------------------------------------------------
ip netns add "$ns"
netns_made=true
# (Background processes are started with `ip netns exec` itself, never through a shell
# function, so that $! is the process the clean-up must stop.)
ip -n "$ns" link set lo up
ip -n "$ns" link add fwbr0 type bridge
ip -n "$ns" addr add "$SERVER/24" dev fwbr0
ip -n "$ns" addr add 2001:db8::1/64 dev fwbr0 nodad
ip -n "$ns" link set fwbr0 up
for firmware in bios uefi uboot; do
    ip -n "$ns" tuntap add dev "${TAP[$firmware]}" mode tap
    ip -n "$ns" link set "${TAP[$firmware]}" master fwbr0
    ip -n "$ns" link set "${TAP[$firmware]}" up
done

# DHCP only (--port=0: no DNS). Router advertisements as well: without one, iPXE waits
# some 15 s for IPv6 before it uses its DHCP lease. OVMF gets ipxe.efi; the iPXE it then
# runs (DHCP option 175) gets efi.ipxe.
ip netns exec "$ns" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-hosts --port=0 \
    --interface=fwbr0 --bind-interfaces --log-dhcp --log-facility="$work/dnsmasq.log" \
    --dhcp-leasefile="$work/dnsmasq.leases" --pid-file= \
    --dhcp-range=192.0.2.100,192.0.2.199,255.255.255.0,10m \
    --enable-ra --dhcp-range=2001:db8::,ra-only \
    --dhcp-match=set:ipxe,175 \
    --dhcp-host="${MAC[bios]},set:bios,${ADDR[bios]}" \
    --dhcp-host="${MAC[uefi]},set:uefi,${ADDR[uefi]}" \
    --dhcp-host="${MAC[uboot]},set:uboot,${ADDR[uboot]}" \
    --dhcp-boot="tag:bios,bios.ipxe,,$SERVER" \
    --dhcp-boot="tag:uefi,tag:!ipxe,ipxe.efi,,$SERVER" \
    --dhcp-boot="tag:uefi,tag:ipxe,efi.ipxe,,$SERVER" \
    --dhcp-boot="tag:uboot,boot.scr.uimg,,$SERVER" \
    </dev/null >"$work/dnsmasq.out.log" 2>&1 &
pids+=("$!")
for _ in $(seq 50); do
    grep -q 'DHCP, sockets bound' "$work/dnsmasq.log" 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
done
grep -q 'DHCP, sockets bound' "$work/dnsmasq.log" 2>/dev/null || {
    show_tail dnsmasq "$work/dnsmasq.out.log" 20
    die "dnsmasq did not start"
}

# ---------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------
server_pid=
server_log=
start_server() {
    local variant=$1
    server_log=$work/tftpd-$variant.log
    cat >"$work/tftpd-$variant.toml" <<EOF
listen = ["$SERVER:69"]
control-socket = "control-$variant.sock"
# JSON lines: the transfers' fields (tftp_peer, tftp_outcome, ...) are read back below.
log-format = "json"
${VARIANT_CONFIG[$variant]}
[[preseed]]
path = "$files"
EOF
    JOURNAL_STREAM='' ip netns exec "$ns" "$tftpd" --config "$work/tftpd-$variant.toml" \
        </dev/null >"$work/tftpd-$variant.out.log" 2>"$server_log" &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 100); do
        grep -qE '^INFO listening on' <(log_lines "$server_log") && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    show_tail "tftpd $variant" "$server_log" 20
    die "tftpd ($variant) did not start listening on $SERVER:69"
}

# SIGTERM, then the exit status: 0 after a clean drain.
stop_server() {
    local status=0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" || status=$?
    forget "$server_pid"
    return "$status"
}

# The server log's lines (JSON objects, log-format = "json") as `LEVEL message`, LEVEL
# from the syslog priority: ERROR, WARN, INFO or DEBUG.
log_lines() {
    python3 - "$1" <<'PY'
import json, sys
levels = {3: "ERROR", 4: "WARN", 6: "INFO", 7: "DEBUG"}
for raw in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        line = json.loads(raw)
    except ValueError:
        print("UNPARSED " + raw.rstrip("\n"))
        continue
    print(levels.get(line.get("priority"), "ERROR"), line.get("message", ""))
PY
}

# The transfers of one client address in a server log, one per line, as
# `LEVEL file outcome bytes blksize windowsize`.
transfers() {
    python3 - "$1" "$2" <<'PY'
import json, sys
levels = {3: "ERROR", 4: "WARN", 6: "INFO", 7: "DEBUG"}
for raw in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        f = json.loads(raw)
    except ValueError:
        continue
    if "tftp_outcome" not in f or "tftp_peer" not in f:
        continue
    if f["tftp_peer"].rsplit(":", 1)[0] != sys.argv[2]:
        continue
    print(levels.get(f.get("priority"), "ERROR"), f.get("tftp_file"), f["tftp_outcome"],
          f.get("tftp_bytes"), f.get("tftp_blksize"), f.get("tftp_windowsize"))
PY
}

# ---------------------------------------------------------------------------------------
# One boot
# ---------------------------------------------------------------------------------------
declare -A boot_pid boot_started boot_seconds

serial_of() { echo "$work/serial-$1-$2.log"; }

start_boot() {
    local variant=$1 firmware=$2 serial qemu
    serial=$(serial_of "$variant" "$firmware")
    : >"$serial"
    # Software emulation only (KVM is not reliable on the CI machines); -nodefaults: no
    # disks, no VGA (SeaBIOS then prints on the serial port), the NIC the only boot device.
    local common=(-nodefaults -nographic -no-reboot -m 256 -monitor none
        -serial "file:$serial"
        -netdev "tap,id=net0,ifname=${TAP[$firmware]},script=no,downscript=no")
    case $firmware in
        bios)
            qemu=(qemu-system-x86_64 -accel tcg "${common[@]}"
                -device "e1000,netdev=net0,mac=${MAC[bios]},romfile=$SEABIOS_IPXE_ROM,bootindex=1")
            ;;
        uefi)
            cp "$OVMF_VARS" "$work/ovmf-vars-$variant.fd"
            qemu=(qemu-system-x86_64 -accel tcg "${common[@]}"
                -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
                -drive "if=pflash,format=raw,unit=1,file=$work/ovmf-vars-$variant.fd"
                -device "virtio-net-pci,netdev=net0,mac=${MAC[uefi]},romfile=,bootindex=1")
            ;;
        uboot)
            qemu=(qemu-system-aarch64 -M virt -cpu cortex-a57 -accel tcg "${common[@]}"
                -bios "$UBOOT" -device "virtio-net-device,netdev=net0,mac=${MAC[uboot]}")
            ;;
    esac
    ip netns exec "$ns" timeout -k 5 "$BOOT_LIMIT" "${qemu[@]}" </dev/null >"$work/qemu-$variant-$firmware.log" 2>&1 &
    boot_pid[$firmware]=$!
    pids+=("${boot_pid[$firmware]}")
    boot_started[$firmware]=$SECONDS
}

# Stops a firmware's QEMU. U-Boot resets itself after its script (QEMU exits); the iPXE
# ones wait in their shell.
stop_boot() {
    local firmware=$1 pid=${boot_pid[$1]}
    if [ "$firmware" = uboot ]; then
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# Waits for the given boots together: each ends when its console says it is done or
# failed, when its QEMU exits, or when its time is up.
finish_boots() {
    local variant=$1 firmware waiting still
    shift
    waiting=("$@")
    while ((${#waiting[@]})); do
        still=()
        for firmware in "${waiting[@]}"; do
            if grep -qE "FWTEST $firmware (done|failed)" "$(serial_of "$variant" "$firmware")" ||
                ! kill -0 "${boot_pid[$firmware]}" 2>/dev/null ||
                ((SECONDS - boot_started[$firmware] >= BOOT_LIMIT)); then
                boot_seconds[$variant/$firmware]=$((SECONDS - boot_started[$firmware]))
                stop_boot "$firmware"
            else
                still+=("$firmware")
            fi
        done
        waiting=("${still[@]}")
        if ((${#waiting[@]})); then
            sleep 0.2
        fi
    done
}

# ---------------------------------------------------------------------------------------
# What a boot must show
# ---------------------------------------------------------------------------------------
problems=()
problem() { problems+=("$*"); }

# The console shows LINE (a fixed string).
console_has() {
    grep -qF -- "$2" <(readable "$1") || problem "console lacks '$2'"
}

# The console shows LINE exactly COUNT times.
console_has_times() {
    local n
    n=$(readable "$1" | grep -cF -- "$2" || true)
    [ "$n" = "$3" ] || problem "console shows '$2' $n times, not $3"
}

# The server logged a transfer of this client: `LEVEL file outcome bytes blksize windowsize`.
logged() {
    local expected=$2
    grep -qxF -- "$expected" <<<"$1" || problem "server log lacks a transfer '$expected'"
}

min() { echo $(($1 < $2 ? $1 : $2)); }

check_boot() {
    local variant=$1 firmware=$2 serial list b w first
    serial=$(serial_of "$variant" "$firmware")
    list=$(transfers "$server_log" "${ADDR[$firmware]}")
    b=${MAX_BLKSIZE[$variant]}
    w=${MAX_WINDOWSIZE[$variant]}
    problems=()
    if ! grep -qF "FWTEST $firmware done" <(readable "$serial"); then
        if grep -qF "FWTEST $firmware failed" <(readable "$serial"); then
            problem "the firmware's script reported a failed fetch"
        elif ((boot_seconds[$variant/$firmware] >= BOOT_LIMIT)); then
            problem "timed out: no 'FWTEST $firmware done' on the console within $BOOT_LIMIT s (FIRMWARE_BOOT_LIMIT)"
        else
            problem "QEMU exited after ${boot_seconds[$variant/$firmware]} s without 'FWTEST $firmware done' on the console"
        fi
    fi
    case $firmware in
        bios)
            console_has "$serial" "FWTEST bios script 2"
            console_has "$serial" "payload.bin : $PAYLOAD_SIZE bytes"
            logged "$list" "INFO bios.ipxe completed $(stat -c %s "$files/bios.ipxe") $(min 1432 "$b") 1"
            logged "$list" "INFO bios2.ipxe completed $(stat -c %s "$files/bios2.ipxe") $(min 1432 "$b") 1"
            logged "$list" "INFO payload.bin completed $PAYLOAD_SIZE $(min 1432 "$b") 1"
            ;;
        uefi)
            console_has "$serial" "NBP filesize is $ipxe_efi_size Bytes"
            console_has "$serial" "NBP file downloaded successfully."
            console_has "$serial" "payload.bin : $PAYLOAD_SIZE bytes"
            # The size probe: its own outcome, at INFO, before the download.
            logged "$list" "INFO ipxe.efi probe 0 $(min 1468 "$b") $(min 4 "$w")"
            logged "$list" "INFO ipxe.efi completed $ipxe_efi_size $(min 1468 "$b") $(min 4 "$w")"
            logged "$list" "INFO efi.ipxe completed $(stat -c %s "$files/efi.ipxe") $(min 1432 "$b") 1"
            logged "$list" "INFO payload.bin completed $PAYLOAD_SIZE $(min 1432 "$b") 1"
            first=$(grep -m1 -E '^[A-Z]+ ipxe\.efi ' <<<"$list" | cut -d' ' -f3 || true)
            [ -z "$first" ] || [ "$first" = probe ] ||
                problem "the first transfer of ipxe.efi ended '$first', not as the probe"
            ;;
        uboot)
            console_has_times "$serial" "Bytes transferred = $PAYLOAD_SIZE (200000 hex)" 2
            console_has_times "$serial" "==> $payload_crc" 2
            logged "$list" "INFO boot.scr.uimg completed $(stat -c %s "$files/boot.scr.uimg") $(min 1468 "$b") 1"
            logged "$list" "INFO payload.bin completed $PAYLOAD_SIZE $(min 1468 "$b") 1"
            logged "$list" "INFO payload.bin completed $PAYLOAD_SIZE $(min 1468 "$b") $(min 8 "$w")"
            ;;
    esac
    # Every transfer of this client ended completed (or as the probe), at INFO.
    local other
    other=$(grep -vE '^INFO [^ ]+ (completed|probe) ' <<<"$list" || true)
    [ -z "$other" ] || problem "transfers that did not complete: $other"
    ((${#problems[@]} == 0))
}

# ---------------------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------------------
passed=0
failed=0
started=$SECONDS
report=()
say "tftpd: $tftpd"
say "variants: ${variants[*]}; firmwares: ${firmwares[*]}; $($at_once && echo 'at once' || echo 'one at a time'); each boot bounded by $BOOT_LIMIT s"
for variant in "${variants[@]}"; do
    variant_started=$SECONDS
    start_server "$variant"
    if $at_once; then
        for firmware in "${firmwares[@]}"; do start_boot "$variant" "$firmware"; done
        finish_boots "$variant" "${firmwares[@]}"
    else
        for firmware in "${firmwares[@]}"; do
            start_boot "$variant" "$firmware"
            finish_boots "$variant" "$firmware"
        done
    fi
    server_status=0
    stop_server || server_status=$?
    # The whole log of the variant: no warning, no error, no failed transfer.
    server_problems=()
    ((server_status == 0)) || server_problems+=("tftpd exited with status $server_status after SIGTERM")
    if grep -qE '^(WARN|ERROR|UNPARSED) ' <(log_lines "$server_log"); then
        server_problems+=("the server logged: $(grep -E '^(WARN|ERROR|UNPARSED) ' <(log_lines "$server_log") | head -n 3)")
    fi
    if grep -qE '"tftp_outcome": *"(peer-error|timed-out|refused)"' "$server_log"; then
        server_problems+=("failed transfers in the server log")
    fi
    for firmware in "${firmwares[@]}"; do
        what="$variant/$firmware"
        if check_boot "$variant" "$firmware" && ((${#server_problems[@]} == 0)); then
            passed=$((passed + 1))
            say "ok   $what (${boot_seconds[$what]} s)"
            report+=("ok   $what ${boot_seconds[$what]} s")
        else
            failed=$((failed + 1))
            keep_logs=true
            say "FAIL $what (${boot_seconds[$what]} s):"
            for p in "${problems[@]}" "${server_problems[@]}"; do
                printf '       %s\n' "$p"
            done
            show_tail "console of $what" "$(serial_of "$variant" "$firmware")" 25
            show_tail "qemu of $what" "$work/qemu-$variant-$firmware.log" 5
            printf -- '--- transfers of %s in the server log ---\n%s\n' "${ADDR[$firmware]}" \
                "$(transfers "$server_log" "${ADDR[$firmware]}")"
            show_tail "tftpd $variant" "$server_log" 15
            report+=("FAIL $what ${boot_seconds[$what]} s")
        fi
    done
    say "variant $variant took $((SECONDS - variant_started)) s"
done

say "boots:"
printf '  %s\n' "${report[@]}"
say "all boots took $((SECONDS - started)) s"
say "$passed passed, $failed failed"
((failed == 0))
