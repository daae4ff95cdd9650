//! Readers of the global log never skip an event that committed late.

use porter::{
    domain::{AccountEvent, events::ActivationReason},
    features::accounts::{BATCH_SIZE, project_accounts},
    platform::store::{EventMetadata, NewEvent, account_stream},
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{eventually, fresh_database};

fn registration(account_id: Uuid, name: &str) -> NewEvent {
    NewEvent::from_domain(&AccountEvent::AccountRegistered(
        porter::domain::events::AccountRegistered {
            account_id,
            username: name.into(),
            username_canonical: name.into(),
            email: format!("{name}@example.com"),
            email_canonical: format!("{name}@example.com"),
            password_hash: porter::domain::PasswordHash("$argon2id$test".into()),
            locale: "en".into(),
            registered_at: None,
            supersedes: None,
            address_owner: None,
        },
    ))
    .expect("encodes")
}

async fn insert_in(tx: &mut sqlx::PgConnection, account_id: Uuid, event: &NewEvent) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload, metadata) \
         VALUES ($1, $2, 1, $3, $4, $5, '{}') RETURNING position",
    )
    .bind(event.event_id)
    .bind(account_stream(account_id))
    .bind(event.encoded.event_type)
    .bind(event.encoded.schema_version)
    .bind(&event.encoded.payload)
    .fetch_one(tx)
    .await
    .expect("insert event")
}

async fn projected(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(pool)
        .await
        .expect("count accounts")
}

#[tokio::test]
async fn transactions_committing_out_of_order_are_both_projected() {
    let (_, pool) = fresh_database().await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());

    let mut early = pool.begin().await.expect("begin");
    let mut late = pool.begin().await.expect("begin");
    let n = insert_in(&mut early, first, &registration(first, "early")).await;
    let n_plus_one = insert_in(&mut late, second, &registration(second, "late")).await;
    assert!(n < n_plus_one);
    late.commit()
        .await
        .expect("commit the later position first");

    // Position n+1 is committed but n is not: a reader that went by position
    // alone would apply n+1, move past n, and never see it.
    assert_eq!(
        project_accounts(&pool, BATCH_SIZE).await.expect("project"),
        0
    );
    early.commit().await.expect("commit");

    // Both become readable once no older transaction is running anywhere on
    // the server; other tests' transactions may delay that a moment.
    eventually("both events to be projected", || async {
        project_accounts(&pool, BATCH_SIZE).await.expect("project");
        (projected(&pool).await == 2).then_some(())
    })
    .await;
    assert_eq!(
        project_accounts(&pool, BATCH_SIZE).await.expect("project"),
        0
    );
}

#[tokio::test]
async fn appending_at_a_stale_version_is_a_conflict() {
    let (_, pool) = fresh_database().await;
    let account_id = Uuid::new_v4();
    let stream = account_stream(account_id);
    let metadata = EventMetadata::default();
    porter::platform::store::append(
        &pool,
        &stream,
        0,
        &[registration(account_id, "ada")],
        &[],
        &metadata,
    )
    .await
    .expect("first append");
    let request = NewEvent::from_domain(&AccountEvent::ActivationRequested(
        porter::domain::events::ActivationRequested {
            request_id: Uuid::new_v4(),
            reason: ActivationReason::Resend,
        },
    ))
    .expect("encodes");
    let stale = porter::platform::store::append(
        &pool,
        &stream,
        0,
        std::slice::from_ref(&request),
        &[],
        &metadata,
    )
    .await;
    assert!(
        matches!(
            stale,
            Err(porter::platform::store::AppendError::Conflict { .. })
        ),
        "{stale:?}"
    );
    let current =
        porter::platform::store::append(&pool, &stream, 1, &[request], &[], &metadata).await;
    assert_eq!(current.expect("append at the current version"), 2);
}

#[tokio::test]
async fn events_cannot_be_updated_or_deleted() {
    let (_, pool) = fresh_database().await;
    let account_id = Uuid::new_v4();
    porter::platform::store::append(
        &pool,
        &account_stream(account_id),
        0,
        &[registration(account_id, "ada")],
        &[],
        &EventMetadata::default(),
    )
    .await
    .expect("append");
    let update = sqlx::query("UPDATE events SET payload = '{}'")
        .execute(&pool)
        .await;
    assert!(update.is_err());
    let delete = sqlx::query("DELETE FROM events").execute(&pool).await;
    assert!(delete.is_err());
}
