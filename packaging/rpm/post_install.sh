# memtftpd %post: on install enable and start tftpd.socket; on upgrade restart a running
# service so the new binary serves. $1: 1 on install, 2 or more on upgrade.
[ -d /srv/tftp ] || install -d -m 0755 /srv/tftp
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
if [ "$1" -eq 1 ]; then
    systemctl enable tftpd.socket || :
    if [ -d /run/systemd/system ]; then
        systemctl start tftpd.socket ||
            echo "memtftpd: could not start tftpd.socket (another TFTP server on port 69?)" >&2
    fi
elif [ -d /run/systemd/system ]; then
    systemctl try-restart tftpd.service || :
fi
