//! The deployment files against the binary (shared/product/lessons.md, "Drift"): the Helm chart is
//! rendered with the real `helm`, and
//! - every rendered Deployment and Job container of the Flotilla image is run as a process with its
//!   own args and its own env (ConfigMap and Secret references resolved, service host names and the
//!   listen port mapped to free loopback ports) against a throwaway PostgreSQL, NATS JetStream and
//!   Redis, and every probe path is called on the probe's port;
//! - every Flotilla service of the compose file is run the same way, in its `depends_on` order, and
//!   its healthcheck (`flotilla probe /ready`, the image's binary) is run with its env until it
//!   passes; each has one, and fails once its service is stopped;
//! - every env var the chart or the compose file sets is one the binary reads (`config::VARS`);
//! - every metric the alert rules and the dashboard use is on a running system's `/metrics`;
//! - Service ports equal container ports, probe ports are the listen port;
//! - the NetworkPolicies allow exactly the edges of the architecture.
//!
//! `helm` is looked up in `target/deploy-tools/bin` (where `.ci/deploy-checks` installs it) and on
//! PATH. Without it these tests print a SKIPPED banner, unless FLOTILLA_REQUIRE_DEPLOY_TOOLS=1.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_runtime::config::VARS;
use flotilla_testkit::nats::nats_or_skip;
use flotilla_testkit::{ServiceProcess, free_port, http_get, pg_or_skip};
use serde_yaml_ng::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART: &str = "deploy/helm/flotilla";
const RELEASE: &str = "flotilla";
const NAMESPACE: &str = "flotilla";
/// The value files the chart ships; each must render, and pass the static checks.
const VALUE_FILES: &[&str] = &["values-kind.yaml", "values-minikube.yaml", "values-production.yaml"];
/// Metrics the binary does not emit but the rules and dashboard may use: Prometheus' own `up`,
/// kube-state-metrics (`kube_`), node-exporter (`node_`) and cAdvisor (`container_`).
const EXTERNAL_METRIC_PREFIXES: &[&str] = &["kube_", "node_", "container_"];
const EXTERNAL_METRICS: &[&str] = &["up"];

// ---------------------------------------------------------------------------------------------
// Tools

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let local = Path::new(ROOT).join("target/deploy-tools/bin").join(name);
    if is_executable(&local) {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn tools_required() -> bool {
    std::env::var("FLOTILLA_REQUIRE_DEPLOY_TOOLS")
        .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes"))
}

fn skip_or_fail(message: &str) {
    if tools_required() {
        panic!("{message}\n(skipping is not allowed: FLOTILLA_REQUIRE_DEPLOY_TOOLS=1)");
    }
    let banner = "*".repeat(78);
    let _ = writeln!(std::io::stderr(), "\n{banner}\nSKIPPED: {message}\n{banner}\n");
}

fn helm_or_skip() -> Option<PathBuf> {
    let helm = find_tool("helm");
    if helm.is_none() {
        skip_or_fail("helm not found in target/deploy-tools/bin or on PATH (.ci/deploy-checks installs it)");
    }
    helm
}

// ---------------------------------------------------------------------------------------------
// Rendering and reading manifests

fn render(helm: &Path, args: &[String]) -> Vec<Value> {
    let out = Command::new(helm)
        .current_dir(ROOT)
        .args(["template", RELEASE, CHART, "--namespace", NAMESPACE])
        .args(args)
        .output()
        .expect("run helm template");
    assert!(out.status.success(), "helm template {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    parse_documents(&String::from_utf8(out.stdout).expect("helm prints UTF-8"))
}

fn render_values_file(helm: &Path, file: &str) -> Vec<Value> {
    render(helm, &["-f".into(), format!("{CHART}/{file}")])
}

/// Splits a multi-document YAML stream (`---` lines at column 0 never occur inside block scalars,
/// which are indented).
fn parse_documents(text: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line == "---" || line.starts_with("--- ") {
            if !current.trim().is_empty() {
                let v: Value = serde_yaml_ng::from_str(&current)
                    .unwrap_or_else(|e| panic!("invalid YAML document: {e}\n{current}"));
                if !v.is_null() {
                    docs.push(v);
                }
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn kind(v: &Value) -> &str {
    s(&v["kind"])
}

fn name(v: &Value) -> &str {
    s(&v["metadata"]["name"])
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping().map(|m| m.iter().map(|(k, v)| (s(k).to_owned(), scalar(v))).collect()).unwrap_or_default()
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// The pod template (Deployment, StatefulSet, Job) or the pod spec holder (Pod).
fn pod_template(v: &Value) -> Option<&Value> {
    match kind(v) {
        "Deployment" | "StatefulSet" | "Job" => Some(&v["spec"]["template"]),
        "Pod" => Some(v),
        _ => None,
    }
}

/// Whether a container runs the Flotilla image (`…/flotilla:tag`).
fn is_flotilla_image(image: &str) -> bool {
    let no_digest = image.split('@').next().unwrap_or("");
    let repo = match no_digest.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => no_digest,
    };
    repo.rsplit('/').next() == Some("flotilla")
}

struct Manifests {
    docs: Vec<Value>,
    /// Whether a Secret that is not in the render (`secrets.existingSecret`) may be referenced:
    /// its values are then placeholders (static checks only).
    external_secrets: bool,
}

impl Manifests {
    fn of_kind<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.docs.iter().filter(move |d| kind(d) == k)
    }

    fn find(&self, k: &str, n: &str) -> Option<&Value> {
        self.docs.iter().find(|d| kind(d) == k && name(d) == n)
    }

    /// Value of `key` in a ConfigMap or Secret (stringData, or base64 data).
    fn lookup(&self, k: &str, object: &str, key: &str) -> Option<String> {
        if k == "Secret" && self.external_secrets && self.find(k, object).is_none() {
            return Some(format!("<{key} from the existing Secret {object}>"));
        }
        let o = self.find(k, object)?;
        if let Some(v) = o["data"].get(key) {
            return Some(if k == "Secret" { base64_decode(s(v)) } else { scalar(v) });
        }
        o["stringData"].get(key).map(scalar)
    }

    fn all_data(&self, k: &str, object: &str) -> Option<Vec<(String, String)>> {
        let o = self.find(k, object)?;
        let mut out = Vec::new();
        for field in ["data", "stringData"] {
            if let Some(m) = o[field].as_mapping() {
                for (key, v) in m {
                    let v = if k == "Secret" && field == "data" { base64_decode(s(v)) } else { scalar(v) };
                    out.push((s(key).to_owned(), v));
                }
            }
        }
        Some(out)
    }

    /// The environment of a container as the kubelet would build it: envFrom first, then env
    /// (later wins). Optional references to missing keys are left out; a missing required one is
    /// an error (the pod would never start).
    fn container_env(&self, c: &Value) -> Result<Vec<(String, String)>, String> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for from in seq(&c["envFrom"]) {
            for (k, field) in [("ConfigMap", "configMapRef"), ("Secret", "secretRef")] {
                let r = &from[field];
                if r.is_null() {
                    continue;
                }
                let optional = r["optional"].as_bool().unwrap_or(false);
                match self.all_data(k, s(&r["name"])) {
                    Some(pairs) => env.extend(pairs),
                    None if optional => {}
                    None => return Err(format!("envFrom {k} {} is not in the rendered chart", s(&r["name"]))),
                }
            }
        }
        for e in seq(&c["env"]) {
            let n = s(&e["name"]).to_owned();
            if !e["value"].is_null() || e["valueFrom"].is_null() {
                env.insert(n, scalar(&e["value"]));
                continue;
            }
            let mut resolved = None;
            for (k, field) in [("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")] {
                let r = &e["valueFrom"][field];
                if r.is_null() {
                    continue;
                }
                let optional = r["optional"].as_bool().unwrap_or(false);
                match self.lookup(k, s(&r["name"]), s(&r["key"])) {
                    Some(v) => resolved = Some(Some(v)),
                    None if optional => resolved = Some(None),
                    None => {
                        return Err(format!(
                            "{n}: {k} {} has no key {} in the rendered chart",
                            s(&r["name"]),
                            s(&r["key"])
                        ));
                    }
                }
            }
            match resolved {
                Some(Some(v)) => {
                    env.insert(n, v);
                }
                Some(None) => {}
                None => return Err(format!("{n}: unsupported valueFrom {:?}", e["valueFrom"])),
            }
        }
        Ok(env.into_iter().collect())
    }
}

fn base64_decode(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).expect("UTF-8 secret")
}

/// A Flotilla container of a rendered workload.
struct Workload<'a> {
    kind: String,
    name: String,
    pod_labels: BTreeMap<String, String>,
    container: &'a Value,
}

fn flotilla_workloads(m: &Manifests) -> Vec<Workload<'_>> {
    let mut out = Vec::new();
    for d in &m.docs {
        let Some(t) = pod_template(d) else { continue };
        for c in seq(&t["spec"]["containers"]).iter().chain(seq(&t["spec"]["initContainers"])) {
            if is_flotilla_image(s(&c["image"])) {
                out.push(Workload {
                    kind: kind(d).to_owned(),
                    name: name(d).to_owned(),
                    pod_labels: labels(&t["metadata"]["labels"]),
                    container: c,
                });
            }
        }
    }
    out
}

