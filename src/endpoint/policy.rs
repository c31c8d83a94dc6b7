//! Per-client policy: the `[[client]]` tables and the top-level rules they fall back on,
//! decided per request. A client's address (made canonical: an IPv4 client of a
//! dual-stack socket is an IPv4 client) is matched against each table's networks in
//! order and the first table that matches decides; a client no table matches gets the
//! top-level [`Rules`]. The configuration resolves every table against the top level,
//! so a table's [`Rules`] are complete: a key it left out holds the top-level value.
//!
//! What the rules decide, in the order a request meets them: whether the client may read
//! or write at all; how its name is rewritten (regular expressions on the name as sent,
//! before normalisation, `{ip}` in the replacement); under which view (a name prefix in
//! the store, `{ip}` in it) the name is looked up, with or without a fallback to the top;
//! which options are left out of the OACK; the largest block and window granted, where
//! the block may be bound to the link's MTU (a number the driver learns and hands in);
//! and how an upload is narrowed (name prefixes, a smaller file size, a budget of its own
//! within `max-total-size`). Nothing here
//! reads a socket or a clock.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use regex::Regex;

use crate::name::{FileName, normalize_name};
use crate::proto::{MAX_BLKSIZE, MIN_BLKSIZE, TransferOptions};
use crate::store::UploadBudget;

/// An IPv4 or IPv6 network in CIDR form (`10.1.0.0/16`, `fd00::/8`; a bare address is a
/// network of one). A network written as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) is
/// kept as the IPv4 network it means, since clients are matched by canonical address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

/// Why a network's text is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkError {
    /// The part before `/` is no IP address.
    Address(String),
    /// The prefix length is no number or too long for the family.
    Prefix(String),
    /// Bits are set past the prefix: the network is probably mistyped.
    HostBits {
        /// What was written.
        written: String,
        /// The network it would be with those bits cleared.
        network: String,
    },
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkError::Address(text) => write!(
                f,
                "{text:?} is not a network: expected an address and a prefix length, \
                 such as \"10.1.0.0/16\" or \"fd00::/8\""
            ),
            NetworkError::Prefix(text) => write!(
                f,
                "{text:?}: the prefix length must be 0 to 32 for IPv4, 0 to 128 for IPv6"
            ),
            NetworkError::HostBits { written, network } => write!(
                f,
                "{written:?} has bits set past its prefix length; did you mean {network:?}?"
            ),
        }
    }
}

impl std::error::Error for NetworkError {}

impl Network {
    /// The network's address bits as a 128-bit number and its family's width.
    fn bits(address: IpAddr) -> (u128, u8) {
        match address {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    fn mask(prefix: u8, width: u8) -> u128 {
        let all = if width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        let host = u32::from(width - prefix);
        all & all.checked_shl(host).unwrap_or(0)
    }

    /// True when `client` (canonical) is in this network; an IPv4 client never matches
    /// an IPv6 network, nor the reverse.
    pub fn contains(&self, client: IpAddr) -> bool {
        let client = super::canonical_ip(client);
        if client.is_ipv4() != self.address.is_ipv4() {
            return false;
        }
        let (net, width) = Network::bits(self.address);
        let (ip, _) = Network::bits(client);
        ip & Network::mask(self.prefix, width) == net
    }

    /// True when every address of `other` is in this network.
    pub fn covers(&self, other: &Network) -> bool {
        other.prefix >= self.prefix && self.contains(other.address)
    }

    /// True for `0.0.0.0/0` and `::/0`.
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Network, NetworkError> {
        let (address_text, prefix_text) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let mut address: IpAddr = address_text
            .parse()
            .map_err(|_| NetworkError::Address(text.to_owned()))?;
        let (_, mut width) = Network::bits(address);
        let mut prefix = match prefix_text {
            None => width,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits
                    .parse::<u8>()
                    .ok()
                    .filter(|&p| p <= width)
                    .ok_or_else(|| NetworkError::Prefix(text.to_owned()))?
            }
            Some(_) => return Err(NetworkError::Prefix(text.to_owned())),
        };
        if let IpAddr::V6(v6) = address
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            address = IpAddr::V4(v4);
            prefix -= 96;
            width = 32;
        }
        let (bits, _) = Network::bits(address);
        let mask = Network::mask(prefix, width);
        if bits & !mask != 0 {
            let network = Network {
                address: from_bits(bits & mask, width),
                prefix,
            };
            return Err(NetworkError::HostBits {
                written: text.to_owned(),
                network: network.to_string(),
            });
        }
        Ok(Network { address, prefix })
    }
}

