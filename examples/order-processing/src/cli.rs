//! Hand-rolled argument parsing (no dependency, quick to compile).

use std::path::PathBuf;

use crate::order::{Cents, OrderCommand};

pub(crate) const USAGE: &str = "\
order-processing — a small order system on the annals event store

USAGE:
    order-processing [OPTIONS] <COMMAND> [ARGS]

OPTIONS:
    --data-dir <DIR>        where the SQLite database lives (default: ./data);
                            fs://<DIR> keeps the log as files in <DIR> (annals-fs, git-mergeable)
    --database-url <URL>    use PostgreSQL instead (postgres://user:pass@host/db)
    -v, --verbose           show how each order was loaded (snapshot, replayed events)
    -h, --help              this text

COMMANDS:
    demo                                    run a full scenario and print the orders
    place <order> <customer> [currency]     place a new order (currency default EUR)
    add-item <order> <sku> <qty> <price>    add items (price per unit, e.g. 4.50)
    remove-item <order> <sku> <qty>         remove items
    pay <order> <amount>                    pay the exact total
    ship <order> <carrier> [tracking]       ship a paid order
    cancel <order> [reason…]                cancel an order that has not shipped
    show <order>                            print one order
    list                                    print every order
    list --by-status                        orders grouped by status, from a read model
                                            a projection keeps (only new events are read)
    audit [--type <type>] [--last <n>]      the newest n events (default 20) as CloudEvents JSON
    import                                  append CloudEvents JSON documents from stdin,
                                            one per line (re-importing stores nothing twice)

EXIT CODES:
    0 success, 1 command rejected by a business rule or order not found,
    2 usage error or invalid input, 3 storage error";

/// Where events are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Storage {
    Sqlite { data_dir: PathBuf },
    Fs { root: PathBuf },
    Postgres { url: String },
}

/// What to do.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Help,
    Demo,
    Execute {
        order: String,
        command: OrderCommand,
    },
    Show {
        order: String,
    },
    List,
    ListByStatus,
    Audit {
        event_type: Option<String>,
        last: u64,
    },
    Import,
}

/// Parsed command line.
#[derive(Debug, Clone)]
pub(crate) struct Cli {
    pub(crate) storage: Storage,
    pub(crate) verbose: bool,
    pub(crate) action: Action,
}

/// A usage error, shown with the usage text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses `12`, `12.5`, `12.50` into cents.
pub(crate) fn parse_money(text: &str) -> Result<Cents, UsageError> {
    let bad = || usage(format!("`{text}` is not an amount like 12.50"));
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        let digits: u64 = frac.parse().map_err(|_| bad())?;
        if frac.len() == 1 {
            digits * 10
        } else {
            digits
        }
    };
    whole
        .checked_mul(100)
        .and_then(|c| c.checked_add(frac))
        .ok_or_else(bad)
}

fn parse_quantity(text: &str) -> Result<u32, UsageError> {
    text.parse()
        .map_err(|_| usage(format!("`{text}` is not a quantity (a whole number)")))
}

/// Parses `args` (without the program name).
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Cli, UsageError> {
    let mut storage = Storage::Sqlite {
        data_dir: PathBuf::from("data"),
    };
    let mut verbose = false;
    let mut rest = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data-dir" => {
                let dir = args
                    .next()
                    .ok_or_else(|| usage("--data-dir needs a directory"))?;
                storage = match dir.strip_prefix("fs://") {
                    Some(root) => Storage::Fs {
                        root: PathBuf::from(root),
                    },
                    None => Storage::Sqlite {
                        data_dir: PathBuf::from(dir),
                    },
                };
            }
            "--database-url" => {
                let url = args
                    .next()
                    .ok_or_else(|| usage("--database-url needs a URL"))?;
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(usage("--database-url must be a postgres:// URL"));
                }
                storage = Storage::Postgres { url };
            }
            "-v" | "--verbose" => verbose = true,
            "-h" | "--help" => {
                return Ok(Cli {
                    storage,
                    verbose,
                    action: Action::Help,
                })
            }
            flag if flag.starts_with("--") && rest.is_empty() => {
                return Err(usage(format!("unknown option `{flag}`")));
            }
            _ => rest.push(arg),
        }
    }
    let action = action(rest)?;
    Ok(Cli {
        storage,
        verbose,
        action,
    })
}

