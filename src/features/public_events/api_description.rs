//! The public events in the API description: the `webhooks` section (the
//! request the worker sends to a subscribed receiver, its body the same type
//! the feed serves) and the schema of a list of public types.

use serde_json::{Value, json};

use super::{PublicEvent, TYPES};
use crate::platform::http::openapi::{BodyType, Schemas};

/// The `webhooks` section of the API description.
pub fn section(schemas: &mut Schemas) -> Value {
    let header = |name: &str, description: &str, pattern: &str| {
        json!({
            "name": name,
            "in": "header",
            "required": true,
            "description": description,
            "schema": { "type": "string", "pattern": pattern },
        })
    };
    json!({ "publicEvent": { "post": {
        "operationId": "receive_public_event",
        "summary": "A public event, pushed to a subscribed receiver",
        "description": "Sent by the worker to each URL subscribed with `porter webhooks add`, \
            one event per request, in log order per subscription, one in flight at a time, at \
            least once. Signed as the Standard Webhooks specification says: `webhook-signature` \
            holds `v1,` and base64(HMAC-SHA256(base64-decoded `whsec_` secret, \
            `{webhook-id}.{webhook-timestamp}.{body}`)), two space-separated entries while a \
            rotated secret overlaps. Any answer but 2xx, or none within WEBHOOK_TIMEOUT, is \
            retried with the same webhook-id; redirects are not followed.",
        "parameters": [
            header(
                "webhook-id",
                "The event's id: the same on every attempt and replay; de-duplicate on it",
                "^evt_[0-9a-f]{32}$",
            ),
            header(
                "webhook-timestamp",
                "Unix seconds of this attempt; refuse ones far from now",
                "^[0-9]+$",
            ),
            header(
                "webhook-signature",
                "One `v1,<base64>` entry per live secret, separated by a space",
                "^v1,[A-Za-z0-9+/]{43}=( v1,[A-Za-z0-9+/]{43}=)*$",
            ),
        ],
        "requestBody": {
            "required": true,
            "content": { "application/json": {
                "schema": schemas.refer(BodyType::of::<PublicEvent>()),
            } },
        },
        "responses": {
            "2XX": { "description": "Delivered: the next event follows" },
            "410": { "description": "Gone: the subscription is disabled until an operator resumes it" },
            "default": { "description": "Not delivered: the same event is retried with capped \
                exponential backoff and jitter; after WEBHOOK_FAILURE_PAUSE of failures the \
                subscription is paused" },
        },
    } } })
}

/// A comma-separated list of public types.
pub fn types_schema() -> utoipa::openapi::Schema {
    let one = format!("({})", TYPES.join("|").replace('.', "\\."));
    crate::platform::http::openapi::pattern(&format!("^{one}(,{one})*$"))
}
