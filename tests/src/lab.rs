//! The test lab: network namespaces joined by a bridge, created per run
//! with unique names and torn down on drop (also when a test panics).
//!
//! ```text
//!   client ns (c0..)    balancer ns (lb)     backend ns (s0..)
//!      eth0                 eth0                 eth0
//!        \                   |                   /
//!         +----- br0 in the bridge ns (br) -----+
//! ```
//! Addresses come only from the benchmarking range 198.18.0.0/15 and the
//! documentation prefix 2001:db8::/32:
//! - clients  198.18.0.10+i/24, 2001:db8::10+i/64, routed to the backend
//!   net through the balancer;
//! - balancer 198.18.0.1/24 and 198.18.1.1/24, 2001:db8::1/64 and
//!   2001:db8:0:1::1/64, forwarding between the two;
//! - backends 198.18.1.10+j/24, 2001:db8:0:1::10+j/64, routed back through
//!   the balancer;
//! - services (VIPs) in 198.18.2.0/24 and 2001:db8:0:2::/64, routed by the
//!   clients to the balancer; extra client sources in 198.18.8.0/22.
//!
//! Nothing here touches the host's own namespace: veth pairs are created
//! inside the bridge namespace with their peer placed straight into the
//! node's namespace, and commands enter a namespace with setns(2) in the
//! child only. (`ip netns exec` is not used: it remounts /sys, which hides
//! the host's bpffs at /sys/fs/bpf from the daemon under test.)
//!
//! Names: `blb-<pid>-<seq>-<role>` for namespaces, `/sys/fs/bpf/blb-<pid>-<seq>`
//! for pins, `$TMPDIR/blb-<pid>-<seq>` for logs. [`sweep`] removes those of
//! runs whose process is gone.

use std::{
    ffi::OsStr,
    fs::File,
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use crate::proc::{Proc, wait_for};

pub const PREFIX: &str = "blb-";
pub const BPFFS: &str = "/sys/fs/bpf";

pub const BALANCER_CLIENT_SIDE_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const BALANCER_BACKEND_SIDE_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const BALANCER_CLIENT_SIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const BALANCER_BACKEND_SIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// How many of each kind of host to create.
#[derive(Debug, Clone, Copy)]
pub struct LabSpec {
    pub clients: usize,
    pub backends: usize,
}

/// One host of the lab: a namespace with one interface, `eth0`.
#[derive(Debug, Clone)]
pub struct Node {
    pub ns: String,
    pub ifname: &'static str,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub mac: [u8; 6],
}

impl Node {
    /// A command that runs inside this node's network namespace (and only
    /// its network namespace: mounts, /sys and the bpffs stay the host's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        ns_command(&self.ns, program)
    }

    /// Run a command in this node to completion; its stdout, or an error
    /// carrying its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> io::Result<String> {
        output(self.command(program).args(args))
    }

    pub fn mac_string(&self) -> String {
        mac_string(&self.mac)
    }
}

pub struct Lab {
    /// `blb-<pid>-<seq>`: prefix of every name this lab creates.
    pub id: String,
    /// Logs and generated files of this run.
    pub dir: PathBuf,
    /// Where a daemon started by this lab pins its maps.
    pub pin_dir: PathBuf,
    pub bridge_ns: String,
    pub balancer: Node,
    pub clients: Vec<Node>,
    pub backends: Vec<Node>,
    /// Balancers added by [`Lab::add_balancer`].
    pub extra_balancers: Vec<Node>,
    namespaces: Vec<String>,
    /// Helper processes the lab itself started (stopped at teardown).
    helpers: std::sync::Mutex<Vec<Proc>>,
    torn_down: bool,
}

