//! `Packet`: parsing a datagram into a typed packet that borrows from it, and encoding
//! a packet into a caller's buffer.

use std::borrow::Cow;
use std::fmt;

use super::options::{TransferOptions, decimal_len};
use super::{BlockNumber, ErrorCode, Mode, Opcode};

/// A read or write request (RRQ/WRQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The file name exactly as the client sent it (not yet normalised).
    pub filename: &'a str,
    /// The transfer mode.
    pub mode: Mode,
    /// The options the client asked for, filtered by the policy in [`TransferOptions`].
    pub options: TransferOptions,
}

/// One TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Read request: the client wants a file.
    Rrq(Request<'a>),
    /// Write request: the client wants to send a file.
    Wrq(Request<'a>),
    /// A block of data.
    Data {
        /// The block's number.
        block: BlockNumber,
        /// The block's bytes; fewer than the block size marks the last block.
        data: &'a [u8],
    },
    /// Acknowledgement.
    Ack {
        /// The block acknowledged.
        block: BlockNumber,
    },
    /// An error, which ends the transfer.
    Error {
        /// The code.
        code: ErrorCode,
        /// A message for people; invalid UTF-8 from a peer is replaced, not refused.
        message: Cow<'a, str>,
    },
    /// Option acknowledgement (RFC 2347).
    Oack {
        /// The options the server accepted.
        options: TransferOptions,
    },
}

/// Why a datagram is not a TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the smallest packet of its kind.
    TooShort,
    /// The first two bytes are not an opcode of RFC 1350 or 2347.
    UnknownOpcode(u16),
    /// A request's file name or mode has no terminating NUL.
    Unterminated,
    /// A request's file name is not valid UTF-8.
    InvalidFilename,
    /// A request's mode is neither `octet` nor `netascii` (`mail` included).
    UnsupportedMode,
}

impl ParseError {
    /// The error code a server answers this with.
    pub fn error_code(self) -> ErrorCode {
        ErrorCode::IllegalOperation
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooShort => f.write_str("packet too short"),
            ParseError::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            ParseError::Unterminated => f.write_str("request string is not NUL-terminated"),
            ParseError::InvalidFilename => f.write_str("file name is not valid UTF-8"),
            ParseError::UnsupportedMode => {
                f.write_str("unsupported transfer mode (only octet and netascii are served)")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer is shorter than [`Packet::encoded_len`].
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// A file name or message contains a NUL byte, which cannot travel in a TFTP string.
    NulInString,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { needed } => {
                write!(f, "buffer too small: {needed} bytes needed")
            }
            EncodeError::NulInString => f.write_str("string contains a NUL byte"),
        }
    }
}

impl std::error::Error for EncodeError {}

