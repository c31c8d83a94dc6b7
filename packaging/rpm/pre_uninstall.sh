# memtftpd %preun: on erase (not on upgrade) stop and disable the units, while their files
# still exist. $1: 0 on erase, 1 or more on upgrade.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop tftpd.socket tftpd.service || :
    fi
    systemctl disable tftpd.socket || :
fi
