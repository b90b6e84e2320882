//! PostgreSQL for tests: find a server, give each test its own schema, drop it after.
//!
//! [`database_url`] resolves a server once per test process, in this order:
//!
//! 1. **`DATABASE_URL`**, if set (e.g. `postgres://user:pw@host:5432/db`);
//! 2. a **local server** at `127.0.0.1:5432`, user `postgres`, database `postgres`
//!    ([`LOCAL_URL`]), if a connection succeeds;
//! 3. a **disposable container** ([`shared_pg`]) started with
//!    `testcontainers-modules`' `Postgres` on the [`image`], where a Docker engine
//!    is reachable (`DOCKER_HOST` or `/var/run/docker.sock`); it lives until the
//!    test process exits, and is removed then;
//! 4. otherwise it **panics** with a message saying how to provide a database —
//!    a test never passes by skipping.
//!
//! [`TestSchema`] names (and creates) a unique schema `annals_test_<random>` so
//! tests run in parallel against one database, and drops it (`CASCADE`) when the
//! test ends — through [`TestSchema::teardown`] for a conformance
//! [`Fixture`](crate::Fixture), or on drop (also when the test panics).
//!
//! The **container launcher** below is the one every container test uses
//! (`annals-postgres`'s `container_*` tests, and step 3 above):
//!
//! * [`image`]: `ANNALS_TEST_PG_IMAGE=name:tag` if set; else the official
//!   `postgres:15-alpine` if present or pullable; else the image
//!   `scripts/postgres-image.sh` builds offline (`annals-postgres:15`) if it
//!   exists;
//! * [`postgres_request`] / [`start`]: a labelled testcontainers request on that
//!   image, and starting it with a failure message that says what to do;
//! * [`engine`]: the Docker engine, with a shim for engines older than the API
//!   testcontainers speaks; [`docker`] runs the CLI against it, and
//!   [`reap_after_exit`] removes a container once the test process is gone.
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

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream as StdUnixStream,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use testcontainers_modules::{
    postgres::Postgres,
    testcontainers::{runners::AsyncRunner, ContainerAsync, ContainerRequest, ImageExt},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::OnceCell,
};

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

static RESOLVED: OnceCell<String> = OnceCell::const_new();

/// The URL of the test database, resolved once per process (see the module docs).
///
/// # Panics
///
/// When no database can be found, with instructions.
pub async fn database_url() -> String {
    RESOLVED.get_or_init(resolve).await.clone()
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

async fn resolve() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if !url.trim().is_empty() {
            if !can_connect(&url).await {
                panic!(
                    "DATABASE_URL is set but no connection could be made to it \
                     (the URL is not shown: it may contain a password). Fix or unset it.\n{HOW_TO}"
                );
            }
            return url;
        }
    }
    if can_connect(LOCAL_URL).await {
        return LOCAL_URL.to_owned();
    }
    if docker_reachable() {
        // Started on its own thread; panics with the reason if it cannot start.
        return tokio::task::spawn_blocking(|| shared_pg().url.clone())
            .await
            .unwrap_or_else(|e| panic!("starting a PostgreSQL container failed: {e}\n{HOW_TO}"));
    }
    panic!("{HOW_TO}");
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

// ---------------------------------------------------------------------------
// The container launcher.
// ---------------------------------------------------------------------------

/// The environment variable selecting the image, as `name:tag` (a registry
/// port in the name is fine: `localhost:5000/pg:15`).
pub const IMAGE_VAR: &str = "ANNALS_TEST_PG_IMAGE";
/// The official image used when [`IMAGE_VAR`] is unset and it can be pulled.
pub const DEFAULT_IMAGE: (&str, &str) = ("postgres", "15-alpine");
/// The image `scripts/postgres-image.sh` builds offline from Debian's packages,
/// used when [`IMAGE_VAR`] is unset and [`DEFAULT_IMAGE`] cannot be pulled.
pub const LOCAL_IMAGE: (&str, &str) = ("annals-postgres", "15");
/// Label on every container these tests start (for a manual or CI sweep:
/// `docker rm -f $(docker ps -aq --filter label=annals.test)`).
pub const LABEL: &str = "annals.test";