fn from_bits(bits: u128, width: u8) -> IpAddr {
    if width == 32 {
        IpAddr::V4((bits as u32).into())
    } else {
        IpAddr::V6(bits.into())
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// The largest block granted: a number, or what fits the link's MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockLimit {
    /// At most this many bytes (8 to 65464).
    Fixed(u16),
    /// The block fits the MTU of the link the request came in on (or the path MTU the
    /// kernel knows, when smaller), less the IP, UDP and TFTP headers, so no DATA is
    /// fragmented.
    Mtu,
}

/// IPv4 and UDP headers and the TFTP DATA header: what a block leaves of an IPv4 MTU.
pub const IPV4_OVERHEAD: u32 = 20 + 8 + 4;
/// IPv6 and UDP headers and the TFTP DATA header: what a block leaves of an IPv6 MTU.
pub const IPV6_OVERHEAD: u32 = 40 + 8 + 4;

/// The largest block whose DATA datagram fits in one packet of `mtu` bytes to a client
/// of the family of `client` (canonical), within the protocol's range.
pub fn blksize_for_mtu(mtu: u32, client: IpAddr) -> u16 {
    let overhead = if super::canonical_ip(client).is_ipv4() {
        IPV4_OVERHEAD
    } else {
        IPV6_OVERHEAD
    };
    let block = mtu
        .saturating_sub(overhead)
        .clamp(u32::from(MIN_BLKSIZE), u32::from(MAX_BLKSIZE));
    u16::try_from(block).unwrap_or(MAX_BLKSIZE)
}

/// One rewrite rule: every match of `pattern` in the name is replaced by `replacement`
/// (`$1`, `${name}` for groups; `{ip}` for the client's address).
#[derive(Debug, Clone)]
pub struct Rewrite {
    pattern: Regex,
    replacement: String,
    /// `replacement` holds `{ip}`.
    uses_ip: bool,
}

/// The longest name a rewrite may make: longer names are refused while being made, so a
/// hostile name cannot make the rules build a large one.
pub const MAX_REWRITTEN_LEN: usize = 4096;

/// The largest compiled expression accepted, in bytes of the regex crate's measure.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Rewrite {
    /// A rule from its expression (the `regex` crate's syntax: linear-time matching, no
    /// backreferences) and its replacement.
    ///
    /// # Errors
    ///
    /// The expression's error, as the regex crate words it.
    pub fn new(pattern: &str, replacement: &str) -> Result<Rewrite, regex::Error> {
        let pattern = regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()?;
        Ok(Rewrite {
            pattern,
            replacement: replacement.to_owned(),
            uses_ip: replacement.contains("{ip}"),
        })
    }

    /// The expression, as written.
    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }

    /// The replacement, as written.
    pub fn replacement(&self) -> &str {
        &self.replacement
    }

    /// Applies the rule to `name` for a client whose address reads `ip`; `None` when the
    /// result would pass [`MAX_REWRITTEN_LEN`].
    fn apply(&self, name: &str, ip: &str) -> Option<String> {
        let replacement = if self.uses_ip {
            Cow::Owned(self.replacement.replace("{ip}", ip))
        } else {
            Cow::Borrowed(self.replacement.as_str())
        };
        let mut out = String::with_capacity(name.len());
        let mut last = 0;
        for captures in self.pattern.captures_iter(name) {
            let whole = captures.get(0)?;
            out.push_str(&name[last..whole.start()]);
            captures.expand(&replacement, &mut out);
            last = whole.end();
            if out.len() > MAX_REWRITTEN_LEN {
                return None;
            }
        }
        out.push_str(&name[last..]);
        (out.len() <= MAX_REWRITTEN_LEN).then_some(out)
    }
}

