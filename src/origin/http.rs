//! The real [`Origin`]: a small blocking HTTP(S) client (`ureq`, with rustls) fetching
//! `manifest.json` at the configured URL and `objects/<sha256>` beside it; and the real
//! [`PushTarget`], which `PUT`s the spooled uploads under `push-uploads`.
//!
//! Every request is bounded in time: connecting and each read wait at most the
//! configured timeout, and a whole request at most that timeout plus one more for each
//! 16 MiB the manifest says the object has. Bodies are bounded in size: the manifest by
//! [`MAX_MANIFEST_BYTES`], an object by its size in the manifest (the sink refuses more).
//! Redirects are not followed, so credentials never leave the configured host. Each
//! request carries the configured credential: a fixed `Authorization` header, or a SigV4
//! signature of that very request ([`super::sigv4`]).

use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime};

use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, parse_pem};

use super::fetch::{FetchError, FetchFailure, ManifestReply, Origin};
use super::manifest::MAX_MANIFEST_BYTES;
use super::push::{PushTarget, PutReply};
use super::sigv4::{AccessKey, Payload, uri_encode};

/// An `Authorization` header's value, e.g. `Bearer TOKEN` or `Basic BASE64`.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization(pub String);

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a credential.
        f.write_str("Authorization(..)")
    }
}

/// How every request authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAuth {
    /// With this `Authorization` header.
    Header(Authorization),
    /// With a SigV4 signature by this access key, computed for each request.
    SigV4(AccessKey),
}

/// The system CA bundles tried, in order, when `origin.ca-file` is not set: Debian's
/// (ca-certificates) and Fedora's.
pub const SYSTEM_CA_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// The certificates of a PEM text (other items are skipped).
fn certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, ureq::Error> {
    let mut certs = Vec::new();
    for item in parse_pem(pem) {
        if let PemItem::Certificate(c) = item? {
            certs.push(c.to_owned());
        }
    }
    Ok(certs)
}

/// The bytes of an object for which a request may take one more timeout.
const BYTES_PER_TIMEOUT: u64 = 16 << 20;

/// The client every request goes through: the agent (TLS roots, timeouts, no redirects)
/// and the credential.
#[derive(Debug)]
pub struct HttpClient {
    agent: Agent,
    auth: Option<RequestAuth>,
    timeout: Duration,
}

impl HttpClient {
    /// A client trusting the certificates in the PEM `ca` when given (else the system's
    /// CA bundle, [`SYSTEM_CA_BUNDLES`]), authenticating every request with `auth`.
    ///
    /// # Errors
    ///
    /// A reason when `ca` holds no certificate or cannot be parsed.
    pub fn new(
        ca: Option<&[u8]>,
        auth: Option<RequestAuth>,
        timeout: Duration,
    ) -> Result<HttpClient, String> {
        let certs = match ca {
            Some(pem) => {
                let certs = certificates(pem)
                    .map_err(|e| format!("the CA file cannot be read as PEM: {e}"))?;
                if certs.is_empty() {
                    return Err("the CA file holds no PEM certificate".to_owned());
                }
                certs
            }
            // The system's trust store; none (or an unreadable one) only matters for https.
            None => SYSTEM_CA_BUNDLES
                .iter()
                .find_map(|path| std::fs::read(path).ok())
                .and_then(|pem| certificates(&pem).ok())
                .unwrap_or_default(),
        };
        let tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&certs));
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .user_agent(concat!("tftpd-sync/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(HttpClient {
            agent,
            auth,
            timeout,
        })
    }

    /// `headers` and the credential's headers for the request `method url` with `payload`.
    fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
    ) -> Result<Vec<(String, String)>, FetchError> {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        match &self.auth {
            None => {}
            Some(RequestAuth::Header(auth)) => all.push(("Authorization".into(), auth.0.clone())),
            Some(RequestAuth::SigV4(key)) => {
                let signed = key
                    .sign(method, url, headers, payload, SystemTime::now())
                    .map_err(|reason| FetchError {
                        url: url.to_owned(),
                        failure: FetchFailure::Transport(reason),
                    })?;
                all.extend(signed);
            }
        }
        Ok(all)
    }

    /// `GET url`, with `If-None-Match: etag` when given, taking at most `deadline`.
    fn get(
        &self,
        url: &str,
        etag: Option<&str>,
        deadline: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let conditional = etag.map(|etag| ("if-none-match", etag));
        let headers = self.headers("GET", url, conditional.as_slice(), Payload::Bytes(b""))?;
        let mut request = self
            .agent
            .get(url)
            .config()
            .timeout_global(Some(deadline))
            .build();
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        request.call().map_err(|e| FetchError {
            url: url.to_owned(),
            failure: FetchFailure::Transport(e.to_string()),
        })
    }

    /// How long a request moving `bytes` may take: two timeouts, and one more per
    /// [`BYTES_PER_TIMEOUT`].
    fn deadline(&self, bytes: u64) -> Duration {
        let extra = u32::try_from(bytes / BYTES_PER_TIMEOUT).unwrap_or(u32::MAX);
        self.timeout.saturating_mul(extra.saturating_add(2))
    }

    /// `PUT url` of `body` (whose SHA-256 is `sha256`) with `If-None-Match: *`, so that
    /// nothing already there is replaced; the response's status.
    fn put_if_none_match(&self, url: &str, body: &[u8], sha256: &str) -> Result<u16, FetchError> {
        let headers = self.headers(
            "PUT",
            url,
            &[("if-none-match", "*")],
            Payload::Sha256(sha256),
        )?;
        let mut request = self
            .agent
            .put(url)
            .config()
            .timeout_global(Some(self.deadline(body.len() as u64)))
            .build();
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let response = request.send(body).map_err(|e| FetchError {
            url: url.to_owned(),
            failure: FetchFailure::Transport(e.to_string()),
        })?;
        Ok(response.status().as_u16())
    }
}

