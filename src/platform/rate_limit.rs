//! Request budgets, kept in Redis so every process shares them; a service,
//! so the web process and the worker (per-address email budgets) use the
//! same limiter.
//!
//! Each budget is a GCRA (generic cell rate algorithm): per subject Redis
//! holds one integer, the "theoretical arrival time", under a key that
//! expires when the subject's budget is whole again. A budget of `max` per
//! `window` admits a burst of `max`, then one more every `window / max`.
//! State is one small key per active subject (128 bytes measured,
//! docs/operations.md), never a log of requests. The
//! script reads Redis's clock, since processes' clocks may disagree, and a
//! refused request spends nothing, so a client that keeps hammering is
//! admitted again as soon as its budget has room.
//!
//! A budget of failures is spent up front ([`RateLimiter::reserve`]) and the
//! unit given back when the attempt succeeds ([`Reservation::refund`]):
//! checking first and spending after the (slow) attempt let every request
//! of a concurrent burst pass the check before any of them spent, so a
//! burst of 39 guesses all ran against a budget of 10.
//!
//! When Redis cannot be reached the limiter does not admit everything: the
//! same budgets are enforced per process, in memory ([`LocalLimits`]), and
//! Redis is left alone for a moment so a dead Redis does not add its
//! timeout to every request. Budgets may live in their own Redis
//! (`RATE_LIMIT_REDIS_URL`), away from queues and keys.
//!
//! Subjects are hashed before they become keys, so Redis holds no personal
//! data in clear. A per-client budget's subject is the client's address;
//! an IPv6 client is keyed by its network (`/64` by default), since whoever
//! holds one address of a /64 usually holds all 2^64 of them.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{Script, aio::ConnectionManager};
use sha2::{Digest, Sha256};

use crate::platform::config::Limit;

/// GCRA on one key. ARGV: the window and the emission interval
/// (window / max) in microseconds, and "1" to spend one unit. Returns 0 when
/// admitted, else the microseconds until it would be.
const GCRA: &str = r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local window_us = tonumber(ARGV[1])
local interval_us = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now_us)
if tat < now_us then tat = now_us end
local new_tat = tat + interval_us
local allowed_at = new_tat - window_us
if allowed_at > now_us then
  return math.max(1, math.ceil(allowed_at - now_us))
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil((new_tat - now_us) / 1000)))
end
return 0
";

/// Gives one unit back to the GCRA on one key: its arrival time moves back
/// one emission interval (ARGV, microseconds), never before now; a budget
/// that is whole again loses its key.
const GCRA_REFUND: &str = r"
local stored = redis.call('GET', KEYS[1])
if not stored then return 0 end
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local tat = tonumber(stored) - tonumber(ARGV[1])
if tat <= now_us then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.max(1, math.ceil((tat - now_us) / 1000)))
end
return 0
";

/// How long the limiter uses only its in-process budgets after Redis
/// failed, before it tries Redis again.
const REDIS_BACKOFF: Duration = Duration::from_secs(1);

/// Most subjects the in-process fallback tracks at once; beyond that a new
/// subject is refused (the fallback fails closed, and its memory is bounded).
const LOCAL_CAPACITY: usize = 100_000;

/// What a budget is for; part of the Redis key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    SignUpPerIp,
    /// All sign-ups together, on top of the per-client budget; its subject
    /// is ignored.
    SignUpGlobal,
    ResendPerIp,
    ResendPerEmail,
    /// Failed uses of an emailed link (activation or password reset).
    FailedActivationPerIp,
    /// Wrong passwords at sign-in per login as typed (canonical and
    /// kind-prefixed, whether or not an account holds it) or per device
    /// token presented with it, and at password change per account.
    FailedSignInPerLogin,
    FailedSignInPerIp,
    /// Successful sign-ins (new sessions) per account.
    SignInPerAccount,
    SignInPerIp,
    ResetPerIp,
    ResetPerEmail,
    /// Emails sent to one address (its canonical form), counted by the
    /// email worker.
    EmailPerAddress,
    FailedAdminAuthPerIp,
}