impl Lab {
    /// Build the topology. On error, whatever was created is removed.
    pub fn new(spec: LabSpec) -> io::Result<Lab> {
        let id = new_id();
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir)?;
        let bridge_ns = format!("{id}-br");
        let mut lab = Lab {
            pin_dir: Path::new(BPFFS).join(&id),
            dir,
            balancer: node(
                &id,
                "lb",
                1,
                0,
                BALANCER_CLIENT_SIDE_V4,
                BALANCER_CLIENT_SIDE_V6,
            ),
            clients: (0..spec.clients)
                .map(|i| node(&id, &format!("c{i}"), 2, i, v4(0, 10 + i), v6(0, 0x10 + i)))
                .collect(),
            backends: (0..spec.backends)
                .map(|j| node(&id, &format!("s{j}"), 3, j, v4(1, 10 + j), v6(1, 0x10 + j)))
                .collect(),
            bridge_ns,
            id,
            extra_balancers: Vec::new(),
            namespaces: Vec::new(),
            helpers: std::sync::Mutex::new(Vec::new()),
            torn_down: false,
        };
        lab.build()?; // on error, Drop tears down what exists
        Ok(lab)
    }

    fn build(&mut self) -> io::Result<()> {
        let br = self.bridge_ns.clone();
        self.add_ns(&br)?;
        ip(
            &br,
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        )?;
        ip(&br, &["link", "set", "br0", "up"])?;

        let bal = self.balancer.clone();
        self.add_node(&bal, "v-lb")?;
        ip(
            &bal.ns,
            &[
                "addr",
                "add",
                &format!("{BALANCER_BACKEND_SIDE_V4}/24"),
                "dev",
                "eth0",
            ],
        )?;
        ip(
            &bal.ns,
            &[
                "addr",
                "add",
                &format!("{BALANCER_BACKEND_SIDE_V6}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        )?;
        sysctl(&bal.ns, "net/ipv4/ip_forward", "1")?;
        sysctl(&bal.ns, "net/ipv6/conf/all/forwarding", "1")?;
        // Forwarding out of the interface a packet came in on would
        // otherwise teach clients to bypass the balancer.
        sysctl(&bal.ns, "net/ipv4/conf/all/send_redirects", "0")?;
        sysctl(&bal.ns, "net/ipv4/conf/eth0/send_redirects", "0")?;

        // XDP_TX out of the balancer's eth0 lands on its peer, v-lb: a veth
        // only takes such frames when the peer has GRO on (or runs XDP).
        output(ns_command(&br, "ethtool").args(["-K", "v-lb", "gro", "on"]))?;
        for (i, c) in self.clients.clone().iter().enumerate() {
            self.add_node(c, &format!("v-c{i}"))?;
            // Services (VIPs) live in 198.18.2.0/24 and 2001:db8:0:2::/64,
            // reached through the balancer.
            route_via(&c.ns, "198.18.2.0/24", BALANCER_CLIENT_SIDE_V4)?;
            route_via(&c.ns, "2001:db8:0:2::/64", BALANCER_CLIENT_SIDE_V6)?;
            route_via(&c.ns, "198.18.1.0/24", BALANCER_CLIENT_SIDE_V4)?;
            route_via(&c.ns, "2001:db8:0:1::/64", BALANCER_CLIENT_SIDE_V6)?;
        }
        for (j, s) in self.backends.clone().iter().enumerate() {
            self.add_node(s, &format!("v-s{j}"))?;
            route_via(&s.ns, "198.18.0.0/24", BALANCER_BACKEND_SIDE_V4)?;
            route_via(&s.ns, "2001:db8::/64", BALANCER_BACKEND_SIDE_V6)?;
        }
        Ok(())
    }

    fn add_ns(&mut self, ns: &str) -> io::Result<()> {
        add_ns(ns, &mut self.namespaces)
    }

    /// A namespace for `n` and a veth from the bridge namespace into it.
    fn add_node(&mut self, n: &Node, bridge_port: &str) -> io::Result<()> {
        self.add_ns(&n.ns)?;
        let br = &self.bridge_ns;
        ip(
            br,
            &[
                "link",
                "add",
                bridge_port,
                "type",
                "veth",
                "peer",
                "name",
                n.ifname,
                "netns",
                &n.ns,
            ],
        )?;
        ip(br, &["link", "set", bridge_port, "master", "br0", "up"])?;
        ip(
            &n.ns,
            &["link", "set", n.ifname, "address", &n.mac_string()],
        )?;
        ip(
            &n.ns,
            &["addr", "add", &format!("{}/24", n.ipv4), "dev", n.ifname],
        )?;
        ip(
            &n.ns,
            &[
                "addr",
                "add",
                &format!("{}/64", n.ipv6),
                "dev",
                n.ifname,
                "nodad",
            ],
        )?;
        ip(&n.ns, &["link", "set", n.ifname, "up"])?;
        // Checksums computed in software, as on a wire: with veth's default
        // offload a locally sent packet carries only a partial checksum,
        // which XDP_TX/REDIRECT (working on raw frames) would pass on as is.
        output(ns_command(&n.ns, "ethtool").args(["-K", n.ifname, "tx", "off"]))?;
        // All nodes share one L2 segment: a redirect from the balancer
        // would let clients and backends bypass it.
        for key in [
            "net/ipv4/conf/all/accept_redirects",
            "net/ipv4/conf/eth0/accept_redirects",
            "net/ipv6/conf/all/accept_redirects",
            "net/ipv6/conf/eth0/accept_redirects",
        ] {
            sysctl(&n.ns, key, "0")?;
        }
        Ok(())
    }

    /// Send one raw Ethernet frame to `node` straight from the bridge
    /// namespace, out of the bridge port facing it (not through br0, which
    /// would drop runt frames before they arrive). Uses Python's AF_PACKET.
    pub fn send_raw_frame_to(&self, node: &Node, frame: &[u8]) -> io::Result<()> {
        let port = self.bridge_port(node);
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        let script = format!(
            "import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); \
             s.bind(('{port}', 0)); s.send(bytes.fromhex('{hex}'))"
        );
        output(ns_command(&self.bridge_ns, "python3").args(["-c", &script])).map(|_| ())
    }

    /// Let `node` send XDP_TX/live-frames traffic (`balancer gen`): a veth
    /// only receives its peer's XDP frames when it runs XDP, so this puts
    /// `balancer xdp-pass` on the node's bridge port (stopped at teardown).
    pub fn accept_xdp_frames_from(&self, node: &Node) -> io::Result<()> {
        let port = self.bridge_port(node);
        let mut cmd = ns_command(&self.bridge_ns, crate::balancer_bin());
        cmd.args(["xdp-pass", "--interface", &port]);
        let mut p = Proc::spawn(&format!("xdp-pass-{port}"), cmd, &self.dir)?;
        let ok = wait_for(Duration::from_secs(10), || {
            p.output().contains("attached XDP") || p.try_wait().ok().flatten().is_some()
        });
        if !ok || p.try_wait()?.is_some() {
            return Err(io::Error::other(format!(
                "xdp-pass on {port}: {}",
                p.output()
            )));
        }
        self.helpers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(p);
        Ok(())
    }

    /// The bridge-namespace end of `node`'s veth.
    fn bridge_port(&self, node: &Node) -> String {
        if node.ns == self.balancer.ns {
            "v-lb".to_owned()
        } else {
            format!("v-{}", node.ns.rsplit('-').next().unwrap_or_default())
        }
    }

    /// Start a process in `node`, logging to this lab's directory.
    pub fn spawn(&self, node: &Node, name: &str, program: &str, args: &[&str]) -> io::Result<Proc> {
        let mut cmd = node.command(program);
        cmd.args(args);
        Proc::spawn(name, cmd, &self.dir)
    }

    /// A real HTTP server (Python's http.server) on every backend, serving
    /// a page that names the backend, on `port`, IPv4 and IPv6. Returns once
    /// each answers locally.
    pub fn start_http_backends(&self, port: u16) -> io::Result<Vec<Proc>> {
        (0..self.backends.len())
            .map(|j| self.start_http_backend(j, port))
            .collect()
    }

    /// The HTTP server of backend `j` alone (e.g. to restart it).
    pub fn start_http_backend(&self, j: usize, port: u16) -> io::Result<Proc> {
        let s = &self.backends[j];
        let root = self.dir.join(format!("www-s{j}"));
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("index.html"), format!("backend s{j}\n"))?;
        let mut cmd = s.command("python3");
        cmd.args(["-m", "http.server", "--bind", "::", &port.to_string()])
            .current_dir(&root);
        let p = Proc::spawn(&format!("http-s{j}"), cmd, &self.dir)?;
        let url = format!("http://{}:{port}/", s.ipv4);
        let ok = wait_for(Duration::from_secs(10), || {
            s.run("curl", &["-sf", "--max-time", "1", &url]).is_ok()
        });
        if !ok {
            return Err(io::Error::other(format!(
                "HTTP server on backend s{j} did not answer within 10 s: {}",
                p.output()
            )));
        }
        Ok(p)
    }

    /// Write a daemon config for this lab (XDP on the balancer's eth0,
    /// maps pinned under this lab's pin dir, admin socket in this lab's
    /// directory) and return its path. `dataplane_extra` goes into
    /// `[dataplane]`; `services` (frontends and backends) after it.
    pub fn write_config(&self, name: &str, dataplane_extra: &str) -> io::Result<PathBuf> {
        self.write_service_config(name, dataplane_extra, "")
    }

    pub fn write_service_config(
        &self,
        name: &str,
        dataplane_extra: &str,
        services: &str,
    ) -> io::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[dataplane]\ninterfaces = [\"eth0\"]\npin_dir = \"{}\"\n{dataplane_extra}\n\
                 [admin]\nsocket = \"{}\"\n\n{services}",
                self.pin_dir.display(),
                self.admin_socket().display()
            ),
        )?;
        Ok(path)
    }

    /// One L4 frontend `web` on 198.18.2.100:80 whose backend `web` is the
    /// first backend node (`s0`): services for [`Lab::write_service_config`].
    pub fn one_l4_service(&self) -> String {
        format!(
            "[[frontend]]\nname = \"web\"\nbind = \"198.18.2.100:80\"\ndefault_backend = \"web\"\n\n\
             [[backend]]\nname = \"web\"\n[[backend.server]]\nname = \"s0\"\naddress = \"{}\"\n",
            self.backends[0].ipv4
        )
    }

    /// The admin socket of a daemon started with this lab's config.
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// Run the `balancer` CLI against this lab's daemon; stdout.
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        output(
            Command::new(crate::balancer_bin())
                .arg("--socket")
                .arg(self.admin_socket())
                .args(args),
        )
    }

    /// Make every backend a DSR/IPIP real server for `vips`: the VIPs on
    /// `lo`, ARP for them neither answered nor announced (`arp_ignore=1`,
    /// `arp_announce=2`), and reverse-path filtering off (replies leave
    /// from an address that is not on the receiving interface).
    pub fn hold_vips_on_backends(&self, vips: &[std::net::IpAddr]) -> io::Result<()> {
        for s in &self.backends {
            for vip in vips {
                let prefix = if vip.is_ipv4() { 32 } else { 128 };
                ip(
                    &s.ns,
                    &["addr", "add", &format!("{vip}/{prefix}"), "dev", "lo"],
                )?;
            }
            for (key, value) in [
                ("net/ipv4/conf/all/arp_ignore", "1"),
                ("net/ipv4/conf/eth0/arp_ignore", "1"),
                ("net/ipv4/conf/all/arp_announce", "2"),
                ("net/ipv4/conf/eth0/arp_announce", "2"),
                ("net/ipv4/conf/all/rp_filter", "0"),
                ("net/ipv4/conf/eth0/rp_filter", "0"),
            ] {
                sysctl(&s.ns, key, value)?;
            }
        }
        Ok(())
    }

    /// Give client `i` `count` extra IPv4 source addresses from
    /// 198.18.8.0/22 (on its `lo`), routed back to it by the balancer and
    /// the backends. Returns them.
    pub fn add_client_sources(&self, i: usize, count: usize) -> io::Result<Vec<Ipv4Addr>> {
        assert!(count <= 1020, "198.18.8.0/22 holds 1020 usable sources");
        let c = &self.clients[i];
        let addrs: Vec<Ipv4Addr> = (0..count)
            .map(|k| Ipv4Addr::new(198, 18, 8 + (k / 254) as u8, 1 + (k % 254) as u8))
            .collect();
        let batch: String = addrs
            .iter()
            .map(|a| format!("addr add {a}/32 dev lo\n"))
            .collect();
        let file = self.dir.join(format!("sources-c{i}.batch"));
        std::fs::write(&file, batch)?;
        output(
            Command::new("ip")
                .arg("-n")
                .arg(&c.ns)
                .arg("-batch")
                .arg(&file),
        )?;
        route_via(&self.balancer.ns, "198.18.8.0/22", c.ipv4)?;
        for s in &self.backends {
            route_via(&s.ns, "198.18.8.0/22", BALANCER_BACKEND_SIDE_V4)?;
        }
        Ok(addrs)
    }

    /// Start `balancer run` in the balancer namespace and wait until it
    /// serves (attached, admin API up: its "running:" log line). Also puts a pass-everything
    /// XDP program on the balancer's bridge port (`balancer xdp-pass`): a
    /// veth only receives the XDP_TX frames of its peer when it runs XDP.
    pub fn start_balancer(&self, config: &Path) -> io::Result<Proc> {
        self.start_balancer_with(config, &[])
    }

    /// [`Lab::start_balancer`] with more `balancer run` arguments.
    pub fn start_balancer_with(&self, config: &Path, extra: &[&str]) -> io::Result<Proc> {
        self.start_balancer_in(&self.balancer.clone(), config, extra)
    }

    /// [`Lab::start_balancer_with`] in any balancer node (see
    /// [`Lab::add_balancer`]); its log is `balancer.log` for the first
    /// balancer, `balancer-<role>.log` for the others.
    pub fn start_balancer_in(
        &self,
        node: &Node,
        config: &Path,
        extra: &[&str],
    ) -> io::Result<Proc> {
        let bin = crate::balancer_bin();
        let port = self.bridge_port(node);
        let has_pass = self
            .helpers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|p| p.name == format!("xdp-pass-{port}"));
        if !has_pass {
            self.accept_xdp_frames_from(node)?;
        }
        let mut cmd = node.command(&bin);
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("RUST_LOG", "info");
        let name = if node.ns == self.balancer.ns {
            "balancer".to_owned()
        } else {
            format!("balancer-{}", port.trim_start_matches("v-"))
        };
        let mut p = Proc::spawn(&name, cmd, &self.dir)?;
        let mut exited = None;
        let ready = wait_for(Duration::from_secs(20), || {
            if let Ok(Some(status)) = p.try_wait() {
                exited = Some(status);
                return true;
            }
            p.output().contains("running: XDP on")
        });
        if let Some(status) = exited {
            return Err(io::Error::other(format!(
                "balancer exited early ({status}): {}",
                p.output()
            )));
        }
        if !ready {
            return Err(io::Error::other(format!(
                "balancer not ready in 20 s: {}",
                p.output()
            )));
        }
        Ok(p)
    }

    /// Another balancer node on the same bridge, `lb<n>` (n = 2, 3, ...):
    /// 198.18.0.n/24 and 198.18.1.n/24 (2001:db8::n, 2001:db8:0:1::n),
    /// forwarding like the first one. Clients still route the services
    /// through the first balancer; move them with
    /// `ip route replace 198.18.2.0/24 via 198.18.0.n` in the client.
    pub fn add_balancer(&mut self) -> io::Result<Node> {
        let n = 2 + self.extra_balancers.len();
        assert!(n < 10, "balancer addresses 198.18.x.2-9 only");
        let node = node(
            &self.id,
            &format!("lb{n}"),
            1,
            n - 1,
            Ipv4Addr::new(198, 18, 0, n as u8),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n as u16),
        );
        let port = format!("v-lb{n}");
        self.add_node(&node, &port)?;
        ip(
            &node.ns,
            &["addr", "add", &format!("198.18.1.{n}/24"), "dev", "eth0"],
        )?;
        ip(
            &node.ns,
            &[
                "addr",
                "add",
                &format!("2001:db8:0:1::{n}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        )?;
        sysctl(&node.ns, "net/ipv4/ip_forward", "1")?;
        sysctl(&node.ns, "net/ipv6/conf/all/forwarding", "1")?;
        sysctl(&node.ns, "net/ipv4/conf/all/send_redirects", "0")?;
        sysctl(&node.ns, "net/ipv4/conf/eth0/send_redirects", "0")?;
        output(ns_command(&self.bridge_ns, "ethtool").args(["-K", &port, "gro", "on"]))?;
        self.extra_balancers.push(node.clone());
        Ok(node)
    }

    /// `ip route add PREFIX via VIA` in `node`.
    pub fn route(&self, node: &Node, prefix: &str, via: impl std::fmt::Display) -> io::Result<()> {
        route_via(&node.ns, prefix, via).map(|_| ())
    }

    /// `balancer detach` for this lab's pin dir: removes the XDP links and
    /// maps a stopped daemon left (on purpose: the data plane outlives it).
    pub fn detach(&self) -> io::Result<String> {
        let bin = crate::balancer_bin();
        self.balancer.run(
            bin.to_str().unwrap_or_default(),
            &[
                "detach",
                "--pin-dir",
                self.pin_dir.to_str().unwrap_or_default(),
            ],
        )
    }

    /// `balancer stats --json` against this lab's pin dir.
    pub fn balancer_stats(&self) -> io::Result<serde_json::Value> {
        let out = output(
            Command::new(crate::balancer_bin())
                .arg("stats")
                .arg("--json")
                .arg("--pin-dir")
                .arg(&self.pin_dir),
        )?;
        serde_json::from_str(&out).map_err(|e| io::Error::other(format!("stats JSON: {e}: {out}")))
    }

    /// XDP program attached to `node`'s interface, as `ip link` reports it
    /// (`None` when nothing is attached).
    pub fn xdp_attached(&self, node: &Node) -> io::Result<Option<String>> {
        let out = node.run("ip", &["-d", "link", "show", "dev", node.ifname])?;
        Ok(out
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("prog/xdp") || l.starts_with("xdp") || l.contains(" prog/xdp"))
            .map(str::to_owned))
    }

    /// Remove everything this lab created. Idempotent.
    pub fn teardown(&mut self) -> io::Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        for mut p in self
            .helpers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = p.stop();
        }
        let mut first_err = None;
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = remove_ns(&ns) {
                first_err.get_or_insert(e);
            }
        }
        if self.pin_dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.pin_dir)
        {
            first_err.get_or_insert(e);
        }
        if std::thread::panicking() {
            eprintln!("lab {}: logs kept in {}", self.id, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("lab {}: teardown: {e}", self.id);
        }
    }
}