fn action(args: Vec<String>) -> Result<Action, UsageError> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        return Err(usage("missing command"));
    };
    let rest: Vec<String> = args.collect();
    let arity = |min: usize, max: usize| -> Result<(), UsageError> {
        if rest.len() < min || rest.len() > max {
            Err(usage(format!("wrong number of arguments for `{command}`")))
        } else {
            Ok(())
        }
    };
    let arg = |i: usize| rest.get(i).cloned().unwrap_or_default();
    let execute = |command: OrderCommand| Action::Execute {
        order: arg(0),
        command,
    };
    Ok(match command.as_str() {
        "help" => Action::Help,
        "demo" => {
            arity(0, 0)?;
            Action::Demo
        }
        "list" => {
            arity(0, 1)?;
            match rest.first().map(String::as_str) {
                None => Action::List,
                Some("--by-status") => Action::ListByStatus,
                Some(other) => return Err(usage(format!("unknown list option `{other}`"))),
            }
        }
        "audit" => {
            let (mut event_type, mut last) = (None, 20);
            let mut options = rest.iter();
            while let Some(option) = options.next() {
                let value = options
                    .next()
                    .ok_or_else(|| usage(format!("`{option}` needs a value")))?;
                match option.as_str() {
                    "--type" => event_type = Some(value.clone()),
                    "--last" => {
                        last = value
                            .parse()
                            .map_err(|_| usage(format!("`{value}` is not a count")))?;
                    }
                    other => return Err(usage(format!("unknown audit option `{other}`"))),
                }
            }
            Action::Audit { event_type, last }
        }
        "import" => {
            arity(0, 0)?;
            Action::Import
        }
        "show" => {
            arity(1, 1)?;
            Action::Show { order: arg(0) }
        }
        "place" => {
            arity(2, 3)?;
            let currency = rest.get(2).cloned().unwrap_or_else(|| "EUR".into());
            execute(OrderCommand::Place {
                customer: arg(1),
                currency,
            })
        }
        "add-item" => {
            arity(4, 4)?;
            execute(OrderCommand::AddItem {
                sku: arg(1),
                quantity: parse_quantity(&arg(2))?,
                unit_price: parse_money(&arg(3))?,
            })
        }
        "remove-item" => {
            arity(3, 3)?;
            execute(OrderCommand::RemoveItem {
                sku: arg(1),
                quantity: parse_quantity(&arg(2))?,
            })
        }
        "pay" => {
            arity(2, 2)?;
            execute(OrderCommand::Pay {
                amount: parse_money(&arg(1))?,
                reference: "cli".into(),
            })
        }
        "ship" => {
            arity(2, 3)?;
            execute(OrderCommand::Ship {
                carrier: arg(1),
                tracking: arg(2),
            })
        }
        "cancel" => {
            if rest.is_empty() {
                return Err(usage("wrong number of arguments for `cancel`"));
            }
            let reason = rest.get(1..).map(|r| r.join(" ")).unwrap_or_default();
            execute(OrderCommand::Cancel {
                reason: if reason.is_empty() {
                    "cancelled by customer".into()
                } else {
                    reason
                },
            })
        }
        other => return Err(usage(format!("unknown command `{other}`"))),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_money() {
        assert_eq!(parse_money("12").unwrap(), 1200);
        assert_eq!(parse_money("12.5").unwrap(), 1250);
        assert_eq!(parse_money("0.07").unwrap(), 7);
        for bad in ["", ".5", "1.234", "x", "-1", "1.-1", "99999999999999999999"] {
            assert!(parse_money(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_storage_and_commands() {
        let cli = parse(args("--data-dir /tmp/x -v add-item o1 tea 2 4.50")).unwrap();
        assert_eq!(
            cli.storage,
            Storage::Sqlite {
                data_dir: "/tmp/x".into()
            }
        );
        assert!(cli.verbose);
        assert!(matches!(
            cli.action,
            Action::Execute {
                ref order,
                command: OrderCommand::AddItem { quantity: 2, unit_price: 450, .. }
            } if order == "o1"
        ));
        let cli = parse(args("--data-dir fs:///tmp/log list")).unwrap();
        assert_eq!(
            cli.storage,
            Storage::Fs {
                root: PathBuf::from("/tmp/log")
            }
        );
        let cli = parse(args("--database-url postgres://u@h/db list")).unwrap();
        assert!(matches!(cli.storage, Storage::Postgres { .. }));
        assert!(parse(args("--database-url mysql://x list")).is_err());
        assert!(matches!(
            parse(args("audit --type OrderPaid.v1 --last 5")).unwrap().action,
            Action::Audit { last: 5, event_type: Some(ref t) } if t == "OrderPaid.v1"
        ));
        assert!(parse(args("audit --last")).is_err());
        assert!(parse(args("audit --last x")).is_err());
        assert!(parse(args("frobnicate")).is_err());
        assert!(parse(args("show")).is_err());
        assert!(parse(args("")).is_err());
        assert!(matches!(
            parse(args("--help")).unwrap().action,
            Action::Help
        ));
    }
}
