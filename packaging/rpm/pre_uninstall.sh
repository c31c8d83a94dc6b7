# memtftpd %preun: on erase (not upgrade) stop and disable the units.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop tftpd.socket tftpd.service || :
    fi
    systemctl disable tftpd.socket >/dev/null 2>&1 || :
fi