/// A new lab name, `blb-<pid>-<seq>`, unique per run and per lab within
/// it: the prefix of every namespace, pin and file the lab creates, and
/// what [`sweep`] recognises once the process is gone. (The benchmarks'
/// labs in xtask use it too.)
pub fn new_id() -> String {
    format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Create namespace `ns` (named after a [`new_id`]) with its loopback up;
/// it is recorded in `created` as soon as it exists, so the owner's
/// teardown removes it even when a later step fails.
pub fn add_ns(ns: &str, created: &mut Vec<String>) -> io::Result<()> {
    output(Command::new("ip").args(["netns", "add", ns]))?;
    created.push(ns.to_owned());
    ip(ns, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Remove labs left behind by runs whose process no longer exists
/// (namespaces, processes inside them, pins, log dirs). Returns what it removed.
pub fn sweep() -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in stale_namespaces()? {
        remove_ns(&name)?;
        removed.push(format!("netns {name}"));
    }
    for dir in [PathBuf::from(BPFFS), std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_is_gone(&name) {
                std::fs::remove_dir_all(entry.path())?;
                removed.push(entry.path().display().to_string());
            }
        }
    }
    Ok(removed)
}

/// Lab namespaces whose creating process is gone.
pub fn stale_namespaces() -> io::Result<Vec<String>> {
    let listing = output(Command::new("ip").args(["netns", "list"]))?;
    Ok(listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| owner_is_gone(name))
        .map(str::to_owned)
        .collect())
}

