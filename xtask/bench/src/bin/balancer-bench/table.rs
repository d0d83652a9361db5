//! A 1,000,000-entry stick table: kernel memory, insert rate, full-table
//! iteration (`balancer table show`) and the daemon memory to hold the
//! listing, against an nftables map (the kernel's other per-client state
//! store) in a network namespace of its own.
//!
//! balancer: the real STICK map sized for 1,000,000 entries; its memory is
//! the kernel's `memlock:` accounting; inserts are client SYNs through the
//! program (BPF_PROG_TEST_RUN, one fresh IPv6 source per call), and for
//! reference userspace BPF_MAP_UPDATE_BATCH into a second, empty table; the
//! walk is `Dataplane::stick_entries`, what the admin API's `table show`
//! calls, followed by the same JSON answer shape.
//!
//! nftables: a `type ipv6_addr : mark` map with `flags timeout` (30 min,
//! the stick table's expiry), loaded with one `nft -f` batch, listed with
//! `nft list map`. nft's listing time grows faster than linearly with the
//! map (minutes at a million elements on this machine), so the peer runs
//! at a smaller size and balancer is measured at that size too; the
//! kernel memory of nft elements is the growth of the kmalloc-cg-* slab
//! caches (/proc/slabinfo), which other activity on the machine also
//! moves: approximate.

use std::{
    io::{Read as _, Write as _},
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::Stdio,
};

use balancer::{
    admin::listing::{Listing as AnswerBody, Names},
    util::monotonic_ns,
};

use super::common::*;
use super::*;

const VIP_ID: u32 = 0;
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// Client k is 2001:db8:1:: + k.
const CLIENT_BASE: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0000;
const BACKENDS: u32 = 4;
/// Frames built (untimed) per chunk of program inserts.
const CHUNK: usize = 10_000;
/// Elements per `add element` statement of the nft batch file.
const NFT_CHUNK: usize = 10_000;
const NFT_TABLE: &str = "balancer_bench";
const NFT_MAP: &str = "clients";

struct Sizes {
    /// The stick table's capacity and how many clients fill it.
    entries: usize,
    /// Elements of the nftables map, and the size at which balancer is
    /// also measured for the like-for-like figures.
    peer: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        Sizes {
            entries: 1_000_000,
            peer: if quick { 20_000 } else { 100_000 },
        }
    }
}

fn client(k: usize) -> Ipv6Addr {
    Ipv6Addr::from(CLIENT_BASE + k as u128)
}

/// The listing held by the daemon: walk time, entries, heap held.
struct Listing {
    walk_s: f64,
    entries: usize,
    /// Peak heap bytes while reading the entries (key, value).
    heap_entries: usize,
    /// The JSON answer, when rendered.
    answer: Option<Answer>,
}

/// `table show`'s JSON answer to the listing.
struct Answer {
    /// Peak heap bytes holding the entries while the answer is written.
    heap: usize,
    render_s: f64,
    bytes: usize,
}