impl PartialEq for Rewrite {
    fn eq(&self, other: &Rewrite) -> bool {
        self.pattern.as_str() == other.pattern.as_str() && self.replacement == other.replacement
    }
}

impl Eq for Rewrite {}

/// Options left out of the OACK, as if the client had not asked for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusedOptions {
    /// `blksize` (RFC 2348).
    pub blksize: bool,
    /// `timeout` (RFC 2349).
    pub timeout: bool,
    /// `tsize` (RFC 2349).
    pub tsize: bool,
    /// `windowsize` (RFC 7440).
    pub windowsize: bool,
}

impl RefusedOptions {
    /// The option names `refuse-options` accepts.
    pub const NAMES: [&'static str; 4] = ["blksize", "timeout", "tsize", "windowsize"];

    /// Refuses the option `name` (ASCII case ignored); false for an unknown name.
    pub fn refuse(&mut self, name: &str) -> bool {
        let slot = match name.to_ascii_lowercase().as_str() {
            "blksize" => &mut self.blksize,
            "timeout" => &mut self.timeout,
            "tsize" => &mut self.tsize,
            "windowsize" => &mut self.windowsize,
            _ => return false,
        };
        *slot = true;
        true
    }

    /// The names of the refused options.
    pub fn names(&self) -> Vec<&'static str> {
        [self.blksize, self.timeout, self.tsize, self.windowsize]
            .into_iter()
            .zip(RefusedOptions::NAMES)
            .filter_map(|(refused, name)| refused.then_some(name))
            .collect()
    }

    /// `options` less the refused ones.
    pub fn strip(&self, options: TransferOptions) -> TransferOptions {
        TransferOptions {
            blksize: options.blksize.filter(|_| !self.blksize),
            timeout: options.timeout.filter(|_| !self.timeout),
            tsize: options.tsize.filter(|_| !self.tsize),
            windowsize: options.windowsize.filter(|_| !self.windowsize),
        }
    }
}

/// How a table narrows the `[upload]` table for its clients (never widens it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadLimits {
    /// Name prefixes (normalised, each ending in `/`) an upload must also be under; empty:
    /// no narrowing.
    pub allow: Vec<String>,
    /// The largest file, when smaller than `[upload] max-file-size`.
    pub max_file_size: Option<u64>,
    /// The most bytes the uploads in the table's part of the store may hold together,
    /// within `[upload] max-total-size`: see [`budget`](Self::budget).
    pub max_total_size: Option<u64>,
}

impl UploadLimits {
    /// The budget of `max_total_size` for a client whose view is `view`: over the names
    /// under the table's `allow` prefixes (all of them together); without any, under the
    /// client's view (with `{ip}` in the root, a budget per client); without either, over
    /// every upload (the table's clients then upload only while all uploads together hold
    /// less). Every upload there counts, whoever sent it.
    pub fn budget(&self, view: Option<&str>) -> Option<UploadBudget> {
        let limit = self.max_total_size?;
        let prefixes = match view {
            _ if !self.allow.is_empty() => self.allow.clone(),
            Some(view) => vec![view.to_owned()],
            None => Vec::new(),
        };
        Some(UploadBudget { prefixes, limit })
    }

