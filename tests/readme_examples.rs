//! The README's curl session, run as written (only the port changes) against the binary
//! started as the README says: a newcomer's first commands must work.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use flotilla_testkit::{ServiceProcess, free_port};

fn try_it_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let section = &readme[readme.find("## Try it").expect("a 'Try it' section")..];
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = start + section[start..].find("```").expect("end of the block");
    section[start..end].to_owned()
}

#[test]
fn the_readme_curl_session_works_as_written() {
    let script = try_it_block();
    assert!(script.contains("127.0.0.1:8080"), "the examples use the default address");
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let env = [("FLOTILLA_LISTEN", addr.to_string()), ("FLOTILLA_DATA_DIR", dir.path().display().to_string())];
    let mut p = ServiceProcess::spawn(Path::new(env!("CARGO_BIN_EXE_flotilla")), &[], &env, addr).unwrap();
    p.wait_ready("/health", Duration::from_secs(30)).unwrap();

    let script = script
        .replace("127.0.0.1:8080", &addr.to_string())
        .replace("/tmp/ada.json", &dir.path().join("ada.json").display().to_string());
    let out = std::process::Command::new("bash").args(["-euo", "pipefail", "-c", &script]).output().expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the README session failed:\n{stdout}\n{stderr}");
    // What a reader would see: the signup, the created task, the completed task, the chat turn, the activity
    // feed, the new token pair, the logout status and the health report.
    for expected in [
        r#""token_type":"bearer""#,
        r#""title":"Buy milk""#,
        r#""completed":true"#,
        r#""tool_calls":[{"name":"add_task""#,
        r#""events":["#,
        r#""refresh_token":"#,
        "\n204\n",
        r#""status":"ok""#,
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}
