//! The handler guard: kills every running `command` handler's process group
//! when the agent dies, however it dies (`kill -9` included). Linux only.
//!
//! Why a guard process. A killed agent cannot clean up after itself, so
//! someone else must notice its death. The kernel offers `PR_SET_PDEATHSIG`,
//! but it only reaches the one process that set it (not the `sleep` that
//! `sh -c '...; sleep 30; touch x'` forks), and it fires when the *thread*
//! that forked the child exits, not the process, so it hangs on which
//! thread happened to spawn the handler. A per-command supervisor
//! re-exec'd per task costs an exec per task and blurs spawn errors; a
//! forked one pins a copy-on-write snapshot of the agent's memory for the
//! task's whole run. So instead the agent starts one small process at start
//! up, `drover-agent --guard` (this module's [`serve`]), and keeps the write
//! end of its stdin. Every command handler is started in its own process
//! group, and its first process announces its group (`+<pgid>`) to the guard
//! *before* it execs the program, so there is no window in which a handler
//! runs unannounced; the agent withdraws it (`-<pgid>`) once the handler has
//! ended, or, when the exec failed and the agent never learnt the id, asks
//! the guard to drop groups that no longer exist (`?`). When the agent dies
//! the kernel closes the pipe, the guard reads end of file and sends SIGKILL
//! to every group still announced, then exits.
//!
//! The handler's first process also gets `PR_SET_PDEATHSIG` (see
//! [`prepare_child`]), for a guard killed together with the agent.
//!
//! The guard ignores SIGINT, SIGTERM and SIGHUP (Ctrl-C in a terminal, a
//! `kill` of the agent) so that it outlives the agent it watches; it calls
//! itself `drover-guard`, so `pkill drover-agent` leaves it alone. A program
//! that moves itself to another process group or session (`setsid`, a
//! daemon) leaves the group and is not killed: that needs a cgroup.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Mutex, OnceLock};

/// The first argument that makes `drover-agent` run as the guard.
pub const GUARD_FLAG: &str = "--guard";

/// The agent's guard, once [`install`]ed.
static GUARD: OnceLock<Guard> = OnceLock::new();

/// The agent's end of a running guard.
#[derive(Debug)]
pub struct Guard {
    /// Kept open for the life of the agent: its closing is the signal. It
    /// is never dropped (the guard lives in a static), so its fd number,
    /// which forked children write to, stays valid.
    stdin: Mutex<ChildStdin>,
    fd: RawFd,
    child: Mutex<Child>,
}

/// Starts the guard from `exe` (the agent binary) and makes it the one
/// [`current`] returns. Idempotent: a second call keeps the first guard.
pub fn install(exe: impl Into<OsString>) -> io::Result<&'static Guard> {
    if let Some(guard) = GUARD.get() {
        return Ok(guard);
    }
    let guard = Guard::start(exe.into())?;
    Ok(GUARD.get_or_init(|| guard))
}

/// The installed guard, if any (none in unit tests and off Linux).
pub fn current() -> Option<&'static Guard> {
    GUARD.get()
}

impl Guard {
    fn start(exe: OsString) -> io::Result<Self> {
        let mut child = Command::new(exe)
            .arg(GUARD_FLAG)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("the guard's stdin was not piped"))?;
        Ok(Self {
            fd: stdin.as_raw_fd(),
            stdin: Mutex::new(stdin),
            child: Mutex::new(child),
        })
    }

    /// The pipe to write announcements to, for a forked child.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// Withdraws `pgid`: its handler ended (or its group was killed), so
    /// the guard must not kill that group id later.
    pub fn forget(&self, pgid: u32) {
        self.send(format!("-{pgid}\n").as_bytes());
    }

    /// A spawn failed after its child announced itself (the exec failed):
    /// the child is reaped, so the guard drops every group that no longer
    /// exists, that one included.
    pub fn prune(&self) {
        self.send(b"?\n");
    }

    fn send(&self, line: &[u8]) {
        let written = match self.stdin.lock() {
            Ok(mut stdin) => stdin.write_all(line),
            Err(_) => Err(io::Error::other("guard lock poisoned")),
        };
        if let Err(e) = written {
            self.report_gone(&e);
        }
    }

    /// Whether the guard process still runs.
    pub fn alive(&self) -> bool {
        match self.child.lock() {
            Ok(mut child) => matches!(child.try_wait(), Ok(None)),
            Err(_) => false,
        }
    }

    fn report_gone(&self, e: &io::Error) {
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            tracing::error!(
                error = %e,
                "the handler guard is gone: command handlers started from now on will not be killed if this agent dies"
            );
        });
    }
}

