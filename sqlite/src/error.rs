//! Turning sqlx errors into [`annals_core::Error`]s.

use std::time::Duration;

use crate::Error;

/// A driver failure while doing `what`, as [`Error::Backend`].
pub(crate) fn backend(what: impl Into<String>, source: impl Into<crate::BoxError>) -> Error {
    Error::backend(what, source)
}

/// Maps an sqlx error: a pool that could not hand out a connection in time is
/// [`Error::Timeout`]; everything else is [`Error::Backend`] with the driver error as
/// source.
pub(crate) fn map_sqlx(what: &str, timeout: Duration) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| match e {
        sqlx::Error::PoolTimedOut => Error::Timeout(timeout),
        e => backend(what, e),
    }
}