impl Budget {
    /// For logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::SignUpPerIp => "sign-up-ip",
            Self::SignUpGlobal => "sign-up-global",
            Self::ResendPerIp => "resend-ip",
            Self::ResendPerEmail => "resend-email",
            Self::FailedActivationPerIp => "failed-activation-ip",
            Self::FailedSignInPerLogin => "failed-sign-in-login",
            Self::FailedSignInPerIp => "failed-sign-in-ip",
            Self::SignInPerAccount => "sign-in-account",
            Self::SignInPerIp => "sign-in-ip",
            Self::ResetPerIp => "reset-ip",
            Self::ResetPerEmail => "reset-email",
            Self::EmailPerAddress => "email-address",
            Self::FailedAdminAuthPerIp => "failed-admin-auth-ip",
        }
    }

    /// For keys: short, since there is one key per subject.
    fn code(self) -> &'static str {
        match self {
            Self::SignUpPerIp => "su",
            Self::SignUpGlobal => "sg",
            Self::ResendPerIp => "ri",
            Self::ResendPerEmail => "re",
            Self::FailedActivationPerIp => "fa",
            Self::FailedSignInPerLogin => "sl",
            Self::FailedSignInPerIp => "si",
            Self::SignInPerAccount => "na",
            Self::SignInPerIp => "ni",
            Self::ResetPerIp => "pi",
            Self::ResetPerEmail => "pe",
            Self::EmailPerAddress => "ea",
            Self::FailedAdminAuthPerIp => "aa",
        }
    }

    /// Whether the subject is a client's IP address (keyed by network for
    /// IPv6).
    fn per_client(self) -> bool {
        matches!(
            self,
            Self::SignUpPerIp
                | Self::ResendPerIp
                | Self::FailedActivationPerIp
                | Self::FailedSignInPerIp
                | Self::SignInPerIp
                | Self::ResetPerIp
                | Self::FailedAdminAuthPerIp
        )
    }
}

/// A refusal: the budget is spent for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; retry after {retry_after:?}")]
pub struct RateLimited {
    /// How long until one more would be admitted, at least one second.
    pub retry_after: Duration,
}

#[derive(Clone)]
pub struct RateLimiter {
    redis: ConnectionManager,
    namespace: String,
    ipv6_prefix: u8,
    script: Script,
    refund_script: Script,
    /// Milliseconds since the limiter started until which Redis is not
    /// asked (it failed recently); 0 when Redis is in use.
    redis_paused_until_ms: Arc<AtomicU64>,
    started: Instant,
    local: Arc<Mutex<LocalLimits>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("namespace", &self.namespace)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter keeping its budgets in `redis` under `namespace`, keying
    /// IPv6 clients by their `/ipv6_prefix` network.
    pub fn new(redis: ConnectionManager, namespace: &str, ipv6_prefix: u8) -> Self {
        Self {
            redis,
            namespace: namespace.to_owned(),
            ipv6_prefix,
            script: Script::new(GCRA),
            refund_script: Script::new(GCRA_REFUND),
            redis_paused_until_ms: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
            local: Arc::new(Mutex::new(LocalLimits::default())),
        }
    }

    /// Admits one request of `subject` against `budget`, or refuses it with
    /// how long to wait.
    pub async fn admit(
        &self,
        budget: Budget,
        limit: Limit,
        subject: &str,
    ) -> Result<(), RateLimited> {
        self.run(budget, limit, subject, true).await.map(drop)
    }

    /// Whether `subject` has spent `budget`, without spending any of it;
    /// for budgets that count outcomes, recorded with [`Self::record`]
    /// afterwards. A budget of failures is reserved instead
    /// ([`Self::reserve`]): check-then-record lets a concurrent burst pass
    /// the check together.
    pub async fn check(
        &self,
        budget: Budget,
        limit: Limit,
        subject: &str,
    ) -> Result<(), RateLimited> {
        self.run(budget, limit, subject, false).await.map(drop)
    }

    /// Spends one unit of `budget` (what it counts happened).
    pub async fn record(&self, budget: Budget, limit: Limit, subject: &str) {
        // Over budget already: nothing more to record.
        let _ = self.run(budget, limit, subject, true).await;
    }