/// Runs in a command handler's child between fork and exec (it already
/// leads its own group): it asks to be SIGKILLed when the agent dies and
/// announces its group to the guard, if there is one.
///
/// `PR_SET_PDEATHSIG` is the second line of defence, for the case where the
/// guard dies with the agent (`kill -9 -<pgid>` of the agent's own group):
/// it reaches this process only, not what it forks. It fires when the
/// forking *thread* exits; handlers are spawned from tokio worker threads,
/// which live as long as the runtime. The `getppid` check closes the race
/// in which the agent died before `prctl`: then the child kills itself.
pub(crate) fn prepare_child(agent_pid: u32, announce_to: Option<RawFd>) -> io::Result<()> {
    // SAFETY: prctl, getppid, getpid and raise are async-signal-safe
    // syscalls with no memory arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return Err(io::Error::last_os_error());
        }
        if u32::try_from(libc::getppid()).ok() != Some(agent_pid) {
            libc::raise(libc::SIGKILL);
        }
        if let Some(fd) = announce_to {
            let pgid = u32::try_from(libc::getpid()).unwrap_or(0);
            announce_from_child(fd, pgid);
        }
    }
    Ok(())
}

/// Writes `+<pgid>\n` to `fd` from a forked child, before it execs.
///
/// Only async-signal-safe calls (the child of a multi-threaded process):
/// no allocation, `write(2)` only. One write of a few bytes on a pipe is
/// atomic, so it never interleaves with the agent's own lines. A failed
/// write (the guard is gone) is ignored: the handler still runs, and the
/// agent reports the lost guard.
pub(crate) fn announce_from_child(fd: RawFd, pgid: u32) {
    let mut buf = [0u8; 16];
    let mut digits = [0u8; 10];
    let mut n = pgid;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf[0] = b'+';
    for i in 0..len {
        buf[1 + i] = digits[len - 1 - i];
    }
    buf[1 + len] = b'\n';
    let total = len + 2;
    // SAFETY: plain syscalls on an fd this process holds and a stack buffer
    // that outlives them. SIGPIPE is ignored around the write so a dead
    // guard does not kill the child (std resets SIGPIPE to its default in
    // children before the pre_exec hooks run).
    unsafe {
        let old = libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::write(fd, buf.as_ptr().cast(), total);
        libc::signal(libc::SIGPIPE, old);
    }
}

/// The guard's main: reads announcements until end of file, then kills
/// every group still announced.
pub fn serve() -> ExitCode {
    // SAFETY: prctl(PR_SET_NAME) reads a NUL-terminated string; sigprocmask
    // on a fully initialised set. No threads exist yet, so the mask applies
    // to the whole process.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"drover-guard".as_ptr());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let mut groups: HashSet<i32> = HashSet::new();
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        apply(&mut groups, &line);
    }
    for pgid in groups {
        // SAFETY: kill(2) has no memory-safety preconditions. The group was
        // announced and not withdrawn, so its leader has not been reaped
        // and the id still names that group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    ExitCode::SUCCESS
}

/// Applies one announcement line; anything malformed is ignored.
fn apply(groups: &mut HashSet<i32>, line: &str) {
    if line == "?" {
        groups.retain(|&pgid| group_exists(pgid));
        return;
    }
    let (add, id) = match line.as_bytes().first() {
        Some(b'+') => (true, &line[1..]),
        Some(b'-') => (false, &line[1..]),
        _ => return,
    };
    let Ok(pgid) = id.trim().parse::<i32>() else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    if add {
        groups.insert(pgid);
    } else {
        groups.remove(&pgid);
    }
}

/// Whether any process is still in group `pgid` (signal 0 probes).
fn group_exists(pgid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 sends nothing; no memory is involved.
    let probed = unsafe { libc::kill(-pgid, 0) };
    probed == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_add_and_withdraw_groups() {
        let mut groups = HashSet::new();
        for line in ["+12", "+40", "-12", "junk", "+0", "+1", "+-5", "-999"] {
            apply(&mut groups, line);
        }
        assert_eq!(groups, HashSet::from([40]));

        // Our own group exists; a pid far above pid_max never does.
        groups.clear();
        let ours = i32::try_from(std::process::id()).expect("pid fits");
        // SAFETY: getpgid(0) only reads this process's group id.
        let own_group = unsafe { libc::getpgid(0) };
        groups.insert(own_group);
        groups.insert(i32::MAX - ours % 1000);
        apply(&mut groups, "?");
        assert_eq!(groups, HashSet::from([own_group]));
    }

    #[test]
    fn child_announcement_is_one_line() {
        let (mut reader, writer) = io::pipe().expect("pipe");
        announce_from_child(writer.as_raw_fd(), 4_194_304);
        announce_from_child(writer.as_raw_fd(), 7);
        drop(writer);
        let mut text = String::new();
        io::Read::read_to_string(&mut reader, &mut text).expect("read");
        assert_eq!(text, "+4194304\n+7\n");
    }
}
