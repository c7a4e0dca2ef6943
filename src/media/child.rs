//! How the worker pool starts its processes (worker children, and each job's engine process):
//! with a clean environment, resource limits in force before any of their code runs, and tied
//! to their parent's life, so that a `lectern worker` killed with SIGKILL takes its children
//! with it and their jobs' leases lapse instead of being heartbeaten by orphans.

use std::io;

use tokio::process::Command;

/// Resource limits a child starts with (`setrlimit`); `None` leaves one as inherited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Address space, in bytes (`RLIMIT_AS`).
    pub address_space: Option<u64>,
    /// Largest file the process may write, in bytes (`RLIMIT_FSIZE`; past it, SIGXFSZ). `None`
    /// for processes that write the database (SQLite's files may grow past any scratch budget).
    pub file_size: Option<u64>,
    /// CPU seconds, all threads together (`RLIMIT_CPU`; past it, SIGXCPU). `None` for
    /// long-lived processes, whose CPU time adds up over many jobs.
    pub cpu_secs: Option<u64>,
}

/// Environment variables a child may inherit: what the runtime, TLS and the AWS SDK's own
/// credential chain read. Everything else (notably every `LECTERN_*` variable, which may hold
/// the JWT secret, playback keys or payment keys) stays behind.
fn inherited(name: &str, aws: bool) -> bool {
    const PLAIN: &[&str] = &[
        "PATH",
        "HOME",
        "TMPDIR",
        "TZ",
        "LANG",
        "LC_ALL",
        "RUST_LOG",
        "RUST_BACKTRACE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ];
    PLAIN.contains(&name) || name.starts_with("LC_") || (aws && name.starts_with("AWS_"))
}

/// Prepare `cmd`: a clean environment (plus the AWS SDK's variables when `aws`), `limits`, and
/// death with this process.
pub fn configure(cmd: &mut Command, limits: Limits, aws: bool) {
    cmd.env_clear();
    cmd.envs(std::env::vars().filter(|(k, _)| inherited(k, aws)));
    cmd.kill_on_drop(true);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (prctl, getppid, setrlimit), which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // The parent-death signal is sent when the thread that forked exits; children are
            // spawned from the runtime's worker threads, which live as long as the process.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would signal us.
            if libc::getppid() != parent {
                return Err(io::Error::other("the parent process is gone"));
            }
            if let Some(bytes) = limits.address_space {
                set_limit(libc::RLIMIT_AS, bytes, bytes)?;
            }
            if let Some(bytes) = limits.file_size {
                set_limit(libc::RLIMIT_FSIZE, bytes, bytes)?;
            }
            if let Some(cpu) = limits.cpu_secs {
                // SIGXCPU at the soft limit (a readable reason); SIGKILL a little later.
                set_limit(libc::RLIMIT_CPU, cpu, cpu.saturating_add(5))?;
            }
            Ok(())
        });
    }
}

/// Lower `resource` to `soft`/`hard`, never above the hard limit already in force (raising it
/// takes privileges this process need not have).
fn set_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on stack values.
    unsafe {
        if libc::getrlimit(resource, &mut current) != 0 {
            return Err(io::Error::last_os_error());
        }
        let max = current.rlim_max;
        let limit = libc::rlimit {
            rlim_cur: (soft as libc::rlim_t).min(max),
            rlim_max: (hard as libc::rlim_t).min(max),
        };
        if libc::setrlimit(resource, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::inherited;

    #[test]
    fn secrets_in_the_environment_are_not_inherited() {
        for name in [
            "LECTERN_JWT_SECRET",
            "LECTERN_PLAYBACK_KEYS",
            "LECTERN_TOSS_SECRET_KEY",
            "LECTERN_CHILD_CONFIG",
            "DATABASE_URL",
        ] {
            assert!(!inherited(name, true), "{name}");
        }
        assert!(
            inherited("PATH", false)
                && inherited("AWS_PROFILE", true)
                && !inherited("AWS_PROFILE", false)
        );
    }
}