impl Listing {
    fn json(&self) -> Value {
        json!({
            "walk_s": round6(self.walk_s),
            "entries": self.entries,
            "heap_peak_entries_bytes": self.heap_entries,
            "heap_peak_with_answer_bytes": self.answer.as_ref().map(|a| a.heap),
            "render_s": self.answer.as_ref().map(|a| round6(a.render_s)),
            "answer_bytes": self.answer.as_ref().map(|a| a.bytes),
        })
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Inserts through the program.
#[derive(Default)]
struct Inserts {
    count: usize,
    wall_s: f64,
    kernel_ns: u64,
}

impl Inserts {
    fn rate(&self) -> f64 {
        self.count as f64 / self.wall_s
    }
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let sz = Sizes::new(ctx.quick);
    let nft_version =
        tool_version("nft", &["-v"]).context("nft: is it installed (cargo xtask setup)?")?;

    // 1. The peer first, while this process is small: a child's peak RSS
    // (wait4's ru_maxrss) starts from its parent's RSS at fork.
    let nft = nft_peer(sz.peer)?;
    println!(
        "table: nftables map of {} elements: nft -f {:.2} s, nft list map {:.2} s, \
         kmalloc-cg slabs +{} bytes (approx.)",
        count(sz.peer as u64),
        nft.insert_s,
        nft.list_s,
        count(nft.slab_bytes.max(0) as u64)
    );

    // 2. The table, loaded: kernel memory.
    let mem0 = kernel_mem()?;
    let mut dp = load(&sz)?;
    let mem1 = kernel_mem()?;
    let memory = stick_memory(&dp)?;
    let memlock = memory["memlock_bytes"]
        .as_u64()
        .context("no memlock figure")?;
    let capacity = memory["max_entries"].as_u64().unwrap_or(sz.entries as u64);
    configure(&mut dp)?;
    println!(
        "table: STICK map for {} entries: memlock {} bytes ({:.1} MiB)",
        count(capacity),
        count(memlock),
        memlock as f64 / (1024.0 * 1024.0)
    );

    // 3. Inserts through the program up to the peer's size; the walk there.
    let stats0 = dp.vip_stats(VIP_ID)?;
    let mut ins_peer = Inserts::default();
    insert_through_program(&dp, 0..sz.peer, &mut ins_peer)?;
    let at_peer = listing(&dp, true)?;
    let peer_answer = at_peer.answer.as_ref().context("no answer rendered")?;
    ensure!(
        at_peer.entries == sz.peer,
        "{} entries after {} inserts",
        at_peer.entries,
        sz.peer
    );
    // 4. On to the full table; the walk of a million (and in a full run
    // its JSON answer: about 1 GB of heap for a million entries).
    let mut rest = Inserts::default();
    insert_through_program(&dp, sz.peer..sz.entries, &mut rest)?;
    let stats1 = dp.vip_stats(VIP_ID)?;
    let all_ins = Inserts {
        count: ins_peer.count + rest.count,
        wall_s: ins_peer.wall_s + rest.wall_s,
        kernel_ns: ins_peer.kernel_ns + rest.kernel_ns,
    };
    let full = listing(&dp, !ctx.quick)?;
    // The HTTP proxy's lookup, against a system call per lookup.
    let lookups = lookup_costs(&dp, sz.entries)?;
    println!(
        "table: a stick lookup for an HTTP request: {:.0} ns in the proxy's in-process table, \
         {:.0} ns by BPF_MAP_LOOKUP_ELEM on the pinned map ({} lookups of {} entries each)",
        lookups.in_process_ns,
        lookups.syscall_ns,
        count(lookups.n as u64),
        count(sz.entries as u64)
    );
    let new_sticks = stats1.new_sticks - stats0.new_sticks;
    ensure!(
        new_sticks == sz.entries as u64,
        "{new_sticks} entries stored for {} fresh clients",
        sz.entries
    );
    println!(
        "table: {} SYNs from fresh clients through the program: {:.2} s, {:.0} entries/s; \
         {} entries in the table ({} evicted); walk {:.2} s",
        count(all_ins.count as u64),
        all_ins.wall_s,
        all_ins.rate(),
        count(full.entries as u64),
        count(sz.entries.saturating_sub(full.entries) as u64),
        full.walk_s
    );
    drop(dp);

    // 5. Userspace batch updates into an empty table, for reference.
    let batch = batch_insert(&sz)?;
    println!(
        "table: BPF_MAP_UPDATE_BATCH of {} entries: {:.2} s, {:.0} entries/s",
        count(batch.count as u64),
        batch.wall_s,
        batch.rate()
    );

    let peer_n = sz.peer;
    let nft_rate = peer_n as f64 / nft.insert_s;
    let nft_name = |what: &str| format!("nftables map, {what} ({} elements)", count(peer_n as u64));
    let load_delta = mem1.saturating_sub(mem0);
    let nft_slab_name = nft_name("slab growth per element");
    if nft.slab_bytes <= 0 {
        println!(
            "table: WARNING: the kmalloc-cg slab caches did not grow while nft loaded its map \
             (other activity freed more): no kernel-memory peer figure this run"
        );
    }
    let figures = vec![
        report_figure(
            "stick-memlock",
            &format!(
                "kernel memory of the STICK map sized for {} entries (memlock: in the map's \
                 fdinfo; an LRU hash preallocates every entry; /proc/meminfo Slab+VmallocUsed \
                 grew by {} bytes around the load)",
                count(capacity),
                count(load_delta)
            ),
            "bytes",
            memlock as f64,
            None,
            None,
        ),
        report_figure(
            "kernel-bytes-per-entry",
            "kernel memory per entry: balancer's memlock / capacity, against the growth of \
             the kmalloc-cg-* slab caches (/proc/slabinfo) / elements while `nft -f` loaded \
             the nftables map (approximate: machine-wide caches other activity also uses; \
             nft's hash bucket array is not in them)",
            "bytes",
            round3(memlock as f64 / capacity as f64),
            // Other activity can hide nft's growth entirely (the caches
            // shrank meanwhile): then there is no peer figure this run.
            (nft.slab_bytes > 0).then_some((
                nft_slab_name.as_str(),
                round3(nft.slab_bytes as f64 / peer_n as f64),
            )),
            None,
        ),
        report_figure(
            "insert-rate-program",
            &format!(
                "new entries/s through the XDP program: {} IPv6 SYNs from fresh clients, one \
                 BPF_PROG_TEST_RUN call each (wall clock including the syscall; the program \
                 itself took {:.0} ns per insert on the kernel's timer)",
                count(all_ins.count as u64),
                all_ins.kernel_ns as f64 / all_ins.count as f64
            ),
            "entries/s",
            all_ins.rate().round(),
            Some((&nft_name("one `nft -f` batch"), nft_rate.round())),
            None,
        ),
        report_figure(
            "http-lookup-in-process",
            &format!(
                "ns per stick lookup of an HTTP request (`stick match src`): the proxy's \
                 in-process table (http::stick::Table::matched, lock + hash lookup + refresh), \
                 {} entries, {} lookups of random clients; against one BPF_MAP_LOOKUP_ELEM \
                 system call on the pinned map of the same entries (the design not taken)",
                count(sz.entries as u64),
                count(lookups.n as u64)
            ),
            "ns",
            round3(lookups.in_process_ns),
            Some((
                "BPF_MAP_LOOKUP_ELEM on the pinned map",
                round3(lookups.syscall_ns),
            )),
            None,
        ),
        report_figure(
            "insert-rate-batch",
            &format!(
                "new entries/s from userspace, BPF_MAP_UPDATE_BATCH of {} entries ({} per \
                 call) into an empty table",
                count(batch.count as u64),
                count(BATCH as u64)
            ),
            "entries/s",
            batch.rate().round(),
            Some((&nft_name("one `nft -f` batch"), nft_rate.round())),
            None,
        ),
        report_figure(
            "table-show-walk-peer-size",
            &format!(
                "time to read every entry the way `balancer table show` does \
                 (Dataplane::stick_entries) with {} entries in the table",
                count(at_peer.entries as u64)
            ),
            "s",
            round6(at_peer.walk_s),
            Some((&nft_name("`nft list map`"), round6(nft.list_s))),
            None,
        ),
        report_figure(
            "table-show-walk-full",
            &format!(
                "time to read every entry the way `balancer table show` does \
                 (Dataplane::stick_entries), {} entries (nft lists a map this size in \
                 minutes here: not run)",
                count(full.entries as u64)
            ),
            "s",
            round6(full.walk_s),
            None,
            None,
        ),
        report_figure(
            "listing-heap-peer-size",
            &format!(
                "daemon-side memory to hold the `table show` listing of {} entries: peak heap \
                 bytes holding the entries while their JSON answer ({} bytes) is written, \
                 4,096 entries at a time as the admin API streams it; nft's figure is its \
                 whole process's peak RSS (this process had {} bytes resident when it started \
                 nft, a floor for wait4's figure)",
                count(at_peer.entries as u64),
                count(peer_answer.bytes as u64),
                count(nft.spawn_rss)
            ),
            "bytes",
            peer_answer.heap as f64,
            Some((
                &nft_name("peak RSS of `nft list map`"),
                nft.list_max_rss as f64,
            )),
            None,
        ),
        report_figure(
            "listing-heap-full",
            &match &full.answer {
                Some(a) => format!(
                    "daemon-side memory to hold the `table show` listing of {} entries: peak heap \
                     bytes holding the entries ({} bytes at the end of the walk's growth) while \
                     their JSON answer ({} bytes) is written, 4,096 entries at a time as the \
                     admin API streams it",
                    count(full.entries as u64),
                    count(full.heap_entries as u64),
                    count(a.bytes as u64)
                ),
                None => format!(
                    "daemon-side memory to hold the entries of a {}-entry `table show` \
                     listing as read (quick run: the JSON answer is not rendered)",
                    count(full.entries as u64)
                ),
            },
            "bytes",
            full.answer.as_ref().map_or(full.heap_entries, |a| a.heap) as f64,
            None,
            None,
        ),
    ];
    print_figures("table", &figures);
    Ok(json!({
        "about": "a 1,000,000-entry stick table: kernel memory, insert rate, full-table walk \
                  for `table show`, daemon memory for the listing; peer: an nftables map",
        "how": format!(
            "balancer: STICK map sized for {} entries, memory from memlock: in its fdinfo; \
             {} IPv6 SYNs from fresh clients (2001:db8:1::/48) through the real XDP program by \
             BPF_PROG_TEST_RUN, one call each, timed by the wall clock (frames built untimed); \
             BPF_MAP_UPDATE_BATCH of {} entries into a second, empty table; walks by \
             Dataplane::stick_entries (what the admin API's table show calls) at {} and {} \
             entries, the JSON answer written by the admin API's own streaming body \
             (balancer::admin::listing, 4,096 entries per piece) ({}); the listing's heap \
             bytes counted by the bench binary's allocator (peak); RSS from \
             /proc/self/status. nftables (in a network namespace created for the run and \
             deleted after): `type ipv6_addr : mark` map, flags timeout, timeout 30m, {} \
             elements (the same clients) loaded by one `nft -f` file of `add element` \
             statements of {} elements, listed by `nft list map` (wall clock, peak RSS by \
             wait4; nft runs first, while this process is small), kernel memory from the \
             kmalloc-cg-* caches of /proc/slabinfo before/after (approximate). nft runs at a smaller size because its listing time grows faster \
             than linearly; rates compare across sizes, the walk figures are like for like.",
            count(capacity),
            count(sz.entries as u64),
            count(batch.count as u64),
            count(sz.peer as u64),
            count(full.entries as u64),
            if ctx.quick {
                "at the smaller size only in a quick run"
            } else {
                "at both sizes"
            },
            count(sz.peer as u64),
            NFT_CHUNK
        ),
        "commands": nft.commands,
        "versions": { "nft": nft_version },
        "cpus": Cpus {
            generator: Some(vec![ctx.cpu]),
            subject: Some(vec![ctx.cpu]),
            note: format!(
                "everything runs on CPU {}: the program runs in the calling thread \
                 (BPF_PROG_TEST_RUN), nft inherits the pin",
                ctx.cpu
            ),
        }
        .json(),
        "figures": figures,
        "balancer": {
            "memory": memory,
            "meminfo_growth_at_load_bytes": load_delta,
            "program_inserts": {
                "entries": all_ins.count,
                "wall_s": round6(all_ins.wall_s),
                "entries_per_s": all_ins.rate().round(),
                "kernel_ns_per_insert": round3(all_ins.kernel_ns as f64 / all_ins.count as f64),
                "first_entries": ins_peer.count,
                "first_entries_per_s": ins_peer.rate().round(),
                "new_sticks_counted": new_sticks,
                "in_table_after": full.entries,
            },
            "batch_inserts": {
                "entries": batch.count,
                "per_call": BATCH,
                "wall_s": round6(batch.wall_s),
                "entries_per_s": batch.rate().round(),
            },
            "listing_peer_size": at_peer.json(),
            "listing_full": full.json(),
        },
        "nftables": nft.json(),
        "parameters": {
            "entries": sz.entries,
            "peer_elements": sz.peer,
            "expire_ns": EXPIRE_NS,
        },
    }))
}

struct LookupCosts {
    n: usize,
    in_process_ns: f64,
    syscall_ns: f64,
}

/// ns per lookup of random clients of the full table: in the HTTP proxy's
/// in-process copy, and by a system call on the map, each over the same
/// client order (median of 3 rounds).
fn lookup_costs(dp: &Dataplane, entries: usize) -> anyhow::Result<LookupCosts> {
    use balancer::http::stick::{Entry, KeyForm, Table};
    let n = entries.min(200_000);
    let table = Table::new(
        VIP_ID,
        KeyForm {
            ipv6: true,
            mask: Default::default(),
        },
        entries as u64,
        std::time::Duration::from_secs(1800),
        std::time::Duration::from_secs(1),
    );
    let now = monotonic_ns();
    let keys: Vec<[u8; 16]> = (0..entries).map(|k| client(k).octets()).collect();
    for k in &keys {
        table.put(
            k,
            Entry {
                server: 1,
                last_seen_ns: now,
            },
        );
    }
    // A fixed pseudo-random order (xorshift), so both walk the same clients.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let order: Vec<usize> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % entries as u64) as usize
        })
        .collect();
    let median = balancer_bench_report::median;
    let mut inproc = Vec::new();
    let mut syscall = Vec::new();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let mut hits = 0usize;
        for &i in &order {
            hits += usize::from(table.matched(&keys[i], now, |_| true).is_some());
        }
        inproc.push(t.elapsed().as_nanos() as f64 / n as f64);
        ensure!(
            hits == n,
            "{hits} of {n} clients found in the in-process table"
        );
        let t = std::time::Instant::now();
        let mut found = 0usize;
        for &i in &order {
            let key = StickKey {
                vip_id: VIP_ID,
                addr: keys[i],
            };
            found += usize::from(dp.stick_get(&key)?.is_some());
        }
        syscall.push(t.elapsed().as_nanos() as f64 / n as f64);
        // The table is full: the LRU map may have evicted a few.
        ensure!(
            found * 10 >= n * 9,
            "{found} of {n} clients found in the map"
        );
    }
    Ok(LookupCosts {
        n,
        in_process_ns: median(inproc),
        syscall_ns: median(syscall),
    })
}

