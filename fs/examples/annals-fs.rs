//! A small command line over an annals-fs store, for the walkthrough in
//! `docs/backends/fs.md`:
//!
//! ```text
//! annals-fs <root> append <stream> <type> <json>
//! annals-fs <root> read <stream>
//! annals-fs <root> log
//! annals-fs <root> status
//! annals-fs <root> forks
//! annals-fs <root> reconcile <fork id> keep <branch>
//! annals-fs <root> reconcile <fork id> order <branch>,<branch>,...
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr, missing_docs)]

use std::process::ExitCode;

use annals_fs::{
    futures::TryStreamExt, Choice, EventStore, ExpectedVersion, FsEventStore, NewEvent, ReadAll,
    ReadStream, RecordedEvent, StreamId,
};

fn line(e: &RecordedEvent) -> String {
    format!(
        "{:>5}  {}@{}  {}  {}",
        e.position,
        e.stream_id,
        e.version,
        e.event_type,
        String::from_utf8_lossy(&e.payload)
    )
}

async fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [root, command, rest @ ..] = args else {
        return Err("usage: annals-fs <root> <append|read|log|status|forks|reconcile> ...".into());
    };
    let store = FsEventStore::open(root).await?;
    match (command.as_str(), rest) {
        ("append", [stream, kind, json]) => {
            let stream = StreamId::new(stream)?;
            let done = store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new(kind.as_str(), json.as_bytes().to_vec())],
                )
                .await?;
            println!("{stream} is at version {}", done.version);
        }
        ("read", [stream]) => {
            let events: Vec<_> = store
                .read_stream(ReadStream::forward(&StreamId::new(stream)?))
                .try_collect()
                .await?;
            events.iter().for_each(|e| println!("{}", line(e)));
        }
        ("log", []) => {
            let events: Vec<_> = store.read_all(ReadAll::forward()).try_collect().await?;
            events.iter().for_each(|e| println!("{}", line(e)));
        }
        ("status", []) => {
            let status = store.status().await?;
            println!(
                "{} transactions, {} forks, {} dangling, {} bad files",
                status.transactions,
                status.forks.len(),
                status.dangling.len(),
                status.bad_files.len()
            );
            for d in &status.dangling {
                println!(
                    "dangling: {} (missing {:?})",
                    d.file.display(),
                    d.missing_parents
                );
            }
            for b in &status.bad_files {
                println!("bad file: {} ({:?})", b.file.display(), b.problem);
            }
        }
        ("forks", []) => {
            for fork in store.forks().await? {
                let streams: Vec<_> = fork.streams.iter().map(ToString::to_string).collect();
                println!("fork {} on {}", fork.id, streams.join(", "));
                for (i, branch) in fork.branches.iter().enumerate() {
                    println!("  branch {i}:");
                    branch
                        .events
                        .iter()
                        .for_each(|e| println!("    {}", line(e)));
                }
            }
        }
        ("reconcile", [fork, how, which]) => {
            let choice = match how.as_str() {
                "keep" => Choice::Keep(which.parse()?),
                "order" => {
                    Choice::KeepInOrder(which.split(',').map(str::parse).collect::<Result<_, _>>()?)
                }
                _ => return Err("reconcile <fork> keep <branch> | order <b>,<b>".into()),
            };
            let done = store.reconcile(fork, choice).await?;
            for (stream, version) in done.versions {
                println!("{stream} is at version {version}");
            }
        }
        _ => return Err(format!("unknown command `{command}` or wrong arguments").into()),
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
