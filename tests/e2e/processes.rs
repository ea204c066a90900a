//! Child processes of the end-to-end tests (IdP, upstream, Envoy) and their logs.
//!
//! Every child is spawned from one long-lived thread and gets `PR_SET_PDEATHSIG(SIGKILL)`, so it
//! dies with the test binary, also when a test panics or the runner is killed. Linux sends that
//! signal when the *thread* that forked the child exits, which is why spawning happens on a thread
//! that lives until the process ends and never on a test thread.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Lines of a child's log shown in a failure message.
const LOG_TAIL_LINES: usize = 40;
const EXIT_POLL_INTERVAL_MS: u64 = 50;

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Returns the sender side of the spawner thread's queue, starting the thread on first use. The static keeps it alive, so the thread's
/// receive loop never ends while the test binary runs.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("e2e-spawner".to_string())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    // The requester may have given up; then the child is dropped here and
                    // killed at exit by its death signal.
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("failed to start the thread that spawns the e2e child processes");
        Mutex::new(sender)
    })
}

/// A running child whose stdout and stderr go to one log file.
pub struct ChildProcess {
    name: String,
    child: Mutex<Child>,
    log_path: PathBuf,
}

impl ChildProcess {
    /// Spawns `command` with its output in `log_path`, set up to be killed when the test binary
    /// exits.
    pub fn spawn(name: &str, mut command: Command, log_path: &Path) -> Result<ChildProcess, String> {
        let log = File::create(log_path)
            .map_err(|error| format!("cannot create log file {}: {error}", log_path.display()))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(|error| format!("cannot reopen log file {}: {error}", log_path.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr));

        let parent_pid = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and calls only the async-signal-safe
        // functions prctl and getppid. It allocates only on the error path, where the child exits
        // without exec anyway.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The test binary may have exited between fork and prctl; no signal comes then.
                if libc::getppid() != parent_pid {
                    return Err(io::Error::other("the test binary exited before the child started"));
                }
                Ok(())
            });
        }

        let (reply_sender, reply_receiver) = mpsc::channel();
        spawner()
            .lock()
            .map_err(|_| "the spawner lock is poisoned".to_string())?
            .send((command, reply_sender))
            .map_err(|_| "the spawner thread is gone".to_string())?;
        let child = reply_receiver
            .recv_timeout(Duration::from_secs(10))
            .map_err(|error| format!("no reply from the spawner thread for {name}: {error}"))?
            .map_err(|error| format!("failed to start {name}: {error}"))?;

        Ok(ChildProcess {
            name: name.to_string(),
            child: Mutex::new(child),
            log_path: log_path.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the exit status if the child has exited, without waiting.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().ok()?;
        child.try_wait().ok().flatten()
    }

    /// Waits at most `timeout` for the child to exit.
    pub fn wait_for_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(EXIT_POLL_INTERVAL_MS));
        }
    }

    /// Kills the child and reaps it.
    pub fn kill(&self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Returns the last lines of the log, headed by the file name, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!(
            "--- last {} lines of {} ---\n{}",
            lines.len() - start,
            self.log_path.display(),
            lines[start..].join("\n")
        )
    }
}

/// Runs `command` to completion within `timeout` and returns its exit status and combined output.
pub fn run_to_completion(
    name: &str,
    command: Command,
    log_path: &Path,
    timeout: Duration,
) -> Result<(ExitStatus, String), String> {
    let process = ChildProcess::spawn(name, command, log_path)?;
    match process.wait_for_exit(timeout) {
        Some(status) => Ok((status, process.log())),
        None => {
            process.kill();
            Err(format!("{name} did not finish within {timeout:?}\n{}", process.log_tail()))
        }
    }
}
