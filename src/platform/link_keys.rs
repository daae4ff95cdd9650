//! Emailed link keys at rest in Redis: activation keys and password reset
//! keys, one machinery with a prefix per [`KeyPurpose`] so the two never
//! open each other's doors.
//!
//! Only `SHA-256(key)` is stored, so a Redis dump opens no account. Each key
//! entry maps to its account and request and expires with its purpose's TTL.
//! A per-account index lists the account's live keys; issuing a key for a newer
//! request deletes the keys of older requests (a newer link revokes the older),
//! while a second key for the *same* request (a job that ran twice) leaves the
//! first working, so every email that went out carries a working link.

use std::time::Duration;

use redis::{AsyncCommands, Script, aio::ConnectionManager};
use uuid::Uuid;

use crate::domain::LinkKey;

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

/// Deletes every live key of one account and its index (a reset that used
/// its key, a blocked account).
const REVOKE_ALL_SCRIPT: &str = r"
local index, entry_prefix = KEYS[1], ARGV[1]
local fields = redis.call('HKEYS', index)
for _, field in ipairs(fields) do
  if field ~= '__sequence' then redis.call('DEL', entry_prefix .. field) end
end
return redis.call('DEL', index)
";

/// What a key opens; its name is part of every Redis key of that purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// `ACTIVATION_TTL`; confirms an address.
    Activation,
    /// `RESET_TTL`; sets a new password once.
    PasswordReset,
}

impl KeyPurpose {
    fn name(self) -> &'static str {
        match self {
            Self::Activation => "activation",
            Self::PasswordReset => "reset",
        }
    }
}

/// What a stored key grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub account_id: Uuid,
    pub request_id: Uuid,
}

/// The keys of one purpose.
#[derive(Clone)]
pub struct LinkKeys {
    redis: ConnectionManager,
    namespace: String,
    purpose: KeyPurpose,
    ttl: Duration,
    issue_script: Script,
    revoke_all_script: Script,
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKeys")
            .field("namespace", &self.namespace)
            .field("purpose", &self.purpose)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LinkKeys {
    pub fn new(
        redis: ConnectionManager,
        namespace: &str,
        purpose: KeyPurpose,
        ttl: Duration,
    ) -> Self {
        Self {
            redis,
            namespace: namespace.to_owned(),
            purpose,
            ttl,
            issue_script: Script::new(ISSUE_SCRIPT),
            revoke_all_script: Script::new(REVOKE_ALL_SCRIPT),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn entry_prefix(&self) -> String {
        format!("{}:{}:key:", self.namespace, self.purpose.name())
    }

    fn entry(&self, key: &LinkKey) -> String {
        format!("{}{}", self.entry_prefix(), key.storage_hash())
    }

    fn index(&self, account_id: Uuid) -> String {
        format!(
            "{}:{}:account:{account_id}",
            self.namespace,
            self.purpose.name()
        )
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
    ) -> Result<Option<LinkKey>, redis::RedisError> {
        let key = LinkKey::generate();
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

    /// Revokes every live key of `account_id` for this purpose.
    #[tracing::instrument(skip_all, fields(%account_id))]
    pub async fn revoke_all(&self, account_id: Uuid) -> Result<(), redis::RedisError> {
        self.revoke_all_script
            .key(self.index(account_id))
            .arg(self.entry_prefix())
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map(drop)
    }

    /// What `key` grants, if it is live (known, not expired, not revoked).
    pub async fn lookup(&self, key: &LinkKey) -> Result<Option<KeyGrant>, redis::RedisError> {
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
