//! The kinds of value settings hold, and how each is read from text: the
//! parsers every section's reader shares, so `15m` or `30/5m` means the same
//! in every variable.

use std::{net::IpAddr, str::FromStr, time::Duration};

use url::Url;

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare
/// address is the range of that one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `ip` is in the range. An IPv4 range never holds an IPv6
    /// address, IPv4-mapped ones included: a proxy is named as it connects.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let invalid = || format!("{raw:?} is not an IP address or CIDR range");
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
        };
        if prefix > max {
            return Err(invalid());
        }
        Ok(Self { network, prefix })
    }
}

/// A URL that may carry a password (`postgres://user:secret@host/db`). Its
/// `Debug` and `Display` mask the password, so a configuration printed
/// with `{:?}` or a connection error never shows it; [`Self::expose`] is
/// for the one place that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn redacted(&self) -> String {
        match Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                // Setting a password fails only for URLs that cannot have one.
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(_) => self.0.clone(),
            Err(_) => "<unparsable URL>".into(),
        }
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `max` per `window`: a burst of `max`, then one more every `window / max`
/// (a GCRA, `rate_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

impl Limit {
    #[cfg(test)]
    pub(super) const fn per(max: u32, seconds: u64) -> Self {
        Self {
            max,
            window: Duration::from_secs(seconds),
        }
    }
}

pub(super) fn parse_url_with_schemes(raw: &str, schemes: &[&str]) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    if schemes.contains(&url.scheme()) {
        Ok(url)
    } else {
        Err(format!("scheme must be one of {}", schemes.join(", ")))
    }
}

pub(super) fn parse_database_url(raw: &str) -> Result<SecretUrl, String> {
    parse_url_with_schemes(raw, &["postgres", "postgresql"]).map(|_| SecretUrl::new(raw))
}

pub(super) fn parse_redis_url(raw: &str) -> Result<SecretUrl, String> {
    parse_url_with_schemes(raw, &["redis", "rediss"]).map(|_| SecretUrl::new(raw))
}

pub(super) fn parse_smtp_url(raw: &str) -> Result<SecretUrl, String> {
    parse_url_with_schemes(raw, &["smtp", "smtps", "file"]).map(|_| SecretUrl::new(raw))
}

pub(super) fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("{other:?} is not one of true, false")),
    }
}

pub(super) fn parse_number<T: FromStr>(raw: &str) -> Result<T, String> {
    raw.parse()
        .map_err(|_| format!("{raw:?} is not a valid number"))
}

pub(super) fn parse_positive(raw: &str) -> Result<usize, String> {
    match parse_number::<usize>(raw)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// Accepts a number of seconds, optionally with an `ms`, `s`, `m`, `h` or
/// `d` suffix.
pub(super) fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (digits, millis_per_unit) = if let Some(digits) = raw.strip_suffix("ms") {
        (digits, 1)
    } else if let Some(digits) = raw.strip_suffix('s') {
        (digits, 1_000)
    } else if let Some(digits) = raw.strip_suffix('m') {
        (digits, 60_000)
    } else if let Some(digits) = raw.strip_suffix('h') {
        (digits, 3_600_000)
    } else if let Some(digits) = raw.strip_suffix('d') {
        (digits, 86_400_000)
    } else {
        (raw, 1_000)
    };
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 900, 900s, 15m, 1h, 30d or 250ms"))?;
    match count.checked_mul(millis_per_unit) {
        Some(0) | None => Err("must be a positive duration".into()),
        Some(millis) => Ok(Duration::from_millis(millis)),
    }
}

/// `30/5m`: at most 30 per five minutes.
pub(super) fn parse_limit(raw: &str) -> Result<Limit, String> {
    let (max, window) = raw
        .split_once('/')
        .ok_or_else(|| format!("{raw:?} is not a limit like 30/5m"))?;
    Ok(Limit {
        max: parse_positive(max)?
            .try_into()
            .map_err(|_| "is too large".to_owned())?,
        window: parse_duration(window)?,
    })
}

pub(super) fn parse_ipv6_prefix(raw: &str) -> Result<u8, String> {
    match parse_number::<u8>(raw)? {
        prefix @ 1..=128 => Ok(prefix),
        _ => Err("must be a prefix length from 1 to 128".into()),
    }
}

pub(super) fn parse_ip_address(raw: &str) -> Result<IpAddr, String> {
    raw.parse()
        .map_err(|_| format!("{raw:?} is not an IP address (0.0.0.0, 127.0.0.1, ::)"))
}

pub(super) fn parse_ip_ranges(raw: &str) -> Result<Vec<IpRange>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}