/// The argv after the image's ENTRYPOINT (`flotilla`): the container must not replace it.
fn flotilla_args(c: &Value) -> Vec<String> {
    let command: Vec<String> = seq(&c["command"]).iter().map(scalar).collect();
    assert!(
        command.is_empty() || (command.len() == 1 && command[0].ends_with("/flotilla")),
        "container {} replaces the image's entrypoint with {command:?}",
        s(&c["name"])
    );
    seq(&c["args"]).iter().map(scalar).collect()
}

/// A named or numbered container port.
fn resolve_port(c: &Value, port: &Value) -> Option<u16> {
    if let Some(n) = port.as_u64() {
        return seq(&c["ports"]).iter().any(|p| p["containerPort"].as_u64() == Some(n)).then_some(n as u16);
    }
    seq(&c["ports"])
        .iter()
        .find(|p| s(&p["name"]) == s(port))
        .and_then(|p| p["containerPort"].as_u64())
        .map(|n| n as u16)
}

/// Whether a selector matches `have`: a LabelSelector (`matchLabels`) or a Service's plain map.
fn selector_matches(selector: &Value, have: &BTreeMap<String, String>) -> bool {
    assert!(selector["matchExpressions"].is_null(), "matchExpressions are not evaluated by this test");
    let wanted = if selector["matchLabels"].is_null() { labels(selector) } else { labels(&selector["matchLabels"]) };
    wanted.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// The HTTP probes of a container: (kind, path, port).
fn http_probes(c: &Value) -> Vec<(&'static str, String, Value)> {
    let mut out = Vec::new();
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let p = &c[probe];
        if p.is_null() {
            continue;
        }
        assert!(!p["httpGet"].is_null(), "{probe} of {} is not an HTTP probe", s(&c["name"]));
        out.push((probe, s(&p["httpGet"]["path"]).to_owned(), p["httpGet"]["port"].clone()));
    }
    out
}

fn known_var(name: &str) -> bool {
    VARS.iter().any(|v| v.name == name)
}

// ---------------------------------------------------------------------------------------------
// Static checks on every value file

