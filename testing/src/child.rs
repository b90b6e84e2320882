//! Child processes for crash and takeover tests: the running test binary itself,
//! re-executed to run one test, with its stdout read line by line on a thread.
//! Dropping a [`Child`] SIGKILLs it, so no test leaves one behind.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc::{channel, Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

/// A child test process.
#[derive(Debug)]
pub struct Child {
    process: std::process::Child,
    lines: Receiver<String>,
}

impl Child {
    /// Runs the test named `test` of the current test binary in a new process,
    /// with `env` added to its environment (the child test reads it to know it
    /// is the child; as an ordinary test it does nothing).
    pub fn spawn<V: AsRef<OsStr>>(test: &str, env: &[(&str, V)]) -> Self {
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = command.spawn().expect("spawning the child test");
        let stdout = process.stdout.take().expect("the child's stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Child { process, lines }
    }

    /// Waits up to `within` for a line containing `marker` (libtest may print
    /// `test … ` before the child's first line); panics if none comes.
    pub fn wait_for(&self, marker: &str, within: Duration) {
        let start = Instant::now();
        loop {
            let left = within.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(marker) => return,
                Ok(_) => {}
                Err(e) => panic!("the child did not print `{marker}` within {within:?}: {e:?}"),
            }
        }
    }

    /// The next line, waiting up to `within`; panics if none comes or the
    /// child's output ends (it exited).
    pub fn next_line(&self, within: Duration) -> String {
        match self.lines.recv_timeout(within) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("the child printed nothing within {within:?}")
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the child exited early"),
        }
    }

    /// SIGKILLs the child, reaps it, and returns every line it printed that was
    /// not read yet: its whole output up to its death, nothing left in a pipe.
    pub fn kill_and_collect(&mut self) -> Vec<String> {
        self.kill();
        self.lines.iter().collect()
    }

    /// The lines printed since the last call, without waiting.
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// True if the child printed nothing for `window`.
    pub fn silent_for(&self, window: Duration) -> bool {
        matches!(
            self.lines.recv_timeout(window),
            Err(RecvTimeoutError::Timeout)
        )
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}
