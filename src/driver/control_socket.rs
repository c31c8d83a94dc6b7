//! The control socket in the event loop: a Unix stream listener and its clients, every
//! descriptor non-blocking in the driver's epoll set, so a caller can never hold up a
//! transfer. What a request means is [`crate::control`]'s business; this file moves the
//! bytes and keeps every client within bounds:
//!
//! - at most [`MAX_CLIENTS`] at once (one more is told so and closed);
//! - a request line of at most [`MAX_REQUEST`] bytes (a longer one, or junk without a
//!   newline, is answered with an error and the connection closed unread);
//! - one answer per client at a time: the next request is not read until the answer has
//!   gone, so a client that never reads holds one answer and no more (an upload's bytes
//!   are shared with the store, not copied);
//! - a client that makes no progress for [`IDLE`] (sends no request, or reads nothing of
//!   its answer) is closed; one waiting for a reload waits for it.
//!
//! Callers are checked with `SO_PEERCRED`: root and the daemon's own user are served,
//! anyone else is told so and closed. The socket file is created mode 0600 (its
//! directory 0700 when created here) and removed at exit.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{getsockopt, sockopt};

use super::control::ReloadCause;
use super::poller::{Interest, Poller};
use super::{ReloadError, Server, Supervisor};
use crate::control::{self, Answer, DaemonInfo, MAX_REQUEST, Reply, View};
use crate::store::StoreChanges;

/// Clients served at once.
pub const MAX_CLIENTS: usize = 16;
/// How long a client may make no progress.
pub const IDLE: Duration = Duration::from_secs(10);

/// The listener's epoll token; clients are `CLIENT_BASE + slot`.
pub(super) const LISTENER: u64 = u64::MAX - 3;
pub(super) const CLIENT_BASE: u64 = LISTENER - 1 - MAX_CLIENTS as u64;

/// True for the tokens of the control socket and its clients.
pub(super) fn is_control(token: u64) -> bool {
    (CLIENT_BASE..=LISTENER).contains(&token)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request.
    Reading,
    /// Writing an answer; then reading again.
    Answering,
    /// Writing a last answer (an error); then closing.
    Closing,
    /// Waiting for this many reloads to end (the one running, and one more if the
    /// request came while one ran).
    AwaitingReload(u8),
}

#[derive(Debug)]
struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: VecDeque<Bytes>,
    /// Bytes of `output`'s front already written.
    written: usize,
    state: State,
    interest: Interest,
    /// Closed if no progress by then (not while awaiting a reload).
    deadline: Instant,
}

/// The listener, its clients and its file.
#[derive(Debug)]
pub(super) struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file's device and inode, to remove it at exit only if it is still ours.
    file: (u64, u64),
    clients: Vec<Option<Client>>,
    /// Clients with a request buffered when their answer went out.
    pending: Vec<usize>,
    /// The daemon's own user, served as root is.
    own_uid: u32,
    /// Start and reloads, for the answers.
    daemon: DaemonInfo,
}

impl ControlSocket {
    /// Creates the socket at `path`: the directory if missing (mode 0700), the socket
    /// mode 0600. A stale socket file (nobody answers on it) is replaced; a live one, or
    /// a file of another kind, is an error.
    pub(super) fn bind(path: &Path) -> io::Result<ControlSocket> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another daemon answers on it",
                    ));
                }
                std::fs::remove_file(path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            file: (meta.dev(), meta.ino()),
            clients: (0..MAX_CLIENTS).map(|_| None).collect(),
            pending: Vec::new(),
            own_uid: nix::unistd::geteuid().as_raw(),
            daemon: DaemonInfo::new(Instant::now(), SystemTime::now()),
        })
    }

    /// Registers the listener with the loop.
    pub(super) fn register(&self, poller: &Poller) -> io::Result<()> {
        poller.add(&self.listener, LISTENER)
    }

    /// The socket's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// When the loop must call `control_timers`: the earliest client deadline, or at
    /// once (an instant already past) when a buffered request waits.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        if !self.pending.is_empty() {
            return Some(self.daemon.started);
        }
        (self.clients.iter().flatten())
            .filter(|c| !matches!(c.state, State::AwaitingReload(_)))
            .map(|c| c.deadline)
            .min()
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.file);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The control socket's part of the loop.
impl Server {
    /// Serves the control protocol on a Unix socket created at `path` (see the module
    /// docs).
    pub fn set_control_socket(&mut self, path: &Path) -> io::Result<()> {
        let control = ControlSocket::bind(path)?;
        control.register(&self.poller)?;
        self.control = Some(control);
        Ok(())
    }

    /// Where the control socket is, if there is one.
    pub fn control_socket(&self) -> Option<&Path> {
        self.control.as_ref().map(ControlSocket::path)
    }

