//! A synthetic history, written straight into the event log with SQL, for
//! replay benchmarks and tests on a scratch database.
//!
//! Each account gets the four events of the happy path, with payloads in the
//! stored shape of `domain::events` at their current schema versions:
//! `AccountRegistered`, `ActivationRequested` (sign-up), `ActivationEmailSent`
//! (with a key fingerprint and expiry) and `AccountActivated`, plus its two
//! unique claims. Accounts are written in chunks, one transaction each, and
//! within a chunk the events are ordered by kind (all registrations, then
//! all requests, ...), so streams interleave in the global order as they do
//! in production and a replay batch keeps finding rows from earlier batches.
//!
//! It bypasses the aggregate, pushes no job and touches no Redis: never point
//! it at a deployment whose accounts are real.

use sqlx::PgPool;
use uuid::Uuid;

/// Accounts per transaction.
const CHUNK: u64 = 10_000;

/// A PHC string of the production shape; nothing can log in with it.
const PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c3ludGhldGljc2FsdA$c3ludGhldGljaGFzaHN5bnRoZXRpY2hhc2g";

/// Appends `accounts` synthetic accounts (four events each) to the log at
/// `pool`. Usernames and emails are `gen_<run>_<n>` and
/// `gen.<run>.<n>@example.com`, `<run>` random per call, so calls can be
/// repeated on one database. Returns the number of events written.
pub async fn events(pool: &PgPool, accounts: u64) -> Result<u64, sqlx::Error> {
    let run = &Uuid::new_v4().simple().to_string()[..8];
    let mut first = 1u64;
    while first <= accounts {
        let last = (first + CHUNK - 1).min(accounts);
        chunk(pool, run, first, last).await?;
        first = last + 1;
    }
    Ok(accounts * 4)
}

async fn chunk(pool: &PgPool, run: &str, first: u64, last: u64) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "CREATE TEMPORARY TABLE generated ON COMMIT DROP AS \
         SELECT n, gen_random_uuid() AS account_id, gen_random_uuid() AS request_id, \
                'gen_' || $1 || '_' || n AS username, \
                'gen.' || $1 || '.' || n || '@example.com' AS email, \
                now() - interval '30 days' + make_interval(secs => n::float8 / 10) AS at \
         FROM generate_series($2::bigint, $3::bigint) AS n",
    )
    .bind(run)
    .bind(first as i64)
    .bind(last as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO unique_claims (kind, value, account_id, claimed_at) \
         SELECT 'username', username, account_id, at FROM generated \
         UNION ALL SELECT 'email', email, account_id, at FROM generated",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload, metadata, recorded_at) \
         SELECT CASE k.version WHEN 2 THEN g.request_id ELSE gen_random_uuid() END, \
                'account-' || g.account_id, k.version, \
                (ARRAY['AccountRegistered', 'ActivationRequested', 'ActivationEmailSent', 'AccountActivated'])[k.version], \
                CASE k.version WHEN 3 THEN 2 ELSE 1 END, \
                CASE k.version \
                  WHEN 1 THEN jsonb_build_object('account_id', g.account_id, 'username', g.username, \
                      'username_canonical', g.username, 'email', g.email, 'email_canonical', g.email, \
                      'password_hash', $1::text, 'locale', 'en') \
                  WHEN 2 THEN jsonb_build_object('request_id', g.request_id, 'reason', 'sign-up') \
                  WHEN 3 THEN jsonb_build_object('request_id', g.request_id, \
                      'sent_at', to_jsonb(g.at + interval '2 seconds'), \
                      'key', jsonb_build_object('fingerprint', substr(md5(g.request_id::text), 1, 16), \
                                                'expires_at', to_jsonb(g.at + interval '902 seconds'))) \
                  ELSE jsonb_build_object('request_id', g.request_id, \
                      'activated_at', to_jsonb(g.at + interval '60 seconds')) \
                END, \
                CASE WHEN k.version IN (1, 4) \
                  THEN jsonb_build_object('request_id', gen_random_uuid()::text, \
                                          'client_ip_hash', substr(md5(g.n::text), 1, 16)) \
                  ELSE jsonb_build_object('causation_id', g.request_id) \
                END, \
                g.at + CASE k.version WHEN 1 THEN interval '0' WHEN 2 THEN interval '0' \
                                      WHEN 3 THEN interval '2 seconds' ELSE interval '60 seconds' END \
         FROM generated g CROSS JOIN generate_series(1, 4) AS k(version) \
         ORDER BY k.version, g.n",
    )
    .bind(PASSWORD_HASH)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