/// Every env var a Flotilla container gets is a FLOTILLA_* variable the binary reads; probes and
/// Services point at the port the binary listens on.
fn check_static(m: &Manifests, file: &str) {
    let workloads = flotilla_workloads(m);
    assert!(!workloads.is_empty(), "{file}: no Flotilla containers rendered");
    for w in &workloads {
        let c = w.container;
        let env = m.container_env(c).unwrap_or_else(|e| panic!("{file}: {} {}: {e}", w.kind, w.name));
        for (k, _) in &env {
            assert!(
                k.starts_with("FLOTILLA_") && known_var(k),
                "{file}: {} {} sets {k}, which the binary does not read (config::VARS)",
                w.kind,
                w.name
            );
        }
        // Secrets only through secretKeyRef: no literal value of a secret variable.
        for e in seq(&c["env"]) {
            let n = s(&e["name"]);
            if [
                "FLOTILLA_DATABASE_URL",
                "FLOTILLA_ADMIN_PASSWORD",
                "FLOTILLA_OPENAI_API_KEY",
                "FLOTILLA_WEB_SESSION_KEY",
            ]
            .contains(&n)
            {
                assert!(
                    !e["valueFrom"]["secretKeyRef"].is_null(),
                    "{file}: {} {}: {n} must come from a Secret",
                    w.kind,
                    w.name
                );
            }
        }
        if w.kind != "Deployment" {
            continue;
        }
        let listen = env.iter().find(|(k, _)| k == "FLOTILLA_LISTEN").map(|(_, v)| v.clone());
        let listen = listen.unwrap_or_else(|| panic!("{file}: Deployment {} sets no FLOTILLA_LISTEN", w.name));
        let listen: SocketAddr = listen.parse().unwrap_or_else(|_| panic!("{file}: FLOTILLA_LISTEN={listen}"));
        assert!(listen.ip().is_unspecified(), "{file}: {} listens on {listen}: unreachable from other pods", w.name);
        let ports: Vec<u64> = seq(&c["ports"]).iter().filter_map(|p| p["containerPort"].as_u64()).collect();
        assert_eq!(ports, vec![u64::from(listen.port())], "{file}: {}: container ports vs FLOTILLA_LISTEN", w.name);
        let probes = http_probes(c);
        let kinds: BTreeSet<&str> = probes.iter().map(|p| p.0).collect();
        assert_eq!(kinds.len(), 3, "{file}: {} needs startup, liveness and readiness probes", w.name);
        for (probe, path, port) in &probes {
            assert_eq!(
                resolve_port(c, port),
                Some(listen.port()),
                "{file}: {}: {probe} {path} on port {port:?}, but the binary listens on {}",
                w.name,
                listen.port()
            );
        }
        // Services selecting these pods: port == targetPort == the container port.
        let services: Vec<&Value> =
            m.of_kind("Service").filter(|svc| selector_matches(&svc["spec"]["selector"], &w.pod_labels)).collect();
        assert_eq!(services.len(), 1, "{file}: Deployment {} should have exactly one Service", w.name);
        for p in seq(&services[0]["spec"]["ports"]) {
            let target = if p["targetPort"].is_null() { p["port"].clone() } else { p["targetPort"].clone() };
            let resolved = resolve_port(c, &target);
            assert_eq!(resolved, Some(listen.port()), "{file}: Service {} targetPort {target:?}", name(services[0]));
            assert_eq!(
                p["port"].as_u64(),
                Some(u64::from(listen.port())),
                "{file}: Service {} port",
                name(services[0])
            );
        }
    }
    // The gateway's liveness is /livez (its /health aggregates the services), everyone else /health.
    for w in workloads.iter().filter(|w| w.kind == "Deployment") {
        let component = w.pod_labels.get("app.kubernetes.io/component").cloned().unwrap_or_default();
        let live = if component == "gateway" {
            flotilla_runtime::http::GATEWAY_LIVENESS_PATH
        } else {
            flotilla_runtime::http::HEALTH_PATH
        };
        for (probe, path, _) in http_probes(w.container) {
            let want = if probe == "readinessProbe" { flotilla_runtime::http::READY_PATH } else { live };
            assert_eq!(path, want, "{file}: {} {probe}", w.name);
        }
    }
}

#[test]
fn every_value_file_renders_with_known_variables_and_consistent_ports() {
    let Some(helm) = helm_or_skip() else { return };
    for file in VALUE_FILES {
        let m = Manifests { docs: render_values_file(&helm, file), external_secrets: true };
        check_static(&m, file);
        let deployments: BTreeSet<String> = m
            .of_kind("Deployment")
            .filter(|d| {
                seq(&d["spec"]["template"]["spec"]["containers"]).iter().any(|c| is_flotilla_image(s(&c["image"])))
            })
            .map(|d| s(&d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]).to_owned())
            .collect();
        let expected: BTreeSet<String> =
            ["gateway", "accounts", "tasks", "assistant", "audit", "web"].iter().map(|s| s.to_string()).collect();
        assert_eq!(deployments, expected, "{file}: one Deployment per service");
        // No ConfigMap carries a secret variable.
        for cm in m.of_kind("ConfigMap") {
            for (k, _) in m.all_data("ConfigMap", name(cm)).unwrap_or_default() {
                assert!(
                    ![
                        "FLOTILLA_DATABASE_URL",
                        "FLOTILLA_ADMIN_PASSWORD",
                        "FLOTILLA_OPENAI_API_KEY",
                        "FLOTILLA_WEB_SESSION_KEY"
                    ]
                    .contains(&k.as_str()),
                    "{file}: ConfigMap {} holds the secret {k}",
                    name(cm)
                );
            }
        }
    }
}

fn compose() -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/compose/compose.yaml"))
        .expect("deploy/compose/compose.yaml");
    serde_yaml_ng::from_str(&text).expect("compose.yaml is YAML")
}

fn compose_runs_flotilla(svc: &Value) -> bool {
    is_flotilla_image(s(&svc["image"]).split('$').next().unwrap_or("")) || s(&svc["image"]).contains("flotilla")
}

/// The compose services that run the Flotilla image, by name.
fn compose_flotilla_services(compose: &Value) -> Vec<(String, &Value)> {
    let services = compose["services"].as_mapping().expect("services");
    services.iter().filter(|(_, svc)| compose_runs_flotilla(svc)).map(|(n, svc)| (s(n).to_owned(), svc)).collect()
}

#[test]
fn compose_sets_only_variables_the_binary_reads() {
    let compose = compose();
    for (svc_name, svc) in compose["services"].as_mapping().expect("services") {
        let env_keys: Vec<String> = match &svc["environment"] {
            Value::Mapping(m) => m.keys().map(|k| s(k).to_owned()).collect(),
            Value::Sequence(items) => items.iter().map(|i| s(i).split('=').next().unwrap_or("").to_owned()).collect(),
            _ => Vec::new(),
        };
        let runs_flotilla = compose_runs_flotilla(svc);
        for k in &env_keys {
            if k.starts_with("FLOTILLA_") || runs_flotilla {
                assert!(known_var(k), "compose service {}: {k} is not a variable the binary reads", s(svc_name));
            }
        }
    }
    let flotilla_services = compose_flotilla_services(&compose);
    for (name, svc) in &flotilla_services {
        let listen = svc["environment"]["FLOTILLA_LISTEN"].as_str().unwrap_or("");
        assert_eq!(listen, "0.0.0.0:8080", "compose service {name}: one port, 8080, for every service");
    }
    assert_eq!(flotilla_services.len(), 6, "compose runs the six services");
}

#[test]
fn dockerfile_entrypoint_is_the_binary_the_chart_expects() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).expect("Dockerfile");
    let entry: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("ENTRYPOINT")).collect();
    assert_eq!(entry, vec![r#"ENTRYPOINT ["/usr/local/bin/flotilla"]"#], "the chart passes only args (the subcommand)");
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("HEALTHCHECK")),
        "no HEALTHCHECK: Kubernetes probes and compose's healthchecks (`flotilla probe`) do that"
    );
    let last_user = text.lines().rev().find(|l| l.trim_start().starts_with("USER ")).expect("a USER line");
    assert!(last_user.contains("65532"), "the runtime stage runs as the non-root uid the chart sets: {last_user}");
}

// ---------------------------------------------------------------------------------------------
// NetworkPolicies

#[derive(Debug, Clone)]
struct Peer {
    name: String,
    namespace_labels: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    /// Ports it listens on (as a destination).
    ports: Vec<u16>,
    /// A pod of the chart (subject to its policies) or an actor outside it.
    in_chart: bool,
    /// Outside the cluster: reached through ipBlock or a rule without `to`.
    external: bool,
}

fn ns_labels(ns: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), ns.to_owned())])
}

