//! Activation keys at rest in Redis.
//!
//! Only `SHA-256(key)` is stored, so a Redis dump opens no account. Each key
//! entry maps to its account and request and expires with the activation TTL.
//! A per-account index lists the account's live keys; issuing a key for a newer
//! request deletes the keys of older requests (a newer link revokes the older),
//! while a second key for the *same* request (a job that ran twice) leaves the
//! first working, so every email that went out carries a working link.

use std::time::Duration;

use redis::{AsyncCommands, Script, aio::ConnectionManager};
use uuid::Uuid;

use crate::domain::ActivationKey;

/// Issues a key atomically: refuses when a newer request already has a key,
/// revokes keys of other requests, stores the new hash with its TTL. The
/// account index's `__sequence` field holds the newest issued request's
/// sequence; its other fields map key hashes to their request id.
const ISSUE_SCRIPT: &str = r"
local index, entry = KEYS[1], KEYS[2]
local sequence, request, account = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local ttl, entry_prefix, hash = ARGV[4], ARGV[5], ARGV[6]
local newest = tonumber(redis.call('HGET', index, '__sequence') or '0')
if sequence < newest then return 0 end
local fields = redis.call('HGETALL', index)
for i = 1, #fields, 2 do
  local field, value = fields[i], fields[i + 1]
  if field ~= '__sequence' and value ~= request then
    redis.call('DEL', entry_prefix .. field)
    redis.call('HDEL', index, field)
  end
end
redis.call('HSET', entry, 'account', account, 'request', request)
redis.call('EXPIRE', entry, ttl)
redis.call('HSET', index, '__sequence', sequence, hash, request)
redis.call('EXPIRE', index, ttl)
return 1
";

/// What a stored key grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub account_id: Uuid,
    pub request_id: Uuid,
}

#[derive(Clone)]
pub struct ActivationKeys {
    redis: ConnectionManager,
    namespace: String,
    ttl: Duration,
    issue_script: Script,
}

impl std::fmt::Debug for ActivationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivationKeys")
            .field("namespace", &self.namespace)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ActivationKeys {
    pub fn new(redis: ConnectionManager, namespace: &str, ttl: Duration) -> Self {
        Self {
            redis,
            namespace: namespace.to_owned(),
            ttl,
            issue_script: Script::new(ISSUE_SCRIPT),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn entry_prefix(&self) -> String {
        format!("{}:activation:key:", self.namespace)
    }

    fn entry(&self, key: &ActivationKey) -> String {
        format!("{}{}", self.entry_prefix(), key.storage_hash())
    }

    fn index(&self, account_id: Uuid) -> String {
        format!("{}:activation:account:{account_id}", self.namespace)
    }

    /// Draws and stores a new key for `request_id`, whose requesting event sits
    /// at `sequence` in the account's stream. `None` when a newer request
    /// already holds a key: its email will carry the working link.
    #[tracing::instrument(skip_all, fields(%account_id, email_request_id = %request_id))]
    pub async fn issue(
        &self,
        account_id: Uuid,
        request_id: Uuid,
        sequence: i64,
    ) -> Result<Option<ActivationKey>, redis::RedisError> {
        let key = ActivationKey::generate();
        let issued: i64 = self
            .issue_script
            .key(self.index(account_id))
            .key(self.entry(&key))
            .arg(sequence)
            .arg(request_id.to_string())
            .arg(account_id.to_string())
            .arg(self.ttl.as_secs().max(1))
            .arg(self.entry_prefix())
            .arg(key.storage_hash())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok((issued == 1).then_some(key))
    }

    /// What `key` grants, if it is live (known, not expired, not revoked).
    pub async fn lookup(&self, key: &ActivationKey) -> Result<Option<KeyGrant>, redis::RedisError> {
        let fields: std::collections::HashMap<String, String> =
            self.redis.clone().hgetall(self.entry(key)).await?;
        let parse = |name: &str| fields.get(name).and_then(|v| Uuid::parse_str(v).ok());
        Ok(match (parse("account"), parse("request")) {
            (Some(account_id), Some(request_id)) => Some(KeyGrant {
                account_id,
                request_id,
            }),
            _ => None,
        })
    }
}
