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

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why a URL may not receive webhooks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("a webhook URL is http or https with a host, no user or password")]
    Malformed,
    #[error("{host}{}a {kind} address (WEBHOOK_ALLOW_PRIVATE_NETWORKS is off)", resolved(.host, .address))]
    Private {
        host: String,
        address: IpAddr,
        kind: &'static str,
    },
    #[error("{host} does not resolve: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// " is " for an address literal, " is <address>, " for a name.
fn resolved(host: &str, address: &IpAddr) -> String {
    if host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        " is ".to_owned()
    } else {
        format!(" is {address}, ")
    }
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
        _ if ip.is_documentation() => "documentation",
        _ => return None,
    })
}

fn private_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match first {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        // fc00::/7, AWS's metadata service fd00:ec2::254 among them.
        _ if first & 0xfe00 == 0xfc00 => "private (unique local) or metadata",
        _ if first & 0xffc0 == 0xfe80 => "link-local",
        _ if ip.is_multicast() => "multicast",
        // ::/96 (IPv4-compatible) and 64:ff9b::/96 (NAT64) reach IPv4 hosts.
        _ if ip.segments()[..6] == [0; 6] => "IPv4-compatible",
        0x64 if ip.segments()[1] == 0xff9b => "NAT64",
        // 2001:db8::/32
        0x2001 if ip.segments()[1] == 0xdb8 => "documentation",
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
    refuse_private(&address.to_string(), address)
}

fn refuse_private(host: &str, address: IpAddr) -> Result<(), Refused> {
    match private_kind(address) {
        Some(kind) => Err(Refused::Private {
            host: host.to_owned(),
            address,
            kind,
        }),
        None => Ok(()),
    }
}

/// The addresses of `name`, all of them public, or why not.
async fn resolve_public(name: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|error| Refused::Unresolvable {
            host: name.to_owned(),
            reason: error.to_string(),
        })?
        .collect();
    for address in &addresses {
        refuse_private(name, address.ip())?;
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
                matches!(check(url, false).await, Err(Refused::Private { .. })),
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
            assert_eq!(
                check(malformed, true).await,
                Err(Refused::Malformed),
                "{malformed}"
            );
        }
    }
}
