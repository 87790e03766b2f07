//! The README is checked against the code: its configuration table lists exactly the variables
//! the binary reads (with their defaults), and CI runs the test command it gives.

use flotilla_runtime::config::VARS;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

#[test]
fn readme_configuration_table_matches_the_code() {
    let text = readme();
    let start = text.find("<!-- config-table:start").expect("start marker");
    let end = text.find("<!-- config-table:end").expect("end marker");
    let rows: Vec<(String, String)> = text[start..end]
        .lines()
        .filter(|l| l.starts_with("| `FLOTILLA_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].trim_matches('`').to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> = VARS.iter().map(|v| (v.name.to_owned(), v.default.to_owned())).collect();
    assert_eq!(rows, expected, "README configuration table differs from config::VARS");
}

#[test]
fn every_flotilla_variable_named_in_the_readme_exists() {
    let text = readme();
    // The JetStream streams are named like variables but are not configuration.
    let streams = [flotilla_events::nats::EVENTS_STREAM, flotilla_events::nats::DLQ_STREAM];
    // Read by the test harness (crates/testkit), not by the binary.
    let harness = [
        "FLOTILLA_REQUIRE_POSTGRES",
        "FLOTILLA_REQUIRE_NATS",
        "FLOTILLA_REQUIRE_REDIS",
        "FLOTILLA_REQUIRE_BROWSER",
        "FLOTILLA_REQUIRE_DEPLOY_TOOLS",
    ];
    for name in harness {
        let testkit = [
            include_str!("../crates/testkit/src/pg.rs"),
            include_str!("../crates/testkit/src/nats.rs"),
            include_str!("../crates/testkit/src/redis.rs"),
            include_str!("web_ui.rs"),
            include_str!("deploy.rs"),
        ];
        assert!(testkit.iter().any(|src| src.contains(name)), "the test harness no longer reads {name}");
    }
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("FLOTILLA_")
            && word.len() > "FLOTILLA_".len()
            && !streams.contains(&word)
            && !harness.contains(&word)
        {
            // `FLOTILLA_RATE_LIMIT_*` names a family: some variable must start with it.
            let known = if word.ends_with('_') {
                VARS.iter().any(|v| v.name.starts_with(word))
            } else {
                VARS.iter().any(|v| v.name == word)
            };
            assert!(known, "README names {word}, which the binary does not read");
        }
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let text = readme();
    let cmd = "cargo test --workspace";
    assert!(text.contains(&format!("{cmd}       # run every test")), "README gives the test command");
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).expect(".ci/run");
    assert!(ci.contains(cmd), ".ci/run runs the README's test command");
}
