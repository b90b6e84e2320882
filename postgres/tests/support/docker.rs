//! The Docker engine the container tests use: reachability check, an API
//! version shim for older engines, the `docker` CLI, and a reaper that removes
//! a container once this test process has exited.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream as StdUnixStream,
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
