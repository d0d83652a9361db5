//! Next-hop resolution over rtnetlink, run inside the lab's balancer
//! namespace against real ARP/ND with the backends.

use std::{
    fs::File,
    future::Future,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd as _,
    path::Path,
    time::{Duration, Instant},
};

use balancer::netlink::{Change, ChangeWatcher, NetlinkError, NextHop, Resolver, watch_changes};
use balancer_tests::{
    lab::{BALANCER_BACKEND_SIDE_V4, BALANCER_BACKEND_SIDE_V6, Lab, LabSpec},
    require_root,
};

/// Generous for answers that arrive in a millisecond in the lab.
const RESOLVE: Duration = Duration::from_secs(5);
const UNANSWERED: Duration = Duration::from_secs(1);

fn lab() -> Lab {
    require_root();
    Lab::new(LabSpec {
        clients: 0,
        backends: 1,
    })
    .unwrap_or_else(|e| panic!("building the lab: {e}"))
}

/// Run `body` on a thread that has entered `ns` (only that thread: the test
/// process and the host stay where they are), in a current_thread runtime.
fn in_netns<T, F>(ns: &str, body: impl FnOnce() -> F + Send) -> T
where
    T: Send,
    F: Future<Output = T>,
{
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // SAFETY: setns(2) on a valid namespace fd; it moves only this
            // thread, which the scope joins before returning.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(body())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

async fn resolver() -> Resolver {
    Resolver::new().await.expect("netlink socket")
}

async fn resolve(r: &Resolver, dest: impl Into<IpAddr>) -> NextHop {
    let dest = dest.into();
    r.resolve(dest, RESOLVE)
        .await
        .unwrap_or_else(|e| panic!("resolving {dest}: {e}"))
}

/// The next change event within a few seconds.
async fn next_change(watcher: &mut ChangeWatcher, what: &str) -> Change {
    tokio::time::timeout(RESOLVE, watcher.next())
        .await
        .unwrap_or_else(|_| panic!("no change event within {RESOLVE:?} after {what}"))
        .unwrap_or_else(|| panic!("the change subscription ended after {what}"))
}

/// Wait for a change event matching `want`, skipping unrelated ones (the
/// kernel's own neighbour and route bookkeeping), with a deadline.
async fn wait_for_change(watcher: &mut ChangeWatcher, what: &str, want: fn(&Change) -> bool) {
    let deadline = Instant::now() + RESOLVE;
    loop {
        let change = next_change(watcher, what).await;
        if want(&change) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no matching change event after {what}; last: {change:?}"
        );
    }
}

#[test]
fn backends_on_link_resolve_to_their_own_mac_over_ipv4_and_ipv6() {
    let lab = lab();
    let backend = &lab.backends[0];
    let (v4, v6) = in_netns(&lab.balancer.ns, || async move {
        let r = resolver().await;
        (
            resolve(&r, backend.ipv4).await,
            resolve(&r, backend.ipv6).await,
        )
    });
    for (hop, src) in [
        (&v4, IpAddr::from(BALANCER_BACKEND_SIDE_V4)),
        (&v6, IpAddr::from(BALANCER_BACKEND_SIDE_V6)),
    ] {
        assert_eq!(hop.ifname, "eth0", "{hop:?}");
        assert_ne!(hop.ifindex, 0, "{hop:?}");
        assert_eq!(hop.dst_mac, backend.mac, "{hop:?}");
        assert_eq!(hop.src_mac, lab.balancer.mac, "{hop:?}");
        assert_eq!(hop.gateway, None, "{hop:?}");
        assert_eq!(hop.mtu, 1500, "{hop:?}");
        assert_eq!(hop.prefsrc, Some(src), "{hop:?}");
    }
    assert_eq!(v4.ifindex, v6.ifindex);
}

#[test]
fn a_destination_behind_a_gateway_resolves_to_the_gateway_mac() {
    let lab = lab();
    let backend = &lab.backends[0];
    lab.balancer
        .run(
            "ip",
            &[
                "route",
                "add",
                "198.19.0.0/24",
                "via",
                &backend.ipv4.to_string(),
            ],
        )
        .expect("adding a route via backend 0");
    lab.balancer
        .run(
            "ip",
            &[
                "-6",
                "route",
                "add",
                "2001:db8:ff::/64",
                "via",
                &backend.ipv6.to_string(),
            ],
        )
        .expect("adding an IPv6 route via backend 0");
    let (v4, v6) = in_netns(&lab.balancer.ns, || async move {
        let r = resolver().await;
        (
            resolve(&r, Ipv4Addr::new(198, 19, 0, 7)).await,
            resolve(&r, "2001:db8:ff::7".parse::<IpAddr>().unwrap()).await,
        )
    });
    assert_eq!(v4.gateway, Some(IpAddr::from(backend.ipv4)), "{v4:?}");
    assert_eq!(v6.gateway, Some(IpAddr::from(backend.ipv6)), "{v6:?}");
    for hop in [&v4, &v6] {
        assert_eq!(hop.dst_mac, backend.mac, "{hop:?}");
        assert_eq!(hop.src_mac, lab.balancer.mac, "{hop:?}");
        assert_eq!(hop.ifname, "eth0", "{hop:?}");
    }
    assert_eq!(v4.prefsrc, Some(IpAddr::from(BALANCER_BACKEND_SIDE_V4)));
}

