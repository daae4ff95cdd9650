//! Sessions: the bearer tokens a sign-in hands out, kept in Redis.
//!
//! A token is 256 bits from the operating system's generator, written as 64
//! hex digits (URL-safe). Redis holds only `SHA-256(token)`, so a Redis dump
//! signs nobody in, and the hash is the session's name everywhere else (the
//! index, "sign out this one"). Each session ends at the first of its
//! absolute life (`SESSION_TTL`) and its idle timeout (`SESSION_IDLE`, pushed
//! back on every use).
//!
//! Sessions are not events: they are short-lived, numerous, and nothing
//! needs them after they end. What ends them is: a password change or reset
//! (an event) revokes the account's sessions, and so does blocking an
//! account; both go through [`Sessions::revoke_all`], which reads a
//! per-account index of session hashes.
//!
//! An account holds at most `SESSIONS_PER_ACCOUNT` sessions; a sign-in
//! beyond that ends the oldest. The index is a sorted set scored by each
//! session's absolute end, so a sign-in trims ended sessions and evicts the
//! oldest with range operations (O(log n)) instead of looking at every
//! member: the index is shared Redis, and a script walking tens of
//! thousands of members blocks everyone's Redis meanwhile.
//!
//! A session record carries the account's id, username and email, so
//! `GET /api/me` is one Redis round trip; neither name changes while an
//! account lives, and anything that should end access revokes the session.
//!
//! Layout, under the namespace `ns`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `ns:session:<sha256>` | hash | `account`, `username`, `email`, `expires` (unix seconds, Redis's clock); TTL = time left, at most the idle timeout |
//! | `ns:session:account:<id>` | sorted set | the account's session hashes, each scored by at least its `expires` in microseconds, above every older one; expires with its newest member |

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::{TryRng as _, rngs::SysRng};
use redis::{Script, aio::ConnectionManager};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::platform::config::SessionConfig;

const TOKEN_BYTES: usize = 32;

/// Prepended to every script that touches an account's index: an index
/// written before it was a sorted set (a set of hashes) becomes one, each
/// live session scored by its recorded end. This walks the old set once;
/// every later operation finds the sorted set.
const SORTED_INDEX: &str = r"
local function sorted_index(index, entry_prefix)
  if redis.call('TYPE', index).ok ~= 'set' then return end
  local ttl = redis.call('PTTL', index)
  local members = redis.call('SMEMBERS', index)
  redis.call('DEL', index)
  for _, member in ipairs(members) do
    local expires = redis.call('HGET', entry_prefix .. member, 'expires')
    if expires then
      redis.call('ZADD', index, string.format('%d', tonumber(expires) * 1000000), member)
    end
  end
  if ttl > 0 and redis.call('EXISTS', index) == 1 then redis.call('PEXPIRE', index, ttl) end
end
";

/// Stores a new session and indexes it, then drops the index members
/// whose absolute end has passed and, beyond the cap, the oldest sessions
/// (deleting them). Returns the session's end in unix seconds.
///
/// Every step is a range operation on the sorted set, O(log n) plus what it
/// removes, never a walk of the index. A score is at least the session's
/// absolute end (microseconds, Redis's clock) and above every other score
/// in the index, so ranks follow creation and the newest session is never
/// the one evicted.
const CREATE_SCRIPT: &str = r"
local entry, index = KEYS[1], KEYS[2]
local entry_prefix, hash = ARGV[1], ARGV[2]
local ttl, first_expiry, cap = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
sorted_index(index, entry_prefix)
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local expires = tonumber(time[1]) + ttl
local score = expires * 1000000
local newest = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) >= score then score = tonumber(newest[2]) + 1 end
redis.call('HSET', entry, 'account', ARGV[3], 'username', ARGV[4], 'email', ARGV[5], 'expires', string.format('%d', expires))
redis.call('EXPIRE', entry, first_expiry)
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. string.format('%d', now_us))
redis.call('ZADD', index, string.format('%d', score), hash)
local over = redis.call('ZCARD', index) - cap
if over > 0 then
  local evicted = redis.call('ZPOPMIN', index, over)
  for i = 1, #evicted, 2 do redis.call('DEL', entry_prefix .. evicted[i]) end