impl<'a> Packet<'a> {
    /// Parses a datagram. Never panics, whatever the bytes.
    pub fn parse(datagram: &'a [u8]) -> Result<Packet<'a>, ParseError> {
        let (head, body) = datagram.split_at_checked(2).ok_or(ParseError::TooShort)?;
        let raw = u16::from_be_bytes([head[0], head[1]]);
        let opcode = Opcode::from_u16(raw).ok_or(ParseError::UnknownOpcode(raw))?;
        match opcode {
            Opcode::Rrq => Ok(Packet::Rrq(parse_request(body)?)),
            Opcode::Wrq => Ok(Packet::Wrq(parse_request(body)?)),
            Opcode::Data => {
                let (block, data) = split_block(body)?;
                Ok(Packet::Data { block, data })
            }
            Opcode::Ack => Ok(Packet::Ack {
                block: split_block(body)?.0,
            }),
            Opcode::Error => {
                let (code, rest) = body.split_at_checked(2).ok_or(ParseError::TooShort)?;
                let code = ErrorCode::from_u16(u16::from_be_bytes([code[0], code[1]]));
                // Some peers omit the final NUL; the message then runs to the end.
                let message = rest.split(|&b| b == 0).next().unwrap_or_default();
                Ok(Packet::Error {
                    code,
                    message: String::from_utf8_lossy(message),
                })
            }
            Opcode::Oack => Ok(Packet::Oack {
                options: parse_options(body),
            }),
        }
    }

    /// The packet's opcode.
    pub fn opcode(&self) -> Opcode {
        match self {
            Packet::Rrq(_) => Opcode::Rrq,
            Packet::Wrq(_) => Opcode::Wrq,
            Packet::Data { .. } => Opcode::Data,
            Packet::Ack { .. } => Opcode::Ack,
            Packet::Error { .. } => Opcode::Error,
            Packet::Oack { .. } => Opcode::Oack,
        }
    }

    /// Bytes this packet takes on the wire.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Packet::Rrq(request) | Packet::Wrq(request) => {
                request.filename.len()
                    + 1
                    + request.mode.as_str().len()
                    + 1
                    + request.options.encoded_len()
            }
            Packet::Data { data, .. } => 2 + data.len(),
            Packet::Ack { .. } => 2,
            Packet::Error { message, .. } => 2 + message.len() + 1,
            Packet::Oack { options } => options.encoded_len(),
        }
    }

    /// Writes the packet at the start of `buf` and returns its length.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let needed = self.encoded_len();
        let buf = buf
            .get_mut(..needed)
            .ok_or(EncodeError::BufferTooSmall { needed })?;
        let mut writer = Writer { buf, pos: 0 };
        writer.put(&(self.opcode() as u16).to_be_bytes());
        match self {
            Packet::Rrq(request) | Packet::Wrq(request) => {
                writer.put_str(request.filename.as_bytes())?;
                writer.put_str(request.mode.as_str().as_bytes())?;
                writer.put_options(&request.options);
            }
            Packet::Data { block, data } => {
                writer.put(&block.0.to_be_bytes());
                writer.put(data);
            }
            Packet::Ack { block } => writer.put(&block.0.to_be_bytes()),
            Packet::Error { code, message } => {
                writer.put(&code.as_u16().to_be_bytes());
                writer.put_str(message.as_bytes())?;
            }
            Packet::Oack { options } => writer.put_options(options),
        }
        debug_assert_eq!(writer.pos, needed);
        Ok(needed)
    }
}

/// Writes a DATA header (opcode and block number) into the first four bytes of `buf`,
/// for senders that place the payload themselves. Returns `None` if `buf` is shorter.
pub(crate) fn encode_data_header(block: BlockNumber, buf: &mut [u8]) -> Option<()> {
    let header = buf.get_mut(..4)?;
    header[..2].copy_from_slice(&(Opcode::Data as u16).to_be_bytes());
    header[2..].copy_from_slice(&block.0.to_be_bytes());
    Some(())
}

fn split_block(body: &[u8]) -> Result<(BlockNumber, &[u8]), ParseError> {
    let (block, rest) = body.split_at_checked(2).ok_or(ParseError::TooShort)?;
    Ok((BlockNumber(u16::from_be_bytes([block[0], block[1]])), rest))
}

fn parse_request(body: &[u8]) -> Result<Request<'_>, ParseError> {
    let mut strings = body.split_inclusive(|&b| b == 0);
    let filename = strings
        .next()
        .and_then(strip_nul)
        .ok_or(ParseError::Unterminated)?;
    let mode = strings
        .next()
        .and_then(strip_nul)
        .ok_or(ParseError::Unterminated)?;
    let filename = std::str::from_utf8(filename).map_err(|_| ParseError::InvalidFilename)?;
    let mode = Mode::parse(mode).ok_or(ParseError::UnsupportedMode)?;
    let options_start = filename.len() + 1 + mode.as_str().len() + 1;
    let options = parse_options(body.get(options_start..).unwrap_or_default());
    Ok(Request {
        filename,
        mode,
        options,
    })
}

/// Reads `name\0value\0` pairs; an unterminated or unpaired trailing string is ignored.
fn parse_options(bytes: &[u8]) -> TransferOptions {
    let mut options = TransferOptions::default();
    let mut strings = bytes.split_inclusive(|&b| b == 0).map(strip_nul);
    while let (Some(Some(name)), Some(Some(value))) = (strings.next(), strings.next()) {
        options.apply(name, value);
    }
    options
}

fn strip_nul(s: &[u8]) -> Option<&[u8]> {
    s.strip_suffix(&[0])
}

struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    fn put_str(&mut self, s: &[u8]) -> Result<(), EncodeError> {
        if s.contains(&0) {
            return Err(EncodeError::NulInString);
        }
        self.put(s);
        self.put(&[0]);
        Ok(())
    }

    fn put_options(&mut self, options: &TransferOptions) {
        for (name, value) in options.pairs() {
            self.put(name.as_bytes());
            self.put(&[0]);
            let len = decimal_len(value);
            let mut rest = value;
            for slot in self.buf[self.pos..self.pos + len].iter_mut().rev() {
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            self.pos += len;
            self.put(&[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_read_request_with_options() {
        let datagram = b"\x00\x01pxelinux.0\x00OCTET\x00blksize\x001468\x00tsize\x000\x00";
        let Ok(Packet::Rrq(request)) = Packet::parse(datagram) else {
            panic!("not an RRQ");
        };
        assert_eq!(request.filename, "pxelinux.0");
        assert_eq!(request.mode, Mode::Octet);
        assert_eq!(request.options.blksize, Some(1468));
        assert_eq!(request.options.tsize, Some(0));
        assert_eq!(request.options.windowsize, None);
    }

    #[test]
    fn a_request_in_mail_mode_is_refused_with_illegal_operation() {
        let error = Packet::parse(b"\x00\x02f\x00mail\x00").unwrap_err();
        assert_eq!(error, ParseError::UnsupportedMode);
        assert_eq!(error.error_code(), ErrorCode::IllegalOperation);
    }

    #[test]
    fn a_request_without_terminators_is_refused() {
        assert_eq!(
            Packet::parse(b"\x00\x01file"),
            Err(ParseError::Unterminated)
        );
        assert_eq!(
            Packet::parse(b"\x00\x01file\x00octet"),
            Err(ParseError::Unterminated)
        );
    }

    #[test]
    fn a_dangling_option_is_ignored() {
        let Ok(Packet::Wrq(request)) = Packet::parse(b"\x00\x02f\x00octet\x00blksize\x00") else {
            panic!("not a WRQ");
        };
        assert!(request.options.is_empty());
    }

    #[test]
    fn short_and_unknown_datagrams_are_errors() {
        assert_eq!(Packet::parse(b""), Err(ParseError::TooShort));
        assert_eq!(Packet::parse(b"\x00"), Err(ParseError::TooShort));
        assert_eq!(Packet::parse(b"\x00\x03\x00"), Err(ParseError::TooShort));
        assert_eq!(Packet::parse(b"\x00\x04"), Err(ParseError::TooShort));
        assert_eq!(
            Packet::parse(b"\x00\x07xx"),
            Err(ParseError::UnknownOpcode(7))
        );
    }

    #[test]
    fn data_borrows_its_payload_and_may_be_empty() {
        let datagram = b"\x00\x03\xff\xffabc";
        let packet = Packet::parse(datagram).unwrap();
        assert_eq!(
            packet,
            Packet::Data {
                block: BlockNumber(65535),
                data: b"abc"
            }
        );
        let empty = Packet::parse(b"\x00\x03\x00\x01").unwrap();
        assert_eq!(
            empty,
            Packet::Data {
                block: BlockNumber(1),
                data: b""
            }
        );
    }

    #[test]
    fn an_error_without_final_nul_keeps_its_message() {
        let packet = Packet::parse(b"\x00\x05\x00\x01no such file").unwrap();
        assert_eq!(
            packet,
            Packet::Error {
                code: ErrorCode::FileNotFound,
                message: "no such file".into()
            }
        );
    }

    #[test]
    fn encodes_an_oack_in_a_fixed_option_order() {
        let options = TransferOptions {
            blksize: Some(1468),
            timeout: None,
            tsize: Some(1234567),
            windowsize: Some(16),
        };
        let mut buf = [0u8; 64];
        let len = Packet::Oack { options }.encode(&mut buf).unwrap();
        assert_eq!(
            &buf[..len],
            b"\x00\x06blksize\x001468\x00tsize\x001234567\x00windowsize\x0016\x00"
        );
    }

    #[test]
    fn encoding_into_a_short_buffer_fails_without_panicking() {
        let packet = Packet::Data {
            block: BlockNumber(1),
            data: &[1; 100],
        };
        let mut buf = [0u8; 50];
        assert_eq!(
            packet.encode(&mut buf),
            Err(EncodeError::BufferTooSmall { needed: 104 })
        );
    }

    #[test]
    fn encoding_a_string_with_nul_fails() {
        let packet = Packet::Error {
            code: ErrorCode::NotDefined,
            message: "a\0b".into(),
        };
        assert_eq!(packet.encode(&mut [0u8; 64]), Err(EncodeError::NulInString));
    }
}
