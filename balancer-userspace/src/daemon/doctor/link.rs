//! Interfaces, over rtnetlink: whether one exists, which XDP program runs
//! on it, and for a veth whether its peer runs one (a veth only takes the
//! frames its peer sends back with XDP_TX in native mode when it runs an
//! XDP program itself, or has GRO on).

use std::{os::fd::AsRawFd as _, path::Path};

use futures::{StreamExt as _, TryStreamExt as _};
use rtnetlink::{
    Handle,
    packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload},
    packet_route::{
        RouteNetlinkMessage,
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage, LinkXdp, XdpAttached},
        nsid::{NsidAttribute, NsidMessage},
    },
};

use super::{Finding, Status};

/// What the doctor needs of one link.
#[derive(Debug, Default)]
struct Link {
    index: u32,
    name: String,
    veth: bool,
    /// IFLA_LINK: the peer's ifindex (in its own namespace).
    peer_index: Option<u32>,
    /// IFLA_LINK_NETNSID: the peer's namespace, as this one numbers it;
    /// absent when the peer is in this namespace.
    peer_netnsid: Option<i32>,
    /// How an XDP program is attached, if one is.
    xdp: Option<XdpAttached>,
}

fn parse(msg: &LinkMessage) -> Link {
    let mut l = Link {
        index: msg.header.index,
        ..Link::default()
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Link(i) => l.peer_index = Some(*i),
            LinkAttribute::LinkNetNsId(n) => l.peer_netnsid = Some(*n),
            LinkAttribute::LinkInfo(infos) => {
                l.veth |= infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
            }
            LinkAttribute::Xdp(xdp) => {
                l.xdp = xdp.iter().find_map(|x| match x {
                    LinkXdp::Attached(XdpAttached::None) => None,
                    LinkXdp::Attached(a) => Some(*a),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    l
}

/// The link named `name`, or by `index` (in the namespace numbered
/// `netnsid` when given): `Ok(None)` when there is none.
async fn get(
    handle: &Handle,
    name: Option<&str>,
    index: u32,
    netnsid: Option<i32>,
) -> Result<Option<Link>, rtnetlink::Error> {
    let mut req = handle.link().get();
    req = match name {
        Some(n) => req.match_name(n.to_owned()),
        None => req.match_index(index),
    };
    if let Some(id) = netnsid {
        req.message_mut()
            .attributes
            .push(LinkAttribute::IfNetnsId(id));
    }
    match req.execute().try_next().await {
        Ok(m) => Ok(m.as_ref().map(parse)),
        Err(rtnetlink::Error::NetlinkError(e))
            if e.raw_code() == -libc::ENODEV || e.raw_code() == -libc::ENOENT =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The name under /run/netns of the namespace this one numbers `nsid`.
async fn netns_name(handle: &Handle, nsid: i32) -> Option<String> {
    for entry in std::fs::read_dir("/run/netns").ok()?.flatten() {
        let Ok(f) = std::fs::File::open(entry.path()) else {
            continue;
        };
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Fd(f.as_raw_fd() as u32));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(msg));
        req.header.flags = NLM_F_REQUEST;
        let mut answers = handle.clone().request(req).ok()?;
        if let Some(NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m))) =
            answers.next().await.map(|m| m.payload)
            && m.attributes.contains(&NsidAttribute::Id(nsid))
        {
            return Some(entry.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// Whether interface `ifname` has GRO on (ETHTOOL_GGRO), in the
/// namespace /run/netns/`ns` (`None`: this one). A veth with GRO on runs
/// NAPI, which takes XDP_TX frames from its peer as an XDP program would.
/// `None` when it cannot be asked.
fn gro_on(ns: Option<&str>, ifname: &str) -> Option<bool> {
    const ETHTOOL_GGRO: u32 = 0x2b;
    let ns_file = match ns {
        Some(n) => Some(std::fs::File::open(Path::new("/run/netns").join(n)).ok()?),
        None => None,
    };
    let name = std::ffi::CString::new(ifname).ok()?;
    let name = name.as_bytes_with_nul();
    if name.len() > libc::IFNAMSIZ {
        return None;
    }
    let mut ifr_name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // setns(2) moves only the calling thread: a thread of its own.
    std::thread::spawn(move || {
        use std::os::fd::{FromRawFd as _, OwnedFd};
        if let Some(f) = ns_file
            // SAFETY: a namespace file we hold open.
            && unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0
        {
            return None;
        }
        // SAFETY: a new socket, owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd is a new descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // struct ethtool_value { cmd, data }
        let mut value = [ETHTOOL_GGRO, 0u32];
        // SAFETY: a zeroed ifreq is valid; the name and the data pointer
        // are set below and outlive the call.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        ifr.ifr_name = ifr_name;
        ifr.ifr_ifru.ifru_data = value.as_mut_ptr().cast();
        // SAFETY: SIOCETHTOOL with an ifreq pointing at an ethtool_value.
        let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) };
        (r == 0).then_some(value[1] != 0)
    })
    .join()
    .ok()
    .flatten()
}

fn mode(a: &XdpAttached) -> &'static str {
    match a {
        XdpAttached::Driver => "native",
        XdpAttached::SocketBuffer => "generic",
        XdpAttached::Hardware => "offloaded",
        XdpAttached::Multiple => "several modes",
        _ => "some mode",
    }
}

/// Interface `name`: it exists here, and the XDP program on it is this
/// pin_dir's (a daemon of this configuration), another balancer's or
/// another tool's.
pub async fn interface(handle: &Handle, name: &str, pin_dir: &Path) -> Finding {
    let subject = format!("interface {name}");
    let link = match get(handle, Some(name), 0, None).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Finding::new(
                "interface",
                subject,
                Status::Fail,
                "no such interface in this network namespace",
                Some(
                    "`ip -br link` lists this namespace's interfaces: name one of them in \
                     `interfaces`, or run balancer in the interface's namespace (`nsenter \
                     --net=/run/netns/NS balancer ...`)"
                        .into(),
                ),
            );
        }
        Err(e) => {
            return Finding::new(
                "interface",
                subject,
                Status::Warn,
                format!("cannot look it up over netlink: {e}"),
                Some(format!("`ip link show dev {name}`")),
            );
        }
    };
    let Some(attached) = &link.xdp else {
        return Finding::ok(
            "interface",
            subject,
            format!("ifindex {}, no XDP program yet", link.index),
        );
    };
    let pinned = format!("link-{name}");
    if pin_dir.join(&pinned).exists() {
        return Finding::ok(
            "interface",
            subject,
            format!(
                "runs this pin_dir's XDP program ({}, {pinned}): a `balancer run` of this \
                 configuration takes it over",
                mode(attached)
            ),
        );
    }
    let (who, fix) = crate::dataplane::xdp_owner_parts(name);
    Finding::new(
        "interface",
        subject,
        Status::Warn,
        format!(
            "already runs an XDP program ({}), {who}: `balancer run` is refused on it",
            mode(attached)
        ),
        Some(fix),
    )
}

/// For a veth: whether the frames XDP_TX sends back out of it arrive on
/// its peer. `None` when `name` is not a veth (or not there: [`interface`]
/// says so). The same finding is the daemon's start-up warning.
pub async fn veth_peer(handle: &Handle, name: &str) -> Option<Finding> {
    let link = get(handle, Some(name), 0, None).await.ok()??;
    if !link.veth {
        return None;
    }
    let subject = format!("interface {name}");
    let warn = |detail: String, fix: String| {
        Some(Finding::new(
            "veth peer",
            subject.clone(),
            Status::Warn,
            detail,
            Some(fix),
        ))
    };
    let Some(peer_index) = link.peer_index.filter(|i| *i != 0) else {
        return warn(
            "a veth whose peer cannot be found: frames sent back with XDP_TX may vanish".into(),
            format!(
                "`ip -d link show dev {name}` names the peer; run `balancer xdp-pass --interface PEER` in its namespace"
            ),
        );
    };
    let ns = match link.peer_netnsid {
        Some(id) => netns_name(handle, id)
            .await
            .map_or(format!("netns id {id}"), |n| format!("namespace {n}")),
        None => "this namespace".to_owned(),
    };
    let peer = match get(handle, None, peer_index, link.peer_netnsid).await {
        Ok(Some(p)) => p,
        _ => {
            return warn(
                format!(
                    "its peer (ifindex {peer_index}) is in {ns}, which this process cannot look \
                     into: if it runs no XDP program, frames sent back with XDP_TX vanish there"
                ),
                format!(
                    "run `balancer xdp-pass --interface PEER` in that namespace (`ip -n NS link` \
                     names PEER: the one with ifindex {peer_index})"
                ),
            );
        }
    };
    let p = &peer.name;
    let run_there = match (&link.peer_netnsid, ns.strip_prefix("namespace ")) {
        (None, _) => format!("run `balancer xdp-pass --interface {p}` (in this namespace)"),
        (Some(_), Some(n)) => format!(
            "run `balancer xdp-pass --interface {p}` in its namespace (`ip netns exec {n} \
             balancer xdp-pass --interface {p}`)"
        ),
        (Some(_), None) => {
            format!("run `balancer xdp-pass --interface {p}` in its namespace ({ns})")
        }
    };
    let ns_name = link.peer_netnsid.and(ns.strip_prefix("namespace "));
    // GRO enables a veth's NAPI from Linux 5.13 on; before, only XDP does.
    let old_kernel = super::caps::kernel_version().is_some_and(|v| v < (5, 13));
    // From 5.13, GRO on the peer does it without a process to keep.
    let run_there = match (old_kernel, link.peer_netnsid, ns_name) {
        (true, _, _) => run_there,
        (false, None, _) => format!("turn GRO on: `ethtool -K {p} gro on`, or {run_there}"),
        (false, Some(_), Some(n)) => format!(
            "turn GRO on in its namespace: `ip netns exec {n} ethtool -K {p} gro on`, or \
             {run_there}"
        ),
        (false, Some(_), None) => {
            format!("turn GRO on in its namespace (`ethtool -K {p} gro on`), or {run_there}")
        }
    };
    let gro = match link.peer_netnsid {
        _ if old_kernel => Some(false),
        Some(_) if ns_name.is_none() => None,
        _ => gro_on(ns_name, p),
    };
    match (&link.xdp, &peer.xdp) {
        // XDP_TX of a generic program leaves as an ordinary skb.
        (Some(XdpAttached::SocketBuffer), _) => Some(Finding::ok(
            "veth peer",
            subject,
            format!(
                "runs XDP in generic mode: frames sent back with XDP_TX reach its peer {p} as they are"
            ),
        )),
        (_, Some(a)) if !matches!(a, XdpAttached::SocketBuffer) => Some(Finding::ok(
            "veth peer",
            subject,
            format!("its peer {p} ({ns}) runs an XDP program ({})", mode(a)),
        )),
        (_, _) if gro == Some(true) => Some(Finding::ok(
            "veth peer",
            subject,
            format!("its peer {p} ({ns}) has GRO on, which takes frames sent back with XDP_TX"),
        )),
        (_, other) => warn(
            format!(
                "frames sent back with XDP_TX vanish on {p}, its peer in {ns}, which runs {}{}",
                match other {
                    Some(_) => "XDP in generic mode only",
                    None => "no XDP program",
                },
                match gro {
                    _ if old_kernel => "",
                    Some(_) => " and has GRO off",
                    None => " (unless it has GRO on)",
                }
            ),
            run_there,
        ),
    }
}

/// A netlink connection in this thread's network namespace, driven on the
/// current tokio runtime.
pub fn connect() -> std::io::Result<Handle> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);
    Ok(handle)
}

/// `balancer run`, after attaching: one warning per configured veth whose
/// peer would drop what XDP_TX sends it (the doctor's finding, word for word).
pub async fn warn_veth_peers(interfaces: &[String]) {
    let Ok(handle) = connect() else {
        return;
    };
    for name in interfaces {
        if let Some(f) = veth_peer(&handle, name).await
            && f.status != Status::Ok
        {
            log::warn!("{}", f.sentence());
        }
    }
}
