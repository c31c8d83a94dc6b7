//! The policy part of the configuration: the `[[client]]` tables, the top-level keys they
//! fall back on (`read`, `write`, `root`, `fallback`, `rewrite`, `max-blksize`,
//! `max-windowsize`, `refuse-options`) and `port-range`, read into the endpoint's
//! [`Policy`]. Values check themselves while deserialised (networks, expressions, the
//! block limit, option names, the port range), so their errors point at the value; the
//! checks across tables (a table an earlier one covers, a table widening `[upload]`)
//! run after, on spans.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::value::{NamePrefix, Ranged, Size, normalize_prefix};
use crate::endpoint::{
    BlockLimit, ClientTable, Network, Policy, PortRange, RefusedOptions, Rewrite, Rules,
    UploadLimits,
};
use crate::proto::{MAX_BLKSIZE, MAX_WINDOWSIZE, MIN_BLKSIZE, MIN_WINDOWSIZE};
use crate::store::UploadPolicy;

/// A network in CIDR form.
#[derive(Debug)]
pub(super) struct NetworkValue(Network);

impl<'de> Deserialize<'de> for NetworkValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(NetworkValue).map_err(de::Error::custom)
    }
}

/// `port-range = "FIRST-LAST"`, or `""` for any port the kernel picks.
#[derive(Debug)]
pub(super) struct PortRangeValue(pub(super) Option<PortRange>);

impl<'de> Deserialize<'de> for PortRangeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(PortRangeValue(None));
        }
        text.parse()
            .map(|range| PortRangeValue(Some(range)))
            .map_err(de::Error::custom)
    }
}

/// `max-blksize`: a number of bytes or `"mtu"`.
#[derive(Debug)]
pub(super) struct BlockLimitValue(pub(super) BlockLimit);

impl<'de> Deserialize<'de> for BlockLimitValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitVisitor;

        impl Visitor<'_> for LimitVisitor {
            type Value = BlockLimitValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "an integer from {MIN_BLKSIZE} to {MAX_BLKSIZE} or \"mtu\""
                )
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BlockLimitValue, E> {
                match u16::try_from(v) {
                    Ok(n) if (MIN_BLKSIZE..=MAX_BLKSIZE).contains(&n) => {
                        Ok(BlockLimitValue(BlockLimit::Fixed(n)))
                    }
                    _ => Err(E::custom(format!(
                        "must be an integer from {MIN_BLKSIZE} to {MAX_BLKSIZE} or \"mtu\", \
                         not {v}"
                    ))),
                }
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<BlockLimitValue, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<BlockLimitValue, E> {
                if v == "mtu" {
                    Ok(BlockLimitValue(BlockLimit::Mtu))
                } else {
                    Err(E::custom(format!(
                        "must be an integer from {MIN_BLKSIZE} to {MAX_BLKSIZE} or \"mtu\", \
                         not {v:?}"
                    )))
                }
            }
        }

        deserializer.deserialize_any(LimitVisitor)
    }
}

/// One `rewrite` rule: `["expression", "replacement"]`, the expression compiled.
#[derive(Debug)]
pub(super) struct RewriteValue(Rewrite);

impl<'de> Deserialize<'de> for RewriteValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RuleVisitor;

        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = RewriteValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a pair [\"expression\", \"replacement\"]")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RewriteValue, A::Error> {
                let pair = || {
                    de::Error::custom(
                        "a rewrite rule is a pair [\"expression\", \"replacement\"], \
                         such as [\"^/tftpboot/\", \"\"]",
                    )
                };
                let pattern: String = seq.next_element()?.ok_or_else(pair)?;
                let replacement: String = seq.next_element()?.ok_or_else(pair)?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(pair());
                }
                Rewrite::new(&pattern, &replacement)
                    .map(RewriteValue)
                    .map_err(|e| de::Error::custom(format!("bad expression {pattern:?}: {e}")))
            }
        }

        deserializer.deserialize_seq(RuleVisitor)
    }
}

/// An option name in `refuse-options`.
#[derive(Debug)]
pub(super) struct OptionName(String);

