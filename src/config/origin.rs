//! The `[origin]` table (read by `tftpd sync`, accepted and ignored by the daemon): its raw
//! form and the checks that turn it into [`OriginSettings`], each error pointing at its key.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::value::DurationValue;
use crate::origin::settings::{
    AuthScheme, CredentialSource, DEFAULT_CACHE, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, OriginAuth,
    OriginSettings,
};
use crate::origin::sigv4::{DEFAULT_REGION, DEFAULT_SERVICE};

/// The shortest `origin.interval` and `origin.timeout`.
const MIN_DURATION: Duration = Duration::from_secs(1);
/// The longest `origin.interval` and `origin.timeout`: a day.
const MAX_DURATION: Duration = Duration::from_secs(86_400);

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawOrigin {
    url: Spanned<String>,
    interval: Option<Spanned<DurationValue>>,
    cache: Option<Spanned<String>>,
    timeout: Option<Spanned<DurationValue>>,
    ca_file: Option<Spanned<String>>,
    auth: Option<Spanned<String>>,
    credential: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    push_uploads: Option<Spanned<String>>,
}

impl RawOrigin {
    /// Checks the table; relative paths are resolved against `base`, the configuration's
    /// directory. `spool` says whether `[upload] spool` is set (`push-uploads` needs it).
    pub(super) fn validate(
        mut self,
        source: &Source<'_>,
        base: &Path,
        spool: bool,
    ) -> Result<OriginSettings, ConfigError> {
        let url = check_url(self.url.get_ref())
            .map_err(|reason| source.invalid(self.url.span(), "origin.url", reason))?;
        let duration = |value: Option<Spanned<DurationValue>>, key, default| match value {
            None => Ok(default),
            Some(v) => {
                let d = v.get_ref().0;
                if (MIN_DURATION..=MAX_DURATION).contains(&d) {
                    Ok(d)
                } else {
                    Err(source.invalid(v.span(), key, "must be from 1s to 24h"))
                }
            }
        };
        let interval = duration(self.interval, "origin.interval", DEFAULT_INTERVAL)?;
        let timeout = duration(self.timeout, "origin.timeout", DEFAULT_TIMEOUT)?;
        let path = |value: Spanned<String>, key| {
            let text = value.get_ref();
            if text.is_empty() || text.contains('\0') {
                Err(source.invalid(value.span(), key, "must be a path, not empty, without NUL"))
            } else {
                Ok(base.join(text))
            }
        };
        let cache = match self.cache {
            None => Path::new(DEFAULT_CACHE).to_path_buf(),
            Some(v) => path(v, "origin.cache")?,
        };
        let ca_file = self
            .ca_file
            .map(|v| path(v, "origin.ca-file"))
            .transpose()?;
        let auth = match (self.auth.take(), self.credential.take()) {
            (None, None) => None,
            (Some(auth), None) => {
                return Err(source.invalid(
                    auth.span(),
                    "origin.auth",
                    "needs `credential`: a file, or the name of a systemd credential",
                ));
            }
            (None, Some(credential)) => {
                return Err(source.invalid(
                    credential.span(),
                    "origin.credential",
                    "needs `auth = \"bearer\"`, `\"basic\"` or `\"sigv4\"`",
                ));
            }
            (Some(auth), Some(credential)) => {
                let scheme = match auth.get_ref().as_str() {
                    "bearer" => AuthScheme::Bearer,
                    "basic" => AuthScheme::Basic,
                    "sigv4" => AuthScheme::SigV4 {
                        region: self.region.take().map_or(Ok(DEFAULT_REGION.into()), |v| {
                            scope_name(source, v, "origin.region")
                        })?,
                        service: self
                            .service
                            .take()
                            .map_or(Ok(DEFAULT_SERVICE.into()), |v| {
                                scope_name(source, v, "origin.service")
                            })?,
                    },
                    other => {
                        return Err(source.invalid(
                            auth.span(),
                            "origin.auth",
                            format!("{other:?} is not \"bearer\", \"basic\" or \"sigv4\""),
                        ));
                    }
                };
                let name = credential.get_ref();
                let credential = if !name.is_empty() && !name.contains(['/', '\0']) {
                    CredentialSource::Systemd(name.clone())
                } else {
                    CredentialSource::File(path(credential, "origin.credential")?)
                };
                Some(OriginAuth { scheme, credential })
            }
        };
        for (value, key) in [
            (self.region, "origin.region"),
            (self.service, "origin.service"),
        ] {
            if let Some(value) = value {
                return Err(source.invalid(
                    value.span(),
                    key,
                    "is only for `auth = \"sigv4\"` (the signature's scope)",
                ));
            }
        }
        let push_uploads = match self.push_uploads {
            None => None,
            Some(v) if !spool => {
                return Err(source.invalid(
                    v.span(),
                    "origin.push-uploads",
                    "needs `[upload] spool`: the uploads pushed are the ones made durable there",
                ));
            }
            Some(v) => Some(
                check_push_url(v.get_ref())
                    .map_err(|reason| source.invalid(v.span(), "origin.push-uploads", reason))?,
            ),
        };
        Ok(OriginSettings {
            url,
            interval,
            cache,
            timeout,
            ca_file,
            auth,
            push_uploads,
        })
    }
}