fn load(sz: &Sizes) -> anyhow::Result<Dataplane> {
    Dataplane::load_with(LoadOptions {
        stick_size: sz.entries as u32,
        max_vips: 1,
        max_backends: BACKENDS,
    })
    .context("loading the XDP program")
}

fn configure(dp: &mut Dataplane) -> anyhow::Result<()> {
    set_defaults(dp)?;
    set_vip(dp, FAMILY_V6, VIP6.octets(), VIP_ID, MODE_DSR_L2)?;
    let names: Vec<String> = (0..BACKENDS).map(|i| format!("pool/server{i}")).collect();
    for i in 0..BACKENDS {
        let addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 0x10 + i as u16).octets();
        dp.set_backend(i, &backend(FAMILY_V6, addr, i as u8))?;
    }
    let members: Vec<MaglevBackend<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| MaglevBackend {
            id: i as u32,
            key: n.as_bytes(),
            weight: 1,
        })
        .collect();
    let table = build(&members, MAGLEV_M).map_err(|e| anyhow::anyhow!("Maglev table: {e:?}"))?;
    dp.set_maglev(VIP_ID, &table, None)?;
    Ok(())
}

/// One SYN per client in `range` through the program, timed in chunks
/// (frames are built between the timed parts).
fn insert_through_program(
    dp: &Dataplane,
    range: std::ops::Range<usize>,
    ins: &mut Inserts,
) -> anyhow::Result<()> {
    let fd = dp.program_fd()?;
    let mut start = range.start;
    while start < range.end {
        let end = (start + CHUNK).min(range.end);
        let frames: Vec<Vec<u8>> = (start..end).map(|k| syn_v6(client(k), VIP6)).collect();
        let t = Instant::now();
        for f in &frames {
            let r = test_run(fd, f, 1)?;
            expect(&r, XDP_TX, "SYN from a fresh client")?;
            ins.kernel_ns += u64::from(r.duration_ns);
        }
        ins.wall_s += t.elapsed().as_secs_f64();
        ins.count += frames.len();
        start = end;
    }
    Ok(())
}

