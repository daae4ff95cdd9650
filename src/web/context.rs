//! What a handler knows about the request besides its body, and what of it
//! goes into the events it appends.

use std::net::IpAddr;

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
}

impl RequestContext {
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