    /// Spends one unit of `budget` before an attempt that may fail, or
    /// refuses it (spending nothing) with how long to wait. The attempt
    /// gives the unit back with [`Reservation::refund`] when it succeeds, so
    /// only failures stay spent, and a concurrent burst can never start more
    /// attempts than the budget holds.
    pub async fn reserve(
        &self,
        budget: Budget,
        limit: Limit,
        subject: &str,
    ) -> Result<Reservation<'_>, RateLimited> {
        let (key, held_by) = self.run(budget, limit, subject, true).await?;
        Ok(Reservation {
            limiter: self,
            budget,
            key,
            cell: Cell::of(limit),
            held_by,
        })
    }

    /// Runs the GCRA on `subject`'s key of `budget`, spending one unit when
    /// `spend` and admitted; answers the key and where it lives.
    async fn run(
        &self,
        budget: Budget,
        limit: Limit,
        subject: &str,
        spend: bool,
    ) -> Result<(String, HeldBy), RateLimited> {
        let key = format!(
            "{}:rl:{}:{}",
            self.namespace,
            budget.code(),
            self.subject_key(budget, subject)
        );
        let cell = Cell::of(limit);
        let result = if self.redis_paused() {
            None
        } else {
            let answer: Result<i64, _> = self
                .script
                .key(&key)
                .arg(cell.window_us)
                .arg(cell.interval_us)
                .arg(if spend { "1" } else { "0" })
                .invoke_async(&mut self.redis.clone())
                .await;
            match answer {
                Ok(wait_us) => Some(wait_us),
                Err(error) => {
                    self.pause_redis();
                    tracing::warn!(budget = budget.name(), %error,
                        "rate limiter: Redis unavailable; using this process's budgets");
                    None
                }
            }
        };
        let (wait_us, held_by) = match result {
            Some(wait_us) => (wait_us.unsigned_abs(), HeldBy::Redis),
            None => (
                self.local_limits().run(&key, cell, spend, Instant::now()),
                HeldBy::Process,
            ),
        };
        if wait_us == 0 {
            return Ok((key, held_by));
        }
        tracing::warn!(budget = budget.name(), "rate limit exceeded");
        Err(RateLimited {
            retry_after: Duration::from_micros(wait_us).max(Duration::from_secs(1)),
        })
    }

    fn local_limits(&self) -> std::sync::MutexGuard<'_, LocalLimits> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn redis_paused(&self) -> bool {
        self.elapsed_ms() < self.redis_paused_until_ms.load(Ordering::Relaxed)
    }

    fn pause_redis(&self) {
        let until = self.elapsed_ms() + REDIS_BACKOFF.as_millis() as u64;
        self.redis_paused_until_ms.store(until, Ordering::Relaxed);
    }

    /// The subject as it appears in the key: hashed, and for per-client
    /// budgets an IPv6 address reduced to its network first.
    fn subject_key(&self, budget: Budget, subject: &str) -> String {
        let subject = match budget {
            Budget::SignUpGlobal => String::new(),
            b if b.per_client() => match subject.parse::<IpAddr>() {
                Ok(ip) => client_network(ip, self.ipv6_prefix),
                Err(_) => subject.to_owned(),
            },
            _ => subject.to_owned(),
        };
        // 64 bits: two subjects sharing a budget by collision is harmless
        // and, among a million active ones, about a 1-in-30-million event.
        hex::encode(&Sha256::digest(subject.as_bytes())[..8])
    }
}

/// The network a client is keyed by: an IPv4 address itself (IPv4-mapped
/// IPv6 included), an IPv6 address's `/prefix`.
pub(crate) fn client_network(ip: IpAddr, ipv6_prefix: u8) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix))
                .unwrap_or(0);
            format!("{}/{ipv6_prefix}", Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// One unit of a budget, spent by [`RateLimiter::reserve`]: kept when the
/// attempt failed ([`Self::keep`]), given back when it succeeded
/// ([`Self::refund`]).
#[derive(Debug)]
#[must_use = "a reservation is kept with `keep` or given back with `refund`"]
pub struct Reservation<'a> {
    limiter: &'a RateLimiter,
    budget: Budget,
    key: String,
    cell: Cell,
    held_by: HeldBy,
}

/// Where a reservation's unit was spent, so it is given back there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldBy {
    Redis,
    /// The in-process fallback, while Redis was away.
    Process,
}

impl Reservation<'_> {
    /// The attempt failed: the unit stays spent.
    pub fn keep(self) {}

    /// The attempt succeeded: the unit is given back (the budget's arrival
    /// time moves back one interval, never before now). If Redis fails
    /// meanwhile the unit comes back by itself one interval later.
    pub async fn refund(self) {
        match self.held_by {
            HeldBy::Redis => {
                let answer: Result<i64, _> = self
                    .limiter
                    .refund_script
                    .key(&self.key)
                    .arg(self.cell.interval_us)
                    .invoke_async(&mut self.limiter.redis.clone())
                    .await;
                if let Err(error) = answer {
                    tracing::warn!(budget = self.budget.name(), %error,
                        "rate limiter: a reserved unit was not given back");
                }
            }
            HeldBy::Process => {
                self.limiter
                    .local_limits()
                    .refund(&self.key, self.cell, Instant::now());
            }
        }
    }
}

/// A budget in the units the algorithm uses.
#[derive(Debug, Clone, Copy)]
struct Cell {
    window_us: u64,
    /// One unit comes back after this long.
    interval_us: u64,
}

impl Cell {
    fn of(limit: Limit) -> Self {
        let window_us = u64::try_from(limit.window.as_micros()).unwrap_or(u64::MAX);
        Self {
            window_us,
            interval_us: (window_us / u64::from(limit.max.max(1))).max(1),
        }
    }
}