/// Splits `name:tag` (a missing or empty tag means `latest`; a `:` followed by a path is a
/// registry port, not a tag).
pub fn parse_image(spec: &str) -> (String, String) {
    let spec = spec.trim();
    match spec.rsplit_once(':') {
        Some((name, tag)) if !name.is_empty() && !tag.contains('/') => {
            let tag = if tag.is_empty() { "latest" } else { tag };
            (name.to_owned(), tag.to_owned())
        }
        _ => (spec.to_owned(), "latest".to_owned()),
    }
}

/// The image the container tests use, as (name, tag), chosen once per process:
/// [`IMAGE_VAR`] if set; else [`DEFAULT_IMAGE`] if it is present or can be
/// pulled (within 120 s); else [`LOCAL_IMAGE`] if it exists; else
/// [`DEFAULT_IMAGE`] (starting it then fails with instructions). The rule is
/// [`choose_image`]; this supplies the Docker probes.
pub fn image() -> (String, String) {
    static IMAGE: OnceLock<(String, String)> = OnceLock::new();
    IMAGE.get_or_init(resolve_image).clone()
}

fn resolve_image() -> (String, String) {
    let default = format!("{}:{}", DEFAULT_IMAGE.0, DEFAULT_IMAGE.1);
    let local = format!("{}:{}", LOCAL_IMAGE.0, LOCAL_IMAGE.1);
    choose_image(
        std::env::var(IMAGE_VAR).ok().as_deref(),
        || {
            docker(&["image", "inspect", &default]).is_ok()
                || pull(&default, Duration::from_secs(120))
        },
        || docker(&["image", "inspect", &local]).is_ok(),
    )
}

/// The image rule of [`image`] without Docker: `requested` (the value of
/// [`IMAGE_VAR`]) if set and not blank; else [`DEFAULT_IMAGE`] if
/// `official_available` says it is present or pullable; else [`LOCAL_IMAGE`] if
/// `local_exists`; else [`DEFAULT_IMAGE`]. Each probe runs only when the rule
/// gets to it, so a set variable never pulls and an available official image
/// never looks for the local one.
pub fn choose_image(
    requested: Option<&str>,
    official_available: impl FnOnce() -> bool,
    local_exists: impl FnOnce() -> bool,
) -> (String, String) {
    if let Some(spec) = requested.filter(|spec| !spec.trim().is_empty()) {
        return parse_image(spec);
    }
    let owned = |(name, tag): (&str, &str)| (name.to_owned(), tag.to_owned());
    if official_available() {
        owned(DEFAULT_IMAGE)
    } else if local_exists() {
        owned(LOCAL_IMAGE)
    } else {
        owned(DEFAULT_IMAGE)
    }
}

