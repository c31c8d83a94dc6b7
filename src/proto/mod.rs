//! The TFTP wire format: typed packets that borrow from the datagram.
//!
//! Covers RFC 1350 (RRQ, WRQ, DATA, ACK, ERROR), RFC 2347 (OACK and option
//! negotiation), RFC 2348 (`blksize`), RFC 2349 (`timeout`, `tsize`) and RFC 7440
//! (`windowsize`). Nothing here does I/O or reads a clock.
//!
//! The contract, as in smoltcp's `wire` module: [`Packet::parse`] never panics on any
//! input, and [`Packet::encode`] never panics; it fails with [`EncodeError`] when the
//! caller's buffer is shorter than [`Packet::encoded_len`].

mod netascii;
mod options;
mod packet;

pub use netascii::{NetasciiDecoder, NetasciiEncoder, netascii_len};
pub use options::{
    MAX_BLKSIZE, MAX_TIMEOUT_SECS, MAX_WINDOWSIZE, MIN_BLKSIZE, MIN_TIMEOUT_SECS, MIN_WINDOWSIZE,
    TransferOptions,
};
pub(crate) use packet::encode_data_header;
pub use packet::{EncodeError, Packet, ParseError, Request};

use std::fmt;

/// The default block size of RFC 1350, used when `blksize` is not negotiated.
pub const DEFAULT_BLKSIZE: u16 = 512;

/// The largest datagram a TFTP peer can send: a DATA header and the largest block.
pub const MAX_DATAGRAM: usize = 4 + MAX_BLKSIZE as usize;

/// The first two bytes of every packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Opcode {
    /// Read request.
    Rrq = 1,
    /// Write request.
    Wrq = 2,
    /// A block of data.
    Data = 3,
    /// Acknowledgement of a block.
    Ack = 4,
    /// An error; ends the transfer.
    Error = 5,
    /// Option acknowledgement (RFC 2347).
    Oack = 6,
}

impl Opcode {
    /// The opcode for a wire value, if it is one.
    pub fn from_u16(value: u16) -> Option<Opcode> {
        Some(match value {
            1 => Opcode::Rrq,
            2 => Opcode::Wrq,
            3 => Opcode::Data,
            4 => Opcode::Ack,
            5 => Opcode::Error,
            6 => Opcode::Oack,
            _ => return None,
        })
    }
}

/// A DATA/ACK block number as it travels on the wire.
///
/// Transfers longer than 65535 blocks wrap from 65535 to 0 and go on; the
/// transfer state machines count blocks in `u64` and convert at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockNumber(pub u16);

impl BlockNumber {
    /// The block after this one, wrapping 65535 -> 0.
    #[must_use]
    pub fn next(self) -> BlockNumber {
        BlockNumber(self.0.wrapping_add(1))
    }

    /// The wire number of the absolute (ever-increasing) block count `n`.
    pub fn from_absolute(n: u64) -> BlockNumber {
        BlockNumber((n & 0xffff) as u16)
    }
}

impl fmt::Display for BlockNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The transfer mode named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Bytes as they are.
    Octet,
    /// Text: LF travels as CR LF, a bare CR as CR NUL.
    Netascii,
}

impl Mode {
    /// Parses a mode name, ignoring ASCII case; `mail` and anything else is `None`.
    pub fn parse(name: &[u8]) -> Option<Mode> {
        if name.eq_ignore_ascii_case(b"octet") {
            Some(Mode::Octet)
        } else if name.eq_ignore_ascii_case(b"netascii") {
            Some(Mode::Netascii)
        } else {
            None
        }
    }

    /// The mode's name as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Octet => "octet",
            Mode::Netascii => "netascii",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error codes of RFC 1350 and RFC 2347.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    NotDefined = 0,
    /// 1: file not found.
    FileNotFound = 1,
    /// 2: access violation.
    AccessViolation = 2,
    /// 3: disk full or allocation exceeded.
    DiskFull = 3,
    /// 4: illegal TFTP operation.
    IllegalOperation = 4,
    /// 5: unknown transfer ID.
    UnknownTransferId = 5,
    /// 6: file already exists.
    FileExists = 6,
    /// 7: no such user.
    NoSuchUser = 7,
    /// 8: the transfer should be terminated during option negotiation (RFC 2347).
    OptionNegotiation = 8,
}

impl ErrorCode {
    /// The code for a wire value; codes above 8 are read as [`ErrorCode::NotDefined`],
    /// which RFC 1350 says to explain in the message.
    pub fn from_u16(value: u16) -> ErrorCode {
        match value {
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTransferId,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionNegotiation,
            _ => ErrorCode::NotDefined,
        }
    }

    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The RFC's meaning of the code.
    pub fn meaning(self) -> &'static str {
        match self {
            ErrorCode::NotDefined => "not defined",
            ErrorCode::FileNotFound => "file not found",
            ErrorCode::AccessViolation => "access violation",
            ErrorCode::DiskFull => "disk full or allocation exceeded",
            ErrorCode::IllegalOperation => "illegal TFTP operation",
            ErrorCode::UnknownTransferId => "unknown transfer ID",
            ErrorCode::FileExists => "file already exists",
            ErrorCode::NoSuchUser => "no such user",
            ErrorCode::OptionNegotiation => "option negotiation failed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_u16(), self.meaning())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_number_wraps_from_65535_to_0() {
        assert_eq!(BlockNumber(65535).next(), BlockNumber(0));
        assert_eq!(BlockNumber(7).next(), BlockNumber(8));
        assert_eq!(BlockNumber::from_absolute(65536), BlockNumber(0));
        assert_eq!(BlockNumber::from_absolute(65537 + 65536), BlockNumber(1));
    }

    #[test]
    fn modes_are_case_insensitive_and_mail_is_refused() {
        assert_eq!(Mode::parse(b"OcTeT"), Some(Mode::Octet));
        assert_eq!(Mode::parse(b"NETASCII"), Some(Mode::Netascii));
        assert_eq!(Mode::parse(b"mail"), None);
        assert_eq!(Mode::parse(b""), None);
    }

    #[test]
    fn error_codes_round_trip_and_unknown_codes_read_as_not_defined() {
        for value in 0..=8 {
            assert_eq!(ErrorCode::from_u16(value).as_u16(), value);
        }
        assert_eq!(ErrorCode::from_u16(9), ErrorCode::NotDefined);
        assert_eq!(ErrorCode::from_u16(u16::MAX), ErrorCode::NotDefined);
    }
}
