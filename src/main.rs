//! `tftpd`: the memtftpd daemon binary.
fn main() {}