/// `docker pull image`, killed after `within`; true if it succeeded.
fn pull(image: &str, within: Duration) -> bool {
    let engine = engine();
    let child = Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", engine.socket.display()))
        .args(["pull", "-q", image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// A testcontainers request for PostgreSQL (user, password and database
/// `postgres`), on the [`image`], labelled [`LABEL`], with `fsync` on or off.
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

/// Starts `request`.
///
/// # Panics
///
/// When the container does not start, with a message saying how to get an
/// image.
pub async fn start(request: ContainerRequest<Postgres>) -> ContainerAsync<Postgres> {
    let (name, tag) = image();
    match request.start().await {
        Ok(container) => container,
        Err(e) => panic!(
            "could not start a PostgreSQL container from image {name}:{tag}: {e}. \
             Offline, build the local image (`scripts/postgres-image.sh`); it is used \
             when {DEFAULT_IMAGE_NAME} cannot be pulled (or set {IMAGE_VAR}=annals-postgres:15). \
             {HOW_TO_GET_DOCKER}"
        ),
    }
}

const DEFAULT_IMAGE_NAME: &str = "postgres:15-alpine";

/// Connection URL of a container's PostgreSQL on the loopback port `port`.
pub fn url(port: u16) -> String {
    format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres")
}

/// The one container a test process shares between its cases.
#[derive(Debug)]
pub struct SharedPg {
    /// Container id.
    pub id: String,
    /// Connection URL.
    pub url: String,
}

/// The process-wide container, started on first use (on its own thread and
/// runtime, since each `#[tokio::test]` has a runtime of its own) and ready for
/// connections when this returns. It lives in a static and is never dropped, so
/// [`reap_after_exit`] removes it when the test process ends — also after a
/// failure or a kill.
///
/// # Panics
///
/// When the container cannot be started (every later call panics too, with the
/// same reason).
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
                let url = url(port);
                let deadline = Instant::now() + Duration::from_secs(60);
                while !can_connect(&url).await {
                    assert!(
                        Instant::now() < deadline,
                        "the container started but did not accept connections within 60 s"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                SharedPg { id, url }
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

/// How to fix a missing engine; part of every failure message.
pub const HOW_TO_GET_DOCKER: &str = "The container tests need a running Docker engine. \
     Start one (as root on Debian: `scripts/docker-up.sh` installs docker.io and starts dockerd), \
     and without a registry build the local image with `scripts/postgres-image.sh` and set \
     ANNALS_TEST_PG_IMAGE=annals-postgres:15. See docs/backends/containers.md.";

/// The engine as found at the start of the test process.
#[derive(Debug)]
pub struct Engine {
    /// Unix socket of the real engine.
    pub socket: PathBuf,
    /// The engine's highest API version, e.g. (1, 41).
    pub api: (u32, u32),
}

/// The engine, checked once per process. Panics with [`HOW_TO_GET_DOCKER`]
/// when no engine answers: these tests never skip.
///
/// testcontainers 0.27 speaks Docker API 1.52 without negotiating. Against an
/// older engine (Debian bookworm's docker.io 20.10 speaks 1.41) this starts an
/// in-process shim on a private unix socket that rewrites the version prefix
/// of request paths, and points `DOCKER_HOST` at it.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let socket = match std::env::var("DOCKER_HOST") {
            Ok(host) => match host.strip_prefix("unix://") {
                Some(path) => PathBuf::from(path),
                None => panic!(
                    "DOCKER_HOST={host}: the container tests support only unix:// engines. {HOW_TO_GET_DOCKER}"
                ),
            },
            Err(_) => PathBuf::from("/var/run/docker.sock"),
        };
        let api = match api_version(&socket) {
            Ok(api) => api,
            Err(err) => panic!(
                "no Docker engine answers at {}: {err}. {HOW_TO_GET_DOCKER}",
                socket.display()
            ),
        };
        if api < (1, 52) {
            let shim = start_version_shim(socket.clone(), api);
            // Edition 2021: set_var is safe; done once, before testcontainers reads it.
            std::env::set_var("DOCKER_HOST", format!("unix://{}", shim.display()));
        }
        Engine { socket, api }
    })
}

/// Asks the engine for its API version with a plain HTTP/1.0 request.
fn api_version(socket: &PathBuf) -> Result<(u32, u32), String> {
    let mut stream = StdUnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| e.to_string())?;
    let key = "\"ApiVersion\":\"";
    let start = reply
        .find(key)
        .ok_or_else(|| format!("unexpected /version reply: {reply}"))?
        + key.len();
    let rest = &reply[start..];
    let version = &rest[..rest.find('"').unwrap_or(rest.len())];
    let (major, minor) = version
        .split_once('.')
        .ok_or_else(|| format!("bad ApiVersion {version}"))?;
    Ok((
        major
            .parse()
            .map_err(|_| format!("bad ApiVersion {version}"))?,
        minor
            .parse()
            .map_err(|_| format!("bad ApiVersion {version}"))?,
    ))
}

