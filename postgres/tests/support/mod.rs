//! Shared helpers of the container tests (`container_conformance`,
//! `container_faults`): PostgreSQL containers started by testcontainers-modules.
//!
//! The image is the official `postgres:15-alpine` unless `ANNALS_TEST_PG_IMAGE`
//! names another (`annals-postgres:15`, built offline by
//! `scripts/postgres-image.sh`). Without a Docker engine the tests fail with a
//! message saying how to get one; they never skip.
// Test support: a panic here is a failing test with its reason.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

pub mod docker;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
    time::Duration,
};

use testcontainers_modules::{
    postgres::Postgres,
    testcontainers::{runners::AsyncRunner, ContainerAsync, ContainerRequest, ImageExt},
};

pub use docker::{docker, engine, reap_after_exit, HOW_TO_GET_DOCKER};

/// The environment variable selecting the image, as `name:tag`.
pub const IMAGE_VAR: &str = "ANNALS_TEST_PG_IMAGE";
/// The official image used when [`IMAGE_VAR`] is unset.
pub const DEFAULT_IMAGE: (&str, &str) = ("postgres", "15-alpine");
/// Label on every container these tests start (for a manual or CI sweep:
/// `docker rm -f $(docker ps -aq --filter label=annals.test)`).
pub const LABEL: &str = "annals.test";

/// The image as (name, tag).
pub fn image() -> (String, String) {
    match std::env::var(IMAGE_VAR) {
        Ok(spec) if !spec.trim().is_empty() => match spec.trim().rsplit_once(':') {
            Some((name, tag)) if !name.is_empty() && !tag.contains('/') => {
                (name.to_owned(), tag.to_owned())
            }
            _ => (spec.trim().to_owned(), "latest".to_owned()),
        },
        _ => (DEFAULT_IMAGE.0.to_owned(), DEFAULT_IMAGE.1.to_owned()),
    }
}

/// A testcontainers request for PostgreSQL (user, password and database
/// `postgres`), on the configured image, labelled [`LABEL`].
pub fn postgres_request(fsync: bool) -> ContainerRequest<Postgres> {
    engine();
    let (name, tag) = image();
    let mut pg = Postgres::default();
    if fsync {
        pg = pg.with_fsync_enabled();
    }
    pg.with_name(name)
        .with_tag(tag)
        .with_label(LABEL, std::process::id().to_string())
        .with_startup_timeout(Duration::from_secs(120))
}

/// Starts `request`, failing with a message that says how to get an image.
pub async fn start(request: ContainerRequest<Postgres>) -> ContainerAsync<Postgres> {
    let (name, tag) = image();
    match request.start().await {
        Ok(container) => container,
        Err(e) => panic!(
            "could not start a PostgreSQL container from image {name}:{tag}: {e}. \
             Offline, build the local image (`scripts/postgres-image.sh`) and set \
             {IMAGE_VAR}=annals-postgres:15. {HOW_TO_GET_DOCKER}"
        ),
    }
}

/// Connection URL of a container's PostgreSQL on the loopback port `port`.
pub fn url(port: u16) -> String {
    format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres")
}

/// The one container a test binary shares between its cases.
#[derive(Debug)]
pub struct SharedPg {
    /// Container id.
    pub id: String,
    /// Connection URL.
    pub url: String,
}

/// The process-wide container, started on first use (on its own thread and
/// runtime, since each `#[tokio::test]` has a runtime of its own). It lives in
/// a static and is never dropped, so [`reap_after_exit`] removes it when the
/// test process ends — also after a failure or a kill.
pub fn shared_pg() -> &'static SharedPg {
    // A failed start is remembered: every test then fails at once with its reason.
    static SHARED: OnceLock<Result<SharedPg, String>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| {
        let started = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let container = start(postgres_request(false)).await;
                let id = container.id().to_owned();
                reap_after_exit(&id);
                let port = container.get_host_port_ipv4(5432).await.unwrap();
                // Removal is the reaper's job: the container must outlive this runtime.
                std::mem::forget(container);
                SharedPg { id, url: url(port) }
            })
        })
        .join();
        started.map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown error".to_owned())
        })
    });
    match shared {
        Ok(shared) => shared,
        Err(why) => panic!("the shared PostgreSQL container did not start: {why}"),
    }
}

/// A schema name unique in this process (and across processes sharing a server).
pub fn fresh_schema(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free loopback TCP port (for a fixed host port mapping that survives a
/// container restart).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
