# memtftpd %post: enable and start tftpd.socket on first install; restart on upgrade.
[ -d /srv/tftp ] || install -d -m 0755 /srv/tftp
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
if [ "$1" -eq 1 ]; then
    systemctl enable tftpd.socket >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl start tftpd.socket || echo "memtftpd: could not start tftpd.socket (is another TFTP server on port 69?)" >&2
    fi
elif [ -d /run/systemd/system ]; then
    systemctl try-restart tftpd.service || :
fi