    /// True when `name` (as stored) is under one of the prefixes, or there are none;
    /// whole components, ASCII case ignored when `ignore_case`.
    pub fn allows(&self, name: &FileName, ignore_case: bool) -> bool {
        if self.allow.is_empty() {
            return true;
        }
        let name = name.as_str();
        self.allow.iter().any(|prefix| {
            let dir = prefix.trim_end_matches('/');
            let same = |a: &str, b: &str| {
                if ignore_case {
                    a.eq_ignore_ascii_case(b)
                } else {
                    a == b
                }
            };
            (name.len() == dir.len() && same(name, dir))
                || (name.len() > prefix.len()
                    && name.is_char_boundary(prefix.len())
                    && same(&name[..prefix.len()], prefix))
        })
    }
}

/// What a client may do and how its requests are served: a table's, or the top level's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Read requests are served (default true).
    pub read: bool,
    /// Write requests are served, if `[upload] enabled` (default true).
    pub write: bool,
    /// The client's view: a name prefix (normalised, ending in `/`) with `{ip}` standing
    /// for the client's address; `None` or empty: the top of the store.
    pub root: Option<String>,
    /// A name not found under the view is looked up at the top (default true).
    pub fallback: bool,
    /// Applied in order to the name as sent.
    pub rewrite: Vec<Rewrite>,
    /// The largest block granted (default: what fits the MTU).
    pub max_blksize: BlockLimit,
    /// The largest window granted.
    pub max_windowsize: u16,
    /// Options left out of the OACK.
    pub refuse_options: RefusedOptions,
    /// How uploads are narrowed.
    pub upload: UploadLimits,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            read: true,
            write: true,
            root: None,
            fallback: true,
            rewrite: Vec::new(),
            max_blksize: BlockLimit::Mtu,
            max_windowsize: crate::transfer::TransferConfig::default().max_windowsize,
            refuse_options: RefusedOptions::default(),
            upload: UploadLimits::default(),
        }
    }
}

impl Rules {
    /// True when `{ip}` appears in what these rules write (the view, a rewrite's
    /// replacement): only then is a request's client address written out as text.
    pub fn uses_ip(&self) -> bool {
        self.root
            .as_deref()
            .is_some_and(|root| root.contains("{ip}"))
            || self.rewrite.iter().any(|rule| rule.uses_ip)
    }
}

/// One `[[client]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTable {
    /// Its `name`, for the logs; else it is known by its index.
    pub name: Option<String>,
    /// The networks it matches.
    pub networks: Vec<Network>,
    /// Its rules, complete (keys it left out hold the top-level value).
    pub rules: Rules,
}

/// The tables in order and the top-level rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The `[[client]]` tables, in the order of the file.
    pub tables: Vec<ClientTable>,
    /// For clients no table matches.
    pub top: Rules,
}

/// Which table decided for a client: its index in the file (from 0) or `None` for the
/// top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched(pub Option<usize>);

impl Policy {
    /// The table that decides for `client` (the first whose networks hold it) and its
    /// rules, or the top level's.
    pub fn rules_for(&self, client: IpAddr) -> (Matched, &Rules) {
        self.tables
            .iter()
            .position(|table| table.networks.iter().any(|n| n.contains(client)))
            .map_or((Matched(None), &self.top), |index| {
                (Matched(Some(index)), &self.tables[index].rules)
            })
    }

    /// How the logs name what decided: the table's `name`, or its index, or `top`.
    pub fn label(&self, matched: Matched) -> String {
        match matched.0 {
            None => "top".to_owned(),
            Some(index) => match self.tables.get(index).and_then(|t| t.name.as_ref()) {
                Some(name) => name.clone(),
                None => index.to_string(),
            },
        }
    }
}

/// The text `{ip}` stands for: IPv4 dotted, IPv6 in its canonical form without brackets,
/// an IPv4-mapped client as IPv4.
pub fn ip_text(client: IpAddr) -> String {
    super::canonical_ip(client).to_string()
}

