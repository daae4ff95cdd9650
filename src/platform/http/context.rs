//! What a handler knows about the request besides its body, and what of it
//! goes into the events it appends.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::platform::{config::SecretKey, store::EventMetadata};

/// The purpose [`SecretKey::derive`] keys client address hashes with.
const CLIENT_IP_HASH_KEY: &str = "client-ip-hash";

/// Made by the router for every request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The HTTP request's id: in the `x-request-id` header, error bodies, the
    /// `http_request` span around every log line of the request, and the
    /// metadata of the events it appends. Not an email request's id.
    pub http_request_id: String,
    pub client_ip: IpAddr,
    /// What the events' metadata says of `client_ip`; see
    /// [`client_ip_hash`].
    client_ip_hash: String,
    /// Set once the handler starts appending events; see
    /// [`Self::commit_begins`].
    committing: Arc<AtomicBool>,
    /// Who acts, in the events' metadata: set by [`Self::acting_as`] once
    /// the request is authenticated as someone other than the account.
    actor: Option<String>,
}

impl RequestContext {
    pub fn new(http_request_id: String, client_ip: IpAddr, secret_key: &SecretKey) -> Self {
        Self {
            http_request_id,
            client_ip_hash: client_ip_hash(secret_key, client_ip),
            client_ip,
            committing: Arc::default(),
            actor: None,
        }
    }

    /// The same request, its events recorded as done by `actor` (an admin
    /// API key). The commit mark stays shared with `self`.
    pub fn acting_as(&self, actor: String) -> Self {
        Self {
            actor: Some(actor),
            ..self.clone()
        }
    }

    /// Called by a handler just before it appends events. From then on the
    /// router's deadline no longer cuts the handler short with `503`: its
    /// events may be committed, so the client is told what happened once
    /// the handler knows, not that nothing did.
    pub fn commit_begins(&self) {
        self.committing.store(true, Ordering::SeqCst);
    }

    /// Whether [`Self::commit_begins`] was called.
    pub fn committing(&self) -> bool {
        self.committing.load(Ordering::SeqCst)
    }

    /// The metadata stored beside the events this request appends.
    pub fn event_metadata(&self) -> EventMetadata {
        EventMetadata {
            http_request_id: Some(self.http_request_id.clone()),
            causation_id: None,
            client_ip_hash: Some(self.client_ip_hash.clone()),
            actor: self.actor.clone(),
        }
    }
}

/// 64 bits of `HMAC-SHA256(key, ip)`, the key derived from `SECRET_KEY`.
/// Pseudonymous, not anonymous: the same client gets the same hash, enough
/// to group abuse by source, without the log naming addresses. Keyed
/// because an unkeyed hash of an IPv4 address is reversed by hashing all
/// 2³² of them, about an hour on one machine; a hash is only comparable
/// within one deployment's `SECRET_KEY`.
fn client_ip_hash(secret_key: &SecretKey, ip: IpAddr) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret_key.derive(CLIENT_IP_HASH_KEY))
        .expect("HMAC takes any key length");
    mac.update(ip.to_string().as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..8])
}