end
redis.call('PEXPIREAT', index, string.format('%d', math.floor(score / 1000) + 1000))
return expires
";

/// Reads a live session and pushes its idle timeout back, never past its
/// absolute end (by Redis's clock, like the index's scores).
const TOUCH_SCRIPT: &str = r"
local fields = redis.call('HMGET', KEYS[1], 'account', 'username', 'email', 'expires')
if not fields[1] then return false end
local left = tonumber(fields[4]) - tonumber(redis.call('TIME')[1])
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('EXPIRE', KEYS[1], math.min(tonumber(ARGV[1]), left))
return fields
";

/// Ends one session and takes it out of its account's index.
const REVOKE_SCRIPT: &str = r"
local entry_prefix, index_prefix, hash = ARGV[1], ARGV[2], ARGV[3]
local account = redis.call('HGET', KEYS[1], 'account')
redis.call('DEL', KEYS[1])
if account then
  local index = index_prefix .. account
  sorted_index(index, entry_prefix)
  redis.call('ZREM', index, hash)
end
return 1
";

/// Ends every session of an account but `ARGV[2]` (empty: all of them);
/// the index holds at most the cap.
const REVOKE_ALL_SCRIPT: &str = r"
local index, entry_prefix, keep = KEYS[1], ARGV[1], ARGV[2]
sorted_index(index, entry_prefix)
local ended = 0
for _, member in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  if member ~= keep then
    ended = ended + redis.call('DEL', entry_prefix .. member)
    redis.call('ZREM', index, member)
  end
end
return ended
";

/// Counts the live sessions in an account's index (at most the cap),
/// dropping the members whose session has ended.
const COUNT_SCRIPT: &str = r"
local index, entry_prefix = KEYS[1], ARGV[1]
sorted_index(index, entry_prefix)
local live = 0
for _, member in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  if redis.call('EXISTS', entry_prefix .. member) == 1 then
    live = live + 1
  else
    redis.call('ZREM', index, member)
  end
end
return live
";

/// A script that may find an index in its old shape.
fn index_script(body: &str) -> Script {
    Script::new(&format!("{SORTED_INDEX}{body}"))
}

/// A bearer token, as handed to the client once. No `==` and a redacted
/// `Debug`: tokens are looked up by their hash, never compared or logged.
pub struct SessionToken(String);

impl SessionToken {
    /// 256 bits straight from the operating system's generator.
    pub fn generate() -> Result<Self, rand::rngs::SysError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        SysRng.try_fill_bytes(&mut bytes)?;
        Ok(Self(hex::encode(bytes)))
    }

    /// A string with the shape of a token (64 lower-case hex digits);
    /// anything else names no session and is not looked up.
    pub fn parse(raw: &str) -> Option<Self> {
        let well_formed = raw.len() == TOKEN_BYTES * 2
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| Self(raw.to_owned()))
    }

    /// What Redis stores and what names the session: `SHA-256(token)` in hex.
    pub fn storage_hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The token itself, for the sign-in answer only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// Who a live session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's name: the hash of its token.
    pub id: String,
    pub account_id: Uuid,
    pub username: String,
    pub email: String,
}

/// The account a new session is for.
#[derive(Debug, Clone)]
pub struct SessionOwner<'a> {
    pub account_id: Uuid,
    pub username: &'a str,
    pub email: &'a str,
}