/// The name after the rules' rewrites (borrowed when there are none); `None` when a rule
/// would make it longer than [`MAX_REWRITTEN_LEN`].
pub fn rewrite<'a>(rules: &Rules, name: &'a str, ip: &str) -> Option<Cow<'a, str>> {
    let mut current = Cow::Borrowed(name);
    for rule in &rules.rewrite {
        current = Cow::Owned(rule.apply(&current, ip)?);
    }
    Some(current)
}

/// The client's view (its `root` with `{ip}` filled in), or `None` for the top.
pub fn view(rules: &Rules, ip: &str) -> Option<String> {
    rules
        .root
        .as_deref()
        .filter(|root| !root.is_empty())
        .map(|root| root.replace("{ip}", ip))
}

/// `name` under `view`, by the name rules (the whole must still be a valid name).
pub fn under_view(view: &str, name: &FileName) -> Option<FileName> {
    normalize_name(&format!("{view}{}", name.as_str())).ok()
}

/// What the policy made of one request, for its journal entry: which table decided, the
/// name before and after rewriting, the view, and the name the store served or took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The table that decided (see [`Policy::label`]).
    pub table: String,
    /// The name as the client sent it.
    pub requested: String,
    /// The name after the rewrite rules, when they changed it.
    pub rewritten: Option<String>,
    /// The client's view, when it has one.
    pub view: Option<String>,
    /// The name in the store: under the view, or at the top after a fallback.
    pub stored: Option<String>,
}

