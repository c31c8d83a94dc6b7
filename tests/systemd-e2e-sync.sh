# shellcheck shell=bash disable=SC2154 # work, deb, container_pid, good_config: the sourcing script's
# The content sync under real systemd (issue 15), sourced by tests/systemd-e2e.sh, whose
# helpers it uses (c, say, fail, phase, main_pid) and whose container must be booted with
# the package installed and tftpd.service running on a configuration without [origin].
#
# On the host: `tftpd publish` (the .deb's own binary) writes a small content set, and
# Debian's nginx serves it from the host's files, started with a configuration and prefix of
# its own under the test's scratch directory. The container has a private network, so
# nginx runs in the container's network namespace (nsenter -n, nothing else entered) and
# listens on that loopback, on a port the kernel picked there. In the container: the
# packaged tftpd-sync.service and tftpd-sync.timer, configured by uncommenting the
# packaged /etc/tftpd.toml's example.

SYNC_EXPOSURE_TARGET=1.2
sync_nginx_pid=

# Stops the test's nginx (the EXIT trap calls this before powering the container off).
sync_cleanup() {
    if [ -n "$sync_nginx_pid" ]; then
        kill "$sync_nginx_pid" 2>/dev/null || true
        wait "$sync_nginx_pid" 2>/dev/null || true
        sync_nginx_pid=
    fi
}

# Starts nginx on 127.0.0.1:$sync_port of the container's loopback, serving $1.
sync_nginx_start() {
    local d=$work/sync/nginx
    mkdir -p "$d/tmp"
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 64; }
http {
    log_format t '\$request_method \$uri \$status';
    access_log $d/access.log t;
    client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp;
    uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
    server {
        listen 127.0.0.1:$sync_port;
        root $1;
        # push-uploads: WebDAV PUT into $1/uploads/.
        location /uploads/ { dav_methods PUT; create_full_put_path on; }
    }
}
EOF
    nsenter -t "$container_pid" -n /usr/sbin/nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" \
        </dev/null >/dev/null 2>&1 &
    sync_nginx_pid=$!
    for _ in $(seq 100); do
        c curl -s -o /dev/null "http://127.0.0.1:$sync_port/manifest.json" && return 0
        kill -0 "$sync_nginx_pid" 2>/dev/null || break
        sleep 0.05
    done
    cat "$d/error.log" 2>/dev/null || true
    fail "nginx did not start in the container's network namespace"
}

# The requests nginx logged after line $1 ("METHOD URI STATUS"), sorted.
sync_requests_since() {
    tail -n +"$(($1 + 1))" "$work/sync/nginx/access.log" | sort
}
sync_requests_count() {
    if [ -f "$work/sync/nginx/access.log" ]; then wc -l <"$work/sync/nginx/access.log"; else echo 0; fi
}

# Fetches NAME over TFTP in the container and compares it with the host's $work/sync/src/NAME.
sync_fetch() {
    local name=$1 out
    out=/tmp/sync.$(printf '%s' "$name" | tr '/' '_')
    c curl -sS --fail --max-time 20 -o "$out" "tftp://127.0.0.1/$name" ||
        fail "fetching the synced $name over TFTP failed"
    [ "$(c sha256sum "$out" | cut -d' ' -f1)" = "$(sha256sum "$work/sync/src/$name" | cut -d' ' -f1)" ] ||
        fail "the synced $name served over TFTP differs from the published one"
}

# The generation in the published manifest.
sync_generation() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["generation"])' "$work/sync/www/manifest.json"
}

# Whether the output of the command (all of it, read first: under pipefail, grep -q
# closing a pipe early would fail the command) has a line matching the pattern $1.
output_has() {
    local pattern=$1 out
    shift
    out=$("$@") || return 1
    grep -q -- "$pattern" <<<"$out"
}

# output_has, tried for up to 5 s: the journal stores an entry a moment after it is sent.
output_soon_has() {
    for _ in $(seq 50); do
        output_has "$@" && return 0
        sleep 0.1
    done
    return 1
}

