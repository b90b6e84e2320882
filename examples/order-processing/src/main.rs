//! `order-processing`: a small order system on the annals event store.
//!
//! Orders are aggregates with typed, versioned events; commands that break a
//! business rule are rejected; long-lived orders load from snapshots. Events go to
//! an SQLite file in `./data` (or `--data-dir`), or to PostgreSQL with
//! `--database-url postgres://…`.
//!
//! ```text
//! cargo run -p order-processing -- demo
//! cargo run -p order-processing -- place o-1 alice
//! cargo run -p order-processing -- add-item o-1 tea 2 4.50
//! cargo run -p order-processing -- show o-1
//! ```
// A command-line program: printing errors is its job.
#![allow(clippy::print_stderr)]

/// `println!` that does not panic when stdout is closed (`order-processing list | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod app;
mod audit;
mod by_status;
mod cli;
mod demo;
mod order;

use std::{process::ExitCode, sync::Arc};

use app::{App, AppError, OrderView};
use cli::{Action, Cli};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if matches!(cli.action, Action::Help) {
        say!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut shown = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                shown = text;
                source = cause.source();
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), AppError> {
    let (store, description) = app::open_store(&cli.storage).await?;
    if cli.verbose {
        say!("storage: {description}");
    }
    let app = App::new(store);
    match cli.action {
        Action::Help => say!("{}", cli::USAGE),
        Action::Demo => {
            say!("storage: {description}");
            demo::run(&app, cli.verbose).await?;
        }
        Action::Execute { order, command } => {
            let done = app.execute(&order, &command).await?;
            if done.events.is_empty() {
                say!(
                    "order {order}: nothing to record (version {})",
                    done.version
                );
            }
            for event in &done.events {
                say!(
                    "order {order}: recorded {} (version {})",
                    annals_core::DomainEvent::event_type(event)?,
                    done.version
                );
            }
            if let Some(version) = done.snapshot_saved {
                say!("order {order}: snapshot saved at version {version}");
            }
        }
        Action::Show { order } => {
            let loaded = app.load(&order).await?;
            say!(
                "{}",
                OrderView {
                    id: &order,
                    loaded: &loaded,
                    verbose: cli.verbose,
                }
            );
        }
        Action::ListByStatus => {
            let file = by_status::read_model_file(&cli.storage);
            let model = by_status::update(app.repo.store().as_ref(), &file).await?;
            if cli.verbose {
                say!(
                    "read model {}: {} new event(s) handled",
                    file.display(),
                    model.handled
                );
            }
            if model.rows.is_empty() {
                say!("no orders yet — try `order-processing demo`");
            }
            let mut current = None;
            for (status, order) in &model.rows {
                if current != Some(status) {
                    say!("{status}:");
                    current = Some(status);
                }
                say!("  {order}");
            }
        }
        Action::Audit { event_type, last } => {
            audit::audit(app.repo.store().as_ref(), event_type.as_deref(), last).await?;
        }
        Action::Import => {
            let count = audit::import(Arc::clone(app.repo.store())).await?;
            say!("imported {count} document(s); a document imported before is stored once");
        }
        Action::List => {
            let ids = app.order_ids().await?;
            if ids.is_empty() {
                say!("no orders yet — try `order-processing demo`");
            }
            for id in ids {
                let loaded = app.load(&id).await?;
                say!(
                    "{}",
                    OrderView {
                        id: &id,
                        loaded: &loaded,
                        verbose: cli.verbose,
                    }
                );
            }
        }
    }
    Ok(())
}
