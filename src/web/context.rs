//! What a handler knows about the request besides its body, and what of it
//! goes into the events it appends.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use sha2::{Digest, Sha256};

use crate::store::EventMetadata;

/// Made by the router for every request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The HTTP request's id: in the `x-request-id` header, error bodies, the
    /// `http_request` span around every log line of the request, and the
    /// metadata of the events it appends. Not an email request's id.
    pub http_request_id: String,
    pub client_ip: IpAddr,
    /// Set once the handler starts appending events; see
    /// [`Self::commit_begins`].
    committing: Arc<AtomicBool>,
}

impl RequestContext {
    pub fn new(http_request_id: String, client_ip: IpAddr) -> Self {
        Self {
            http_request_id,
            client_ip,
            committing: Arc::default(),
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
        // Pseudonymous, not anonymous: enough to group abuse by source
        // without storing addresses in the log in clear.
        let digest = Sha256::digest(self.client_ip.to_string().as_bytes());
        EventMetadata {
            http_request_id: Some(self.http_request_id.clone()),
            causation_id: None,
            client_ip_hash: Some(hex::encode(&digest[..8])),
            actor: None,
        }
    }
}