/// A region or service name of a SigV4 scope: lowercase letters, digits and `-`.
fn scope_name(
    source: &Source<'_>,
    value: Spanned<String>,
    key: &str,
) -> Result<String, ConfigError> {
    let text = value.get_ref();
    if text.is_empty()
        || text.len() > 64
        || !text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(source.invalid(
            value.span(),
            key,
            format!("{text:?} must be lowercase letters, digits and `-`, e.g. \"eu-west-1\""),
        ));
    }
    Ok(text.clone())
}

/// `push-uploads`: an `http://` or `https://` URL with a host, ending in `/` (each upload
/// goes to that URL followed by its name); no query, fragment or user information.
fn check_push_url(url: &str) -> Result<String, String> {
    let (host, _) = split_http_url(url)?;
    if !url.ends_with('/') {
        return Err(format!(
            "{url:?} must end in `/`: each upload goes to it followed by its name, e.g. \
             \"https://{host}/uploads/\""
        ));
    }
    Ok(url.to_owned())
}

/// An `http://` or `https://` URL with a host and a path to the manifest; no query,
/// fragment or user information (credentials go in `credential`).
fn check_url(url: &str) -> Result<String, String> {
    let (host, path) = split_http_url(url)?;
    if path.is_empty() || path.ends_with('/') {
        return Err(format!(
            "{url:?} must name the manifest, e.g. \"https://{host}/tftp/manifest.json\""
        ));
    }
    Ok(url.to_owned())
}

