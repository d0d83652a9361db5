//! Affinity under failure: with N servers, fail one, then bring it back;
//! what share of the clients changed server each time.
//!
//! balancer is measured through the real XDP program: one IPv4 SYN per
//! client through BPF_PROG_TEST_RUN, the chosen server read from the frame
//! the program sends out (its destination MAC names the backend). A
//! failure is applied as the control plane applies a failed health check:
//! the server's backend slot becomes `down` and the VIP's Maglev table is
//! rebuilt over the `up` servers (only the slots that change are written).
//! The stick entries stay: the program redispatches a client whose entry
//! names a down server (re-picks from Maglev and overwrites the entry), as
//! it does for the daemon. Two ways:
//! - **stick table**: the program as deployed; the table fills on the
//!   first pass and is kept across the failure and the recovery;
//! - **Maglev alone**: the same program with the stick table emptied before
//!   every pass, so every packet is a Maglev pick.
//!
//! The peer, modulo hashing (HAProxy's `balance source` with map-based
//! hashing: a hash of the source address modulo the number of usable
//! servers), is a model computed here, not measured, and labelled so.

use balancer_common::hash::client_hash;

use super::common::*;
use super::*;

/// The server that fails (of servers 0..N).
const FAILED: u32 = 0;
const MAX_SERVERS: u32 = 16;
const VIP_ID: u32 = 0;
const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 254);
/// Clients are 198.18.0.0 + k: the lab range holds 131,072 addresses, and
/// the VIP and the backends sit at its top (198.19.255.x).
const CLIENT_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const MAX_CLIENTS: usize = 130_000;
/// Twice the most clients: the LRU table never has to evict.
const STICK_SIZE: u32 = 2 * MAX_CLIENTS as u32;
/// The N whose figures head the report (in both the quick and full runs).
const FIGURE_N: u32 = 8;
/// Modulo hashing is "shown moving about (N-1)/N": within this of it.
const MODULO_TOLERANCE: f64 = 0.05;

struct Sizes {
    servers: Vec<u32>,
    clients: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                servers: vec![2, 4, 8, 16],
                clients: 20_000,
            }
        } else {
            Sizes {
                servers: (2..=MAX_SERVERS).collect(),
                clients: 100_000,
            }
        }
    }
}

/// Which server each client got in the three passes.
struct Passes {
    before: Vec<u8>,
    failed: Vec<u8>,
    recovered: Vec<u8>,
}

/// The shares of one way of balancing for one N.
#[derive(Clone, Copy)]
struct Shares {
    /// Share of the clients that changed server when `FAILED` failed.
    moved: f64,
    /// How many they were.
    moved_count: usize,
    /// Of them, clients that were not on `FAILED` (needlessly moved).
    moved_others: usize,
    /// Clients that changed server when `FAILED` came back.
    recover_moved: f64,
    /// Clients of `FAILED` that went back to it on recovery.
    returned: usize,
}

impl Passes {
    fn shares(&self) -> Shares {
        let n = self.before.len() as f64;
        let changed = |a: &[u8], b: &[u8]| a.iter().zip(b).filter(|(x, y)| x != y).count();
        let moved_others = self
            .before
            .iter()
            .zip(&self.failed)
            .filter(|&(&b, &f)| b != f && u32::from(b) != FAILED)
            .count();
        let returned = self
            .before
            .iter()
            .zip(&self.recovered)
            .filter(|&(&b, &r)| u32::from(b) == FAILED && r == b)
            .count();
        let moved_count = changed(&self.before, &self.failed);
        Shares {
            moved: moved_count as f64 / n,
            moved_count,
            moved_others,
            recover_moved: changed(&self.failed, &self.recovered) as f64 / n,
            returned,
        }
    }

    /// Clients on `FAILED` before it failed.
    fn on_failed(&self) -> usize {
        self.before
            .iter()
            .filter(|&&b| u32::from(b) == FAILED)
            .count()
    }
}