/// An HTTP(S) origin.
#[derive(Debug)]
pub struct HttpOrigin {
    client: HttpClient,
    manifest_url: String,
    objects_url: String,
}

impl HttpOrigin {
    /// An origin whose manifest is at `manifest_url` (`http://` or `https://`, checked by
    /// the configuration), fetched through `client`.
    pub fn new(client: HttpClient, manifest_url: &str) -> HttpOrigin {
        let base = manifest_url
            .rfind('/')
            .map_or(manifest_url, |i| &manifest_url[..=i]);
        HttpOrigin {
            client,
            manifest_url: manifest_url.to_owned(),
            objects_url: format!("{base}{}/", super::publish::OBJECTS_DIR),
        }
    }
}

impl Origin for HttpOrigin {
    fn manifest(&self, etag: Option<&str>) -> Result<ManifestReply, FetchError> {
        let url = &self.manifest_url;
        let response = self.client.get(url, etag, self.client.timeout * 2)?;
        let status = response.status().as_u16();
        if status == 304 && etag.is_some() {
            return Ok(ManifestReply::NotModified);
        }
        if status != 200 {
            return Err(FetchError {
                url: url.clone(),
                failure: FetchFailure::Status(status),
            });
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| FetchError {
                url: url.clone(),
                failure: FetchFailure::Transport(e.to_string()),
            })?;
        if body.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(FetchError {
                url: url.clone(),
                failure: FetchFailure::TooLarge(MAX_MANIFEST_BYTES),
            });
        }
        Ok(ManifestReply::Manifest { body, etag })
    }

    fn object(&self, sha256: &str, size: u64, sink: &mut dyn Write) -> Result<(), FetchError> {
        let url = format!("{}{sha256}", self.objects_url);
        let response = self.client.get(&url, None, self.client.deadline(size))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(FetchError {
                url,
                failure: FetchFailure::Status(status),
            });
        }
        let mut reader = response.into_body().into_reader().take(size + 1);
        copy(&mut reader, sink).map_err(|(e, writing)| FetchError {
            url,
            failure: if writing {
                FetchFailure::Write(e)
            } else {
                FetchFailure::Transport(e.to_string())
            },
        })
    }
}

/// Where `push-uploads` sends uploads: `PUT <base><name>`, each component of the name
/// percent-encoded.
#[derive(Debug)]
pub struct HttpPush {
    client: HttpClient,
    base: String,
}

impl HttpPush {
    /// Uploads go below `base`, an `http://` or `https://` URL ending in `/` (checked by
    /// the configuration), through `client`.
    pub fn new(client: HttpClient, base: &str) -> HttpPush {
        HttpPush {
            client,
            base: base.to_owned(),
        }
    }

    /// The URL of the upload `name`.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}{}", self.base, uri_encode(name.as_bytes(), false))
    }
}

impl PushTarget for HttpPush {
    fn put_new(&self, name: &str, body: &[u8], sha256: &str) -> Result<PutReply, FetchError> {
        let url = self.url_of(name);
        match self.client.put_if_none_match(&url, body, sha256)? {
            200..=299 => Ok(PutReply::Stored),
            412 => Ok(PutReply::Exists),
            status => Err(FetchError {
                url,
                failure: FetchFailure::Status(status),
            }),
        }
    }

    fn get(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let url = self.url_of(name);
        let response = self.client.get(&url, None, self.client.deadline(limit))?;
        match response.status().as_u16() {
            200 => {}
            // Not ours to read (an S3 policy that lets this key only PUT).
            403 => return Ok(None),
            // Gone again, or the origin failing: the next round sends it again.
            status => {
                return Err(FetchError {
                    url,
                    failure: FetchFailure::Status(status),
                });
            }
        }
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| FetchError {
                url,
                failure: FetchFailure::Transport(e.to_string()),
            })?;
        Ok(Some(body))
    }
}

/// Copies `reader` into `sink`; an error says whether it was the write side's.
fn copy(reader: &mut dyn Read, sink: &mut dyn Write) -> Result<(), (io::Error, bool)> {
    let mut buf = vec![0; 64 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((e, false)),
        };
        sink.write_all(&buf[..n]).map_err(|e| (e, true))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_url_encodes_each_component_of_the_name() {
        let client = HttpClient::new(None, None, Duration::from_secs(1)).unwrap();
        let push = HttpPush::new(client, "http://h:8/up/");
        assert_eq!(push.url_of("a/b.txt"), "http://h:8/up/a/b.txt");
        assert_eq!(
            push.url_of("sw 1/c+f%~_.-"),
            "http://h:8/up/sw%201/c%2Bf%25~_.-"
        );
    }
}