/// `blb-<pid>-...` whose pid is not running.
fn owner_is_gone(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Kill what still runs inside `ns`, then delete it.
pub fn remove_ns(ns: &str) -> io::Result<()> {
    if let Ok(pids) = output(Command::new("ip").args(["netns", "pids", ns])) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2); these processes live in our lab namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    output(Command::new("ip").args(["netns", "del", ns])).map(|_| ())
}

/// A command that runs inside network namespace `ns` (and only its network
/// namespace: mounts, /sys and the bpffs stay the host's).
pub fn ns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    let path = netns_path(ns);
    // Opened in the parent so errors surface here; O_CLOEXEC (std's
    // default) keeps it out of the exec'd program.
    match File::open(&path) {
        Ok(fd) => {
            // SAFETY: setns(2) is async-signal-safe; the closure only calls
            // it and reads errno.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Err(e) => {
            let msg = format!("namespace {ns} is gone: {e}");
            // SAFETY: only returns an error.
            unsafe { cmd.pre_exec(move || Err(io::Error::other(msg.clone()))) };
        }
    }
    cmd
}

fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

fn node(id: &str, role: &str, kind: u8, idx: usize, ipv4: Ipv4Addr, ipv6: Ipv6Addr) -> Node {
    Node {
        ns: format!("{id}-{role}"),
        ifname: "eth0",
        ipv4,
        ipv6,
        // Locally administered, unique within a lab.
        mac: [0x02, 0xb1, 0, kind, (idx >> 8) as u8, idx as u8],
    }
}