impl<'de> Deserialize<'de> for OptionName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if RefusedOptions::default().refuse(&text) {
            Ok(OptionName(text))
        } else {
            Err(de::Error::custom(format!(
                "{text:?} is not an option tftpd grants; expected one of {}",
                RefusedOptions::NAMES.join(", ")
            )))
        }
    }
}

/// The keys a `[[client]]` table and the top level share.
#[derive(Debug, Default)]
pub(super) struct RawRules {
    pub(super) read: Option<bool>,
    pub(super) write: Option<bool>,
    pub(super) root: Option<NamePrefix>,
    pub(super) fallback: Option<bool>,
    pub(super) rewrite: Option<Vec<RewriteValue>>,
    pub(super) max_blksize: Option<BlockLimitValue>,
    pub(super) max_windowsize:
        Option<Ranged<u16, { MIN_WINDOWSIZE as i64 }, { MAX_WINDOWSIZE as i64 }>>,
    pub(super) refuse_options: Option<Vec<OptionName>>,
}

impl RawRules {
    /// These keys over `base`: what is set replaces, what is left out stays.
    fn over(self, base: &Rules) -> Rules {
        let refuse_options = match self.refuse_options {
            None => base.refuse_options,
            Some(names) => {
                let mut refused = RefusedOptions::default();
                for name in names {
                    refused.refuse(&name.0);
                }
                refused
            }
        };
        Rules {
            read: self.read.unwrap_or(base.read),
            write: self.write.unwrap_or(base.write),
            // An empty root is the top of the store, even under a top level with a view.
            root: match self.root {
                Some(prefix) => (!prefix.0.is_empty()).then_some(prefix.0),
                None => base.root.clone(),
            },
            fallback: self.fallback.unwrap_or(base.fallback),
            rewrite: self.rewrite.map_or_else(
                || base.rewrite.clone(),
                |rules| rules.into_iter().map(|r| r.0).collect(),
            ),
            max_blksize: self.max_blksize.map_or(base.max_blksize, |v| v.0),
            max_windowsize: self.max_windowsize.map_or(base.max_windowsize, |v| v.0),
            refuse_options,
            upload: base.upload.clone(),
        }
    }
}

/// One `[[client]]` table as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawClient {
    name: Option<Spanned<String>>,
    networks: Spanned<Vec<NetworkValue>>,
    read: Option<bool>,
    write: Option<bool>,
    root: Option<NamePrefix>,
    fallback: Option<bool>,
    rewrite: Option<Vec<RewriteValue>>,
    max_blksize: Option<BlockLimitValue>,
    max_windowsize: Option<Ranged<u16, { MIN_WINDOWSIZE as i64 }, { MAX_WINDOWSIZE as i64 }>>,
    refuse_options: Option<Vec<OptionName>>,
    upload: Option<RawClientUpload>,
}

/// A table's `[client.upload]`: how it narrows `[upload]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawClientUpload {
    allow: Option<Vec<Spanned<String>>>,
    max_file_size: Option<Spanned<Size>>,
    max_total_size: Option<Spanned<Size>>,
}