/// `table show`'s work: read every entry, then answer in JSON with the
/// fields the admin API gives (admin::table_show; the controller that maps
/// ids to names is not running here, so names are formatted from ids).
fn listing(dp: &Dataplane, render: bool) -> anyhow::Result<Listing> {
    super::heap::start();
    let r = listing_counted(dp, render);
    super::heap::stop();
    r
}

fn listing_counted(dp: &Dataplane, render: bool) -> anyhow::Result<Listing> {
    let t = Instant::now();
    let entries = dp.stick_entries(None)?;
    let walk_s = t.elapsed().as_secs_f64();
    let mut listing = Listing {
        walk_s,
        entries: entries.len(),
        heap_entries: super::heap::peak(),
        answer: None,
    };
    if !render {
        return Ok(listing);
    }
    // Written as the admin API writes it (balancer::admin::listing), a
    // batch at a time; what the daemon holds meanwhile is the entries and
    // one batch of text.
    let t = Instant::now();
    let names = Names {
        frontends: [(0, ("bench".into(), balancer_common::maps::FAMILY_V6))].into(),
        // As the daemon's: every entry with its time left.
        expire_ms: [(0, 30 * 60 * 1000)].into(),
        servers: (0..BACKENDS)
            .map(|i| (i, format!("pool/server{i}")))
            .collect(),
        tables: Default::default(),
    };
    let mut body = AnswerBody::new(entries, names, monotonic_ns());
    let mut bytes = 0;
    while let Some(chunk) = body.next_chunk() {
        bytes += chunk.len();
    }
    let render_s = t.elapsed().as_secs_f64();
    drop(body);
    listing.answer = Some(Answer {
        heap: super::heap::peak(),
        render_s,
        bytes,
    });
    Ok(listing)
}

