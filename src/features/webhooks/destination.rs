//! Where a webhook may be sent: never inside the network Porter runs in.
//!
//! Whoever can add a subscription (an operator, or the application through
//! the admin API) could otherwise make the worker POST to the cloud's metadata service,
//! to Redis or Postgres on loopback, or to any private host, and learn from
//! the delivery state what answered. A URL is checked when it is added and
//! again at every connection: its host's addresses are resolved by
//! [`GuardedResolver`], which refuses to hand the HTTP client a forbidden
//! one, so a name that resolved to a public address at `add` and to
//! 127.0.0.1 later (DNS rebinding) is refused at send time.
//! `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` lifts the rule (tests, `porter
//! dev`).
//!
//! IPv6 is allowed only in global unicast (`2000::/3`), and not in the parts
//! of it that reach IPv4 hosts through a translator or tunnel (6to4,
//! Teredo) or are reserved (ORCHID, benchmarking, documentation), since an
//! embedded 10.0.0.1 or 127.0.0.1 is as internal as the real one. A name
//! that resolves inside is refused without saying to which address or kind:
//! whoever may add subscriptions (any API key) must not learn the internal
//! DNS from the answers; the log line for the operator names both.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why a URL may not receive webhooks.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("a webhook URL is http or https with a host, no user or password")]
    Malformed,
    /// An address given as such: saying what kind tells nothing new.
    #[error("{address} is a {kind} address (WEBHOOK_ALLOW_PRIVATE_NETWORKS is off)")]
    PrivateAddress { address: IpAddr, kind: &'static str },
    /// A name: neither the address nor its kind is said.
    #[error("{host} resolves to a non-public address (WEBHOOK_ALLOW_PRIVATE_NETWORKS is off)")]
    ResolvesInside { host: String },
    #[error("{host} does not resolve: {source}")]
    Unresolvable {
        host: String,
        source: std::io::Error,
    },
}

/// The kind of address `ip` is when it is not on the public internet.
pub fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => private_v4(v4),
            None => private_v6(v6),
        },
    }
}

fn private_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        // 169.254.169.254 is the metadata service of most clouds.
        _ if ip.is_link_local() => "link-local or metadata",
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        // Carrier-grade NAT; Alibaba's metadata service is 100.100.100.200.
        (100, 64..=127, _) => "shared (carrier-grade NAT) or metadata",
        (192, 0, 0) => "IETF protocol",
        (198, 18..=19, _) => "benchmarking",
        _ if ip.is_broadcast() || ip.is_multicast() || a >= 240 => "multicast or reserved",
        (192, 88, 99) => "6to4 relay",
        _ if ip.is_documentation() => "documentation",
        _ => return None,
    })
}

/// Anything outside global unicast, and the parts of it that are not one
/// host on the internet; the named kinds only make the message clearer.
fn private_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let [first, second, ..] = ip.segments();
    Some(match (first, second) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        // fc00::/7, AWS's metadata service fd00:ec2::254 among them.
        _ if first & 0xfe00 == 0xfc00 => "private (unique local) or metadata",
        _ if first & 0xffc0 == 0xfe80 => "link-local",
        _ if first & 0xffc0 == 0xfec0 => "site-local",
        _ if ip.is_multicast() => "multicast",
        // ::/96 (IPv4-compatible), ::ffff:0:0:0/96 (SIIT), 64:ff9b::/96 and
        // 64:ff9b:1::/48 (NAT64) carry an IPv4 address to a translator.
        _ if ip.segments()[..4] == [0; 4] => "IPv4-compatible or translated",
        (0x64, 0xff9b) => "NAT64",
        // 2001::/23: Teredo (2001::/32), benchmarking, ORCHID and more.
        (0x2001, 0..=0x1ff) => "Teredo or IETF protocol",
        (0x2001, 0xdb8) => "documentation",
        (0x2002, _) => "6to4",
        (0x3fff, 0..=0xfff) => "documentation",
        _ if first & 0xe000 != 0x2000 => "reserved (not global unicast)",
        _ => return None,
    })
}

/// Checks `raw` as a webhook URL: its scheme, and every address its host
/// resolves to now, unless `allow_private`.
pub async fn check(raw: &str, allow_private: bool) -> Result<Url, Refused> {
    let url = Url::parse(raw).map_err(|_| Refused::Malformed)?;
    let has_credentials = !url.username().is_empty() || url.password().is_some();
    if !matches!(url.scheme(), "http" | "https") || has_credentials {
        return Err(Refused::Malformed);
    }
    let host = url.host().ok_or(Refused::Malformed)?;
    if allow_private {
        return Ok(url);
    }
    refuse_private_address(&url)?;
    if let Host::Domain(name) = host {
        let port = url.port_or_known_default().unwrap_or(443);
        resolve_public(name, port).await?;
    }
    Ok(url)
}

