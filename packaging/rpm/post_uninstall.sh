# memtftpd %postun: forget removed or replaced units. /etc/tftpd.toml is %config(noreplace):
# rpm keeps an edited one as /etc/tftpd.toml.rpmsave on erase.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
fi