/// Slab + VmallocUsed from /proc/meminfo: where kernel objects like map
/// elements and hash buckets live.
fn kernel_mem() -> anyhow::Result<u64> {
    Ok(meminfo_bytes("Slab")? + meminfo_bytes("VmallocUsed")?)
}

/// Bytes in the kmalloc-cg-* slab caches (objects x object size): where
/// memory-accounted small kernel allocations, like nftables set elements,
/// live.
fn kmalloc_cg_bytes() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/slabinfo").context("reading /proc/slabinfo")?;
    let mut sum = 0;
    for line in text.lines().filter(|l| l.starts_with("kmalloc-cg-")) {
        // name active_objs num_objs objsize ...
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> anyhow::Result<u64> {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("unexpected /proc/slabinfo line {line:?}"))
        };
        sum += num(2)? * num(3)?;
    }
    ensure!(sum > 0, "no kmalloc-cg-* caches in /proc/slabinfo");
    Ok(sum)
}

// ---- userspace batch updates -------------------------------------------

/// Entries per BPF_MAP_UPDATE_BATCH call.
const BATCH: usize = 10_000;
/// A fresh table filled from userspace; the figure is the write time.
fn batch_insert(sz: &Sizes) -> anyhow::Result<Inserts> {
    let dp = load(sz)?;
    let fd = dp.stick_map_fd()?;
    let now = monotonic_ns();
    let mut ins = Inserts::default();
    let mut start = 0;
    while start < sz.entries {
        let end = (start + BATCH).min(sz.entries);
        let keys: Vec<StickKey> = (start..end)
            .map(|k| StickKey {
                vip_id: VIP_ID,
                addr: client(k).octets(),
            })
            .collect();
        let values: Vec<StickValue> = (start..end)
            .map(|k| StickValue {
                backend: k as u32 % BACKENDS,
                _pad: 0,
                last_seen_ns: now,
            })
            .collect();
        let t = Instant::now();
        stick_batch(fd, &keys, Some(&values))?;
        ins.wall_s += t.elapsed().as_secs_f64();
        ins.count += keys.len();
        start = end;
    }
    Ok(ins)
}