#[derive(Clone)]
pub struct Sessions {
    redis: ConnectionManager,
    namespace: String,
    config: SessionConfig,
    create: Script,
    touch: Script,
    revoke: Script,
    revoke_all: Script,
    count: Script,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("namespace", &self.namespace)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the operating system's random generator failed: {0}")]
    Random(#[from] rand::rngs::SysError),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

impl Sessions {
    pub fn new(redis: ConnectionManager, namespace: &str, config: SessionConfig) -> Self {
        Self {
            redis,
            namespace: namespace.to_owned(),
            config,
            create: index_script(CREATE_SCRIPT),
            touch: Script::new(TOUCH_SCRIPT),
            revoke: index_script(REVOKE_SCRIPT),
            revoke_all: index_script(REVOKE_ALL_SCRIPT),
            count: index_script(COUNT_SCRIPT),
        }
    }

    fn entry_prefix(&self) -> String {
        format!("{}:session:", self.namespace)
    }

    fn index_prefix(&self) -> String {
        format!("{}:session:account:", self.namespace)
    }

    /// Starts a session for `owner`, ending its oldest sessions beyond
    /// `SESSIONS_PER_ACCOUNT`; returns its token and absolute end.
    #[tracing::instrument(skip_all, fields(account_id = %owner.account_id))]
    pub async fn create(
        &self,
        owner: SessionOwner<'_>,
    ) -> Result<(SessionToken, DateTime<Utc>), SessionError> {
        let token = SessionToken::generate()?;
        let hash = token.storage_hash();
        let ttl = self.config.ttl.as_secs().max(1);
        let first_expiry = self.config.idle.min(self.config.ttl).as_secs().max(1);
        let expires: i64 = self
            .create
            .key(format!("{}{hash}", self.entry_prefix()))
            .key(format!("{}{}", self.index_prefix(), owner.account_id))
            .arg(self.entry_prefix())
            .arg(&hash)
            .arg(owner.account_id.to_string())
            .arg(owner.username)
            .arg(owner.email)
            .arg(ttl)
            .arg(first_expiry)
            .arg(self.config.per_account)
            .invoke_async(&mut self.redis.clone())
            .await?;
        let expires_at = DateTime::from_timestamp(expires, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        Ok((token, expires_at))
    }

    /// The live session `token` opens, pushing its idle timeout back; `None`
    /// for a token that is unknown, expired or revoked.
    pub async fn authenticate(
        &self,
        token: &SessionToken,
    ) -> Result<Option<Session>, redis::RedisError> {
        let id = token.storage_hash();
        let fields: Option<Vec<String>> = self
            .touch
            .key(format!("{}{id}", self.entry_prefix()))
            .arg(self.config.idle.as_secs().max(1))
            .invoke_async(&mut self.redis.clone())
            .await?;
        let Some([account, username, email, _expires]) =
            fields.and_then(|fields| <[String; 4]>::try_from(fields).ok())
        else {
            return Ok(None);
        };
        Ok(Uuid::parse_str(&account).ok().map(|account_id| Session {
            id,
            account_id,
            username,
            email,
        }))
    }

    /// Ends the session named `session_id` at once.
    pub async fn revoke(&self, session_id: &str) -> Result<(), redis::RedisError> {
        self.revoke
            .key(format!("{}{session_id}", self.entry_prefix()))
            .arg(self.entry_prefix())
            .arg(self.index_prefix())
            .arg(session_id)
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map(drop)
    }

    /// Ends every session of `account_id`, except `keep` when given (the
    /// session that changed the password); returns how many ended.
    #[tracing::instrument(skip_all, fields(%account_id))]
    pub async fn revoke_all(
        &self,
        account_id: Uuid,
        keep: Option<&str>,
    ) -> Result<u64, redis::RedisError> {
        self.revoke_all
            .key(format!("{}{account_id}", self.index_prefix()))
            .arg(self.entry_prefix())
            .arg(keep.unwrap_or(""))
            .invoke_async(&mut self.redis.clone())
            .await
    }

    /// How many sessions of `account_id` are live.
    pub async fn count(&self, account_id: Uuid) -> Result<u64, redis::RedisError> {
        self.count
            .key(format!("{}{account_id}", self.index_prefix()))
            .arg(self.entry_prefix())
            .invoke_async(&mut self.redis.clone())
            .await
    }

    /// How long a new session lives at most.
    pub fn ttl(&self) -> Duration {
        self.config.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_bits_and_only_their_hash_names_them() {
        let token = SessionToken::generate().expect("the OS generator works");
        assert_eq!(token.expose().len(), 64);
        assert!(SessionToken::parse(token.expose()).is_some());
        assert_ne!(token.storage_hash(), token.expose());
        assert_eq!(format!("{token:?}"), "SessionToken(<redacted>)");
        let other = SessionToken::generate().expect("the OS generator works");
        assert_ne!(token.expose(), other.expose());
    }

    #[test]
    fn malformed_tokens_are_not_tokens() {
        for raw in ["", "abc", &"G".repeat(64), &"A".repeat(64), &"a".repeat(65)] {
            assert!(SessionToken::parse(raw).is_none(), "{raw}");
        }
    }
}