/// The host and the path (after the host's `/`) of an `http://` or `https://` URL that
/// has a host and no user information, query, fragment, spaces or control characters.
fn split_http_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains('@') {
        return Err(format!(
            "{url:?} needs a host (and no user:password@: use `auth` and `credential`)"
        ));
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{url:?} must not have a query, a fragment, spaces or control characters"
        ));
    }
    Ok((host, path))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn the_origin_table_is_read_with_its_defaults() {
        let c = parse("[origin]\nurl = \"https://boot.example/pxe/manifest.json\"\n").unwrap();
        assert_eq!(
            c.origin,
            Some(OriginSettings {
                url: "https://boot.example/pxe/manifest.json".into(),
                interval: Duration::from_secs(60),
                cache: PathBuf::from("/var/cache/tftpd"),
                timeout: Duration::from_secs(30),
                ca_file: None,
                auth: None,
                push_uploads: None,
            })
        );
        let c = parse(
            "[origin]\nurl = \"http://127.0.0.1:8080/m.json\"\ninterval = \"5m\"\n\
             cache = \"cache\"\ntimeout = \"2s\"\nca-file = \"/etc/ssl/ca.pem\"\n\
             auth = \"bearer\"\ncredential = \"origin-token\"\n",
        )
        .unwrap();
        let o = c.origin.unwrap();
        assert_eq!(
            (o.interval, o.timeout),
            (Duration::from_secs(300), Duration::from_secs(2))
        );
        assert_eq!(o.cache, PathBuf::from("/etc/cache"));
        assert_eq!(o.ca_file, Some(PathBuf::from("/etc/ssl/ca.pem")));
        assert_eq!(
            o.auth,
            Some(OriginAuth {
                scheme: AuthScheme::Bearer,
                credential: CredentialSource::Systemd("origin-token".into()),
            })
        );
        let c = parse(
            "[origin]\nurl = \"http://h/m\"\nauth = \"basic\"\ncredential = \"/etc/tftpd/cred\"\n",
        )
        .unwrap();
        assert_eq!(
            c.origin.unwrap().auth.unwrap().credential,
            CredentialSource::File(PathBuf::from("/etc/tftpd/cred"))
        );
    }

    #[test]
    fn sigv4_takes_a_region_and_a_service_and_push_uploads_a_url() {
        let c = parse(
            "[origin]\nurl = \"http://127.0.0.1:9000/bucket/pxe/manifest.json\"\n\
             auth = \"sigv4\"\ncredential = \"s3-key\"\n",
        )
        .unwrap();
        assert_eq!(
            c.origin.unwrap().auth,
            Some(OriginAuth {
                scheme: AuthScheme::SigV4 {
                    region: "us-east-1".into(),
                    service: "s3".into()
                },
                credential: CredentialSource::Systemd("s3-key".into()),
            })
        );
        let c = parse(
            "[origin]\nurl = \"https://b.s3.eu-west-3.amazonaws.com/m.json\"\n\
             auth = \"sigv4\"\ncredential = \"key\"\nregion = \"eu-west-3\"\n\
             service = \"s3\"\npush-uploads = \"https://h/uploads/\"\n\
             [upload]\nspool = \"/var/lib/tftpd/uploads\"\n",
        )
        .unwrap();
        let o = c.origin.unwrap();
        assert_eq!(
            o.auth.unwrap().scheme,
            AuthScheme::SigV4 {
                region: "eu-west-3".into(),
                service: "s3".into()
            }
        );
        assert_eq!(o.push_uploads.as_deref(), Some("https://h/uploads/"));
    }

    #[test]
    fn bad_origin_values_point_at_their_key_and_line() {
        for (text, key, line) in [
            ("[origin]\nurl = \"ftp://h/m\"", "origin.url", 2),
            ("[origin]\nurl = \"https://h/\"", "origin.url", 2),
            ("[origin]\nurl = \"https://u:p@h/m\"", "origin.url", 2),
            ("[origin]\nurl = \"https://h/m?x=1\"", "origin.url", 2),
            (
                "[origin]\nurl = \"http://h/m\"\ninterval = \"0s\"",
                "origin.interval",
                3,
            ),
            (
                "[origin]\nurl = \"http://h/m\"\ntimeout = \"2d\"",
                "origin.timeout",
                3,
            ),
            (
                "[origin]\nurl = \"http://h/m\"\ncache = \"\"",
                "origin.cache",
                3,
            ),
            (
                "[origin]\nurl = \"http://h/m\"\nauth = \"bearer\"",
                "origin.auth",
                3,
            ),
            (
                "[origin]\nurl = \"http://h/m\"\ncredential = \"x\"",
                "origin.credential",
                3,
            ),
            (
                "[origin]\nurl = \"http://h/m\"\nauth = \"sigv5\"\ncredential = \"x\"",
                "origin.auth",
                3,
            ),
            ("[origin]\nurl = \"http://h/m\"\npush = 1", "origin.push", 3),
            (
                "[origin]\nurl = \"http://h/m\"\nauth = \"sigv4\"\ncredential = \"x\"\nregion = \"EU\"",
                "origin.region",
                5,
            ),
            (
                "[origin]\nurl = \"http://h/m\"\nauth = \"sigv4\"\ncredential = \"x\"\nservice = \"\"",
                "origin.service",
                5,
            ),
            (
                "[origin]\nurl = \"http://h/m\"\nauth = \"basic\"\ncredential = \"x\"\nregion = \"eu-west-1\"",
                "origin.region",
                5,
            ),
            (
                "[origin]\nurl = \"http://h/m\"\npush-uploads = \"http://h/up/\"",
                "origin.push-uploads",
                3,
            ),
            (
                "[origin]\nurl = \"http://h/m\"\npush-uploads = \"http://h/up\"\n[upload]\nspool = \"/s\"",
                "origin.push-uploads",
                3,
            ),
            (
                "[origin]\nurl = \"http://h/m\"\npush-uploads = \"ftp://h/up/\"\n[upload]\nspool = \"/s\"",
                "origin.push-uploads",
                3,
            ),
        ] {
            let (e, shown) = error(text);
            assert_eq!(e.key(), Some(key), "{text}: {shown}");
            assert_eq!(e.position().map(|p| p.line), Some(line), "{text}: {shown}");
        }
        let (_, shown) = error("[origin]\ninterval = \"60s\"\n");
        assert!(shown.contains("missing field `url`"), "{shown}");
    }
}