/// Builds the policy: the top level from `top`, then each table over it, checked against
/// the tables before it and against `[upload]`.
pub(super) fn build(
    source: &Source<'_>,
    top: RawRules,
    clients: Vec<RawClient>,
    upload: &UploadPolicy,
) -> Result<Policy, ConfigError> {
    let top = top.over(&Rules::default());
    let mut tables: Vec<ClientTable> = Vec::with_capacity(clients.len());
    for (i, raw) in clients.into_iter().enumerate() {
        let key = format!("client[{i}]");
        let name = match raw.name {
            None => None,
            Some(name) => {
                let span = name.span();
                let name = name.into_inner();
                let bad = if name.is_empty() || name.chars().any(char::is_control) {
                    Some("a table's name must be a non-empty line of text")
                } else if name.bytes().all(|b| b.is_ascii_digit()) {
                    Some("a table's name must not be a number (tables are known by index too)")
                } else if name == "top" {
                    Some("\"top\" names the top-level settings in the logs; choose another")
                } else if tables.iter().any(|t| t.name.as_ref() == Some(&name)) {
                    Some("another table above has this name")
                } else {
                    None
                };
                if let Some(reason) = bad {
                    return Err(source.invalid(span, format!("{key}.name"), reason));
                }
                Some(name)
            }
        };
        let networks_span = raw.networks.span();
        let networks: Vec<Network> = raw.networks.into_inner().into_iter().map(|n| n.0).collect();
        if networks.is_empty() {
            return Err(source.invalid(
                networks_span,
                format!("{key}.networks"),
                "must list at least one network, e.g. [\"10.1.0.0/16\"]; a table with none \
                 never matches",
            ));
        }
        // Certain only when an earlier table holds every network of this one: then it
        // can never decide for anyone.
        if let Some(earlier) = covering_table(&tables, &networks) {
            let shown = match &tables[earlier].name {
                Some(name) => format!("client[{earlier}] ({name:?})"),
                None => format!("client[{earlier}]"),
            };
            return Err(source.invalid(
                networks_span,
                format!("{key}.networks"),
                format!(
                    "this table can never match: {shown} above covers every network in it, \
                     and the first table that matches decides (move this one above it)"
                ),
            ));
        }
        let own = RawRules {
            read: raw.read,
            write: raw.write,
            root: raw.root,
            fallback: raw.fallback,
            rewrite: raw.rewrite,
            max_blksize: raw.max_blksize,
            max_windowsize: raw.max_windowsize,
            refuse_options: raw.refuse_options,
        };
        let mut rules = own.over(&top);
        if let Some(narrow) = raw.upload {
            rules.upload = narrow_upload(source, &key, narrow, upload)?;
        }
        tables.push(ClientTable {
            name,
            networks,
            rules,
        });
    }
    Ok(Policy { tables, top })
}

/// The first table whose networks together hold each of `networks`.
fn covering_table(tables: &[ClientTable], networks: &[Network]) -> Option<usize> {
    let covered = |n: &Network, upto: usize| {
        tables[..upto]
            .iter()
            .any(|t| t.networks.iter().any(|m| m.covers(n)))
    };
    if !networks.iter().all(|n| covered(n, tables.len())) {
        return None;
    }
    // Name the last table needed to cover them all: the earliest prefix of the tables
    // that does.
    (1..=tables.len())
        .find(|&upto| networks.iter().all(|n| covered(n, upto)))
        .map(|upto| upto - 1)
}