/// One N, three ways.
struct Row {
    n: u32,
    /// Share of the clients on the failed server before it failed
    /// (measured, stick-table run).
    failed_share: f64,
    on_failed: usize,
    stick: Shares,
    maglev: Shares,
    modulo: Shares,
    /// Stick-table run: redispatches the program counted when the server
    /// failed (= clients whose entry named it).
    redispatches: u64,
    elapsed_s: f64,
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let sz = Sizes::new(ctx.quick);
    ensure!(sz.clients <= MAX_CLIENTS, "at most {MAX_CLIENTS} clients");
    ensure!(
        sz.servers.contains(&FIGURE_N),
        "the figures are for N = {FIGURE_N}"
    );
    let mut dp = Dataplane::load_with(LoadOptions {
        stick_size: STICK_SIZE,
        max_vips: 1,
        max_backends: MAX_SERVERS,
    })
    .context("loading the XDP program")?;
    configure(&mut dp)?;
    let clients: Vec<Ipv4Addr> = (0..sz.clients as u32)
        .map(|k| Ipv4Addr::from(CLIENT_BASE + k))
        .collect();
    let frames: Vec<Vec<u8>> = clients.iter().map(|&c| syn_v4(c, VIP)).collect();
    let keys: Vec<StickKey> = clients
        .iter()
        .map(|&c| StickKey {
            vip_id: VIP_ID,
            addr: v4(c),
        })
        .collect();

    let mut rows = Vec::new();
    let mut pass_time = Trials::default();
    for &n in &sz.servers {
        let row = one_n(&mut dp, n, &frames, &keys, &clients, &mut pass_time)?;
        println!(
            "affinity: N={n:>2}: stick table {:.4}, Maglev alone {:.4}, modulo (model) {:.4} \
             moved; recovery {:.4} / {:.4} / {:.4} ({:.1} s)",
            row.stick.moved,
            row.maglev.moved,
            row.modulo.moved,
            row.stick.recover_moved,
            row.maglev.recover_moved,
            row.modulo.recover_moved,
            row.elapsed_s
        );
        rows.push(row);
    }

    let figures = figures(&rows)?;
    print_table(&sz, &rows);
    print_figures("affinity", &figures);
    let col = |f: &dyn Fn(&Row) -> f64| -> Vec<f64> { rows.iter().map(|r| round4(f(r))).collect() };
    Ok(json!({
        "about": "share of clients that changed server when one of N servers fails and when it \
                  comes back: balancer with its stick table, Maglev alone, modulo hashing \
                  (HAProxy `balance source` style, modelled)",
        "how": format!(
            "one IPv4 TCP SYN per client ({} clients, {} .. {}) to {VIP}:80 through the real \
             XDP program (BPF_PROG_TEST_RUN), the chosen server read from the destination MAC \
             of the frame sent out; N = {:?} servers; server{FAILED} fails the way the control \
             plane applies a failed health check (backend state down, Maglev table rebuilt over \
             the up servers, stick entries kept: the program redispatches a client whose entry \
             names a down server and overwrites the entry), then comes back up (state up, \
             table rebuilt); three passes (before, failed, recovered). Stick table: the table \
             is kept across the passes. Maglev alone: the same program, the stick table \
             emptied (BPF_MAP_DELETE_BATCH of every client's entry) before each pass; its \
             first pass is the stick table's, which starts from an empty table. Modulo: computed, not measured: balancer's client hash \
             of the source address modulo the number of up servers, indexing the up servers \
             in order (HAProxy's map-based `balance source` with equal weights)",
            sz.clients,
            clients.first().copied().unwrap_or(VIP),
            clients.last().copied().unwrap_or(VIP),
            sz.servers
        ),
        "commands": [],
        "versions": {},
        "cpus": Cpus {
            generator: Some(vec![ctx.cpu]),
            subject: Some(vec![ctx.cpu]),
            note: format!(
                "BPF_PROG_TEST_RUN runs the program in the calling thread, pinned to CPU {}; \
                 the figures are shares of clients, not timings",
                ctx.cpu
            ),
        }
        .json(),
        "figures": figures,
        "series": {
            "n": rows.iter().map(|r| r.n).collect::<Vec<_>>(),
            "stick_table": col(&|r| r.stick.moved),
            "maglev": col(&|r| r.maglev.moved),
            "modulo": col(&|r| r.modulo.moved),
            "ideal": col(&|r| 1.0 / f64::from(r.n)),
            "recover_stick_table": col(&|r| r.stick.recover_moved),
            "recover_maglev": col(&|r| r.maglev.recover_moved),
            "recover_modulo": col(&|r| r.modulo.recover_moved),
            "failed_server_share": col(&|r| r.failed_share),
            "measured": {
                "stick_table": true, "maglev": true, "modulo": false, "ideal": false,
            },
        },
        "rows": rows.iter().map(|r| json!({
            "n": r.n,
            "clients": sz.clients,
            "failed_server": format!("server{FAILED}"),
            "clients_on_failed_server": r.on_failed,
            "stick_table": shares_json(&r.stick),
            "maglev": shares_json(&r.maglev),
            "modulo_model": shares_json(&r.modulo),
            "stick_redispatches": r.redispatches,
            "elapsed_s": round3(r.elapsed_s),
        })).collect::<Vec<_>>(),
        "parameters": {
            "clients": sz.clients,
            "servers": sz.servers,
            "failed_server": FAILED,
            "stick_entries": STICK_SIZE,
            "expire_ns": EXPIRE_NS,
            "stick_refresh_ns": STICK_REFRESH_NS,
        },
        "pass_seconds": pass_time.json("s"),
    }))
}