fn policy_peer_matches(peer_rule: &Value, peer: &Peer) -> bool {
    if !peer_rule["ipBlock"].is_null() {
        return peer.external;
    }
    if peer.external {
        return false;
    }
    let ns_ok = if peer_rule["namespaceSelector"].is_null() {
        peer.namespace_labels == ns_labels(NAMESPACE)
    } else {
        selector_matches(&peer_rule["namespaceSelector"], &peer.namespace_labels)
    };
    let pod_ok = peer_rule["podSelector"].is_null() || selector_matches(&peer_rule["podSelector"], &peer.labels);
    ns_ok && pod_ok
}

fn rule_ports_allow(rule: &Value, port: u16) -> bool {
    let ports = seq(&rule["ports"]);
    ports.is_empty() || ports.iter().any(|p| p["port"].as_u64() == Some(u64::from(port)))
}

/// Whether `policies` let `pod` send to (egress) or receive from (ingress) `other` on `port`.
fn allowed(policies: &[&Value], pod: &Peer, other: &Peer, port: u16, direction: &str) -> bool {
    let (types, rules_key, peers_key) =
        if direction == "egress" { ("Egress", "egress", "to") } else { ("Ingress", "ingress", "from") };
    let selecting: Vec<&&Value> = policies
        .iter()
        .filter(|p| selector_matches(&p["spec"]["podSelector"], &pod.labels))
        .filter(|p| seq(&p["spec"]["policyTypes"]).iter().any(|t| s(t) == types))
        .collect();
    if selecting.is_empty() {
        return true; // not isolated in this direction
    }
    selecting.iter().any(|p| {
        seq(&p["spec"][rules_key]).iter().any(|rule| {
            let peers = seq(&rule[peers_key]);
            rule_ports_allow(rule, port) && (peers.is_empty() || peers.iter().any(|r| policy_peer_matches(r, other)))
        })
    })
}

fn network_edges(m: &Manifests) -> BTreeSet<(String, String)> {
    let policies: Vec<&Value> = m.of_kind("NetworkPolicy").collect();
    let mut peers: Vec<Peer> = Vec::new();
    for d in &m.docs {
        let Some(t) = pod_template(d) else { continue };
        let l = labels(&t["metadata"]["labels"]);
        let component = l.get("app.kubernetes.io/component").cloned().unwrap_or_else(|| name(d).to_owned());
        if peers.iter().any(|p| p.name == component) {
            continue; // the four migration Jobs are one kind of pod
        }
        let ports = seq(&t["spec"]["containers"])
            .iter()
            .flat_map(|c| seq(&c["ports"]).iter().filter_map(|p| p["containerPort"].as_u64()))
            .map(|p| p as u16)
            .collect();
        peers.push(Peer {
            name: component,
            namespace_labels: ns_labels(NAMESPACE),
            labels: l,
            ports,
            in_chart: true,
            external: false,
        });
    }
    let chart_names: BTreeSet<String> = peers.iter().map(|p| p.name.clone()).collect();
    // An actor outside the chart that shares a name with a chart pod (kind: the in-chart NATS and
    // values-production's NATS in namespace `messaging`) keeps a name of its own.
    let actor = |name: &str, ns: &str, labels: &[(&str, &str)], ports: &[u16], external: bool| Peer {
        name: if chart_names.contains(name) { format!("{name}@elsewhere") } else { name.to_owned() },
        namespace_labels: ns_labels(ns),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ports: ports.to_vec(),
        in_chart: false,
        external,
    };
    peers.push(actor(
        "ingress-controller",
        "ingress-nginx",
        &[("app.kubernetes.io/name", "ingress-nginx")],
        &[],
        false,
    ));
    peers.push(actor("prometheus", "monitoring", &[("app.kubernetes.io/name", "prometheus")], &[], false));
    peers.push(actor("dns", "kube-system", &[("k8s-app", "kube-dns")], &[53], false));
    // Something else in the cluster, and the outside world per port: the edges to them must be
    // exactly the declared ones.
    let all_ports = [8080, 5432, 4222, 6379, 11434, 443];
    peers.push(actor("other-pod", NAMESPACE, &[("app", "other")], &all_ports, false));
    peers.push(actor("other-namespace-pod", "other", &[("app", "other")], &all_ports, false));
    // values-production.yaml's managed services: PostgreSQL outside the cluster, NATS and Redis in
    // namespaces of their own, the LLM on the internet.
    peers.push(actor("external:postgresql", "", &[], &[5432], true));
    peers.push(actor("nats", "messaging", &[("app.kubernetes.io/name", "nats")], &[4222], false));
    peers.push(actor("redis", "cache", &[("app.kubernetes.io/name", "redis")], &[6379], false));
    peers.push(actor("external:llm", "", &[], &[11434, 443], true));
    peers.push(actor("external:other", "", &[], &[22, 80, 8080], true));

    let mut edges = BTreeSet::new();
    for from in &peers {
        if from.external || from.name == "dns" {
            continue;
        }
        for to in &peers {
            if to.name == from.name {
                continue;
            }
            let ok = to.ports.iter().any(|&port| {
                let out = !from.in_chart || allowed(&policies, from, to, port, "egress");
                let inn = !to.in_chart || allowed(&policies, to, from, port, "ingress");
                out && inn
            });
            // Traffic between two actors outside the chart is none of its business.
            if ok && (from.in_chart || to.in_chart) {
                let to_name = to.name.trim_start_matches("external:").to_owned();
                edges.insert((from.name.clone(), to_name));
            }
        }
    }
    edges
}

fn expected_edges(chart_pods: &[&str]) -> BTreeSet<(String, String)> {
    let mut e: Vec<(&str, &str)> = vec![
        ("ingress-controller", "gateway"),
        ("gateway", "accounts"),
        ("gateway", "tasks"),
        ("gateway", "audit"),
        ("gateway", "assistant"),
        ("gateway", "web"),
        ("web", "gateway"),
        ("assistant", "tasks"),
        ("assistant", "accounts"),
        ("assistant", "llm"),
        ("tasks", "accounts"),
        ("audit", "accounts"),
        ("gateway", "redis"),
        ("accounts", "redis"),
        ("tasks", "redis"),
        ("assistant", "redis"),
        ("audit", "redis"),
        ("migrate", "postgresql"),
        ("test", "gateway"),
    ];
    for svc in ["accounts", "tasks", "audit", "assistant"] {
        e.push((svc, "postgresql"));
        e.push((svc, "nats"));
    }
    for svc in ["gateway", "accounts", "tasks", "assistant", "audit", "web"] {
        e.push(("prometheus", svc));
    }
    let mut set: BTreeSet<(String, String)> = e.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    for pod in chart_pods {
        set.insert((pod.to_string(), "dns".to_owned()));
    }
    set
}

