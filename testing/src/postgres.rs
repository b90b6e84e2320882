//! PostgreSQL for tests: find a server, give each test its own schema, drop it after.
//!
//! [`database_url`] resolves a server once per test process, in this order:
//!
//! 1. **`DATABASE_URL`**, if set (e.g. `postgres://user:pw@host:5432/db`);
//! 2. a **local server** at `127.0.0.1:5432`, user `postgres`, database `postgres`
//!    ([`LOCAL_URL`]), if a connection succeeds;
//! 3. a **disposable container** started with `testcontainers-modules`' `Postgres`
//!    image, where a Docker engine is reachable (`DOCKER_HOST` or
//!    `/var/run/docker.sock`); it lives until the test process exits;
//! 4. otherwise it **panics** with a message saying how to provide a database —
//!    a test never passes by skipping.
//!
//! [`TestSchema`] names (and creates) a unique schema `annals_test_<random>` so
//! tests run in parallel against one database, and drops it (`CASCADE`) when the
//! test ends — through [`TestSchema::teardown`] for a conformance
//! [`Fixture`](crate::Fixture), or on drop (also when the test panics).
//!
//! ```ignore
//! let schema = annals_testing::postgres::TestSchema::create().await;
//! let store = PostgresEventStore::connect_with(
//!     schema.url(),
//!     PostgresOptions::new().schema(schema.name()),
//! ).await?;
//! // … test …
//! schema.teardown().await; // or just let `schema` drop
//! ```

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tokio::sync::OnceCell;

/// The local server tried second: `127.0.0.1:5432`, user `postgres`, trust auth.
pub const LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Prefix of every schema [`TestSchema`] creates.
pub const SCHEMA_PREFIX: &str = "annals_test_";

const HOW_TO: &str = "no PostgreSQL server for the tests. Provide one of:\n\
  * DATABASE_URL=postgres://user:password@host:port/database (the user needs CREATE on the database)\n\
  * a server on 127.0.0.1:5432 accepting user `postgres` without a password, e.g.\n\
      sudo apt-get install postgresql && sudo -u postgres psql -c \"ALTER USER postgres PASSWORD NULL\"\n\
      (and `host all all 127.0.0.1/32 trust` in pg_hba.conf)\n\
  * a running Docker engine (DOCKER_HOST or /var/run/docker.sock): a disposable\n\
    postgres container is started with testcontainers (offline: build the image with\n\
    scripts/postgres-image.sh and set ANNALS_TEST_PG_IMAGE=annals-postgres:15)";

struct Resolved {
    url: String,
    // Keeps the container (if any) running for the rest of the process.
    _container: Option<
        testcontainers_modules::testcontainers::ContainerAsync<
            testcontainers_modules::postgres::Postgres,
        >,
    >,
}

static RESOLVED: OnceCell<Resolved> = OnceCell::const_new();

/// The URL of the test database, resolved once per process (see the module docs).
///
/// # Panics
///
/// When no database can be found, with instructions.
pub async fn database_url() -> String {
    RESOLVED.get_or_init(resolve).await.url.clone()
}

async fn can_connect(url: &str) -> bool {
    let attempt = async {
        let conn = PgConnection::connect(url).await.ok()?;
        conn.close().await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), attempt).await,
        Ok(Some(()))
    )
}

fn docker_reachable() -> bool {
    std::env::var_os("DOCKER_HOST").is_some()
        || std::path::Path::new("/var/run/docker.sock").exists()
}

async fn resolve() -> Resolved {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if !url.trim().is_empty() {
            if !can_connect(&url).await {
                panic!(
                    "DATABASE_URL is set but no connection could be made to it \
                     (the URL is not shown: it may contain a password). Fix or unset it.\n{HOW_TO}"
                );
            }
            return Resolved {
                url,
                _container: None,
            };
        }
    }
    if can_connect(LOCAL_URL).await {
        return Resolved {
            url: LOCAL_URL.to_owned(),
            _container: None,
        };
    }
    if docker_reachable() {
        match start_container().await {
            Ok(resolved) => return resolved,
            Err(e) => {
                panic!("starting a PostgreSQL container with testcontainers failed: {e}\n{HOW_TO}")
            }
        }
    }
    panic!("{HOW_TO}");
}

async fn start_container() -> Result<Resolved, Box<dyn std::error::Error + Send + Sync>> {
    use testcontainers_modules::{
        postgres::Postgres,
        testcontainers::{runners::AsyncRunner, ImageExt},
    };

    // `ANNALS_TEST_PG_IMAGE=name:tag` selects another image, e.g. the one
    // `scripts/postgres-image.sh` builds offline (see docs/backends/containers.md).
    let image = Postgres::default();
    let container = match std::env::var("ANNALS_TEST_PG_IMAGE") {
        Ok(spec) if !spec.trim().is_empty() => {
            let (name, tag) = spec
                .trim()
                .rsplit_once(':')
                .unwrap_or((spec.trim(), "latest"));
            image.with_name(name).with_tag(tag).start().await?
        }
        _ => image.start().await?,
    };
    let host = container.get_host().await?;
    let port = container.get_host_port_ipv4(5432).await?;
    let url = format!("postgres://postgres:postgres@{host}:{port}/postgres");
    for _ in 0..50 {
        if can_connect(&url).await {
            return Ok(Resolved {
                url,
                _container: Some(container),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("the container started but never accepted connections".into())
}

/// A fresh, unique schema name: `annals_test_` + 32 random hex digits.
pub fn unique_schema_name() -> String {
    format!(
        "{SCHEMA_PREFIX}{}",
        annals_core::EventId::new().as_uuid().simple()
    )
}

/// A schema of its own for one test, dropped (`CASCADE`) when the test ends.
#[derive(Debug)]
pub struct TestSchema {
    url: String,
    name: String,
    dropped: bool,
}

impl TestSchema {
    /// Resolves the database ([`database_url`]) and creates a unique, empty schema.
    ///
    /// # Panics
    ///
    /// When no database is reachable or the schema cannot be created.
    pub async fn create() -> Self {
        let url = database_url().await;
        let name = unique_schema_name();
        let mut conn = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database: {e}"));
        conn.execute(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .await
            .unwrap_or_else(|e| panic!("creating test schema {name}: {e}"));
        let _ = conn.close().await;
        TestSchema {
            url,
            name,
            dropped: false,
        }
    }

    /// The database URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name (a valid unquoted identifier).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the schema now. Use it as a [`Fixture`](crate::Fixture) teardown:
    /// `Fixture::new(store).with_teardown(schema.teardown())`.
    pub async fn teardown(mut self) {
        self.dropped = true;
        drop_schema(&self.url, &self.name).await;
    }
}

impl Drop for TestSchema {
    /// Drops the schema if [`teardown`](TestSchema::teardown) did not: on a helper
    /// thread with its own runtime, so it also works while a test panics.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (url, name) = (self.url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_schema(&url, &name));
            }
        });
        let _ = cleanup.join();
    }
}

/// Drops `schema` and everything in it. Errors are ignored (best-effort cleanup);
/// other sessions still using the schema are waited for up to 10 s.
pub async fn drop_schema(url: &str, schema: &str) {
    let attempt = async {
        let mut conn = PgConnection::connect(url).await.ok()?;
        let sql = format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            schema.replace('"', "\"\"")
        );
        conn.execute(AssertSqlSafe(sql)).await.ok()?;
        conn.close().await.ok()
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), attempt).await;
}