fn v4(net: u8, host: usize) -> Ipv4Addr {
    assert!(host < 255, "too many hosts for a /24");
    Ipv4Addr::new(198, 18, net, host as u8)
}

fn v6(net: u16, host: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, net, 0, 0, 0, host as u16)
}

pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `ip route add PREFIX via VIA` in `ns` (`-6` for IPv6 prefixes).
fn route_via(ns: &str, prefix: &str, via: impl std::fmt::Display) -> io::Result<String> {
    let via = via.to_string();
    if prefix.contains(':') {
        ip(ns, &["-6", "route", "add", prefix, "via", &via])
    } else {
        ip(ns, &["route", "add", prefix, "via", &via])
    }
}

/// `ip -n NS ARGS...`; its stdout.
pub fn ip(ns: &str, args: &[&str]) -> io::Result<String> {
    output(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// Write a sysctl of namespace `ns` (procfs shows the writer's netns);
/// `key` as `net/ipv4/ip_forward` or `net.ipv4.ip_forward`.
pub fn sysctl(ns: &str, key: &str, value: &str) -> io::Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    output(ns_command(ns, "sh").args(["-c", &format!("echo '{value}' > {path}")])).map(|_| ())
}

/// Run to completion; stdout on success, an error with stderr otherwise.
pub fn output(cmd: &mut Command) -> io::Result<String> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
