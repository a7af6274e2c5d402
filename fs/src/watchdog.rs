//! systemd's watchdog: with `WatchdogSec=` in the unit, systemd passes
//! `WATCHDOG_USEC` (and `WATCHDOG_PID`) and restarts the service when no
//! `WATCHDOG=1` arrives within that time.
//!
//! A daemon that merely runs proves nothing: what must be alive is the FUSE
//! session. So the notifying thread first asks the mount for its `statfs`,
//! which the kernel never answers from a cache but sends to the session as
//! a request, and notifies only once the answer came back. A session that
//! hangs (a deadlock, a stopped process, a worker stuck on a dead disk)
//! leaves that thread blocked in the call, the notifications stop, and
//! systemd kills and restarts the service; the unit's `ExecStopPost` then
//! detaches the dead mount it leaves behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::daemon::notify_systemd;

/// How often to notify: half the interval systemd asked for, when it asked
/// this process (`WATCHDOG_PID`, when set, names the service's main
/// process; a forked daemon is not it).
pub fn interval_from_env() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec) / 2)
}

/// Whether the session serving `mountpoint` answers a request (blocks for
/// as long as it does not).
pub fn session_answers(mountpoint: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a valid statfs to fill.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 }
}

/// Starts notifying systemd every `every` while the mount at `mountpoint`
/// answers.
pub fn spawn(mountpoint: PathBuf, every: Duration) -> Result<()> {
    tracing::info!(
        "systemd watchdog: notifying every {} ms while the mount answers",
        every.as_millis()
    );
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            loop {
                if session_answers(&mountpoint) {
                    notify_systemd("WATCHDOG=1");
                }
                std::thread::sleep(every);
            }
        })?;
    Ok(())
}