fn shares_json(s: &Shares) -> Value {
    json!({
        "moved_share": round4(s.moved),
        "moved_not_from_failed": s.moved_others,
        "recover_moved_share": round4(s.recover_moved),
        "returned_to_recovered_server": s.returned,
    })
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn configure(dp: &mut Dataplane) -> anyhow::Result<()> {
    set_defaults(dp)?;
    set_vip(dp, FAMILY_V4, v4(VIP), VIP_ID, MODE_DSR_L2)
}

/// Backend `id` in `state` (servers 0..16 at 198.19.255.1..16).
fn set_server(dp: &mut Dataplane, id: u32, state: u8) -> anyhow::Result<()> {
    let mut b = backend(FAMILY_V4, v4(Ipv4Addr::from(0xc613_ff01 + id)), id as u8);
    b.state = state;
    dp.set_backend(id, &b)?;
    Ok(())
}

/// The VIP's Maglev table over `up` servers, as the control plane builds
/// it (keys "backend/server", weight 1).
fn maglev_table(up: &[u32]) -> anyhow::Result<Vec<u32>> {
    let keys: Vec<String> = up.iter().map(|id| format!("pool/server{id}")).collect();
    let members: Vec<MaglevBackend<'_>> = up
        .iter()
        .zip(&keys)
        .map(|(&id, key)| MaglevBackend {
            id,
            key: key.as_bytes(),
            weight: 1,
        })
        .collect();
    build(&members, MAGLEV_M).map_err(|e| anyhow::anyhow!("Maglev table: {e:?}"))
}

/// The three passes of one N, both ways, and the model.
fn one_n(
    dp: &mut Dataplane,
    n: u32,
    frames: &[Vec<u8>],
    keys: &[StickKey],
    clients: &[Ipv4Addr],
    pass_time: &mut Trials,
) -> anyhow::Result<Row> {
    let started = Instant::now();
    let all: Vec<u32> = (0..n).collect();
    let healthy: Vec<u32> = all.iter().copied().filter(|&id| id != FAILED).collect();
    let full = maglev_table(&all)?;
    let degraded = maglev_table(&healthy)?;
    for id in 0..MAX_SERVERS {
        set_server(dp, id, if id < n { STATE_UP } else { STATE_EMPTY })?;
    }
    dp.set_maglev(VIP_ID, &full, None)?;

    let mut pass = |dp: &mut Dataplane| -> anyhow::Result<Vec<u8>> {
        let started = Instant::now();
        let out = send_all(dp, frames, n)?;
        pass_time.trials.push(started.elapsed().as_secs_f64());
        Ok(out)
    };
    // The failure and the recovery, as the control plane writes them.
    let fail = |dp: &mut Dataplane| -> anyhow::Result<()> {
        set_server(dp, FAILED, STATE_DOWN)?;
        dp.set_maglev(VIP_ID, &degraded, Some(&full))?;
        Ok(())
    };
    let recover = |dp: &mut Dataplane| -> anyhow::Result<()> {
        set_server(dp, FAILED, STATE_UP)?;
        dp.set_maglev(VIP_ID, &full, Some(&degraded))?;
        Ok(())
    };

    // Stick table, kept across the passes.
    let left = dp.stick_count(None)?;
    ensure!(
        left == 0,
        "N={n}: {left} stick entries before the first pass"
    );
    let s0 = dp.vip_stats(VIP_ID)?;
    let before = pass(dp)?;
    let s1 = dp.vip_stats(VIP_ID)?;
    let stored = dp.stick_count(Some(VIP_ID))?;
    ensure!(
        s1.new_sticks - s0.new_sticks == frames.len() as u64 && stored == frames.len(),
        "N={n}: {} new entries, {stored} in the table, for {} clients",
        s1.new_sticks - s0.new_sticks,
        frames.len()
    );
    fail(dp)?;
    let failed = pass(dp)?;
    let s2 = dp.vip_stats(VIP_ID)?;
    recover(dp)?;
    let recovered = pass(dp)?;
    let stick = Passes {
        before,
        failed,
        recovered,
    };

    // Maglev alone: the table emptied before every pass. The first pass
    // is the stick table's (it started empty: every packet a Maglev pick).
    empty_table(dp, keys)?;
    fail(dp)?;
    let failed = pass(dp)?;
    empty_table(dp, keys)?;
    recover(dp)?;
    let recovered = pass(dp)?;
    empty_table(dp, keys)?;
    let maglev = Passes {
        before: stick.before.clone(),
        failed,
        recovered,
    };

    let modulo = modulo_model(clients, &all, &healthy);
    let on_failed = stick.on_failed();
    Ok(Row {
        n,
        failed_share: on_failed as f64 / frames.len() as f64,
        on_failed,
        stick: stick.shares(),
        maglev: maglev.shares(),
        modulo: modulo.shares(),
        redispatches: s2.redispatches - s1.redispatches,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// One call per client; the server each one was sent to.
fn send_all(dp: &Dataplane, frames: &[Vec<u8>], n: u32) -> anyhow::Result<Vec<u8>> {
    let fd = dp.program_fd()?;
    let mut out = Vec::with_capacity(frames.len());
    for f in frames {
        let r = test_run(fd, f, 1)?;
        expect(&r, XDP_TX, "SYN to the VIP")?;
        ensure!(
            r.data.len() >= 12
                && r.data[..5] == BACKEND_MAC_PREFIX
                && r.data[6..12] == BALANCER_MAC
                && u32::from(r.data[5]) < n,
            "the program sent a frame to {:02x?}, not to one of the {n} servers",
            &r.data[..r.data.len().min(6)]
        );
        out.push(r.data[5]);
    }
    Ok(out)
}

/// Delete every client's entry (each pass leaves one per client) and
/// check the table is empty.
fn empty_table(dp: &Dataplane, keys: &[StickKey]) -> anyhow::Result<()> {
    for chunk in keys.chunks(10_000) {
        stick_batch(dp.stick_map_fd()?, chunk, None)
            .context("a client had no stick entry after a pass")?;
    }
    let left = dp.stick_count(None)?;
    ensure!(
        left == 0,
        "{left} stick entries left after emptying the table"
    );
    Ok(())
}

/// Modulo hashing, computed: the client's hash modulo the number of up
/// servers picks among the up servers in order.
fn modulo_model(clients: &[Ipv4Addr], all: &[u32], healthy: &[u32]) -> Passes {
    let pick = |servers: &[u32]| -> Vec<u8> {
        clients
            .iter()
            .map(|&c| servers[client_hash(&v4(c)) as usize % servers.len()] as u8)
            .collect()
    };
    Passes {
        before: pick(all),
        failed: pick(healthy),
        recovered: pick(all),
    }
}

fn figures(rows: &[Row]) -> anyhow::Result<Vec<Value>> {
    let r = rows
        .iter()
        .find(|r| r.n == FIGURE_N)
        .context("no row for the figures' N")?;
    let n = r.n;
    let modulo_peer = format!("modulo hashing, N={n} (model, computed)");
    let exact = r.stick.moved_others == 0 && r.stick.moved_count == r.on_failed;
    let mut figs = vec![
        report_figure(
            &format!("moved-stick-n{n}"),
            &format!(
                "share of clients that changed server when 1 of {n} servers failed, balancer \
                 with its stick table (measured through the XDP program); the failed server \
                 held {:.4} of the clients, ideal 1/{n} = {:.4}",
                r.failed_share,
                1.0 / f64::from(n)
            ),
            "share",
            round4(r.stick.moved),
            Some((&modulo_peer, round4(r.modulo.moved))),
            Some((
                format!(
                    "= the failed server's share ({:.4}), no other client moves",
                    r.failed_share
                ),
                exact,
            )),
        ),
        report_figure(
            &format!("moved-maglev-n{n}"),
            &format!(
                "share of clients that changed server when 1 of {n} servers failed, Maglev \
                 alone (the XDP program with an empty stick table; {} clients not on the \
                 failed server moved)",
                r.maglev.moved_others
            ),
            "share",
            round4(r.maglev.moved),
            Some((&modulo_peer, round4(r.modulo.moved))),
            None,
        ),
    ];
    let mut modulo = report_figure(
        &format!("moved-modulo-n{n}"),
        &format!(
            "MODEL (computed, not measured): share of clients that changed server when 1 of \
             {n} servers failed under modulo hashing (`balance source` style: hash of the \
             source address mod the number of up servers)"
        ),
        "share",
        round4(r.modulo.moved),
        None,
        Some((
            format!(
                "about (N-1)/N = {:.4} (within {MODULO_TOLERANCE})",
                f64::from(n - 1) / f64::from(n)
            ),
            (r.modulo.moved - f64::from(n - 1) / f64::from(n)).abs() <= MODULO_TOLERANCE,
        )),
    );
    modulo["measured"] = json!(false);
    figs.push(modulo);
    // At recovery: the share of clients that kept the server they had
    // while it was down.
    let kept = |sh: &Shares| round4(1.0 - sh.recover_moved);
    let modulo_kept = (modulo_peer.as_str(), kept(&r.modulo));
    figs.push(report_figure(
        &format!("kept-at-recovery-stick-n{n}"),
        &format!(
            "share of clients that kept their server when the failed server came back \
             (1 of {n}), stick table (measured): clients moved off it stay where they were \
             moved ({} went back to it)",
            r.stick.returned
        ),
        "share",
        kept(&r.stick),
        Some(modulo_kept),
        Some((
            "1: nobody moves again".to_owned(),
            r.stick.recover_moved == 0.0,
        )),
    ));
    figs.push(report_figure(
        &format!("kept-at-recovery-maglev-n{n}"),
        &format!(
            "share of clients that kept their server when the failed server came back \
             (1 of {n}), Maglev alone (measured; {} of the failed server's clients went back \
             to it)",
            r.maglev.returned
        ),
        "share",
        kept(&r.maglev),
        Some(modulo_kept),
        None,
    ));
    // Over every N: clients that moved per client of the failed server.
    let per_failed = |f: &dyn Fn(&Row) -> &Shares| -> f64 {
        let moved: usize = rows.iter().map(|r| f(r).moved_count).sum();
        let on_failed: usize = rows.iter().map(|r| r.on_failed).sum();
        moved as f64 / on_failed as f64
    };
    let extra_stick: usize = rows.iter().map(|r| r.stick.moved_others).sum();
    let extra_maglev: usize = rows.iter().map(|r| r.maglev.moved_others).sum();
    let ns: Vec<u32> = rows.iter().map(|r| r.n).collect();
    figs.push(report_figure(
        "movers-per-failed-client-all-n",
        &format!(
            "clients that changed server per client of the failed server, over N = {ns:?}: \
             1 when only the failed server's clients move (stick table, measured: {extra_stick} \
             other clients moved; peer Maglev alone, measured: {extra_maglev})"
        ),
        "ratio",
        round4(per_failed(&|r| &r.stick)),
        Some((
            "Maglev alone (the XDP program, empty stick table)",
            round4(per_failed(&|r| &r.maglev)),
        )),
        Some((
            "1: only the failed server's clients move".to_owned(),
            extra_stick == 0 && rows.iter().all(|r| r.stick.moved_count == r.on_failed),
        )),
    ));
    Ok(figs)
}

fn print_table(sz: &Sizes, rows: &[Row]) {
    println!(
        "affinity: {} clients, server{FAILED} of N fails then comes back; share of clients \
         that changed server (modulo = model, computed)",
        count(sz.clients as u64)
    );
    println!(
        "affinity: {:>3} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8}",
        "N", "ideal", "on-fail", "stick", "maglev", "modulo", "rec-stk", "rec-mag", "rec-mod"
    );
    for r in rows {
        println!(
            "affinity: {:>3} {:>8.4} {:>8.4} | {:>8.4} {:>8.4} {:>8.4} | {:>8.4} {:>8.4} {:>8.4}",
            r.n,
            1.0 / f64::from(r.n),
            r.failed_share,
            r.stick.moved,
            r.maglev.moved,
            r.modulo.moved,
            r.stick.recover_moved,
            r.maglev.recover_moved,
            r.modulo.recover_moved
        );
    }
}