fn check_policies(m: &Manifests, what: &str, chart_pods: &[&str]) {
    let got = network_edges(m);
    let want = expected_edges(chart_pods);
    let extra: Vec<_> = got.difference(&want).collect();
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what}: NetworkPolicies allow edges outside the architecture: {extra:?}; and miss: {missing:?}"
    );
}

#[test]
fn network_policies_allow_exactly_the_architecture() {
    let Some(helm) = helm_or_skip() else { return };
    let services = ["gateway", "accounts", "tasks", "assistant", "audit", "web", "migrate", "test"];
    // Production: external PostgreSQL, NATS, Redis and LLM.
    let m = Manifests { docs: render_values_file(&helm, "values-production.yaml"), external_secrets: true };
    check_policies(&m, "values-production.yaml", &services);
    // kind: PostgreSQL, NATS and Redis in the chart, each reachable only by its clients.
    let m = Manifests { docs: render_values_file(&helm, "values-kind.yaml"), external_secrets: true };
    let mut pods = services.to_vec();
    pods.extend(["postgresql", "nats", "redis"]);
    check_policies(&m, "values-kind.yaml", &pods);
}

// ---------------------------------------------------------------------------------------------
// Metric names in the rules and the dashboard

/// Metric names in a PromQL expression: identifiers that are not functions, keywords, label names
/// (inside `{…}`, `by (…)` and the like) or strings.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    let mut cleaned = String::new();
    let mut depth_braces = 0;
    let mut chars = expr.chars().peekable();
    let mut in_string: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = in_string {
            if c == '\\' {
                chars.next();
            } else if c == q {
                in_string = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => in_string = Some(c),
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            '[' => {
                // range or subquery: skip to `]`
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
            }
            _ if depth_braces > 0 => {}
            _ => cleaned.push(c),
        }
    }
    // Drop grouping clauses: by (…), without (…), on (…), ignoring (…), group_left (…), group_right (…).
    let mut text = cleaned;
    for kw in ["by", "without", "on", "ignoring", "group_left", "group_right"] {
        while let Some(pos) = find_keyword_clause(&text, kw) {
            let open = text[pos..].find('(').map(|i| pos + i).expect("clause has (");
            let close = text[open..].find(')').map(|i| open + i).expect("clause has )");
            text.replace_range(pos..=close, " ");
        }
    }
    let keywords = ["and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"];
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == '$' {
            // a dashboard variable
            i += 1;
            while i < bytes.len() && (bytes[i].is_alphanumeric() || bytes[i] == '_') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':') {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            let mut j = i;
            while j < bytes.len() && bytes[j] == ' ' {
                j += 1;
            }
            let is_call = j < bytes.len() && bytes[j] == '(';
            let after_number = start > 0 && (bytes[start - 1].is_ascii_digit() || bytes[start - 1] == '.');
            if !is_call && !after_number && !keywords.contains(&word.to_ascii_lowercase().as_str()) {
                out.insert(word);
            }
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '.') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    out
}

fn find_keyword_clause(text: &str, kw: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(kw).map(|i| from + i) {
        let before_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let rest = text[i + kw.len()..].trim_start();
        let after_ok = rest.starts_with('(');
        let end = i + kw.len();
        let word_end_ok = end >= b.len() || !(b[end].is_ascii_alphanumeric() || b[end] == b'_');
        if before_ok && after_ok && word_end_ok {
            return Some(i);
        }
        from = i + kw.len();
    }
    None
}

/// Every metric the alert rules and the dashboard use, with where it is used.
fn monitored_metrics() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let rules_path = Path::new(ROOT).join("deploy/monitoring/rules/flotilla.rules.yaml");
    let rules: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&rules_path).expect("rules")).expect("YAML");
    for g in seq(&rules["groups"]) {
        for r in seq(&g["rules"]) {
            for m in promql_metrics(s(&r["expr"])) {
                out.entry(m).or_insert_with(|| format!("alert {}", s(&r["alert"])));
            }
        }
    }
    let dash_path = Path::new(ROOT).join("deploy/monitoring/grafana/flotilla.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dash_path).expect("dashboard")).unwrap();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            for m in promql_metrics(t["expr"].as_str().unwrap_or("")) {
                out.entry(m).or_insert_with(|| format!("panel {:?}", p["title"].as_str().unwrap_or("")));
            }
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or("");
        if let Some(rest) = q.strip_prefix("label_values(") {
            let metric = rest.split([',', ')', '{']).next().unwrap_or("").trim();
            out.entry(metric.to_owned()).or_insert_with(|| format!("variable {}", v["name"]));
        }
    }
    out
}

#[test]
fn promql_metric_extraction() {
    let got = promql_metrics(
        r#"sum by (service, le) (rate(http_request_duration_seconds_bucket{service=~"$service", le!="x"}[$__rate_interval])) / on(service) group_left clamp_min(sum(db_pool_connections), 1) > 0.9 and up == 0"#,
    );
    let want: BTreeSet<String> =
        ["http_request_duration_seconds_bucket", "db_pool_connections", "up"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
}

/// Names on a /metrics page, and each histogram's base name.
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(n) = rest.split_whitespace().next() {
                out.insert(n.to_owned());
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
        out.insert(n);
    }
    let bases: Vec<String> = out
        .iter()
        .filter_map(|n| ["_bucket", "_sum", "_count"].iter().find_map(|suf| n.strip_suffix(suf)).map(str::to_owned))
        .collect();
    out.extend(bases);
    out
}

// ---------------------------------------------------------------------------------------------
// The rendered chart, run as processes

/// An HTTP/1.1 request with `Connection: close`; returns (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn json_field(body: &str, pointer: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v.pointer(pointer).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("no {pointer} in {body}")).to_owned()
}

/// A throwaway redis-server on a free loopback port (no persistence), if it is installed.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Option<Redis> {
        let bin = find_tool("redis-server").or_else(|| {
            let p = PathBuf::from("/usr/bin/redis-server");
            is_executable(&p).then_some(p)
        })?;
        let port = free_port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Redis { child, port });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not listen on port {port} within 10 s");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces every `http://<service>:<port>` of the rendered Services with its loopback address.
fn rewrite(value: &str, hosts: &BTreeMap<String, SocketAddr>) -> String {
    let mut v = value.to_owned();
    for (from, to) in hosts {
        v = v.replace(&format!("http://{from}"), &format!("http://{to}"));
    }
    v
}