/// Refuses a URL whose host is a forbidden address. A name is not looked
/// up: the HTTP client's [`GuardedResolver`] checks it at every connection.
pub fn refuse_private_address(url: &Url) -> Result<(), Refused> {
    let address: IpAddr = match url.host() {
        Some(Host::Ipv4(ip)) => ip.into(),
        Some(Host::Ipv6(ip)) => ip.into(),
        Some(Host::Domain(_)) | None => return Ok(()),
    };
    match private_kind(address) {
        Some(kind) => Err(Refused::PrivateAddress { address, kind }),
        None => Ok(()),
    }
}

/// The addresses of `name`, all of them public, or why not.
async fn resolve_public(name: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|source| Refused::Unresolvable {
            host: name.to_owned(),
            source,
        })?
        .collect();
    for address in &addresses {
        if let Some(kind) = private_kind(address.ip()) {
            // For the operator only; the answer does not say.
            tracing::info!(host = name, address = %address.ip(), kind, "webhook host refused: it resolves to a non-public address");
            return Err(Refused::ResolvesInside {
                host: name.to_owned(),
            });
        }
    }
    Ok(addresses)
}

/// The HTTP client's resolver: a name with any forbidden address is not
/// connected to at all.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addresses = resolve_public(name.as_str(), 0).await?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

impl GuardedResolver {
    pub fn shared() -> Arc<Self> {
        Arc::new(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_and_public_ones_are_not() {
        for internal in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = internal.parse().expect("an address");
            assert!(private_kind(ip).is_some(), "{internal} must be refused");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "172.32.0.1",
        ] {
            let ip: IpAddr = public.parse().expect("an address");
            assert_eq!(private_kind(ip), None, "{public} is public");
        }
    }

    #[test]
    fn only_global_unicast_ipv6_is_accepted() {
        for (internal, what) in [
            ("::ffff:0:a00:1", "SIIT, IPv4-translated 10.0.0.1"),
            ("::ffff:0:7f00:1", "SIIT, IPv4-translated 127.0.0.1"),
            ("2002:a00:1::1", "6to4 of 10.0.0.1"),
            ("2002:7f00:1::", "6to4 of 127.0.0.1"),
            ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo"),
            ("2001::1", "Teredo"),
            ("fec0::1", "site-local"),
            ("feff::1", "site-local"),
            ("64:ff9b::7f00:1", "NAT64 of 127.0.0.1"),
            ("64:ff9b:1::a00:1", "local-use NAT64"),
            ("::a00:1", "IPv4-compatible"),
            ("2001:10::1", "ORCHID"),
            ("2001:20::1", "ORCHIDv2"),
            ("2001:2::1", "benchmarking"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation (RFC 9637)"),
            ("100::1", "discard-only"),
            ("ff02::1", "multicast, link-local scope"),
            ("ff0e::1", "multicast, global scope"),
            ("4000::1", "reserved, outside 2000::/3"),
            ("1::1", "reserved"),
        ] {
            let ip: IpAddr = internal.parse().expect("an address");
            assert!(
                private_kind(ip).is_some(),
                "{internal} ({what}) must be refused"
            );
        }
        for public in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:80b::200e",
            "2620:fe::fe",
            "2400:cb00::1",
        ] {
            let ip: IpAddr = public.parse().expect("an address");
            assert_eq!(private_kind(ip), None, "{public} is global unicast");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_inside_is_refused_without_saying_where_it_points() {
        let refused = check("http://localhost:6379/", false)
            .await
            .expect_err("localhost is refused");
        let message = refused.to_string();
        assert!(
            message.contains("localhost resolves to a non-public address"),
            "{message}"
        );
        for leak in ["127.0.0.1", "::1", "loopback"] {
            assert!(!message.contains(leak), "{leak} named: {message}");
        }
    }

    #[tokio::test]
    async fn urls_to_internal_hosts_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:6379/",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data/",
            "https://localhost/hook",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert!(
                matches!(
                    check(url, false).await,
                    Err(Refused::PrivateAddress { .. } | Refused::ResolvesInside { .. })
                ),
                "{url}"
            );
            assert!(
                check(url, true).await.is_ok(),
                "{url} with private networks allowed"
            );
        }
        for malformed in [
            "ftp://example.com/",
            "not a url",
            "http://user:pw@example.com/",
            "file:///etc/passwd",
        ] {
            let checked = check(malformed, true).await;
            assert!(
                matches!(checked, Err(Refused::Malformed)),
                "{malformed}: {checked:?}"
            );
        }
    }
}