/// The ports per-transfer sockets are bound to (`port-range = "30000-30999"`), both ends
/// included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The lowest port.
    pub first: u16,
    /// The highest port.
    pub last: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.last) - usize::from(self.first) + 1
    }

    /// Never true: a range holds one port at least.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<PortRange, String> {
        let bad = || {
            format!(
                "{text:?} is not a port range: expected \"FIRST-LAST\" with 1 <= FIRST <= LAST \
                 <= 65535, such as \"30000-30999\""
            )
        };
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let port = |t: &str| {
            let t = t.trim();
            (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<u16>().ok())
                .flatten()
                .filter(|&p| p > 0)
        };
        match (port(first), port(last)) {
            (Some(first), Some(last)) if first <= last => Ok(PortRange { first, last }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_client_address_is_written_out_only_for_rules_that_use_it() {
        let mut rules = Rules::default();
        assert!(!rules.uses_ip(), "the defaults");
        rules.root = Some("lab/".into());
        rules.rewrite = vec![Rewrite::new("^a$", "b").unwrap()];
        assert!(!rules.uses_ip(), "a fixed view and a fixed replacement");
        rules.root = Some("hosts/{ip}/".into());
        assert!(rules.uses_ip(), "the view");
        rules.root = None;
        rules
            .rewrite
            .push(Rewrite::new("^mine$", "hosts/{ip}/boot.cfg").unwrap());
        assert!(rules.uses_ip(), "a replacement");
    }

    #[test]
    fn networks_parse_in_both_families_and_refuse_what_is_mistyped() {
        assert_eq!(net("10.1.0.0/16").to_string(), "10.1.0.0/16");
        assert_eq!(net("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(net("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        for bad in [
            "10.1.0.0/33",
            "fd00::/129",
            "10.1.0.0/",
            "10.1.0.0/x",
            "10.1/16",
            "",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
        let error = "10.1.2.3/16".parse::<Network>().unwrap_err();
        assert!(error.to_string().contains("\"10.1.0.0/16\""), "{error}");
        assert!("fd00::1/8".parse::<Network>().is_err());
    }

    #[test]
    fn clients_match_networks_of_their_family_and_mapped_clients_match_ipv4() {
        let lab = net("10.1.0.0/16");
        assert!(lab.contains(ip("10.1.255.3")));
        assert!(!lab.contains(ip("10.2.0.1")));
        assert!(lab.contains(ip("::ffff:10.1.0.9")));
        assert!(!lab.contains(ip("fd00::1")));
        let v6 = net("fd00::/8");
        assert!(v6.contains(ip("fd12:3456::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.1.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("::ffff:192.0.2.1")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert!(net("127.0.0.2").contains(ip("127.0.0.2")));
        assert!(!net("127.0.0.2").contains(ip("127.0.0.3")));
    }

    #[test]
    fn a_network_covers_its_subnets_only() {
        assert!(net("10.0.0.0/8").covers(&net("10.1.0.0/16")));
        assert!(!net("10.1.0.0/16").covers(&net("10.0.0.0/8")));
        assert!(!net("10.0.0.0/8").covers(&net("fd00::/8")));
        assert!(net("::/0").covers(&net("fd00::/8")));
    }

    #[test]
    fn the_mtu_leaves_room_for_ip_udp_and_tftp_headers() {
        assert_eq!(blksize_for_mtu(1500, ip("192.0.2.1")), 1468);
        assert_eq!(blksize_for_mtu(1500, ip("::ffff:192.0.2.1")), 1468);
        assert_eq!(blksize_for_mtu(1500, ip("2001:db8::1")), 1448);
        assert_eq!(blksize_for_mtu(9000, ip("192.0.2.1")), 8968);
        assert_eq!(blksize_for_mtu(1280, ip("2001:db8::1")), 1228);
        // Loopback's 65536 and anything larger: the protocol's largest block.
        assert_eq!(blksize_for_mtu(65536, ip("127.0.0.1")), MAX_BLKSIZE);
        assert_eq!(blksize_for_mtu(u32::MAX, ip("::1")), MAX_BLKSIZE);
        // A link too small for any block still gets the smallest the RFC allows.
        assert_eq!(blksize_for_mtu(20, ip("192.0.2.1")), MIN_BLKSIZE);
    }

    fn rules_with(rewrite: &[(&str, &str)]) -> Rules {
        Rules {
            rewrite: rewrite
                .iter()
                .map(|(p, r)| Rewrite::new(p, r).unwrap())
                .collect(),
            ..Rules::default()
        }
    }

    #[test]
    fn rewrites_apply_in_order_with_the_client_address() {
        let rules = rules_with(&[("^/tftpboot/", ""), ("^pxelinux", "{ip}/pxelinux")]);
        assert_eq!(
            rewrite(&rules, "/tftpboot/pxelinux.0", "10.1.0.5").unwrap(),
            "10.1.0.5/pxelinux.0"
        );
        // The order matters: the second rule alone sees no match here.
        let reversed = rules_with(&[("^pxelinux", "{ip}/pxelinux"), ("^/tftpboot/", "")]);
        assert_eq!(
            rewrite(&reversed, "/tftpboot/pxelinux.0", "10.1.0.5").unwrap(),
            "pxelinux.0"
        );
        // Groups, and every match replaced.
        let rules = rules_with(&[("^([0-9a-f]{8})-(.*)$", "serial/$1/$2"), ("~+$", "")]);
        assert_eq!(
            rewrite(&rules, "deadbeef-start4.elf~~~", "::1").unwrap(),
            "serial/deadbeef/start4.elf"
        );
        assert!(matches!(
            rewrite(&Rules::default(), "a", "x"),
            Some(Cow::Borrowed("a"))
        ));
    }

    #[test]
    fn a_rewrite_cannot_make_a_huge_name() {
        let rules = rules_with(&[(".", "0123456789abcdef")]);
        assert_eq!(rewrite(&rules, &"a".repeat(300), "x"), None);
        assert!(rewrite(&rules, &"a".repeat(200), "x").is_some());
    }

    #[test]
    fn hostile_names_meet_linear_time_expressions() {
        // The classic backtracking blow-up: linear here.
        let rules = rules_with(&[("^(a+)+$", "x")]);
        let name = format!("{}b", "a".repeat(MAX_REWRITTEN_LEN - 1));
        assert_eq!(rewrite(&rules, &name, "x").unwrap(), name);
    }

    #[test]
    fn the_first_matching_table_decides_and_others_get_the_top_level() {
        let table = |name: Option<&str>, nets: &[&str], read| ClientTable {
            name: name.map(str::to_owned),
            networks: nets.iter().map(|n| net(n)).collect(),
            rules: Rules {
                read,
                ..Rules::default()
            },
        };
        let policy = Policy {
            tables: vec![
                table(Some("admin"), &["10.0.0.0/24", "fd00:1::/32"], true),
                table(None, &["10.0.0.0/8"], false),
            ],
            top: Rules::default(),
        };
        let (m, rules) = policy.rules_for(ip("10.0.0.7"));
        assert_eq!(
            (m, rules.read, policy.label(m).as_str()),
            (Matched(Some(0)), true, "admin")
        );
        let (m, rules) = policy.rules_for(ip("::ffff:10.9.0.7"));
        assert_eq!(
            (m, rules.read, policy.label(m).as_str()),
            (Matched(Some(1)), false, "1")
        );
        let (m, _) = policy.rules_for(ip("fd00:1::5"));
        assert_eq!(m, Matched(Some(0)));
        let (m, rules) = policy.rules_for(ip("192.0.2.1"));
        assert_eq!(
            (m, rules.read, policy.label(m).as_str()),
            (Matched(None), true, "top")
        );
    }

    #[test]
    fn views_take_the_client_address() {
        let rules = Rules {
            root: Some("hosts/{ip}/".to_owned()),
            ..Rules::default()
        };
        assert_eq!(
            view(&rules, &ip_text(ip("::ffff:10.0.0.1"))).unwrap(),
            "hosts/10.0.0.1/"
        );
        assert_eq!(
            view(&rules, &ip_text(ip("fd00::1"))).unwrap(),
            "hosts/fd00::1/"
        );
        assert_eq!(view(&Rules::default(), "x"), None);
        let name = normalize_name("boot/x").unwrap();
        assert_eq!(
            under_view("site-a/", &name).unwrap().as_str(),
            "site-a/boot/x"
        );
    }

    #[test]
    fn refused_options_are_left_out() {
        let mut refused = RefusedOptions::default();
        assert!(refused.refuse("WindowSize") && !refused.refuse("multicast"));
        assert_eq!(refused.names(), vec!["windowsize"]);
        let asked = TransferOptions {
            blksize: Some(1024),
            timeout: Some(3),
            tsize: Some(0),
            windowsize: Some(8),
        };
        assert_eq!(
            refused.strip(asked),
            TransferOptions {
                windowsize: None,
                ..asked
            }
        );
    }

    #[test]
    fn port_ranges_parse_and_refuse_empty_or_reversed_ones() {
        let range: PortRange = "30000-30999".parse().unwrap();
        assert_eq!((range.first, range.last, range.len()), (30000, 30999, 1000));
        assert!(range.contains(30000) && range.contains(30999) && !range.contains(31000));
        assert_eq!("7-7".parse::<PortRange>().unwrap().len(), 1);
        for bad in [
            "30999-30000",
            "0-10",
            "1-65536",
            "30000",
            "a-b",
            "-5",
            "5-",
            "",
        ] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn upload_prefixes_match_whole_components() {
        let limits = UploadLimits {
            allow: vec!["backups/".to_owned()],
            max_file_size: None,
            max_total_size: None,
        };
        let name = |n: &str| normalize_name(n).unwrap();
        assert!(limits.allows(&name("backups/sw1.cfg"), false));
        assert!(!limits.allows(&name("backups2/sw1.cfg"), false));
        assert!(!limits.allows(&name("Backups/sw1.cfg"), false));
        assert!(limits.allows(&name("Backups/sw1.cfg"), true));
        assert!(UploadLimits::default().allows(&name("x"), false));
    }
}
