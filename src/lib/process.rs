//! Child processes that die with their parent, and signals to a child or its process group:
//! the only calls into libc, and the only unsafe code of the crate.
#![expect(
    unsafe_code,
    reason = "prctl in pre_exec and kill/killpg have no safe wrapper in std or tokio"
)]

use tokio::process::Command;

/// Makes the child of `command` receive `signal` when this process dies, even by SIGKILL.
pub fn die_with_parent(command: &mut Command, signal: libc::c_int) {
    // SAFETY: prctl is async-signal-safe, which is all a pre_exec hook may call; it only
    // asks the kernel to signal the child when its parent dies.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, signal);
            Ok(())
        });
    }
}

/// Sends `signal` to our child `pid`.
pub fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory effects; `pid` is a child of this process.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Kills the whole process group `pgid` (one a child of ours created); an empty group is no
/// error.
pub fn kill_group(pgid: i32) {
    // SAFETY: killpg has no memory effects.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}
