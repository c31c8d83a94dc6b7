//! What a datagram that arrived on a listening socket starts: a read, a write, or an
//! ERROR in answer. The endpoint hands in the bytes and the store; whether there is room
//! for the transfer is its own business, decided after.

use std::net::SocketAddr;
use std::time::Instant;

use crate::name::normalize_name;
use crate::proto::{ErrorCode, Mode, Packet, ParseError};
use crate::store::{Store, UploadPermit};
use crate::transfer::{Direction, Transfer, TransferConfig};

use super::refusal::Refusal;

/// What one request starts.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Serve a file.
    Read(Transfer),
    /// Receive a file; the permit is presented to the store when it is complete.
    Write(Transfer, UploadPermit),
    /// Answer with an ERROR and log why.
    Refuse(Refusal),
}

/// Decides what a datagram from `peer` on a listening socket starts.
pub(crate) fn decide(
    now: Instant,
    peer: SocketAddr,
    datagram: &[u8],
    store: &Store,
    config: &TransferConfig,
) -> Decision {
    let (op, request) = match Packet::parse(datagram) {
        Ok(Packet::Rrq(request)) => (Direction::Read, request),
        Ok(Packet::Wrq(request)) => (Direction::Write, request),
        Ok(_) => {
            return Decision::Refuse(Refusal::noise(
                ErrorCode::UnknownTransferId,
                "no transfer here: send requests to this port, data to the transfer's own".into(),
            ));
        }
        Err(error @ ParseError::UnsupportedMode) => {
            // A request all the same: log it as one.
            let filename = datagram
                .get(2..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .map(|name| String::from_utf8_lossy(name).into_owned());
            return Decision::Refuse(Refusal {
                code: error.error_code(),
                message: error.to_string(),
                request: filename.map(|name| (request_op(datagram), name)),
                noise: false,
            });
        }
        Err(error) => {
            let message = format!("malformed packet: {error}");
            return Decision::Refuse(Refusal::noise(error.error_code(), message));
        }
    };
    let refuse = |code: ErrorCode, message: String| {
        Decision::Refuse(Refusal {
            code,
            message,
            request: Some((op, request.filename.to_owned())),
            noise: false,
        })
    };
    let name = match normalize_name(request.filename) {
        Ok(name) => name,
        Err(error) => {
            return refuse(error.error_code(), error.to_string());
        }
    };
    if op == Direction::Read {
        match store.get(&name) {
            Some(file) => {
                // The netascii length is computed once per stored file, not per request.
                let wire_len = match request.mode {
                    Mode::Netascii => file.netascii_len(),
                    Mode::Octet => file.data().len() as u64,
                };
                let data = file.data().clone();
                let transfer = Transfer::read(now, peer, &request, data, wire_len, config);
                Decision::Read(transfer)
            }
            None => refuse(ErrorCode::FileNotFound, format!("file not found: {name}")),
        }
    } else {
        match store.check_upload(&name, request.options.tsize) {
            Ok(permit) => {
                let limit = permit.max_size();
                let transfer = Transfer::write(now, peer, &request, limit, config);
                Decision::Write(transfer, permit)
            }
            Err(refusal) => refuse(refusal.error_code(), refusal.to_string()),
        }
    }
}

fn request_op(datagram: &[u8]) -> Direction {
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
