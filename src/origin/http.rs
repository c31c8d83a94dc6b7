//! The real [`Origin`]: a small blocking HTTP(S) client (`ureq`, with rustls) fetching
//! `manifest.json` at the configured URL and `objects/<sha256>` beside it.
//!
//! Every request is bounded in time: connecting and each read wait at most the
//! configured timeout, and a whole request at most that timeout plus one more for each
//! 16 MiB the manifest says the object has. Bodies are bounded in size: the manifest by
//! [`MAX_MANIFEST_BYTES`], an object by its size in the manifest (the sink refuses more).
//! Redirects are not followed, so credentials never leave the configured host.

use std::io::{self, Read, Write};
use std::time::Duration;

use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, parse_pem};

use super::fetch::{FetchError, FetchFailure, ManifestReply, Origin};
use super::manifest::MAX_MANIFEST_BYTES;

/// An `Authorization` header's value, e.g. `Bearer TOKEN` or `Basic BASE64`.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization(pub String);

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a credential.
        f.write_str("Authorization(..)")
    }
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

/// An HTTP(S) origin.
#[derive(Debug)]
pub struct HttpOrigin {
    agent: Agent,
    manifest_url: String,
    objects_url: String,
    authorization: Option<Authorization>,
    timeout: Duration,
}

impl HttpOrigin {
    /// An origin whose manifest is at `manifest_url` (`http://` or `https://`, checked by
    /// the configuration), trusting the certificates in the PEM `ca` when given (else
    /// the system's CA bundle, [`SYSTEM_CA_BUNDLES`]), sending `authorization` with every request.
    ///
    /// # Errors
    ///
    /// A reason when `ca` holds no certificate or cannot be parsed.
    pub fn new(
        manifest_url: &str,
        ca: Option<&[u8]>,
        authorization: Option<Authorization>,
        timeout: Duration,
    ) -> Result<HttpOrigin, String> {
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
        let base = manifest_url
            .rfind('/')
            .map_or(manifest_url, |i| &manifest_url[..=i]);
        Ok(HttpOrigin {
            agent,
            manifest_url: manifest_url.to_owned(),
            objects_url: format!("{base}{}/", super::publish::OBJECTS_DIR),
            authorization,
            timeout,
        })
    }

    fn get(
        &self,
        url: &str,
        etag: Option<&str>,
        deadline: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let mut request = self
            .agent
            .get(url)
            .config()
            .timeout_global(Some(deadline))
            .build();
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", &auth.0);
        }
        request.call().map_err(|e| FetchError {
            url: url.to_owned(),
            failure: FetchFailure::Transport(e.to_string()),
        })
    }
}

impl Origin for HttpOrigin {
    fn manifest(&self, etag: Option<&str>) -> Result<ManifestReply, FetchError> {
        let url = &self.manifest_url;
        let response = self.get(url, etag, self.timeout * 2)?;
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
        let extra = u32::try_from(size / BYTES_PER_TIMEOUT).unwrap_or(u32::MAX);
        let deadline = self.timeout.saturating_mul(extra.saturating_add(2));
        let response = self.get(&url, None, deadline)?;
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