/// The same GCRA in this process's memory, used while Redis is away. Each
/// process then enforces each budget on its own (n processes admit up to n
/// times a budget), which is far better than admitting everything.
#[derive(Debug, Default)]
struct LocalLimits {
    /// Theoretical arrival time per key.
    tats: HashMap<String, Instant>,
}

impl LocalLimits {
    /// Microseconds to wait, 0 when admitted.
    fn run(&mut self, key: &str, cell: Cell, spend: bool, now: Instant) -> u64 {
        let tat = self.tats.get(key).copied().unwrap_or(now).max(now);
        let new_tat = tat + Duration::from_micros(cell.interval_us);
        let allowed_at = new_tat
            .checked_sub(Duration::from_micros(cell.window_us))
            .unwrap_or(now);
        if allowed_at > now {
            return u64::try_from((allowed_at - now).as_micros()).unwrap_or(u64::MAX);
        }
        if !spend {
            return 0;
        }
        if !self.tats.contains_key(key) && self.tats.len() >= LOCAL_CAPACITY {
            // A budget whose arrival time has passed is whole again.
            self.tats.retain(|_, tat| *tat > now);
            if self.tats.len() >= LOCAL_CAPACITY {
                return 1_000_000;
            }
        }
        self.tats.insert(key.to_owned(), new_tat);
        0
    }

    /// Gives one unit back: as [`GCRA_REFUND`] does in Redis.
    fn refund(&mut self, key: &str, cell: Cell, now: Instant) {
        let Some(tat) = self.tats.get_mut(key) else {
            return;
        };
        match tat.checked_sub(Duration::from_micros(cell.interval_us)) {
            Some(earlier) if earlier > now => *tat = earlier,
            _ => {
                self.tats.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: u32, seconds: u64) -> Limit {
        Limit {
            max,
            window: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn the_local_limiter_admits_a_burst_then_one_per_interval() {
        let mut local = LocalLimits::default();
        let cell = Cell::of(limit(3, 60));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(local.run("k", cell, true, start), 0);
        }
        let wait = local.run("k", cell, true, start);
        assert_eq!(wait, 20_000_000, "one unit returns every 20 s");
        assert_eq!(
            local.run("k", cell, true, start),
            wait,
            "a refusal spends nothing"
        );
        assert_eq!(local.run("other", cell, true, start), 0, "per key");
        let later = start + Duration::from_secs(20);
        assert_eq!(
            local.run("k", cell, false, later),
            0,
            "a check spends nothing"
        );
        assert_eq!(local.run("k", cell, true, later), 0);
        assert!(local.run("k", cell, true, later) > 0);
    }

    #[test]
    fn the_local_limiter_gives_a_refunded_unit_back_and_never_more() {
        let mut local = LocalLimits::default();
        let cell = Cell::of(limit(3, 60));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(local.run("k", cell, true, start), 0);
        }
        local.refund("k", cell, start);
        assert_eq!(local.run("k", cell, true, start), 0, "the unit came back");
        assert!(local.run("k", cell, true, start) > 0, "and only that one");

        // A budget refunded to whole is forgotten: refunds never bank units
        // beyond the burst.
        for _ in 0..5 {
            local.refund("k", cell, start);
        }
        assert!(local.tats.is_empty());
        for _ in 0..3 {
            assert_eq!(local.run("k", cell, true, start), 0);
        }
        assert!(local.run("k", cell, true, start) > 0);
        local.refund("unknown", cell, start);
        assert!(!local.tats.contains_key("unknown"));
    }

    #[test]
    fn the_local_limiter_is_bounded_and_fails_closed_when_full() {
        let mut local = LocalLimits::default();
        let cell = Cell::of(limit(1, 60));
        let now = Instant::now();
        for n in 0..LOCAL_CAPACITY {
            assert_eq!(local.run(&n.to_string(), cell, true, now), 0);
        }
        assert!(local.run("one too many", cell, true, now) > 0);
        let whole_again = now + Duration::from_secs(61);
        assert_eq!(local.run("one too many", cell, true, whole_again), 0);
        assert_eq!(local.tats.len(), 1, "expired budgets were dropped");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_network() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            client_network(ip("2001:db8:1:2:aaaa::1"), 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_network(ip("2001:db8:1:2:aaaa::1"), 48),
            "2001:db8:1::/48"
        );
        assert_eq!(client_network(ip("::ffff:192.0.2.7"), 64), "192.0.2.7");
        assert_eq!(client_network(ip("2001:db8::1"), 128), "2001:db8::1/128");
    }
}
