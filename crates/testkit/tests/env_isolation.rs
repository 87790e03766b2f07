//! `ServiceProcess::spawn` must not pass the parent's `FLOTILLA_*` variables to the child.
//!
//! This is its own test binary with a single test because it calls `std::env::set_var`, which is
//! only sound while no other thread reads the environment (other tests spawning processes would).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use flotilla_testkit::{ServiceProcess, free_port};

#[test]
fn inherited_flotilla_variables_are_not_passed_to_children() {
    // SAFETY: the only test of this binary, so no other thread reads or writes the environment.
    unsafe {
        std::env::set_var("FLOTILLA_LEAK", "1");
        std::env::set_var("TESTKIT_INHERITED", "kept");
    }
    let mut process = ServiceProcess::spawn(
        Path::new("/bin/sh"),
        &["-c", "env"],
        &[("FLOTILLA_EXPLICIT", "yes".to_string())],
        SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
    )
    .expect("spawn /bin/sh");
    let status = process.wait_exit(Duration::from_secs(10)).expect("env exits");
    assert!(status.success(), "{status}");

    let env = process.logs();
    let lines: Vec<&str> = env.lines().collect();
    assert!(!env.contains("FLOTILLA_LEAK"), "parent FLOTILLA_* leaked:\n{env}");
    assert!(lines.contains(&"FLOTILLA_EXPLICIT=yes"), "explicit var passed:\n{env}");
    assert!(lines.contains(&"TESTKIT_INHERITED=kept"), "other vars inherited:\n{env}");
    assert!(lines.iter().any(|l| l.starts_with("PATH=")), "PATH inherited:\n{env}");
}