fn narrow_upload(
    source: &Source<'_>,
    key: &str,
    raw: RawClientUpload,
    upload: &UploadPolicy,
) -> Result<UploadLimits, ConfigError> {
    let mut allow = Vec::new();
    for (i, prefix) in raw.allow.unwrap_or_default().into_iter().enumerate() {
        let span = prefix.span();
        let entry = format!("{key}.upload.allow[{i}]");
        let prefix = normalize_prefix(prefix.get_ref())
            .map_err(|reason| source.invalid(span.clone(), entry.clone(), reason))?;
        if prefix.is_empty() {
            return Err(source.invalid(
                span,
                entry,
                "an empty prefix would allow every name; leave `allow` out instead",
            ));
        }
        if !allow.contains(&prefix) {
            allow.push(prefix);
        }
    }
    let narrow = |size: Option<Spanned<Size>>, name: &str, limit: u64| match size {
        None => Ok(None),
        Some(size) if size.get_ref().0 > limit => Err(source.invalid(
            size.span(),
            format!("{key}.upload.{name}"),
            format!(
                "a table can only narrow [upload]: {} bytes is more than upload.{name} \
                 ({limit} bytes)",
                size.get_ref().0
            ),
        )),
        Some(size) => Ok(Some(size.into_inner().0)),
    };
    let max_file_size = narrow(raw.max_file_size, "max-file-size", upload.max_file_size)?;
    let max_total_size = narrow(raw.max_total_size, "max-total-size", upload.max_total_size)?;
    Ok(UploadLimits {
        allow,
        max_file_size,
        max_total_size,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::endpoint::{BlockLimit, Network, PortRange};

    #[test]
    fn client_tables_are_read_in_order_and_take_the_top_level_for_keys_left_out() {
        let c = parse(
            r#"
            max-blksize = 1428
            max-windowsize = 16
            rewrite = [["^/tftpboot/", ""]]
            refuse-options = ["timeout"]
            port-range = "30000-30999"

            [[client]]
            name = "lab"
            networks = ["10.2.0.0/16", "fd00:2::/32"]
            write = true
            root = "lab/{ip}"
            fallback = false
            max-blksize = "mtu"
            [client.upload]
            allow = ["backups"]
            max-file-size = "1MiB"
            max-total-size = "8MiB"

            [[client]]
            networks = ["0.0.0.0/0", "::/0"]
            read = false
            rewrite = []
            max-windowsize = 1
            refuse-options = []

            [upload]
            enabled = true
            "#,
        )
        .expect("valid");
        let policy = &c.endpoint.policy;
        assert_eq!(
            c.endpoint.port_range,
            Some(PortRange {
                first: 30000,
                last: 30999
            })
        );
        assert_eq!(policy.top.max_blksize, BlockLimit::Fixed(1428));
        assert_eq!(c.endpoint.transfer.max_blksize, 1428);
        assert_eq!(
            (policy.top.max_windowsize, policy.top.rewrite.len()),
            (16, 1)
        );
        assert!(policy.top.refuse_options.timeout && policy.top.read && policy.top.write);
        let lab = &policy.tables[0];
        assert_eq!(lab.name.as_deref(), Some("lab"));
        assert_eq!(
            lab.networks,
            vec![
                "10.2.0.0/16".parse::<Network>().unwrap(),
                "fd00:2::/32".parse().unwrap()
            ]
        );
        let r = &lab.rules;
        assert_eq!(r.root.as_deref(), Some("lab/{ip}/"));
        assert!(!r.fallback && r.read && r.write);
        assert_eq!(r.max_blksize, BlockLimit::Mtu);
        // Left out: the top level's.
        assert_eq!((r.max_windowsize, r.rewrite.len()), (16, 1));
        assert!(r.refuse_options.timeout);
        assert_eq!(r.upload.allow, vec!["backups/".to_owned()]);
        assert_eq!(r.upload.max_file_size, Some(1 << 20));
        assert_eq!(r.upload.max_total_size, Some(8 << 20));
        let all = &policy.tables[1];
        assert_eq!(all.name, None);
        assert!(!all.rules.read && all.rules.rewrite.is_empty());
        assert!(!all.rules.refuse_options.timeout);
        assert_eq!(
            (all.rules.max_windowsize, all.rules.max_blksize),
            (1, BlockLimit::Fixed(1428))
        );
        assert!(all.rules.upload.allow.is_empty());
        assert_eq!(all.rules.upload.max_total_size, None);
    }

    #[test]
    fn the_default_block_limit_is_the_mtu() {
        let c = parse("").unwrap();
        assert_eq!(c.endpoint.policy.top.max_blksize, BlockLimit::Mtu);
        assert!(c.endpoint.policy.tables.is_empty());
        assert_eq!(c.endpoint.port_range, None);
        assert_eq!(parse("max-blksize = \"mtu\"").unwrap(), parse("").unwrap());
        assert_eq!(parse("port-range = \"\"").unwrap(), parse("").unwrap());
        assert_eq!(parse("root = \"\"").unwrap(), parse("").unwrap());
        // An empty root in a table is the top of the store, whatever the top level's.
        let c = parse("root = \"a\"\n[[client]]\nnetworks = [\"::/0\"]\nroot = \"/\"\n").unwrap();
        assert_eq!(c.endpoint.policy.top.root.as_deref(), Some("a/"));
        assert_eq!(c.endpoint.policy.tables[0].rules.root, None);
    }

    #[test]
    fn bad_networks_expressions_and_unreachable_tables_name_file_line_and_key() {
        for (text, key, line, says) in [
            (
                "[[client]]\nnetworks = [\"10.0.0.0/8\", \"10.1.2.3/16\"]\n",
                "client[0].networks",
                2,
                "did you mean \"10.1.0.0/16\"",
            ),
            (
                "[[client]]\nnetworks = [\"10.0.0.0/33\"]\n",
                "client[0].networks",
                2,
                "prefix length",
            ),
            (
                "[[client]]\nnetworks = [\"lab\"]\n",
                "client[0].networks",
                2,
                "not a network",
            ),
            (
                "[[client]]\nnetworks = []\n",
                "client[0].networks",
                2,
                "at least one",
            ),
            (
                "[[client]]\nnetworks = [\"::/0\"]\nrewrite = [[\"(unclosed\", \"\"]]\n",
                "client[0].rewrite[0]",
                3,
                "bad expression",
            ),
            ("rewrite = [[\"^a\"]]\n", "rewrite[0]", 1, "a pair"),
            (
                "[[client]]\nnetworks = [\"0.0.0.0/0\"]\n\n[[client]]\nname = \"lab\"\nnetworks = [\"10.2.0.0/16\"]\n",
                "client[1].networks",
                6,
                "can never match: client[0] above",
            ),
            (
                "[[client]]\nnetworks = [\"10.0.0.0/8\"]\n[[client]]\nnetworks = [\"fd00::/8\"]\n[[client]]\nnetworks = [\"10.1.0.0/16\", \"fd00:1::/32\"]\n",
                "client[2].networks",
                6,
                "client[1] above",
            ),
            ("max-blksize = 7\n", "max-blksize", 1, "or \"mtu\""),
            ("max-blksize = \"MTU\"\n", "max-blksize", 1, "or \"mtu\""),
            (
                "refuse-options = [\"multicast\"]\n",
                "refuse-options",
                1,
                "windowsize",
            ),
            (
                "port-range = \"31000-30000\"\n",
                "port-range",
                1,
                "not a port range",
            ),
            (
                "single-port = true\nport-range = \"30000-30010\"\n",
                "port-range",
                2,
                "single-port",
            ),
            (
                "[[client]]\nnetworks = [\"::/0\"]\n[client.upload]\nmax-file-size = \"1GiB\"\n",
                "client[0].upload.max-file-size",
                4,
                "only narrow",
            ),
            (
                "[upload]\nmax-total-size = \"1MiB\"\nmax-file-size = 1000\n[[client]]\nnetworks = [\"::/0\"]\n[client.upload]\nmax-total-size = \"2MiB\"\n",
                "client[0].upload.max-total-size",
                7,
                "more than upload.max-total-size (1048576 bytes)",
            ),
            (
                "[[client]]\nname = \"a\"\nnetworks = [\"10.0.0.0/8\"]\n[[client]]\nname = \"a\"\nnetworks = [\"::/0\"]\n",
                "client[1].name",
                5,
                "another table",
            ),
            (
                "[[client]]\nnetworks = [\"::/0\"]\nwrite = 1\n",
                "client[0].write",
                3,
                "",
            ),
            (
                "[[client]]\nnetworks = [\"::/0\"]\nlisten = []\n",
                "client[0].listen",
                3,
                "unknown field",
            ),
        ] {
            let (e, shown) = error(text);
            assert_eq!(e.key(), Some(key), "{text}: {shown}");
            assert_eq!(e.position().map(|p| p.line), Some(line), "{text}: {shown}");
            assert!(shown.contains(says), "{text}: {shown}");
            assert!(shown.starts_with("/etc/tftpd.toml:"), "{shown}");
        }
    }

    #[test]
    fn tables_that_an_earlier_one_covers_only_in_part_are_accepted() {
        parse(
            "[[client]]\nnetworks = [\"10.1.0.0/16\"]\n[[client]]\nnetworks = [\"10.0.0.0/8\"]\n\
             [[client]]\nnetworks = [\"10.1.0.0/16\", \"192.0.2.0/24\"]\n",
        )
        .expect("the third table still matches 192.0.2.0/24");
    }
}
