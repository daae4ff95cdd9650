//! One delivery: a signed POST of one public event, and what came of it.
//!
//! The body is the public event as the pull feed shows it; `webhook-id` is
//! its id, the same on every attempt and every replay, so a receiver
//! de-duplicates on it. Redirects are not followed (a receiver that moved
//! says so with a failure an operator sees, and a redirect cannot lead the
//! worker inside the network), the system's proxy settings are ignored, and
//! an attempt gives up after `WEBHOOK_TIMEOUT`. Only the first bytes of an
//! answer are read: its status is all that counts.

use chrono::Utc;
use http::{HeaderValue, StatusCode, header};
use reqwest::{Client, redirect};
use url::Url;

use super::{
    destination::{self, GuardedResolver},
    signature::{self, Secret},
};
use crate::{features::public_events::PublicEvent, platform::config::WebhookConfig};

/// At most this much of an answer's body is read before the connection is
/// let go.
const ANSWER_BYTES_READ: usize = 16 * 1024;

/// What one attempt came to.
#[derive(Debug)]
pub enum Outcome {
    /// A `2xx`.
    Delivered,
    /// `410 Gone`: the receiver wants no more.
    Gone,
    /// Anything else, a timeout, a refused address: try again later.
    Failed(DeliveryError),
}

/// Why an attempt did not deliver, with its cause. Its text is what the
/// subscription records as its last error.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the receiver answered {0}")]
    Answered(StatusCode),
    #[error("the URL does not parse: {0}")]
    Url(#[source] url::ParseError),
    #[error("refused: {0}")]
    Refused(#[source] destination::Refused),
    #[error(transparent)]
    Body(serde_json::Error),
    /// Shown with its causes: "error sending request" alone does not tell
    /// an operator that the address was refused or the peer was down.
    #[error("{0:#}")]
    Request(anyhow::Error),
}

impl Outcome {
    /// The outcome's name in metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Gone => "gone",
            Self::Failed(_) => "failed",
        }
    }
}

/// Sends deliveries over a pool of kept-alive connections.
#[derive(Debug, Clone)]
pub struct Sender {
    client: Client,
    allow_private_networks: bool,
}

impl Sender {
    pub fn new(config: &WebhookConfig) -> Result<Self, reqwest::Error> {
        let mut builder = Client::builder()
            .timeout(config.timeout)
            .redirect(redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("Porter-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !config.allow_private_networks {
            builder = builder.dns_resolver(GuardedResolver::shared());
        }
        Ok(Self {
            client: builder.build()?,
            allow_private_networks: config.allow_private_networks,
        })
    }

    /// POSTs `event` to `url`, signed with `secrets`.
    pub async fn send(&self, url: &str, secrets: &[Secret], event: &PublicEvent) -> Outcome {
        match self.attempt(url, secrets, event).await {
            Ok(status) if status.is_success() => Outcome::Delivered,
            Ok(StatusCode::GONE) => Outcome::Gone,
            Ok(status) => Outcome::Failed(DeliveryError::Answered(status)),
            Err(error) => Outcome::Failed(error),
        }
    }

    async fn attempt(
        &self,
        url: &str,
        secrets: &[Secret],
        event: &PublicEvent,
    ) -> Result<StatusCode, DeliveryError> {
        let url = Url::parse(url).map_err(DeliveryError::Url)?;
        if !self.allow_private_networks {
            // A name is checked by the resolver; an address never reaches it.
            destination::refuse_private_address(&url).map_err(DeliveryError::Refused)?;
        }
        let body = serde_json::to_vec(event).map_err(DeliveryError::Body)?;
        let timestamp = Utc::now().timestamp();
        let signature = signature::sign(secrets, &event.id, timestamp, &body);
        let mut response = self
            .client
            .post(url)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|error| DeliveryError::Request(error.into()))?;
        let status = response.status();
        let mut read = 0;
        while read < ANSWER_BYTES_READ {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(status)
    }
}
