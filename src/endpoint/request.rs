//! What a datagram that arrived on a listening socket starts: a read, a write, or an
//! ERROR in answer. The endpoint hands in the bytes, the store and the client's policy
//! (see [`policy`](super::policy): denial, rewrite, view, options, MTU, upload limits);
//! whether there is room for the transfer is its own business, decided after.

use std::net::SocketAddr;
use std::time::Instant;

use crate::name::normalize_name;
use crate::proto::{ErrorCode, MAX_BLKSIZE, Mode, Packet, ParseError, Request};
use crate::store::{Store, UploadPermit, UploadRefusal};
use crate::transfer::{Direction, Transfer, TransferConfig};

use super::canonical_ip;
use super::policy::{self, Applied, BlockLimit, Policy};
use super::refusal::Refusal;

/// What one request starts. (A transfer is boxed where it is made: it is moved into the
/// endpoint's table, and a box moves as a pointer.)
#[derive(Debug)]
pub(crate) enum Decision {
    /// Serve a file.
    Read(Box<Transfer>),
    /// Receive a file; the permit is presented to the store when it is complete.
    Write(Box<Transfer>, UploadPermit),
    /// Answer with an ERROR and log why.
    Refuse(Refusal),
    /// Drop the request unanswered: a transient limit holds it (the client's
    /// retransmission may find room).
    Wait,
}

/// What a request is decided with, beyond its bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub store: &'a Store,
    pub config: &'a TransferConfig,
    pub policy: &'a Policy,
    /// The MTU of the link the request came in on, when the driver learned it.
    pub mtu: Option<u32>,
}

/// The message of ERROR 2 to a client its table denies.
pub(crate) const DENIED: &str = "access violation";

