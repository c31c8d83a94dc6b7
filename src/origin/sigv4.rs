//! AWS Signature Version 4 for the requests of `tftpd sync` to a private S3 bucket (AWS
//! or an S3-compatible server: MinIO, Garage, Ceph RGW): an access key signs each
//! request's method, path, query, chosen headers and payload digest into an
//! `Authorization` header, sent with `host`, `x-amz-date` and (for S3)
//! `x-amz-content-sha256`.
//!
//! Sans-IO: [`AccessKey::sign`] takes the request and the time and gives the headers to
//! send. The steps are AWS's ("Create a signed AWS API request"): the canonical request
//! (the path single-encoded and not normalised, as S3 wants it; the query's pairs encoded
//! and sorted; the headers lowercased, trimmed and sorted), its SHA-256 in the string to
//! sign with the scope `DATE/REGION/SERVICE/aws4_request`, and HMAC-SHA256 with the key
//! derived from the secret through the scope. The tests check it against AWS's published
//! SigV4 test suite and the S3 API reference's worked example.

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::manifest::hex;

/// The default `origin.region`: what AWS calls the default region, and what MinIO,
/// Garage and Ceph accept unless configured otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The default `origin.service`.
pub const DEFAULT_SERVICE: &str = "s3";

/// An access key and where it signs: everything a SigV4 signature needs but the request.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// The access key ID, e.g. `AKIAIOSFODNN7EXAMPLE` (not secret: it is sent).
    pub id: String,
    /// The secret access key.
    pub secret: String,
    /// The region signed for, e.g. `us-east-1`.
    pub region: String,
    /// The service signed for, `s3` for a bucket.
    pub service: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key ID may be printed; the secret never is.
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// What the signed payload is.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// The body's bytes, hashed here (empty for a GET).
    Bytes(&'a [u8]),
    /// The body's SHA-256, lowercase hex, already known.
    Sha256(&'a str),
}

impl AccessKey {
    /// The headers to send with the request `method url` carrying `headers` (which are
    /// signed too, so they must be sent exactly as given) and `payload`, signed at `time`:
    /// `host`, `x-amz-date`, `x-amz-content-sha256` for the service `s3`, and
    /// `authorization`. `url` is `http://` or `https://`, percent-encoded as it is sent.
    ///
    /// # Errors
    ///
    /// A reason when the URL is not an `http://` or `https://` URL with a host.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, String> {
        let (host, path, query) = split_url(url)?;
        let payload_sha256 = match payload {
            Payload::Bytes(bytes) => hex(&Sha256::digest(bytes)),
            Payload::Sha256(digest) => digest.to_owned(),
        };
        let (date, stamp) = amz_date(time);
        let mut signed: Vec<(String, String)> = vec![
            ("host".into(), host.to_owned()),
            ("x-amz-date".into(), stamp.clone()),
        ];
        if self.service == DEFAULT_SERVICE {
            // S3 refuses a header-signed request without it.
            signed.push(("x-amz-content-sha256".into(), payload_sha256.clone()));
        }
        let mut canonical_headers: Vec<(String, String)> = signed
            .iter()
            .cloned()
            .chain(
                headers
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), trim_value(v))),
            )
            .collect();
        canonical_headers.sort();
        let signed_names = canonical_headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let mut canonical = format!(
            "{method}\n{}\n{}\n",
            canonical_path(path),
            canonical_query(query)
        );
        for (name, value) in &canonical_headers {
            canonical.push_str(&format!("{name}:{value}\n"));
        }
        canonical.push_str(&format!("\n{signed_names}\n{payload_sha256}"));
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.secret).as_bytes(), date.as_bytes());
        for part in [self.region.as_str(), self.service.as_str(), "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
        signed.push((
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, \
                 Signature={signature}",
                self.id
            ),
        ));
        Ok(signed)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The `host` header (the authority without a default port), the path (`/` when empty)
/// and the query of `url`.
fn split_url(url: &str) -> Result<(&str, &str, &str), String> {
    let (rest, default_port) = if let Some(rest) = url.strip_prefix("https://") {
        (rest, ":443")
    } else if let Some(rest) = url.strip_prefix("http://") {
        (rest, ":80")
    } else {
        return Err(format!("cannot sign {url}: not an http:// or https:// URL"));
    };
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let (authority, path_and_query) = rest
        .find('/')
        .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("cannot sign {url}: no host"));
    }
    let host = authority.strip_suffix(default_port).unwrap_or(authority);
    Ok((host, if path.is_empty() { "/" } else { path }, query))
}

/// The path as S3 canonicalises it: decoded, then each byte but the unreserved ones and
/// `/` percent-encoded, once; not normalised.
fn canonical_path(path: &str) -> String {
    uri_encode(&percent_decode(path), false)
}

