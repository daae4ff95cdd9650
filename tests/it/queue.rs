//! The queue backend's reading of apalis-redis's key layout, checked against
//! what apalis-redis itself writes: a job pushed through the producer is
//! found where `queue::backend` looks. An apalis upgrade that moves a key
//! fails here first.

use porter::platform::queue::{EmailQueue, backend};
use porter_jobs::SendAccountEmail;
use uuid::Uuid;

use crate::helpers::{TestOptions, spawn_app_with};

#[tokio::test]
async fn a_pushed_job_is_read_back_where_the_backend_looks() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let namespace = &app.config.redis.namespace;
    let job = SendAccountEmail::new(Uuid::new_v4(), Uuid::now_v7());
    let queue = EmailQueue::new(app.redis.clone(), namespace);
    queue.push(job.clone(), None).await.expect("push");
    queue.push(job.clone(), None).await.expect("a second push");

    let mut redis = app.redis.clone();
    let stats = backend::stats(&mut redis, namespace).await.expect("stats");
    assert_eq!(stats.queue, backend::email_queue_name(namespace));
    // apalis-redis files a pushed task under "scheduled" for its run time
    // (now) and moves it to "active" when a worker polls.
    assert_eq!(
        (stats.active, stats.scheduled, stats.dead),
        (0, 1, 0),
        "one job, waiting: the second push of the same id was ignored"
    );
    let keys = app.queue_keys();
    let payload: Option<String> = redis::cmd("HGET")
        .arg(keys.data())
        .arg(job.job_id())
        .query_async(&mut redis)
        .await
        .expect("HGET");
    let stored: SendAccountEmail =
        serde_json::from_str(&payload.expect("the payload is in the data hash")).expect("JSON");
    assert_eq!(stored, job);
    let waiting: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys.scheduled())
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .expect("ZRANGE");
    assert_eq!(waiting, [job.job_id()]);
}