/// Decides what a datagram from `peer` on a listening socket starts, under the policy
/// for that client; also says what the policy made of it, for the logs.
pub(crate) fn decide(
    now: Instant,
    peer: SocketAddr,
    datagram: &[u8],
    cx: &Context<'_>,
) -> (Decision, Applied) {
    let (op, request) = match Packet::parse(datagram) {
        Ok(Packet::Rrq(request)) => (Direction::Read, request),
        Ok(Packet::Wrq(request)) => (Direction::Write, request),
        Ok(_) => {
            let refusal = Refusal::noise(
                ErrorCode::UnknownTransferId,
                "no transfer here: send requests to this port, data to the transfer's own".into(),
            );
            return (Decision::Refuse(refusal), Applied::default());
        }
        Err(error @ ParseError::UnsupportedMode) => {
            // A request all the same: log it as one.
            let filename = datagram
                .get(2..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .map(|name| String::from_utf8_lossy(name).into_owned());
            let refusal = Refusal {
                code: error.error_code(),
                message: error.to_string(),
                request: filename.map(|name| (request_op(datagram), name)),
                noise: false,
            };
            return (Decision::Refuse(refusal), Applied::default());
        }
        Err(error) => {
            let message = format!("malformed packet: {error}");
            let refusal = Refusal::noise(error.error_code(), message);
            return (Decision::Refuse(refusal), Applied::default());
        }
    };
    let client = canonical_ip(peer.ip());
    let (matched, rules) = cx.policy.rules_for(client);
    let mut applied = Applied {
        table: cx.policy.label(matched),
        requested: request.filename.to_owned(),
        ..Applied::default()
    };
    let refuse = |code: ErrorCode, message: String| {
        Decision::Refuse(Refusal {
            code,
            message,
            request: Some((op, request.filename.to_owned())),
            noise: false,
        })
    };
    let allowed = match op {
        Direction::Read => rules.read,
        Direction::Write => rules.write,
    };
    if !allowed {
        return (
            refuse(ErrorCode::AccessViolation, DENIED.to_owned()),
            applied,
        );
    }
    // `{ip}` written out only for the rules that use it (this runs for every request).
    let ip = if rules.uses_ip() {
        policy::ip_text(client)
    } else {
        String::new()
    };
    let Some(rewritten) = policy::rewrite(rules, request.filename, &ip) else {
        let message = format!(
            "the file name grows past {} bytes under the rewrite rules",
            policy::MAX_REWRITTEN_LEN
        );
        return (refuse(ErrorCode::FileNotFound, message), applied);
    };
    if rewritten != request.filename {
        applied.rewritten = Some(rewritten.clone().into_owned());
    }
    let name = match normalize_name(&rewritten) {
        Ok(name) => name,
        Err(error) => {
            return (refuse(error.error_code(), error.to_string()), applied);
        }
    };
    let view = policy::view(rules, &ip);
    let in_view = match &view {
        None => None,
        Some(view) => match policy::under_view(view, &name) {
            Some(full) => Some(full),
            None => {
                let message = format!("file not found: {name} (too long under the view {view})");
                applied.view = Some(view.clone());
                return (refuse(ErrorCode::FileNotFound, message), applied);
            }
        },
    };
    let budget = rules.upload.budget(view.as_deref());
    applied.view = view;
    let options = rules.refuse_options.strip(request.options);
    let mut config = *cx.config;
    config.max_windowsize = rules.max_windowsize;
    config.max_blksize = match rules.max_blksize {
        BlockLimit::Fixed(limit) => limit,
        // Not learned (the simulation, a kernel that would not say): the protocol's cap.
        BlockLimit::Mtu => cx
            .mtu
            .map_or(MAX_BLKSIZE, |mtu| policy::blksize_for_mtu(mtu, client)),
    };
    let request = Request { options, ..request };
    if op == Direction::Read {
        let found = match &in_view {
            Some(full) => cx.store.get(full).map(|file| (file, full)).or_else(|| {
                rules
                    .fallback
                    .then(|| cx.store.get(&name).map(|f| (f, &name)))
                    .flatten()
            }),
            None => cx.store.get(&name).map(|file| (file, &name)),
        };
        match found {
            Some((file, stored)) => {
                applied.stored = Some(stored.as_str().to_owned());
                // The netascii length is computed once per stored file, not per request.
                let wire_len = match request.mode {
                    Mode::Netascii => file.netascii_len(),
                    Mode::Octet => file.data().len() as u64,
                };
                let data = file.data().clone();
                let transfer = Transfer::read(now, peer, &request, data, wire_len, &config);
                (Decision::Read(Box::new(transfer)), applied)
            }
            None => {
                let shown = in_view.as_ref().unwrap_or(&name);
                let message = format!("file not found: {shown}");
                (refuse(ErrorCode::FileNotFound, message), applied)
            }
        }
    } else {
        let target = in_view.unwrap_or(name);
        applied.stored = Some(target.as_str().to_owned());
        // The table narrows the upload before the store is asked for a permit.
        if !rules.upload.allows(&target, cx.store.ignores_case()) {
            let refusal = UploadRefusal::NotAllowed { name: target };
            return (refuse(refusal.error_code(), refusal.to_string()), applied);
        }
        let table_limit = rules.upload.max_file_size.unwrap_or(u64::MAX);
        if let Some(size) = request.options.tsize
            && size > table_limit
        {
            let refusal = UploadRefusal::TooLarge {
                size,
                limit: table_limit,
            };
            return (refuse(refusal.error_code(), refusal.to_string()), applied);
        }
        let tsize = request.options.tsize;
        match (cx.store).check_upload_within(&target, tsize, table_limit, budget.as_ref()) {
            Ok(permit) => {
                let limit = permit.max_size();
                let transfer = Transfer::write(now, peer, &request, limit, &config);
                (Decision::Write(Box::new(transfer), permit), applied)
            }
            Err(refusal) if refusal.is_transient() => (Decision::Wait, applied),
            Err(refusal) => (refuse(refusal.error_code(), refusal.to_string()), applied),
        }
    }
}

pub(crate) fn request_op(datagram: &[u8]) -> Direction {
    if datagram.get(1) == Some(&2) {
        Direction::Write
    } else {
        Direction::Read
    }
}

/// True for a datagram that is a read or write request (by its opcode).
pub(crate) fn is_request(datagram: &[u8]) -> bool {
    matches!(datagram, [0, 1 | 2, ..])
}

/// True for a datagram that is a write request (by its opcode).
pub(crate) fn is_write(datagram: &[u8]) -> bool {
    matches!(datagram, [0, 2, ..])
}

/// A digest of a request's bytes, to tell a retransmission from a new request.
pub(crate) fn digest(datagram: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut hasher = DefaultHasher::new();
    hasher.write(datagram);
    hasher.finish()
}