/// The query's `name=value` pairs, each side decoded and encoded again, sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(name), true),
                uri_encode(&percent_decode(value), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `bytes` with every byte but RFC 3986's unreserved ones (and `/`, unless
/// `encode_slash`) as `%XX`, upper-case.
pub(super) fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The bytes `text` percent-decodes to (a `%` not followed by two hex digits stays).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_at = |j: usize| bytes.get(j).and_then(|b| char::from(*b).to_digit(16));
        match (bytes[i], hex_at(i + 1), hex_at(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'%'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A header value as signed: trimmed, runs of spaces as one.
fn trim_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` of `time` (UTC; times before 1970 as the epoch).
fn amz_date(time: SystemTime) -> (String, String) {
    // "2026-12-01T17:39:27.601Z": the digits of the date, then of the time of day.
    let text = crate::timestamp::rfc3339(time);
    let (date, clock) = text.split_once('T').unwrap_or((&text, ""));
    let date: String = date.chars().filter(char::is_ascii_digit).collect();
    let clock: String = clock.chars().take(8).filter(char::is_ascii_digit).collect();
    (date.clone(), format!("{date}T{clock}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    /// The credentials and time of AWS's SigV4 test suite (its `context.json`).
    fn suite_key() -> AccessKey {
        AccessKey {
            id: "AKIDEXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
            service: "service".into(),
        }
    }

    /// 2015-08-30T12:36:00Z.
    const SUITE_TIME: u64 = 1_440_938_160;

    fn header<'a>(signed: &'a [(String, String)], name: &str) -> Option<&'a str> {
        signed
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_signer_gives_the_aws_test_suites_signatures() {
        // Each case is a request of the suite (v4/NAME/request.txt, its path as sent) and
        // the Authorization header of its header-signed-request.txt.
        // (name, method, URL, headers, SignedHeaders=, Signature=)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            &'a [(&'a str, &'a str)],
            &'a str,
            &'a str,
        );
        let cases: &[Case<'_>] = &[
            (
                "get-vanilla",
                "GET",
                "https://example.amazonaws.com/",
                &[],
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "post-vanilla",
                "POST",
                "https://example.amazonaws.com/",
                &[],
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
            (
                "get-vanilla-query-order-key-case",
                "GET",
                "https://example.amazonaws.com/?Param2=value2&Param1=value1",
                &[],
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
            (
                "get-vanilla-query-unreserved",
                "GET",
                "https://example.amazonaws.com/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                &[],
                "host;x-amz-date",
                "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
            ),
            (
                "get-unreserved",
                "GET",
                "https://example.amazonaws.com/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                &[],
                "host;x-amz-date",
                "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
            ),
            (
                "get-utf8",
                "GET",
                "https://example.amazonaws.com/%E1%88%B4",
                &[],
                "host;x-amz-date",
                "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
            ),
            (
                "get-space-normalized",
                "GET",
                "https://example.amazonaws.com/example%20space/",
                &[],
                "host;x-amz-date",
                "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
            ),
            (
                "post-header-key-sort",
                "POST",
                "https://example.amazonaws.com/",
                &[("My-Header1", "value1")],
                "host;my-header1;x-amz-date",
                "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
            ),
            (
                "get-header-value-trim",
                "GET",
                "https://example.amazonaws.com/",
                &[("My-Header1", " value1"), ("My-Header2", "\"a   b   c\"")],
                "host;my-header1;my-header2;x-amz-date",
                "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
            ),
        ];
        for (name, method, url, headers, signed_headers, signature) in cases {
            let signed = suite_key()
                .sign(method, url, headers, Payload::Bytes(b""), at(SUITE_TIME))
                .unwrap();
            let expected = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders={signed_headers}, Signature={signature}"
            );
            assert_eq!(
                header(&signed, "authorization"),
                Some(expected.as_str()),
                "{name}"
            );
            assert_eq!(
                header(&signed, "x-amz-date"),
                Some("20150830T123600Z"),
                "{name}"
            );
            assert_eq!(
                header(&signed, "host"),
                Some("example.amazonaws.com"),
                "{name}"
            );
            // Not S3: no payload header.
            assert_eq!(header(&signed, "x-amz-content-sha256"), None, "{name}");
        }
    }

    #[test]
    fn the_host_signed_is_the_one_sent() {
        let host = |url| {
            let signed = suite_key()
                .sign("GET", url, &[], Payload::Bytes(b""), at(SUITE_TIME))
                .unwrap();
            header(&signed, "host").map(str::to_owned)
        };
        assert_eq!(
            host("http://127.0.0.1:9000/b/m").as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(host("http://h:80/b/m").as_deref(), Some("h"));
        assert_eq!(host("https://h:443/b/m").as_deref(), Some("h"));
        assert_eq!(host("https://[::1]:8443").as_deref(), Some("[::1]:8443"));
        assert!(
            suite_key()
                .sign("GET", "ftp://h/m", &[], Payload::Bytes(b""), at(0))
                .is_err()
        );
    }

    #[test]
    fn an_s3_get_is_signed_as_in_the_s3_documentation() {
        // "Signature Calculations for the Authorization Header: Transferring Payload in a
        // Single Chunk", example GET Object (Amazon S3 API Reference).
        let key = AccessKey {
            id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: DEFAULT_REGION.into(),
            service: DEFAULT_SERVICE.into(),
        };
        // 2013-05-24T00:00:00Z.
        let signed = key
            .sign(
                "GET",
                "https://examplebucket.s3.amazonaws.com/test.txt",
                &[("range", "bytes=0-9")],
                Payload::Bytes(b""),
                at(1_369_353_600),
            )
            .unwrap();
        assert_eq!(
            header(&signed, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
                 Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            )
        );
        assert_eq!(
            header(&signed, "x-amz-content-sha256"),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        // A known payload digest is signed as given.
        let put = key
            .sign(
                "PUT",
                "https://examplebucket.s3.amazonaws.com/a%20b",
                &[("if-none-match", "*")],
                Payload::Sha256("44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
                at(1_369_353_600),
            )
            .unwrap();
        let authorization = header(&put, "authorization").unwrap();
        assert!(
            authorization
                .contains("SignedHeaders=host;if-none-match;x-amz-content-sha256;x-amz-date"),
            "{authorization}"
        );
        assert_eq!(
            header(&put, "x-amz-content-sha256"),
            Some("44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        );
    }

    #[test]
    fn the_secret_is_never_printed() {
        let shown = format!("{:?}", suite_key());
        assert!(
            shown.contains("AKIDEXAMPLE") && !shown.contains("EXAMPLEKEY"),
            "{shown}"
        );
    }
}
