//! Netascii translation (RFC 1350, RFC 764): on the wire LF is CR LF and a bare CR is
//! CR NUL. Both directions work incrementally, so a block boundary may fall anywhere,
//! including between the two bytes of a pair.

/// The length of `data` once translated to netascii.
pub fn netascii_len(data: &[u8]) -> u64 {
    let expanded = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    (data.len() + expanded) as u64
}

/// Translates local text to netascii, block by block.
///
/// The encoder is a small `Copy` value holding its position in the source, so a sender
/// can keep one per block as a checkpoint and regenerate any block in its window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetasciiEncoder {
    /// Next source byte to read.
    position: usize,
    /// The second byte of a pair whose first byte ended the previous output.
    pending: Option<u8>,
}

impl NetasciiEncoder {
    /// Fills `out` with the translation of `source` from where this encoder stands, and
    /// returns how many bytes it wrote: `out.len()` unless the source ran out.
    pub fn fill(&mut self, source: &[u8], out: &mut [u8]) -> usize {
        let mut written = 0;
        while written < out.len() {
            if let Some(second) = self.pending.take() {
                out[written] = second;
                written += 1;
                continue;
            }
            let Some(&byte) = source.get(self.position) else {
                break;
            };
            self.position += 1;
            out[written] = match byte {
                b'\n' => {
                    self.pending = Some(b'\n');
                    b'\r'
                }
                b'\r' => {
                    self.pending = Some(0);
                    b'\r'
                }
                other => other,
            };
            written += 1;
        }
        written
    }
}

/// Translates netascii back to local text, block by block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetasciiDecoder {
    /// The previous block ended with a CR whose partner has not arrived yet.
    pending_cr: bool,
}

impl NetasciiDecoder {
    /// Appends the translation of `input` to `out`: CR LF becomes LF, CR NUL becomes CR,
    /// and a CR followed by anything else is kept as it is (lenient towards clients
    /// that send bare CRs).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len());
        for &byte in input {
            if std::mem::take(&mut self.pending_cr) {
                match byte {
                    b'\n' => out.push(b'\n'),
                    0 => out.push(b'\r'),
                    b'\r' => {
                        out.push(b'\r');
                        self.pending_cr = true;
                    }
                    other => out.extend_from_slice(&[b'\r', other]),
                }
            } else if byte == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(byte);
            }
        }
    }

    /// Flushes a CR left at the very end of the transfer.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }

    /// How many bytes [`finish`](Self::finish) would still add.
    pub fn pending_len(&self) -> usize {
        usize::from(self.pending_cr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_in_chunks(source: &[u8], chunk: usize) -> Vec<u8> {
        let mut encoder = NetasciiEncoder::default();
        let mut out = Vec::new();
        loop {
            let mut block = vec![0u8; chunk];
            let n = encoder.fill(source, &mut block);
            out.extend_from_slice(&block[..n]);
            if n < chunk {
                return out;
            }
        }
    }

    fn decode_in_chunks(wire: &[u8], chunk: usize) -> Vec<u8> {
        let mut decoder = NetasciiDecoder::default();
        let mut out = Vec::new();
        for piece in wire.chunks(chunk) {
            decoder.decode(piece, &mut out);
        }
        decoder.finish(&mut out);
        out
    }

    #[test]
    fn lf_becomes_cr_lf_and_bare_cr_becomes_cr_nul() {
        assert_eq!(encode_in_chunks(b"a\nb\rc\r\n", 64), b"a\r\nb\r\0c\r\0\r\n");
        assert_eq!(netascii_len(b"a\nb\rc\r\n"), 11);
    }

    #[test]
    fn a_pair_split_across_blocks_is_translated_whole() {
        for chunk in 1..8 {
            let wire = encode_in_chunks(b"\n\r\n\rx\n", chunk);
            assert_eq!(wire, b"\r\n\r\0\r\n\r\0x\r\n", "chunk {chunk}");
            assert_eq!(
                decode_in_chunks(&wire, chunk),
                b"\n\r\n\rx\n",
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn decoding_is_lenient_about_bare_cr() {
        assert_eq!(decode_in_chunks(b"a\rb", 64), b"a\rb");
        assert_eq!(decode_in_chunks(b"a\r", 64), b"a\r");
        assert_eq!(decode_in_chunks(b"\r\r\n", 1), b"\r\n");
    }
}