/// Serves a unix socket that forwards to `upstream`, rewriting `/v1.NN/` in
/// the client's bytes to the engine's version when NN is higher (same length,
/// so bodies and Content-Length stay valid). Runs on its own thread for the
/// life of the process.
fn start_version_shim(upstream: PathBuf, api: (u32, u32)) -> PathBuf {
    let path = std::env::temp_dir().join(format!("annals-docker-shim-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)
        .unwrap_or_else(|e| panic!("cannot bind docker shim socket {}: {e}", path.display()));
    listener.set_nonblocking(true).unwrap();
    std::thread::Builder::new()
        .name("docker-api-shim".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(server) = tokio::net::UnixStream::connect(&upstream).await else {
                            return;
                        };
                        let (mut cr, mut cw) = client.into_split();
                        let (mut sr, mut sw) = server.into_split();
                        let up = async move {
                            rewrite_copy(&mut cr, &mut sw, api.1).await;
                            let _ = sw.shutdown().await;
                        };
                        let down = async move {
                            let _ = tokio::io::copy(&mut sr, &mut cw).await;
                            let _ = cw.shutdown().await;
                        };
                        tokio::join!(up, down);
                    });
                }
            });
        })
        .unwrap();
    path
}

/// Copies `from` to `to`, rewriting `/v1.NN/` with NN > `max_minor`.
async fn rewrite_copy(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    max_minor: u32,
) {
    const PAT: usize = 7; // "/v1.NN/"
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // A held-back tail is flushed if nothing follows soon: never stall a request.
        let read = if pending.is_empty() {
            from.read(&mut buf).await
        } else {
            match tokio::time::timeout(Duration::from_millis(20), from.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    if to.write_all(&pending).await.is_err() {
                        return;
                    }
                    pending.clear();
                    continue;
                }
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.write_all(&pending).await;
                return;
            }
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut i = 0;
        while i + PAT <= pending.len() {
            if pending[i..].starts_with(b"/v1.")
                && pending[i + 4].is_ascii_digit()
                && pending[i + 5].is_ascii_digit()
                && pending[i + 6] == b'/'
            {
                let minor = u32::from((pending[i + 4] - b'0') * 10 + (pending[i + 5] - b'0'));
                if minor > max_minor && max_minor >= 10 {
                    pending[i + 4] = b'0' + (max_minor / 10) as u8;
                    pending[i + 5] = b'0' + (max_minor % 10) as u8;
                }
                i += PAT;
            } else {
                i += 1;
            }
        }
        // Hold back a tail that could be the start of the pattern.
        let keep = (1..PAT)
            .rev()
            .find(|&k| k <= pending.len() && is_pattern_prefix(&pending[pending.len() - k..]))
            .unwrap_or(0);
        let send = pending.len() - keep;
        if to.write_all(&pending[..send]).await.is_err() {
            return;
        }
        pending.drain(..send);
    }
}

fn is_pattern_prefix(tail: &[u8]) -> bool {
    tail.iter().enumerate().all(|(j, &b)| match j {
        0 => b == b'/',
        1 => b == b'v',
        2 => b == b'1',
        3 => b == b'.',
        4 | 5 => b.is_ascii_digit(),
        _ => false,
    })
}

/// Runs the `docker` CLI against the real engine; returns stdout, or an error
/// with stderr.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let engine = engine();
    let out = Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", engine.socket.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run the docker CLI: {e}. {HOW_TO_GET_DOCKER}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes `container_id` (and its volumes) once this process has exited,
