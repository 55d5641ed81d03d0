//! Thin Linux wrappers: epoll, eventfd, rlimits, and reading a process tree's RSS.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Token reserved for a worker's wake-up eventfd.
pub const WAKE_TOKEN: u64 = u64::MAX;

/// Level-triggered epoll instance.
pub struct Epoll {
    fd: RawFd,
    /// `epoll_pwait2` (ns timeouts) is missing on older kernels: then fall back to
    /// `epoll_wait`, whose timeout is whole milliseconds.
    pwait2: bool,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the fd is owned by the returned value and closed on drop.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll { fd, pwait2: true })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` lives across the call; the kernel copies it.
        cvt(unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) }).map(|_| ())
    }

    pub fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, events)
    }

    pub fn modify(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, events)
    }

    pub fn delete(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Wait for events (None = forever). Returns how many of `events` were filled.
    pub fn wait(&mut self, events: &mut [libc::epoll_event], timeout: Option<Duration>) -> usize {
        let max = events.len().min(i32::MAX as usize) as libc::c_int;
        if self.pwait2 {
            let ts = timeout.map(|d| libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            });
            let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `events` is a valid buffer of `max` entries; `tsp` is null or points
            // at a timespec that outlives the call.
            let r = unsafe { libc::epoll_pwait2(self.fd, events.as_mut_ptr(), max, tsp, std::ptr::null()) };
            if r >= 0 {
                return r as usize;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOSYS) => self.pwait2 = false,
                _ => return 0, // EINTR and friends: the caller loops anyway
            }
        }
        let ms = match timeout {
            None => -1,
            // Round up, so a sub-millisecond wait does not become a busy loop.
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: as above.
        let r = unsafe { libc::epoll_wait(self.fd, events.as_mut_ptr(), max, ms) };
        r.max(0) as usize
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// A non-blocking eventfd used to wake a worker from `epoll_wait`.
pub struct EventFd {
    fd: RawFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; owned by the returned value.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        Ok(EventFd { fd })
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local; EAGAIN (counter saturated) is harmless.
        unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
    }

    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a local.
        unsafe { libc::read(self.fd, (&mut v as *mut u64).cast(), 8) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// Raise RLIMIT_NOFILE to its hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the local struct only.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// Set by SIGTERM or SIGINT once `catch_stop_signals` ran.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::Relaxed);
}

/// From now on SIGTERM and SIGINT set a flag (`stop_requested`) instead of ending the
/// process: a hold ends early and still reports. Before this, they end it as usual.
pub fn catch_stop_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe); glibc's
        // `signal` installs it with SA_RESTART.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::Relaxed)
}

/// Resident set size of one process in KiB (`VmRSS`), None if it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Parent pid from `/proc/PID/stat` (the field after the parenthesised command name).
fn ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and all its descendants.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut all: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && let Some(pp) = ppid(p)
            {
                all.push((p, pp));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

/// RSS of `pid` and its descendants in KiB (Crossbar runs its router in a child process).
pub fn tree_rss_kib(pid: u32) -> Option<u64> {
    let own = rss_kib(pid)?;
    Some(own + process_tree(pid).iter().skip(1).filter_map(|&p| rss_kib(p)).sum::<u64>())
}

/// CPU time (user + system, seconds) `pid` and its descendants have used so far.
pub fn tree_cpu_s(pid: u32) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    let own = cpu_ticks(pid)?;
    let all = own + process_tree(pid).iter().skip(1).filter_map(|&p| cpu_ticks(p)).sum::<u64>();
    Some(all as f64 / ticks as f64)
}

/// utime + stime of one process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut after = s[s.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: u64 = after.next()?.parse().ok()?;
    let stime: u64 = after.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Read and discard everything a non-blocking socket has, for at most `limit`: true if
/// the peer closed it (EOF or reset), false if it is still open with nothing more coming.
pub fn drained_to_eof(fd: RawFd, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    let mut buf = vec![0u8; 256 * 1024];
    while std::time::Instant::now() < deadline {
        // SAFETY: reads into our own buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            return true;
        }
        if n > 0 {
            continue;
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock => {
                let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut p, 1, 100) } == 0 {
                    return false; // nothing more within 100 ms: still open
                }
            }
            io::ErrorKind::Interrupted => {}
            _ => return true,
        }
    }
    false
}

/// Whether stderr is a terminal (for the live progress line).
pub fn stderr_is_tty() -> bool {
    // SAFETY: isatty only inspects the fd.
    unsafe { libc::isatty(2) == 1 }
}

/// `nproc`, CPU model and kernel, for reports.
pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_owned()).unwrap_or_default();
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "kernel": kernel,
        "loadavg": load,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: our own RSS reads, and our process tree contains us.
    #[test]
    fn own_rss_and_tree() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(tree_rss_kib(me).unwrap() >= rss_kib(me).unwrap() / 2);
        assert_eq!(process_tree(me)[0], me);
        assert!(rss_kib(u32::MAX).is_none());
    }
}