// ---- the nftables peer -----------------------------------------------------

/// A network namespace and a ruleset file of this run, removed on drop
/// (the namespace takes its nftables tables with it).
struct NftScratch {
    netns: String,
    file: PathBuf,
}

impl NftScratch {
    fn create() -> anyhow::Result<NftScratch> {
        let pid = std::process::id();
        let netns = format!("balancer-bench-nft-{pid}");
        let file = std::env::temp_dir().join(format!("balancer-bench-nft-{pid}.nft"));
        run_checked(Command::new("ip").args(["netns", "add", &netns]))?;
        Ok(NftScratch { netns, file })
    }

    /// `ip netns exec NETNS nft ARGS`.
    fn nft(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "nft"]).args(args);
        c
    }
}

impl Drop for NftScratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        match Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "table: could not delete network namespace {}: {}",
                self.netns,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!(
                "table: could not delete network namespace {}: {e}",
                self.netns
            ),
        }
    }
}

fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// What a child process did: wall time, peak RSS, its stdout.
struct ChildRun {
    wall_s: f64,
    max_rss: u64,
    stdout: Vec<u8>,
}

/// Run `cmd` to completion, reading its stdout, and reap it with wait4 for
/// its peak RSS.
fn run_measured(cmd: &mut Command) -> anyhow::Result<ChildRun> {
    let what = format!("{cmd:?}");
    let t = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .context("no stdout pipe")?
        .read_to_end(&mut stdout)?;
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .context("no stderr pipe")?
        .read_to_end(&mut stderr)?;
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 writes status and usage of our
    // own child, which std has not reaped (we never call wait on it).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_s = t.elapsed().as_secs_f64();
    ensure!(rc == pid, "wait4: {}", std::io::Error::last_os_error());
    let exit = std::process::ExitStatus::from_raw(status);
    ensure!(
        exit.success(),
        "{what} failed ({exit}): {}",
        String::from_utf8_lossy(&stderr).trim()
    );
    Ok(ChildRun {
        wall_s,
        // ru_maxrss is in KiB.
        max_rss: usage.ru_maxrss as u64 * 1024,
        stdout,
    })
}