# Starts tftpd-sync.service and waits for the run; prints nothing, returns its status.
sync_run() {
    c systemctl start tftpd-sync.service
}

# The journal of the sync unit since the cursor in $1 (message text only).
sync_journal_since() {
    c journalctl -u tftpd-sync --no-pager -o cat --after-cursor="$1"
}
# The daemon's count of reloads that succeeded (SIGHUP, tftpd ctl reload; not the watch's
# rescans), from its metrics.
reloads_ok() {
    local metrics
    metrics=$(c tftpd ctl metrics) || fail "tftpd ctl metrics failed"
    sed -n 's/^tftpd_reloads_total{result="ok"} //p' <<<"$metrics"
}
journal_cursor() {
    c journalctl --no-pager -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p'
}

sync_steps() {
    local tftpd_host pid cursor reloads gen1 gen2 mark requests result uid_daemon uid_cache \
        next_elapse now invocation state exposure exposure_daemon drop
    mkdir -p "$work/sync/src/sub" "$work/sync/www"
    tftpd_host=$work/sync/tftpd
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/sbin/tftpd >"$tftpd_host"
    chmod 755 "$tftpd_host"
    pid=$(main_pid)

    # The units are installed, load, and are off: the timer neither enabled nor running.
    for unit in tftpd-sync.service tftpd-sync.timer; do
        [ "$(c systemctl show -p LoadState --value "$unit")" = loaded ] || fail "$unit does not load"
        [ "$(c systemctl is-active "$unit" || true)" = inactive ] || fail "$unit is active before it is configured"
    done
    [ "$(c systemctl is-enabled tftpd-sync.timer || true)" = disabled ] || fail "tftpd-sync.timer is enabled by default"
    [ "$(c systemctl show -p Triggers --value tftpd-sync.timer)" = tftpd-sync.service ] ||
        fail "tftpd-sync.timer does not trigger tftpd-sync.service"

    # No [origin]: the run is skipped (ExecCondition= exits 1), and the unit is not failed.
    cursor=$(journal_cursor)
    c tftpd sync --check >/dev/null && fail "tftpd sync --check exits 0 without [origin]"
    sync_run || fail "tftpd-sync.service failed without [origin] instead of skipping"
    [ "$(c systemctl is-failed tftpd-sync.service || true)" != failed ] || fail "tftpd-sync.service failed without [origin]"
    output_soon_has "exec-condition" sync_journal_since "$cursor" ||
        fail "the journal does not say the run was skipped by its ExecCondition="
    [ "$(c systemctl show -p ExecMainStartTimestampMonotonic --value tftpd-sync.service)" = 0 ] ||
        fail "tftpd sync ran without [origin]"
    # A configuration that is not valid skips it too, with the file, line and key.
    printf '%sbogus-key = 1\n' "$good_config" | c tee /etc/tftpd.toml >/dev/null
    cursor=$(journal_cursor)
    sync_run || fail "tftpd-sync.service failed on a broken configuration instead of skipping"
    output_soon_has "/etc/tftpd.toml:.*bogus-key" sync_journal_since "$cursor" ||
        fail "the journal does not say why the configuration is not valid: $(sync_journal_since "$cursor")"
    printf '%s' "$good_config" | c tee /etc/tftpd.toml >/dev/null
    phase "sync 1. tftpd-sync.service and .timer load, are off; without [origin] (and with a broken configuration) the run is skipped, not failed"

    # Publish, serve with nginx, configure by uncommenting the packaged example.
    head -c 200000 /dev/urandom >"$work/sync/src/kernel.bin"
    head -c 50000 /dev/urandom >"$work/sync/src/sub/initrd.bin"
    echo "first" >"$work/sync/src/boot.cfg"
    "$tftpd_host" publish "$work/sync/src" "$work/sync/www" >/dev/null || fail "tftpd publish failed"
    gen1=$(sync_generation)
    sync_port=$(nsenter -t "$container_pid" -n python3 -c \
        'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    sync_nginx_start "$work/sync/www"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/tftpd.toml >"$work/sync/tftpd.toml"
    # The example: [origin] and its url, and the [[preseed]] of /var/cache/tftpd/current.
    sed -i -e 's|^#\[origin\]$|[origin]|' \
        -e "s|^#url = .*|url = \"http://127.0.0.1:$sync_port/manifest.json\"|" \
        -e 's|^#\[\[preseed\]\]$|[[preseed]]|' \
        -e 's|^#path = "/var/cache/tftpd/current"$|path = "/var/cache/tftpd/current"|' \
        -e 's|^#optional = true$|optional = true|' "$work/sync/tftpd.toml"
    if ! grep -q '^\[origin\]$' "$work/sync/tftpd.toml" || ! grep -q '^optional = true$' "$work/sync/tftpd.toml"; then
        fail "the packaged tftpd.toml has no commented [origin] example to uncomment"
    fi
    c tee /etc/tftpd.toml <"$work/sync/tftpd.toml" >/dev/null
    c tftpd --check-config >/dev/null || fail "the packaged example, uncommented, is not valid"
    c tftpd sync --check >/dev/null || fail "tftpd sync --check does not see the [origin]"
    c systemctl reload tftpd || fail "reloading the configuration with [origin] failed"
    output_soon_has 'optional source /var/cache/tftpd/current skipped' c journalctl -u tftpd --no-pager -o cat ||
        fail "the daemon did not skip the missing /var/cache/tftpd/current as optional"

    # The first round: fetched, switched, the daemon reloaded through its control socket.
    mark=$(sync_requests_count)
    reloads=$(reloads_ok)
    sync_run || fail "tftpd-sync.service failed: $(c journalctl -u tftpd-sync --no-pager -o cat -n 5)"
    [ "$(c systemctl show -p Result --value tftpd-sync.service)" = success ] || fail "the sync's Result is not success"
    for name in kernel.bin sub/initrd.bin boot.cfg; do sync_fetch "$name"; done
    [ "$(main_pid)" = "$pid" ] || fail "the daemon restarted for the sync"
    # (Matched by the field alone, not also by -u: the journal may store an entry before
    # it has its unit.)
    output_soon_has "now serving generation $gen1" \
        c journalctl --no-pager -o cat "TFTP_ORIGIN_GENERATION=$gen1" ||
        fail "no journal entry with TFTP_ORIGIN_GENERATION=$gen1"
    [ "$(reloads_ok)" -gt "$reloads" ] || fail "the sync did not reload the daemon (tftpd_reloads_total)"
    requests=$(sync_requests_since "$mark" | grep -c '^GET /objects/.* 200$' || true)
    [ "$requests" = 3 ] || fail "the first round fetched $requests objects, not 3: $(sync_requests_since "$mark")"
    [ "$(c readlink /var/cache/tftpd)" = private/tftpd ] || fail "/var/cache/tftpd is not the DynamicUser= cache"
    [ "$(c readlink /var/cache/tftpd/current)" = "generations/$gen1" ] || fail "current is not generations/$gen1"
    # One dynamic user: what the sync wrote belongs to the daemon's UID, and the daemon
    # cannot write it (its view of the cache is read-only).
    uid_daemon=$(c systemctl show -p UID --value tftpd.service)
    uid_cache=$(c stat -c %u /var/cache/private/tftpd/generations)
    [ "$uid_daemon" = "$uid_cache" ] || fail "the cache belongs to UID $uid_cache, the daemon runs as $uid_daemon"
    local dpid
    dpid=$(c systemctl show -p MainPID --value tftpd.service)
    if c nsenter -t "$dpid" -m touch /var/cache/tftpd/probe 2>"$work/sync/probe.err"; then
        fail "the cache is writable in the daemon's mount namespace"
    fi
    grep -q 'Read-only file system' "$work/sync/probe.err" || fail "writing the cache from the daemon's namespace: $(cat "$work/sync/probe.err")"
    phase "sync 2. the packaged example uncommented: tftpd-sync.service fetched 3 objects, generation ${gen1:0:12}, served over TFTP without a restart; cache UID $uid_cache = the daemon's, read-only to it"

    # Enabling the timer starts it, with the packaged schedule: the next run within two
    # minutes (the next minute plus this machine's offset of under a minute).
    c systemctl enable --now tftpd-sync.timer >/dev/null 2>&1 || fail "systemctl enable --now tftpd-sync.timer failed"
    [ "$(c systemctl is-enabled tftpd-sync.timer)" = enabled ] || fail "tftpd-sync.timer is not enabled"
    [ "$(c systemctl is-active tftpd-sync.timer)" = active ] || fail "enabling tftpd-sync.timer did not start it"
    next_elapse=$(c systemctl show -p NextElapseUSecRealtime --value tftpd-sync.timer)
    next_elapse=$(c date -d "$next_elapse" +%s) || fail "tftpd-sync.timer has no next elapse"
    now=$(c date +%s)
    if [ "$next_elapse" -le "$now" ] || [ "$next_elapse" -gt $((now + 121)) ]; then
        fail "tftpd-sync.timer's next run is $((next_elapse - now)) s away, not within 2 minutes"
    fi

    # Republish with one file changed; the timer runs the packaged service (a drop-in makes
    # its next run 1 s after it starts, instead of up to two minutes away). Counted from
    # before the republish: a run of the packaged schedule may come first.
    mark=$(sync_requests_count)
    reloads=$(reloads_ok)
    echo "second" >"$work/sync/src/boot.cfg"
    "$tftpd_host" publish "$work/sync/src" "$work/sync/www" >/dev/null || fail "tftpd publish (again) failed"
    gen2=$(sync_generation)
    [ "$gen2" != "$gen1" ] || fail "republishing a changed file kept the generation"
    drop=/etc/systemd/system/tftpd-sync.timer.d
    c mkdir -p "$drop"
    printf '[Timer]\nOnActiveSec=1s\nRandomizedDelaySec=0\n' | c tee "$drop/e2e-now.conf" >/dev/null
    invocation=$(c systemctl show -p InvocationID --value tftpd-sync.service)
    c systemctl daemon-reload
    c systemctl restart tftpd-sync.timer
    state=
    for _ in $(seq 300); do
        if [ "$(c systemctl show -p InvocationID --value tftpd-sync.service)" != "$invocation" ] &&
            [ "$(c systemctl is-active tftpd-sync.service || true)" = inactive ]; then
            state=ran
            break
        fi
        sleep 0.1
    done
    [ "$state" = ran ] || fail "tftpd-sync.timer did not run tftpd-sync.service within 30 s"
    [ "$(c systemctl show -p Result --value tftpd-sync.service)" = success ] ||
        fail "the timer's run failed: $(c journalctl -u tftpd-sync --no-pager -o cat -n 5)"
    c rm -r "$drop"
    c systemctl daemon-reload
    # Served the moment the run ended, by the same process.
    sync_fetch boot.cfg
    sync_fetch kernel.bin
    [ "$(main_pid)" = "$pid" ] || fail "the daemon restarted for the second sync"
    [ "$(reloads_ok)" -gt "$reloads" ] || fail "the timer's sync did not reload the daemon (tftpd_reloads_total)"
    requests=$(sync_requests_since "$mark")
    [ "$(grep -c '^GET /objects/' <<<"$requests")" = 1 ] ||
        fail "the second round fetched other objects than the changed one: $requests"
    [ "$(c readlink /var/cache/tftpd/previous)" = "generations/$gen1" ] || fail "previous is not the first generation"
    phase "sync 3. enabling tftpd-sync.timer started it (next run in $((next_elapse - now)) s); after a republish its run fetched the one changed object, generation ${gen2:0:12} served without a restart (PID $pid)"

    # Nothing changed: a 304 ends the round. The origin down: the run fails with 75 and the
    # served generation stays.
    mark=$(sync_requests_count)
    sync_run || fail "the unchanged round failed"
    output_has '^GET /manifest.json 304$' sync_requests_since "$mark" || fail "the unchanged round got no 304: $(sync_requests_since "$mark")"
    sync_cleanup
    if sync_run 2>/dev/null; then
        fail "tftpd-sync.service succeeded with the origin down"
    fi
    result=$(c systemctl show -p ExecMainStatus --value tftpd-sync.service)
    [ "$result" = 75 ] || fail "with the origin down the sync exited $result, not 75"
    sync_fetch boot.cfg
    c systemctl reset-failed tftpd-sync.service
    phase "sync 4. unchanged: 304; origin down: the unit failed with exit 75, generation ${gen2:0:12} still served"

    exposure=$(c systemd-analyze security --no-pager tftpd-sync.service |
        sed -n 's/.*exposure level for tftpd-sync.service: \([0-9.]*\).*/\1/p')
    [ -n "$exposure" ] || fail "systemd-analyze security printed no exposure level for tftpd-sync.service"
    exposure_daemon=$(c systemd-analyze security --no-pager tftpd.service |
        sed -n 's/.*exposure level for tftpd.service: \([0-9.]*\).*/\1/p')
    say "   systemd-analyze security tftpd-sync.service: $exposure (target <= $SYNC_EXPOSURE_TARGET); tftpd.service: $exposure_daemon"
    awk -v e="$exposure" -v t="$SYNC_EXPOSURE_TARGET" 'BEGIN { exit !(e <= t) }' ||
        fail "the sync's exposure $exposure is above $SYNC_EXPOSURE_TARGET"

    # push-uploads: the daemon's spool (its StateDirectory=, read-only to the sync) is read
    # by the sync and PUT to the origin. The packaged example with [upload] enabled and its
    # spool uncommented (the daemon restarts: a spool is taken at start-up).
    sync_nginx_start "$work/sync/www"
    sed -e 's|^#enabled = false$|enabled = true|' -e 's|^#spool = "/var/lib/tftpd/uploads"$|spool = "/var/lib/tftpd/uploads"|' \
        -e "s|^#push-uploads = .*|push-uploads = \"http://127.0.0.1:$sync_port/uploads/\"|" \
        "$work/sync/tftpd.toml" | c tee /etc/tftpd.toml >/dev/null
    c tftpd --check-config >/dev/null || fail "the packaged example with push-uploads is not valid"
    c systemctl restart tftpd.service
    c curl -sS --fail --max-time 20 -T /mnt/data/up.bin tftp://127.0.0.1/pushed/up.bin ||
        fail "the upload into the spool failed"
    sync_run || fail "tftpd-sync.service failed to push: $(c journalctl -u tftpd-sync --no-pager -o cat -n 5)"
    cmp -s "$work/data/up.bin" "$work/sync/www/uploads/pushed/up.bin" ||
        fail "the spooled upload did not arrive at the origin whole"
    mark=$(sync_requests_count)
    sync_run || fail "the second push round failed"
    if sync_requests_since "$mark" | grep '^PUT '; then
        fail "an acknowledged upload was pushed again"
    fi
    sync_cleanup
    phase "sync 5. push-uploads: an upload in the daemon's spool PUT to the origin by tftpd-sync.service, once"

    # Back to the test's configuration; the timer stays enabled (its runs skip now), for
    # the upgrade and removal below.
    printf '%s' "$good_config" | c tee /etc/tftpd.toml >/dev/null
    c systemctl reload tftpd || fail "reloading the configuration without [origin] failed"
    phase "sync 6. exposure: tftpd-sync.service $exposure, tftpd.service $exposure_daemon"
}