/// however it exits: a detached watcher polls our pid. testcontainers removes
/// containers it drops; this covers the shared per-process container, which
/// lives in a static and is never dropped.
pub fn reap_after_exit(container_id: &str) {
    let engine = engine();
    let script = "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; \
                  docker rm -f -v \"$2\" >/dev/null 2>&1";
    let spawned = Command::new("sh")
        .args(["-c", script, "annals-reaper"])
        .arg(std::process::id().to_string())
        .arg(container_id)
        .env("DOCKER_HOST", format!("unix://{}", engine.socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        let _ = docker(&["rm", "-f", "-v", container_id]);
        panic!("cannot start the container reaper: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::{choose_image, parse_image, DEFAULT_IMAGE, LOCAL_IMAGE};

    fn pair(name: &str, tag: &str) -> (String, String) {
        (name.to_owned(), tag.to_owned())
    }

    #[test]
    fn parse_image_splits_name_and_tag() {
        assert_eq!(parse_image("postgres:16"), pair("postgres", "16"));
        assert_eq!(
            parse_image("  annals-postgres:15 "),
            pair("annals-postgres", "15")
        );
        assert_eq!(
            parse_image("library/postgres:15-alpine"),
            pair("library/postgres", "15-alpine")
        );
    }

    #[test]
    fn parse_image_without_tag_means_latest() {
        assert_eq!(parse_image("postgres"), pair("postgres", "latest"));
        assert_eq!(parse_image("postgres:"), pair("postgres", "latest"));
        assert_eq!(
            parse_image("ghcr.io/acme/pg"),
            pair("ghcr.io/acme/pg", "latest")
        );
    }

    #[test]
    fn parse_image_keeps_a_registry_port_in_the_name() {
        assert_eq!(
            parse_image("localhost:5000/pg:15"),
            pair("localhost:5000/pg", "15")
        );
        assert_eq!(
            parse_image("localhost:5000/pg"),
            pair("localhost:5000/pg", "latest")
        );
        assert_eq!(
            parse_image("registry.example:443/team/postgres:15-alpine"),
            pair("registry.example:443/team/postgres", "15-alpine")
        );
    }

    #[test]
    fn a_set_variable_wins_and_probes_nothing() {
        let probed = Cell::new(false);
        let chosen = choose_image(
            Some("localhost:5000/pg:15"),
            || {
                probed.set(true);
                true
            },
            || {
                probed.set(true);
                true
            },
        );
        assert_eq!(chosen, pair("localhost:5000/pg", "15"));
        assert!(!probed.get(), "a set variable must not touch Docker");
    }

    #[test]
    fn a_blank_variable_counts_as_unset() {
        assert_eq!(
            choose_image(Some("  "), || true, || true),
            pair(DEFAULT_IMAGE.0, DEFAULT_IMAGE.1)
        );
        assert_eq!(
            choose_image(Some(""), || false, || true),
            pair(LOCAL_IMAGE.0, LOCAL_IMAGE.1)
        );
    }

    #[test]
    fn the_official_image_is_used_when_present_or_pullable() {
        let local_probed = Cell::new(false);
        let chosen = choose_image(
            None,
            || true,
            || {
                local_probed.set(true);
                true
            },
        );
        assert_eq!(chosen, pair(DEFAULT_IMAGE.0, DEFAULT_IMAGE.1));
        assert!(!local_probed.get(), "the local image is only the fallback");
    }

    #[test]
    fn offline_the_locally_built_image_is_used() {
        assert_eq!(
            choose_image(None, || false, || true),
            pair(LOCAL_IMAGE.0, LOCAL_IMAGE.1)
        );
        assert_eq!(LOCAL_IMAGE, ("annals-postgres", "15"));
    }

    #[test]
    fn with_neither_image_the_official_one_is_named() {
        // Starting it then fails with instructions (see `start`).
        assert_eq!(
            choose_image(None, || false, || false),
            pair(DEFAULT_IMAGE.0, DEFAULT_IMAGE.1)
        );
        assert_eq!(DEFAULT_IMAGE, ("postgres", "15-alpine"));
    }
}