struct NftResult {
    insert_s: f64,
    insert_max_rss: u64,
    list_s: f64,
    list_max_rss: u64,
    list_bytes: usize,
    listed: usize,
    /// Growth of the kmalloc-cg-* slab caches over `nft -f`.
    slab_bytes: i64,
    /// The same after deleting the namespace (what came back).
    slab_freed_bytes: i64,
    /// /proc/meminfo Slab + VmallocUsed growth over `nft -f`.
    meminfo_bytes: i64,
    /// This process's RSS when it started nft.
    spawn_rss: u64,
    file_bytes: u64,
    commands: Vec<String>,
}

impl NftResult {
    fn json(&self) -> Value {
        json!({
            "insert_s": round6(self.insert_s),
            "insert_nft_max_rss_bytes": self.insert_max_rss,
            "list_s": round6(self.list_s),
            "list_nft_max_rss_bytes": self.list_max_rss,
            "list_output_bytes": self.list_bytes,
            "elements_listed": self.listed,
            "kmalloc_cg_slab_growth_bytes": self.slab_bytes,
            "kmalloc_cg_slab_freed_at_teardown_bytes": self.slab_freed_bytes,
            "meminfo_slab_vmalloc_growth_bytes": self.meminfo_bytes,
            "bench_rss_when_starting_nft_bytes": self.spawn_rss,
            "batch_file_bytes": self.file_bytes,
            "memory_source": "the kmalloc-cg-* caches of /proc/slabinfo (objects x object \
                              size; nft allocates elements with memory accounting, so they \
                              land there) before and after `nft -f`, and after deleting the \
                              namespace; /proc/meminfo Slab + VmallocUsed for reference. \
                              Machine-wide counters that other activity also moves, and the \
                              hash bucket array (page allocations) is not in them: \
                              approximate",
        })
    }
}

