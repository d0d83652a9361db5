//! The README's "Step by step" deployment, run as written (issue 21): its
//! blocks are taken from README.md (each after a `<!-- walkthrough: WHERE
//! -->` line) and run in a namespace lab whose names are the README's
//! (`eth0`, `v-lb`, the backends' and the service's addresses); only the
//! namespaces' names, the pin directory, the admin socket and the
//! configuration's path are the lab's own. Nothing else sets the lab up for
//! the daemon: no VIP on the backends, no XDP on the veth's other end, but
//! what the README says. A change to the README that no longer deploys
//! fails here.

use std::{path::Path, process::Command, time::Duration};

use balancer_tests::{
    lab::{Lab, LabSpec, ns_command, output},
    proc::{Proc, wait_for},
};

/// The blocks of `where_` (`config`, `backend`, `balancer`, `veth-peer`,
/// `client`), in the README's order.
fn blocks(readme: &str, where_: &str) -> Vec<String> {
    let marker = format!("<!-- walkthrough: {where_} -->");
    let mut found = Vec::new();
    let mut rest = readme;
    while let Some(at) = rest.find(&marker) {
        rest = &rest[at + marker.len()..];
        let open = rest.find("```").expect("a fenced block after the marker");
        let body = &rest[open..];
        let body = &body[body.find('\n').expect("fence line") + 1..];
        let close = body.find("\n```").expect("the block's closing fence");
        found.push(body[..close + 1].to_owned());
        rest = &body[close..];
    }
    assert!(!found.is_empty(), "README.md has no {marker}");
    found
}

/// The lines of a shell block, without comments and blank lines.
fn lines(block: &str) -> Vec<&str> {
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

struct Walk<'a> {
    lab: &'a Lab,
    config: std::path::PathBuf,
    /// A directory holding `balancer` (the binary under test) first on PATH.
    path: String,
    /// Processes the README leaves running (`&`).
    running: Vec<Proc>,
}

impl Walk<'_> {
    /// The README's names for the lab's own.
    fn localize(&self, line: &str) -> String {
        line.replace("/etc/balancer/balancer.toml", self.config.to_str().unwrap())
            .replace(
                "/run/netns/lb ",
                &format!("/run/netns/{} ", self.lab.balancer.ns),
            )
            .replace(
                "/run/netns/br ",
                &format!("/run/netns/{} ", self.lab.bridge_ns),
            )
            .replace(
                "/run/balancer/admin.sock",
                self.lab.admin_socket().to_str().unwrap(),
            )
    }

    /// Run `line` with bash in namespace `ns` (`None`: the host's, where
    /// the README's own `nsenter` lines enter one): it must succeed; a line
    /// ending in `&` is left running and waited for until `ready` shows in
    /// its output. Its stdout.
    fn run(&mut self, ns: Option<&str>, line: &str) -> String {
        let line = self.localize(line);
        let mut cmd = match ns {
            Some(ns) => ns_command(ns, "bash"),
            None => Command::new("bash"),
        };
        cmd.env("PATH", &self.path);
        if let Some(bg) = line.strip_suffix('&') {
            cmd.args(["-c", &format!("exec {}", bg.trim())]);
            let name = format!("walk-{}", self.running.len());
            let mut p = Proc::spawn(&name, cmd, &self.lab.dir).unwrap();
            let ready = ["running: XDP on", "attached XDP"];
            let ok = wait_for(Duration::from_secs(20), || {
                let out = p.output();
                ready.iter().any(|r| out.contains(r)) || p.try_wait().ok().flatten().is_some()
            });
            let out = p.output();
            assert!(
                ok && p.try_wait().unwrap().is_none(),
                "`{line}` did not come up: {out}"
            );
            self.running.push(p);
            return out;
        }
        cmd.args(["-ec", &line]);
        output(&mut cmd).unwrap_or_else(|e| panic!("`{line}`: {e}"))
    }
}

#[test]
fn the_readme_deploys_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let mut lab = Lab::new(LabSpec {
        clients: 1,
        backends: 3,
    })
    .unwrap();
    // The service itself: a web server on each backend (not a deployment
    // step of balancer's).
    let _http = lab.start_http_backends(80).unwrap();
    // The lab turns GRO on at the balancer's veth peer, which the README's
    // veth step does: undone, so that the step is what makes it work.
    output(ns_command(&lab.bridge_ns, "ethtool").args(["-K", "v-lb", "gro", "off"])).unwrap();
    let bin_dir = lab.dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(balancer_tests::balancer_bin(), bin_dir.join("balancer")).unwrap();
    let config = lab.dir.join("balancer.toml");
    let mut walk = Walk {
        lab: &lab,
        config: config.clone(),
        path: format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
        running: Vec::new(),
    };
    let [toml] = &blocks(&readme, "config")[..] else {
        panic!("one configuration block")
    };
    let toml = toml
        .replace("/sys/fs/bpf/balancer", lab.pin_dir.to_str().unwrap())
        .replace(
            "/run/balancer/admin.sock",
            lab.admin_socket().to_str().unwrap(),
        );
    std::fs::write(&config, toml).unwrap();

    for block in blocks(&readme, "backend") {
        for line in lines(&block) {
            for s in &lab.backends {
                walk.run(Some(&s.ns), line);
            }
        }
    }
    let balancer = blocks(&readme, "balancer");
    let (start, after) = balancer.split_first().unwrap();
    let mut doctor = String::new();
    for line in lines(start) {
        let out = walk.run(None, line);
        if line.contains("balancer doctor") {
            doctor = out;
        }
    }
    // What the README says doctor says at that point: the veth step is
    // still to come.
    assert!(
        doctor.contains("warn") && doctor.contains("v-lb") && doctor.contains("gro on"),
        "{doctor}"
    );
    for block in blocks(&readme, "veth-peer") {
        for line in lines(&block) {
            walk.run(None, line);
        }
    }
    let client = lab.clients[0].ns.clone();
    let mut page = String::new();
    for block in blocks(&readme, "client") {
        for line in lines(&block) {
            page = walk.run(Some(&client), line);
        }
    }
    assert!(page.starts_with("backend s"), "{page}");
    let mut shown = String::new();
    for block in after {
        for line in lines(block) {
            shown = walk.run(None, line);
        }
    }
    let client_ip = lab.clients[0].ipv4.to_string();
    assert!(shown.contains(&client_ip), "{shown}");
    // Stop what the README left running before the lab goes.
    for mut p in walk.running.drain(..) {
        p.stop().unwrap();
    }
    lab.teardown().unwrap();
}