#[test]
fn rendered_chart_runs_against_real_dependencies() {
    let Some(helm) = helm_or_skip() else { return };
    let Some(pg) = pg_or_skip() else { return };
    let Some(nats) = nats_or_skip() else { return };
    let redis = Redis::start();
    if redis.is_none() {
        skip_or_fail("redis-server not found: FLOTILLA_REDIS_URL is not exercised");
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_flotilla"));

    // The production values (external PostgreSQL, NATS, Redis), with a Secret the chart makes
    // from these URLs: the test resolves env exactly as the kubelet would.
    let mut args: Vec<String> = vec!["-f".into(), format!("{CHART}/values-production.yaml")];
    let mut set = |k: &str, v: &str| {
        args.push("--set-string".into());
        args.push(format!("{k}={v}"));
    };
    set("secrets.existingSecret", "");
    for svc in ["accounts", "tasks", "assistant", "audit"] {
        set(&format!("secrets.databaseUrls.{svc}"), &pg.create_database());
    }
    set("secrets.webSessionKey", "a-test-session-key-that-is-long-enough-0123456789");
    set("externalNats.url", &nats.url());
    set("externalRedis.url", &redis.as_ref().map(|r| format!("redis://127.0.0.1:{}", r.port)).unwrap_or_default());
    let m = Manifests { docs: render(&helm, &args), external_secrets: false };
    check_static(&m, "values-production.yaml (+ test endpoints)");

    // Loopback addresses of the Services' targets.
    let workloads = flotilla_workloads(&m);
    let mut hosts: BTreeMap<String, SocketAddr> = BTreeMap::new();
    let mut listen_of: BTreeMap<String, SocketAddr> = BTreeMap::new();
    for w in workloads.iter().filter(|w| w.kind == "Deployment") {
        let at: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        listen_of.insert(w.name.clone(), at);
        for svc in m.of_kind("Service").filter(|svc| selector_matches(&svc["spec"]["selector"], &w.pod_labels)) {
            for p in seq(&svc["spec"]["ports"]) {
                hosts.insert(format!("{}:{}", name(svc), scalar(&p["port"])), at);
            }
        }
    }
    let env_of = |w: &Workload| -> Vec<(String, String)> {
        let env = m.container_env(w.container).unwrap_or_else(|e| panic!("{} {}: {e}", w.kind, w.name));
        env.into_iter()
            .map(|(k, v)| {
                if k == "FLOTILLA_LISTEN" {
                    (k, listen_of[&w.name].to_string())
                } else {
                    let v = rewrite(&v, &hosts);
                    (k, v)
                }
            })
            .collect()
    };

    // 1. The migration Jobs, as the pre-install hook runs them.
    let jobs: Vec<&Workload> = workloads.iter().filter(|w| w.kind == "Job").collect();
    assert_eq!(jobs.len(), 4, "one migration Job per service database");
    for w in &jobs {
        let args = flotilla_args(w.container);
        let env = env_of(w);
        let env_refs: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = ServiceProcess::spawn(bin, &argv, &env_refs, "127.0.0.1:9".parse().unwrap()).expect("spawn");
        let status = p.wait_exit(Duration::from_secs(60)).unwrap_or_else(|| panic!("Job {} did not finish", w.name));
        assert!(status.success(), "Job {} ({argv:?}) failed: {status}\n{}", w.name, p.logs());
        eprintln!("Job {}: {}", w.name, p.logs().lines().last().unwrap_or(""));
    }

    // 2. The Deployments: accounts first (the others fetch its keys), then the rest.
    let mut deployments: Vec<&Workload> = workloads.iter().filter(|w| w.kind == "Deployment").collect();
    deployments.sort_by_key(|w| (w.pod_labels["app.kubernetes.io/component"] != "accounts", w.name.clone()));
    let mut running: Vec<(String, ServiceProcess, &Workload)> = Vec::new();
    for w in &deployments {
        let args = flotilla_args(w.container);
        let env = env_of(w);
        let env_refs: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let at = listen_of[&w.name];
        let p = ServiceProcess::spawn(bin, &argv, &env_refs, at)
            .unwrap_or_else(|e| panic!("Deployment {}: cannot run flotilla {argv:?}: {e}", w.name));
        running.push((w.name.clone(), p, w));
    }
    // Each waits for its own readiness probe path (on the probe's own port).
    for (n, p, w) in running.iter_mut() {
        let ready = http_probes(w.container).into_iter().find(|(k, _, _)| *k == "readinessProbe").expect("readiness");
        p.wait_ready(&ready.1, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("Deployment {n} never became ready on {}: {e}", ready.1));
    }
    // Every probe path on its declared port answers 200.
    for (n, p, w) in &running {
        for (probe, path, port) in http_probes(w.container) {
            let port = resolve_port(w.container, &port).expect("probe port");
            assert_eq!(port, 8080, "{n}: {probe} port");
            let (status, body) = http_get(p.addr(), &path, Duration::from_secs(5)).expect("probe GET");
            assert_eq!(status, 200, "{n}: {probe} GET {path} answered {status}: {body}");
        }
        assert!(!p.logs().contains("unknown FLOTILLA_"), "{n}: the binary reported unknown variables:\n{}", p.logs());
    }

    // 3. The `helm test` pod's request: the gateway's aggregated /health, through the Service name.
    let test_pod = m.of_kind("Pod").find(|p| s(&p["metadata"]["annotations"]["helm.sh/hook"]) == "test").expect("test");
    let url = seq(&test_pod["spec"]["containers"][0]["command"]).iter().map(scalar).find(|a| a.starts_with("http://"));
    let url = rewrite(&url.expect("the test pod calls a URL"), &hosts);
    let (hostport, path) = url.trim_start_matches("http://").split_once('/').expect("URL with a path");
    let gateway: SocketAddr =
        hostport.parse().unwrap_or_else(|_| panic!("the test pod's URL {url} is not a chart Service"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(gateway, &format!("/{path}"), Duration::from_secs(5)).expect("GET /health");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "helm test's GET {url} answered {status}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // 4. Traffic through the gateway, so that lazily created series exist: sign-up (events to
    // NATS, consumed by tasks and audit), a task, a list, the activity feed, a throttled login.
    let email = "deploy-test@example.com";
    let (status, body) = http(
        gateway,
        "POST",
        "/api/auth/signup",
        &[("content-type", "application/json")],
        &format!(r#"{{"name":"Deploy","email":"{email}","password":"a deploy test password"}}"#),
    );
    assert_eq!(status, 201, "sign-up through the rendered gateway: {body}");
    let token = json_field(&body, "/access_token");
    let user = json_field(&body, "/user/id");
    let auth = format!("Bearer {token}");
    let (status, body) = http(
        gateway,
        "POST",
        &format!("/api/{user}/tasks"),
        &[("content-type", "application/json"), ("authorization", &auth)],
        r#"{"title":"check the deployment","tags":["ops"]}"#,
    );
    assert_eq!(status, 201, "create a task: {body}");
    let (status, body) = http(gateway, "GET", &format!("/api/{user}/tasks"), &[("authorization", &auth)], "");
    assert_eq!(status, 200, "list tasks: {body}");
    for _ in 0..7 {
        http(
            gateway,
            "POST",
            "/api/auth/login",
            &[("content-type", "application/json")],
            &format!(r#"{{"email":"{email}","password":"wrong password"}}"#),
        );
    }
    // The audit consumer records the sign-up a moment later.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http(gateway, "GET", &format!("/api/{user}/activity"), &[("authorization", &auth)], "");
        if status == 200 && body.contains("user.signed_up") {
            break;
        }
        assert!(Instant::now() < deadline, "the activity feed never showed the sign-up: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // 5. Every metric of the rules and the dashboard is on some service's /metrics.
    let mut exposed = BTreeSet::new();
    for (_, p, _) in &running {
        let (status, text) = http_get(p.addr(), "/metrics", Duration::from_secs(5)).expect("GET /metrics");
        assert_eq!(status, 200);
        exposed.extend(exposed_names(&text));
    }
    let mut missing = Vec::new();
    for (metric, used_in) in monitored_metrics() {
        if EXTERNAL_METRICS.contains(&metric.as_str()) || EXTERNAL_METRIC_PREFIXES.iter().any(|p| metric.starts_with(p))
        {
            continue;
        }
        // A histogram with no observation yet is listed by its base name only.
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|suf| metric.strip_suffix(suf)).unwrap_or(&metric);
        if !exposed.contains(&metric) && !exposed.contains(base) {
            missing.push(format!("{metric} ({used_in})"));
        }
    }
    assert!(missing.is_empty(), "metrics used by the rules or dashboard that no service emits: {missing:?}");
    drop(running);
    drop(nats);
}

// ---------------------------------------------------------------------------------------------
// The compose file, run as processes

/// The binary's path in the image: the Dockerfile's ENTRYPOINT (exec form).
fn image_binary() -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).expect("Dockerfile");
    let line = text.lines().map(str::trim_start).find(|l| l.starts_with("ENTRYPOINT")).expect("an ENTRYPOINT");
    let argv: Vec<String> = serde_json::from_str(line.trim_start_matches("ENTRYPOINT").trim())
        .unwrap_or_else(|e| panic!("ENTRYPOINT in exec form ({e}): {line}"));
    argv.into_iter().next().expect("ENTRYPOINT names the binary")
}

/// A compose healthcheck's `test` in exec form (`["CMD", program, args…]`), or None without one.
fn healthcheck_command(svc: &Value) -> Option<Vec<String>> {
    let test = &svc["healthcheck"]["test"];
    if test.is_null() || svc["healthcheck"]["disable"].as_bool() == Some(true) {
        return None;
    }
    let argv: Vec<String> = seq(test).iter().map(scalar).collect();
    assert_eq!(argv.first().map(String::as_str), Some("CMD"), "exec form (the image has no shell): {test:?}");
    Some(argv[1..].to_vec())
}

/// A compose duration of one unit: `500ms`, `5s`, `2m`.
fn compose_duration(v: &Value) -> Duration {
    let text = scalar(v);
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let n: u64 = text[..split].parse().unwrap_or_else(|_| panic!("a compose duration: {text:?}"));
    match &text[split..] {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => panic!("a compose duration of one unit (ms, s, m): {text:?}"),
    }
}

/// `deploy/compose/.env.example`: the values every `${NAME…}` of the compose file is read with.
fn env_example() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/compose/.env.example")).expect(".env.example");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Compose's interpolation of `${NAME}`, `${NAME:-default}` and `${NAME:?error}` (an empty value
/// counts as unset); a required variable without a value fails.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').unwrap_or_else(|| panic!("unclosed ${{ in {text:?}"));
        let expr = &rest[start + 2..end];
        let (name, op) = expr.split_at(expr.find([':', '-', '?']).unwrap_or(expr.len()));
        let value = vars.get(name).filter(|v| !v.is_empty()).cloned();
        out.push_str(&match (value, op.get(..2).unwrap_or(op)) {
            (Some(v), _) => v,
            (None, "") => String::new(),
            (None, ":-") => op[2..].to_owned(),
            (None, ":?") => panic!("{name} is required ({}) and has no value in .env.example", &op[2..]),
            (None, other) => panic!("interpolation {other:?} of ${{{expr}}} is not supported here"),
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A compose service's environment (map or list form), interpolated.
fn compose_env(svc: &Value, vars: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = match &svc["environment"] {
        Value::Mapping(m) => m.iter().map(|(k, v)| (s(k).to_owned(), scalar(v))).collect(),
        Value::Sequence(items) => items
            .iter()
            .map(|i| {
                s(i).split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap_or((s(i).to_owned(), "".into()))
            })
            .collect(),
        _ => Vec::new(),
    };
    pairs.into_iter().map(|(k, v)| (k, interpolate(&v, vars))).collect()
}

/// The services a compose service waits for, with the condition.
fn depends_on(svc: &Value) -> Vec<(String, String)> {
    match &svc["depends_on"] {
        Value::Mapping(m) => m.iter().map(|(k, v)| (s(k).to_owned(), s(&v["condition"]).to_owned())).collect(),
        Value::Sequence(names) => names.iter().map(|n| (s(n).to_owned(), "service_started".to_owned())).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn compose_services_have_the_probe_as_healthcheck_and_wait_for_healthy_dependencies() {
    let compose = compose();
    let binary = image_binary();
    let services = compose["services"].as_mapping().expect("services");
    for (name, svc) in compose_flotilla_services(&compose) {
        let argv = healthcheck_command(svc).unwrap_or_else(|| {
            panic!("compose service {name} has no healthcheck: `{binary} probe {}`", flotilla_runtime::http::READY_PATH)
        });
        assert_eq!(
            argv,
            [binary.as_str(), "probe", flotilla_runtime::http::READY_PATH],
            "compose service {name}: the image's own binary (no shell, no curl) asks its readiness"
        );
        assert!(
            compose_duration(&svc["healthcheck"]["timeout"]) > Duration::from_secs(2),
            "compose service {name}: the healthcheck's timeout must leave the probe its 2 s"
        );
    }
    // A service waits until what it depends on is healthy, so every dependency has a healthcheck.
    for (name, svc) in services {
        for (dep, condition) in depends_on(svc) {
            assert_eq!(condition, "service_healthy", "compose service {}: depends_on {dep}", s(name));
            let dep_svc = services.get(dep.as_str()).unwrap_or_else(|| panic!("{}: no service {dep}", s(name)));
            assert!(healthcheck_command(dep_svc).is_some(), "{}: depends_on {dep}, which has no healthcheck", s(name));
        }
    }
}

/// Runs a compose healthcheck's command as Docker would in the container (the container's env,
/// exec form), with the image's binary replaced by the test binary: its exit status and output.
fn run_healthcheck(argv: &[String], env: &[(String, String)], limit: Duration) -> (std::process::ExitStatus, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_flotilla"));
    assert_eq!(argv[0], image_binary(), "the healthcheck runs the image's binary: {argv:?}");
    let env_refs: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    let mut p = ServiceProcess::spawn(bin, &args, &env_refs, "127.0.0.1:9".parse().unwrap()).expect("spawn");
    let status = p.wait_exit(limit).unwrap_or_else(|| panic!("healthcheck {argv:?} still runs after {limit:?}"));
    (status, p.logs())
}

/// A compose service whose healthcheck passed, with what it takes to run that healthcheck again.
struct Healthy {
    name: String,
    process: ServiceProcess,
    env: Vec<(String, String)>,
    check: Vec<String>,
    limit: Duration,
}

#[test]
fn compose_services_run_against_real_dependencies_and_their_healthchecks_pass() {
    let Some(pg) = pg_or_skip() else { return };
    let Some(nats) = nats_or_skip() else { return };
    let redis = Redis::start();
    if redis.is_none() {
        skip_or_fail("redis-server not found: FLOTILLA_REDIS_URL is not exercised");
    }
    let redis_url = redis.as_ref().map(|r| format!("redis://127.0.0.1:{}", r.port)).unwrap_or_default();
    let bin = Path::new(env!("CARGO_BIN_EXE_flotilla"));
    let compose = compose();
    let vars = env_example();
    let services = compose_flotilla_services(&compose);

    // Compose's network: `http://<service>:<port>` becomes a loopback address per service.
    let mut hosts: BTreeMap<String, SocketAddr> = BTreeMap::new();
    let mut listen_of: BTreeMap<String, SocketAddr> = BTreeMap::new();
    for (name, svc) in &services {
        let listen: SocketAddr = s(&svc["environment"]["FLOTILLA_LISTEN"]).parse().expect("FLOTILLA_LISTEN");
        let at: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        hosts.insert(format!("{name}:{}", listen.port()), at);
        listen_of.insert(name.clone(), at);
    }
    // The dependencies: a database of its own per service (initdb makes one each), NATS, Redis.
    let env_of = |name: &str, svc: &Value| -> Vec<(String, String)> {
        compose_env(svc, &vars)
            .into_iter()
            .map(|(k, v)| {
                let v = if k == "FLOTILLA_LISTEN" {
                    listen_of[name].to_string()
                } else if v.starts_with("postgres://") {
                    assert!(v.contains("@postgres:5432/"), "{name}: {k} is compose's postgres service");
                    pg.create_database()
                } else {
                    rewrite(&v, &hosts)
                        .replace("nats://nats:4222", &nats.url())
                        .replace("redis://redis:6379", &redis_url)
                };
                (k, v)
            })
            .collect()
    };

    // Started as compose starts them: each once the Flotilla services it depends on are healthy,
    // healthy once its healthcheck exits 0 (retried within its start period).
    let mut running: Vec<Healthy> = Vec::new();
    while running.len() < services.len() {
        let healthy: BTreeSet<&str> = running.iter().map(|h| h.name.as_str()).collect();
        let (name, svc) = services
            .iter()
            .find(|(n, svc)| {
                !healthy.contains(n.as_str())
                    && depends_on(svc).iter().all(|(d, _)| healthy.contains(d.as_str()) || !listen_of.contains_key(d))
            })
            .unwrap_or_else(|| panic!("compose depends_on has a cycle among the services not started: {healthy:?}"));
        let env = env_of(name, svc);
        let env_refs: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let args: Vec<String> = seq(&svc["command"]).iter().map(scalar).collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = ServiceProcess::spawn(bin, &argv, &env_refs, listen_of[name])
            .unwrap_or_else(|e| panic!("compose service {name}: cannot run flotilla {argv:?}: {e}"));
        let check = healthcheck_command(svc).unwrap_or_else(|| panic!("compose service {name} has no healthcheck"));
        let limit = compose_duration(&svc["healthcheck"]["timeout"]);
        let deadline = Instant::now() + compose_duration(&svc["healthcheck"]["start_period"]);
        loop {
            let (status, output) = run_healthcheck(&check, &env, limit);
            if status.success() {
                eprintln!("compose service {name}: healthy ({})", output.trim());
                break;
            }
            if let Some(exit) = p.wait_exit(Duration::ZERO) {
                panic!("compose service {name} exited ({exit}) before it was healthy:\n{}", p.logs());
            }
            assert_ne!(status.code(), Some(2), "{name}: a healthcheck must not exit 2 (Docker reserves it): {output}");
            assert!(Instant::now() < deadline, "compose service {name} never became healthy: {output}\n{}", p.logs());
            std::thread::sleep(Duration::from_millis(250));
        }
        running.push(Healthy { name: name.clone(), process: p, env, check, limit });
    }

    // The header's `curl -s http://127.0.0.1:8080/health`: the gateway sees every service ready.
    let gateway = listen_of["gateway"];
    let (status, body) = http_get(gateway, "/health", Duration::from_secs(5)).expect("GET /health");
    assert_eq!(status, 200, "the gateway's aggregated health: {body}");
    for h in &running {
        let logs = h.process.logs();
        assert!(!logs.contains("unknown FLOTILLA_"), "{}: the binary reported unknown variables:\n{logs}", h.name);
    }

    // The pool saturation alert divides by db_pool_max_connections: the configured pool size.
    let default_pool = VARS.iter().find(|v| v.name == "FLOTILLA_DB_MAX_CONNECTIONS").expect("the variable").default;
    for h in running.iter().filter(|h| h.env.iter().any(|(k, _)| k == "FLOTILLA_DATABASE_URL")) {
        let configured =
            h.env.iter().find(|(k, _)| k == "FLOTILLA_DB_MAX_CONNECTIONS").map_or(default_pool, |(_, v)| v);
        let (_, text) = http_get(h.process.addr(), "/metrics", Duration::from_secs(5)).expect("GET /metrics");
        let gauge = format!("{}{{", flotilla_runtime::telemetry::names::DB_POOL_MAX_CONNECTIONS);
        let line = text.lines().find(|l| l.starts_with(&gauge)).unwrap_or_else(|| panic!("{}: no {gauge}…}}", h.name));
        assert_eq!(line.rsplit(' ').next(), Some(configured), "{}: {line}", h.name);
    }

    // A stopped service is unhealthy: its healthcheck asks that very service.
    for mut h in running {
        h.process.kill();
        let (status, output) = run_healthcheck(&h.check, &h.env, h.limit);
        assert_eq!(status.code(), Some(1), "compose service {} stopped, its healthcheck: {output}", h.name);
    }
    drop(nats);
}