    /// Handles readiness of the control socket (`token`) with epoll's `flags`.
    pub(super) fn control_ready(
        &mut self,
        token: u64,
        flags: EpollFlags,
        now: Instant,
        supervisor: &mut dyn Supervisor,
    ) {
        if token == LISTENER {
            self.accept_control(now);
            return;
        }
        let slot = (token - CLIENT_BASE) as usize;
        let Some(state) = self.client(slot).map(|c| c.state) else {
            return;
        };
        let gone = flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
        match state {
            State::AwaitingReload(_) if gone || flags.contains(EpollFlags::EPOLLRDHUP) => {
                self.close_client(slot);
            }
            State::AwaitingReload(_) => {}
            State::Reading => self.read_client(slot, now, supervisor),
            State::Answering | State::Closing => self.write_client(slot, now),
        }
    }

    fn client(&mut self, slot: usize) -> Option<&mut Client> {
        self.control.as_mut()?.clients.get_mut(slot)?.as_mut()
    }

    fn accept_control(&mut self, now: Instant) {
        // Bounded: at most one accept per slot, plus one to turn away.
        for _ in 0..=MAX_CLIENTS {
            let Some(control) = self.control.as_mut() else {
                return;
            };
            let stream = match control.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let refusal = match getsockopt(&stream.as_fd(), sockopt::PeerCredentials) {
                Ok(peer) if peer.uid() == 0 || peer.uid() == control.own_uid => None,
                Ok(peer) => Some(format!(
                    "permission denied: uid {} may not use the control socket (root only)",
                    peer.uid()
                )),
                Err(e) => Some(format!("cannot read the caller's credentials: {e}")),
            };
            let Some(slot) = control.clients.iter().position(Option::is_none) else {
                // No room to hold even an error: say so if the socket takes it now.
                let _ = stream.set_nonblocking(true);
                let answer = Answer::error("busy: too many control clients, try again");
                let _ = (&stream).write(&answer.line);
                continue;
            };
            if let Some(reason) = &refusal {
                log::warn!(message_id = crate::logs::ids::CONTROL_REFUSED; "control socket: {reason}");
            }
            let token = CLIENT_BASE + slot as u64;
            if stream.set_nonblocking(true).is_err()
                || self.poller.add_for(&stream, token, Interest::Read).is_err()
            {
                continue;
            }
            let mut client = Client {
                stream,
                input: Vec::new(),
                output: VecDeque::new(),
                written: 0,
                state: State::Reading,
                interest: Interest::Read,
                deadline: now + IDLE,
            };
            let closing = refusal.is_some();
            if let Some(reason) = refusal {
                client.output.push_back(Answer::error(&reason).line.into());
                client.state = State::Closing;
            }
            control.clients[slot] = Some(client);
            if closing {
                self.write_client(slot, now);
            }
        }
    }

    /// Reads what has arrived (at most up to the request limit) and answers a whole line.
    fn read_client(&mut self, slot: usize, now: Instant, supervisor: &mut dyn Supervisor) {
        let Some(client) = self.client(slot) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            let room = MAX_REQUEST
                .saturating_sub(client.input.len())
                .min(chunk.len());
            if room == 0 || client.input.contains(&b'\n') {
                break;
            }
            match client.stream.read(&mut chunk[..room]) {
                Ok(0) => return self.close_client(slot),
                Ok(n) => {
                    client.input.extend_from_slice(&chunk[..n]);
                    client.deadline = now + IDLE;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close_client(slot),
            }
        }
        self.answer_buffered(slot, now, supervisor);
    }

    /// Answers the first whole line a client has sent, if any; refuses an overlong one.
    fn answer_buffered(&mut self, slot: usize, now: Instant, supervisor: &mut dyn Supervisor) {
        let Some(client) = self.client(slot) else {
            return;
        };
        let Some(end) = client.input.iter().position(|&b| b == b'\n') else {
            if client.input.len() >= MAX_REQUEST {
                let reason = format!("request longer than {MAX_REQUEST} bytes");
                client.input = Vec::new();
                client.output.push_back(Answer::error(&reason).line.into());
                client.state = State::Closing;
                self.write_client(slot, now);
            }
            return;
        };
        let line: Vec<u8> = client.input.drain(..=end).collect();
        let line = &line[..end];
        let control_daemon = match &self.control {
            Some(control) => control.daemon.clone(),
            None => return,
        };
        let transfers = self.endpoint.transfers();
        let counters = self.endpoint.counters();
        let origin = self.origin.as_ref().map(|cell| cell.view());
        let view = View {
            counters: &counters,
            transfers: &transfers,
            store: &self.store,
            daemon: &control_daemon,
            origin: origin.as_ref(),
            now,
            wall: SystemTime::now(),
        };
        match control::handle(line, &view) {
            Reply::Answer(answer) => self.queue_answer(slot, answer, now),
            Reply::Reload if self.endpoint.is_stopping() => {
                let answer = Answer::error("the server is stopping");
                self.queue_answer(slot, answer, now);
            }
            Reply::Reload => {
                // A reload already running may have read the configuration before this
                // request: wait for the one after it too.
                let ends = if self.reload_running { 2 } else { 1 };
                if let Some(client) = self.client(slot) {
                    client.state = State::AwaitingReload(ends);
                }
                self.set_interest(slot, Interest::Hangup);
                if self.reload_running {
                    self.reload_again = true;
                } else {
                    self.begin_reload(supervisor, ReloadCause::Reload);
                }
            }
        }
    }