#[test]
fn an_unanswered_on_link_address_is_no_neighbour_within_the_timeout() {
    let lab = lab();
    let dest = IpAddr::from(Ipv4Addr::new(198, 18, 1, 200));
    let (result, took) = in_netns(&lab.balancer.ns, || async move {
        let r = resolver().await;
        let start = Instant::now();
        let result = r.resolve(dest, UNANSWERED).await;
        (result, start.elapsed())
    });
    match result {
        Err(NetlinkError::NoNeighbour {
            dest: d,
            next_hop,
            ifname,
            state,
        }) => {
            assert_eq!((d, next_hop, ifname.as_str()), (dest, dest, "eth0"));
            // The kernel was asked to resolve it and is still trying.
            assert!(matches!(state, "incomplete" | "failed"), "state {state}");
        }
        other => panic!("expected NoNeighbour for {dest}, got {other:?}"),
    }
    assert!(
        took >= UNANSWERED && took < UNANSWERED * 2,
        "took {took:?} with a timeout of {UNANSWERED:?}"
    );
}

#[test]
fn destinations_without_a_route_or_with_a_local_one_are_refused() {
    let lab = lab();
    let results = in_netns(&lab.balancer.ns, || async move {
        let r = resolver().await;
        let mut results = Vec::new();
        for dest in [
            IpAddr::from(Ipv4Addr::new(198, 19, 255, 1)),
            "2001:db8:ffff::1".parse().unwrap(),
            IpAddr::from(BALANCER_BACKEND_SIDE_V4),
        ] {
            results.push((dest, r.resolve(dest, UNANSWERED).await));
        }
        results
    });
    let mut results = results.into_iter();
    for _ in 0..2 {
        let (dest, result) = results.next().unwrap();
        assert!(
            matches!(result, Err(NetlinkError::NoRoute { dest: d }) if d == dest),
            "{dest}: {result:?}"
        );
    }
    let (dest, result) = results.next().unwrap();
    assert!(
        matches!(
            result,
            Err(NetlinkError::NotUnicast {
                route_type: "local",
                ..
            })
        ),
        "{dest}: {result:?}"
    );
}

#[test]
fn neighbour_route_and_link_changes_are_reported_and_re_resolve() {
    let lab = lab();
    let backend = lab.backends[0].clone();
    let balancer = lab.balancer.clone();
    in_netns(&lab.balancer.ns, || async move {
        let r = resolver().await;
        assert_eq!(resolve(&r, backend.ipv4).await.dst_mac, backend.mac);
        let mut watcher = watch_changes().await.expect("netlink subscription");

        let new_mac = [0x02, 0, 0, 0, 0, 0x99];
        // `ip` blocks this thread briefly; the notifications wait in the
        // subscription's socket meanwhile.
        balancer
            .run(
                "ip",
                &[
                    "neigh",
                    "replace",
                    &backend.ipv4.to_string(),
                    "lladdr",
                    "02:00:00:00:00:99",
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ],
            )
            .expect("ip neigh replace");
        wait_for_change(&mut watcher, "ip neigh replace", |c| c.neighbours).await;
        assert_eq!(resolve(&r, backend.ipv4).await.dst_mac, new_mac);

        balancer
            .run(
                "ip",
                &[
                    "route",
                    "add",
                    "198.19.0.0/24",
                    "via",
                    &backend.ipv4.to_string(),
                ],
            )
            .expect("ip route add");
        wait_for_change(&mut watcher, "ip route add", |c| c.routes).await;
        let hop = resolve(&r, Ipv4Addr::new(198, 19, 0, 1)).await;
        assert_eq!(
            (hop.gateway, hop.dst_mac),
            (Some(IpAddr::from(backend.ipv4)), new_mac)
        );

        balancer
            .run("ip", &["link", "set", "eth0", "mtu", "1400"])
            .expect("ip link set mtu");
        wait_for_change(&mut watcher, "ip link set mtu", |c| c.links).await;
        assert_eq!(resolve(&r, backend.ipv4).await.mtu, 1400);
    });
}