fn nft_peer(elements: usize) -> anyhow::Result<NftResult> {
    let scratch = NftScratch::create()?;
    let file_bytes = write_ruleset(&scratch.file, elements)?;
    let file = scratch.file.to_string_lossy().into_owned();
    let mut commands = vec![format!("ip netns add {}", scratch.netns)];

    let spawn_rss = proc_status_bytes("VmRSS")?;
    let (mem0, slab0) = (kernel_mem()?, kmalloc_cg_bytes()?);
    commands.push(format!("ip netns exec {} nft -f {file}", scratch.netns));
    let insert = run_measured(&mut scratch.nft(&["-f", &file]))?;
    let (mem1, slab1) = (kernel_mem()?, kmalloc_cg_bytes()?);

    commands.push(format!(
        "ip netns exec {} nft list map inet {NFT_TABLE} {NFT_MAP}",
        scratch.netns
    ));
    let list = run_measured(&mut scratch.nft(&["list", "map", "inet", NFT_TABLE, NFT_MAP]))?;
    let text = String::from_utf8_lossy(&list.stdout);
    let listed = text.matches(" : 0x").count();
    ensure!(
        listed == elements,
        "nft list map shows {listed} elements, {elements} were added"
    );

    let loaded = kmalloc_cg_bytes()?;
    commands.push(format!("ip netns del {}", scratch.netns));
    drop(scratch);
    // The namespace (and its tables) go in a kernel work item, after an
    // RCU grace period: wait for the memory to come back, 3 s at most.
    let grown = slab1 as i64 - slab0 as i64;
    let mut freed = 0;
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        freed = loaded as i64 - kmalloc_cg_bytes()? as i64;
        if freed * 10 >= grown * 9 {
            break;
        }
    }
    Ok(NftResult {
        insert_s: insert.wall_s,
        insert_max_rss: insert.max_rss,
        list_s: list.wall_s,
        list_max_rss: list.max_rss,
        list_bytes: list.stdout.len(),
        listed,
        slab_bytes: grown,
        slab_freed_bytes: freed,
        meminfo_bytes: mem1 as i64 - mem0 as i64,
        spawn_rss,
        file_bytes,
        commands,
    })
}

/// The map and its elements (the same clients as the stick table, a mark
/// per backend) as one nft batch file.
fn write_ruleset(path: &Path, elements: usize) -> anyhow::Result<u64> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "table inet {NFT_TABLE} {{\n  map {NFT_MAP} {{\n    type ipv6_addr : mark\n    \
         flags timeout\n    timeout 30m\n  }}\n}}"
    );
    let mut start = 0;
    while start < elements {
        let end = (start + NFT_CHUNK).min(elements);
        let _ = write!(out, "add element inet {NFT_TABLE} {NFT_MAP} {{ ");
        for k in start..end {
            let sep = if k + 1 < end { ", " } else { " }\n" };
            let _ = write!(out, "{} : {:#x}{sep}", client(k), k as u32 % BACKENDS);
        }
        start = end;
    }
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(out.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(out.len() as u64)
}