    fn queue_answer(&mut self, slot: usize, answer: Answer, now: Instant) {
        let Some(client) = self.client(slot) else {
            return;
        };
        client.output.push_back(answer.line.into());
        client.output.extend(answer.body.filter(|b| !b.is_empty()));
        client.state = State::Answering;
        client.deadline = now + IDLE;
        self.write_client(slot, now);
    }

    /// Writes what the socket takes; when the answer is out, reads again (or closes).
    fn write_client(&mut self, slot: usize, now: Instant) {
        let Some(client) = self.client(slot) else {
            return;
        };
        while let Some(front) = client.output.front() {
            match client.stream.write(&front[client.written..]) {
                Ok(n) => {
                    client.deadline = now + IDLE;
                    client.written += n;
                    if client.written == front.len() {
                        client.output.pop_front();
                        client.written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.set_interest(slot, Interest::Write);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close_client(slot),
            }
        }
        match client.state {
            State::Closing => self.close_client(slot),
            _ => {
                client.state = State::Reading;
                self.set_interest(slot, Interest::Read);
                // A request may already wait in the buffer; it is answered when the
                // loop next finds the socket readable or, if nothing more comes, here.
                if self.client(slot).is_some_and(|c| c.input.contains(&b'\n'))
                    && let Some(control) = self.control.as_mut()
                {
                    control.pending.push(slot);
                }
            }
        }
    }

    fn set_interest(&mut self, slot: usize, interest: Interest) {
        let Some(client) = self.client(slot) else {
            return;
        };
        if client.interest == interest {
            return;
        }
        client.interest = interest;
        let token = CLIENT_BASE + slot as u64;
        if let Some(client) = self.control.as_ref().and_then(|c| c.clients[slot].as_ref())
            && self.poller.modify(&client.stream, token, interest).is_err()
        {
            self.close_client(slot);
        }
    }

    fn close_client(&mut self, slot: usize) {
        if let Some(control) = self.control.as_mut()
            && let Some(client) = control.clients.get_mut(slot).and_then(Option::take)
        {
            let _ = self.poller.delete(&client.stream);
        }
    }

    /// Closes the clients that made no progress in time, and answers requests that
    /// were already buffered when an answer went out.
    pub(super) fn control_timers(&mut self, now: Instant, supervisor: &mut dyn Supervisor) {
        let pending =
            (self.control.as_mut()).map_or(Vec::new(), |c| std::mem::take(&mut c.pending));
        for slot in pending {
            if self.client(slot).is_some_and(|c| c.state == State::Reading) {
                self.answer_buffered(slot, now, supervisor);
            }
        }
        let Some(control) = self.control.as_ref() else {
            return;
        };
        let late: Vec<usize> = (control.clients.iter().enumerate())
            .filter_map(|(slot, c)| c.as_ref().map(|c| (slot, c)))
            .filter(|(_, c)| !matches!(c.state, State::AwaitingReload(_)) && c.deadline <= now)
            .map(|(slot, _)| slot)
            .collect();
        for slot in late {
            self.close_client(slot);
        }
    }

    /// A reload (or a rescan) ended: answers the clients that waited for it. A client that
    /// asked while one ran waits for the reload after it, which comes next.
    pub(super) fn control_reloaded(
        &mut self,
        cause: ReloadCause,
        result: &Result<StoreChanges, ReloadError>,
        now: Instant,
    ) {
        let outcome = result.as_ref().map_err(ToString::to_string);
        let Some(control) = self.control.as_mut() else {
            return;
        };
        if cause == ReloadCause::Reload {
            let noted = outcome.as_ref().map(|_| ()).map_err(Clone::clone);
            control.daemon.reloaded(SystemTime::now(), noted);
        }
        let counters = self.endpoint.counters();
        for slot in 0..MAX_CLIENTS {
            let Some(client) = self.client(slot) else {
                continue;
            };
            let State::AwaitingReload(ends) = client.state else {
                continue;
            };
            if ends > 1 {
                client.state = State::AwaitingReload(ends - 1);
                continue;
            }
            let answer =
                control::reload_answer(outcome.as_deref().map_err(Clone::clone), &counters);
            self.queue_answer(slot, answer, now);
        }
    }
}
