//! Next-hop resolution over rtnetlink: for a backend address, what the XDP
//! program needs to forward to it (egress interface, source and destination
//! MAC, MTU, tunnel source address), and a subscription that says when any
//! of that may have changed.
//!
//! Everything comes from the kernel's own tables, asked the way `ip route
//! get` and `ip neigh get` ask them, so the data plane sends packets exactly
//! where the kernel would. A next hop that does not resolve is an error, never
//! a guess: the daemon reports the backend instead of forwarding to it.
//!
//! Netlink sockets belong to the network namespace of the thread that opens
//! them: create the [`Resolver`] and the [`ChangeWatcher`] in the namespace
//! whose tables they should read.

use std::{io, net::IpAddr, pin::pin, time::Duration};

use futures::{Stream, StreamExt as _, TryStreamExt as _, channel::mpsc::UnboundedReceiver};
use log::debug;
use rtnetlink::{
    Handle, MulticastGroup,
    packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload},
    packet_route::{
        AddressFamily, RouteNetlinkMessage,
        address::{AddressAttribute, AddressMessage, AddressScope},
        link::{LinkAttribute, LinkLayerType, LinkMessage},
        neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
        },
        route::{
            RouteAddress, RouteAttribute, RouteMessage, RouteNextHopFlags, RouteType, RouteVia,
        },
    },
    sys::SocketAddr,
};
use tokio::{
    task::JoinHandle,
    time::{Instant, sleep_until, timeout_at},
};

/// Where and how to send a packet so that it reaches one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// Egress interface.
    pub ifindex: u32,
    pub ifname: String,
    /// MAC address of the egress interface.
    pub src_mac: [u8; 6],
    /// Neighbour MAC of the next hop (the destination itself when on-link,
    /// else the gateway).
    pub dst_mac: [u8; 6],
    /// MTU of the egress interface.
    pub mtu: u32,
    /// `None` when the destination is on-link.
    pub gateway: Option<IpAddr>,
    /// The route's preferred source, else the first address of the
    /// destination's family on the egress interface (global scope first);
    /// the source address for tunnels.
    pub prefsrc: Option<IpAddr>,
}

impl NextHop {
    /// The address whose MAC is `dst_mac`.
    pub fn next_hop_addr(&self, dest: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dest)
    }
}

/// What the kernel was asked when it answered with an error.
pub const OP_ROUTE: &str = "route lookup";
pub const OP_LINK: &str = "link lookup";
pub const OP_ADDRESS: &str = "address lookup";
pub const OP_NEIGHBOUR: &str = "neighbour lookup";
pub const OP_SOLICIT: &str = "neighbour solicitation";

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Io(#[source] io::Error),
    #[error("no route to {dest}")]
    NoRoute { dest: IpAddr },
    #[error("{dest} is routed as a {route_type} address, not through a unicast next hop")]
    NotUnicast {
        dest: IpAddr,
        route_type: &'static str,
    },
    #[error(
        "{dest} leaves through interface {ifname} (index {ifindex}), which has no Ethernet address"
    )]
    NotEthernet {
        dest: IpAddr,
        ifindex: u32,
        ifname: String,
    },
    #[error(
        "next hop {next_hop} of {dest} on {ifname} has no usable neighbour entry (last state: {state})"
    )]
    NoNeighbour {
        dest: IpAddr,
        next_hop: IpAddr,
        ifname: String,
        state: &'static str,
    },
    #[error("netlink {op} for {dest}: {source}")]
    Kernel {
        op: &'static str,
        dest: IpAddr,
        #[source]
        source: io::Error,
    },
    #[error("netlink {op} for {dest}: no answer within {timeout:?}")]
    Timeout {
        op: &'static str,
        dest: IpAddr,
        timeout: Duration,
    },
    #[error("netlink {op} for {dest}: unexpected answer: {reason}")]
    Unexpected {
        op: &'static str,
        dest: IpAddr,
        reason: String,
    },
    #[error("the netlink connection is closed")]
    Closed,
}

/// Resolves next hops from the kernel's tables. Cheap to share by
/// reference; concurrent `resolve` calls are fine.
pub struct Resolver {
    handle: Handle,
    connection: JoinHandle<()>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // The connection task owns the socket; nothing else would end it.
        self.connection.abort();
    }
}

/// First interval between neighbour-table polls while resolution runs, and
/// the cap it doubles up to: ARP/ND on a LAN answers within a millisecond or
/// so, while the kernel retransmits only once a second.
const POLL_FIRST: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(100);
/// How long the neighbour poll made at the deadline may take to be answered.
const REQUEST_GRACE: Duration = Duration::from_millis(50);

impl Resolver {
    /// Open a netlink socket in the calling thread's network namespace.
    /// Must be called inside a tokio runtime (current_thread is fine): the
    /// socket is driven by a task spawned on it.
    pub async fn new() -> Result<Self, NetlinkError> {
        let (connection, handle, _unsolicited) =
            rtnetlink::new_connection().map_err(NetlinkError::Io)?;
        Ok(Resolver {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// The next hop towards `dest`: the kernel's route for it (like `ip
    /// route get`), the egress link, and the neighbour entry of the next hop
    /// on that link. A missing, incomplete or failed neighbour is solicited
    /// and the table polled until it resolves or `timeout` (which bounds the
    /// whole call) passes.
    pub async fn resolve(&self, dest: IpAddr, timeout: Duration) -> Result<NextHop, NetlinkError> {
        let deadline = Instant::now() + timeout;
        let route = self.route(dest, deadline, timeout).await?;
        let link = self.link(dest, route.ifindex, deadline, timeout).await?;
        let prefsrc = match route.prefsrc {
            Some(src) => Some(src),
            None => {
                self.first_address(dest, route.ifindex, deadline, timeout)
                    .await?
            }
        };
        let next_hop = route.gateway.unwrap_or(dest);
        let dst_mac = self
            .neighbour_mac(dest, next_hop, route.ifindex, &link.name, deadline)
            .await?;
        Ok(NextHop {
            ifindex: route.ifindex,
            ifname: link.name,
            src_mac: link.mac,
            dst_mac,
            mtu: link.mtu,
            gateway: route.gateway,
            prefsrc,
        })
    }

    async fn route(
        &self,
        dest: IpAddr,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Route, NetlinkError> {
        let mut query = RouteMessage::default();
        query.header.address_family = family(dest);
        query.header.destination_prefix_length = full_prefix(dest);
        query
            .attributes
            .push(RouteAttribute::Destination(route_address(dest)));
        let answer = first(
            OP_ROUTE,
            dest,
            deadline,
            timeout,
            self.handle.route().get(query).execute(),
        )
        .await;
        match answer {
            Ok(msg) => parse_route(dest, &msg),
            // What the kernel answers when no route (or an `unreachable`
            // one) matches.
            Err(NetlinkError::Kernel { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
                ) =>
            {
                Err(NetlinkError::NoRoute { dest })
            }
            Err(e) => Err(e),
        }
    }

    async fn link(
        &self,
        dest: IpAddr,
        ifindex: u32,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Link, NetlinkError> {
        let msg = first(
            OP_LINK,
            dest,
            deadline,
            timeout,
            self.handle.link().get().match_index(ifindex).execute(),
        )
        .await?;
        parse_link(dest, ifindex, &msg)
    }

    async fn first_address(
        &self,
        dest: IpAddr,
        ifindex: u32,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Option<IpAddr>, NetlinkError> {
        let mut request = self.handle.address().get().set_link_index_filter(ifindex);
        // The dump is dispatched by family, so this keeps it to one family.
        request.message_mut().header.family = family(dest);
        let addresses: Vec<AddressMessage> =
            match timeout_at(deadline, request.execute().try_collect()).await {
                Ok(Ok(addresses)) => addresses,
                Ok(Err(e)) => return Err(rtnetlink_error(OP_ADDRESS, dest, e)),
                Err(_) => {
                    return Err(NetlinkError::Timeout {
                        op: OP_ADDRESS,
                        dest,
                        timeout,
                    });
                }
            };
        Ok(pick_source(dest, ifindex, &addresses))
    }

    /// Poll the neighbour entry of `next_hop` until it holds a MAC address,
    /// soliciting it whenever the kernel is not already doing so.
    async fn neighbour_mac(
        &self,
        dest: IpAddr,
        next_hop: IpAddr,
        ifindex: u32,
        ifname: &str,
        deadline: Instant,
    ) -> Result<[u8; 6], NetlinkError> {
        let no_neighbour = |state: Pending| NetlinkError::NoNeighbour {
            dest,
            next_hop,
            ifname: ifname.to_owned(),
            state: state.name(),
        };
        let mut solicited = false;
        let mut interval = POLL_FIRST;
        let mut state = Pending::Absent;
        loop {
            let polled_at = Instant::now();
            // The last poll falls on the deadline itself; the grace lets the
            // kernel's answer to it count instead of cutting it off.
            let answer_by = deadline.max(polled_at + REQUEST_GRACE);
            state = match timeout_at(answer_by, self.neighbour(dest, next_hop, ifindex)).await {
                Ok(Ok(Neighbour::Usable(mac))) => return Ok(mac),
                Ok(Ok(Neighbour::Pending(now))) => now,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(no_neighbour(state)),
            };
            if Instant::now() >= deadline {
                return Err(no_neighbour(state));
            }
            // An incomplete entry is being probed already; a missing or
            // failed one needs a nudge (again, if it failed while we wait).
            if !solicited || state.needs_solicitation() {
                debug!(
                    "soliciting neighbour {next_hop} on {ifname} (state {})",
                    state.name()
                );
                match timeout_at(deadline, self.solicit(dest, next_hop, ifindex)).await {
                    Ok(result) => result?,
                    Err(_) => return Err(no_neighbour(state)),
                }
                solicited = true;
            }
            sleep_until((polled_at + interval).min(deadline)).await;
            interval = (interval * 2).min(POLL_MAX);
        }
    }

    /// One neighbour entry (`ip neigh get ADDR dev IF`); `Pending(Absent)`
    /// when the kernel has none.
    async fn neighbour(
        &self,
        dest: IpAddr,
        next_hop: IpAddr,
        ifindex: u32,
    ) -> Result<Neighbour, NetlinkError> {
        let mut query = NeighbourMessage::default();
        query.header.family = family(next_hop);
        query.header.ifindex = ifindex;
        query
            .attributes
            .push(NeighbourAttribute::Destination(neighbour_address(next_hop)));
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetNeighbour(query));
        // A plain get, not a dump: the kernel looks the entry up itself
        // instead of sending the whole table.
        request.header.flags = NLM_F_REQUEST;
        let mut handle = self.handle.clone();
        let mut answers = handle.request(request).map_err(|_| NetlinkError::Closed)?;
        let unexpected = |reason: String| NetlinkError::Unexpected {
            op: OP_NEIGHBOUR,
            dest,
            reason,
        };
        match answers.next().await.map(|m| m.payload) {
            Some(NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(msg))) => {
                parse_neighbour(&msg).map_err(unexpected)
            }
            Some(NetlinkPayload::Error(e)) if e.raw_code() == -libc::ENOENT => {
                Ok(Neighbour::Pending(Pending::Absent))
            }
            Some(NetlinkPayload::Error(e)) => Err(NetlinkError::Kernel {
                op: OP_NEIGHBOUR,
                dest,
                source: e.to_io(),
            }),
            Some(other) => Err(unexpected(format!("{other:?}"))),
            None => Err(unexpected("the answer stream ended empty".to_owned())),
        }
    }

    /// Make the kernel resolve `next_hop` on `ifindex`: `NTF_USE` on the
    /// neighbour entry (creating it if needed) starts ARP/ND on exactly that
    /// interface, whatever the routing tables say about the address itself
    /// (an `onlink` gateway need not be in any connected prefix). Needs
    /// CAP_NET_ADMIN, which the daemon has for XDP anyway.
    async fn solicit(
        &self,
        dest: IpAddr,
        next_hop: IpAddr,
        ifindex: u32,
    ) -> Result<(), NetlinkError> {
        self.handle
            .neighbours()
            .add(ifindex, next_hop)
            // Only `NTF_USE` acts: the state is not applied, but must not be
            // PERMANENT, which would exempt a new entry from garbage collection.
            .state(NeighbourState::None)
            .flags(NeighbourFlags::Use)
            // Without it an existing entry answers EEXIST.
            .replace()
            .execute()
            .await
            .map_err(|e| rtnetlink_error(OP_SOLICIT, dest, e))
    }
}

/// The first answer to a request, within the deadline.
async fn first<T>(
    op: &'static str,
    dest: IpAddr,
    deadline: Instant,
    timeout: Duration,
    answers: impl Stream<Item = Result<T, rtnetlink::Error>>,
) -> Result<T, NetlinkError> {
    let mut answers = pin!(answers);
    match timeout_at(deadline, answers.next()).await {
        Ok(Some(Ok(answer))) => Ok(answer),
        Ok(Some(Err(e))) => Err(rtnetlink_error(op, dest, e)),
        Ok(None) => Err(NetlinkError::Unexpected {
            op,
            dest,
            reason: "the answer stream ended empty".to_owned(),
        }),
        Err(_) => Err(NetlinkError::Timeout { op, dest, timeout }),
    }
}

fn rtnetlink_error(op: &'static str, dest: IpAddr, e: rtnetlink::Error) -> NetlinkError {
    match e {
        rtnetlink::Error::NetlinkError(msg) => NetlinkError::Kernel {
            op,
            dest,
            source: msg.to_io(),
        },
        rtnetlink::Error::RequestFailed => NetlinkError::Closed,
        other => NetlinkError::Unexpected {
            op,
            dest,
            reason: other.to_string(),
        },
    }
}

/// What the route answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    ifindex: u32,
    gateway: Option<IpAddr>,
    prefsrc: Option<IpAddr>,
}

fn parse_route(dest: IpAddr, msg: &RouteMessage) -> Result<Route, NetlinkError> {
    if msg.header.kind != RouteType::Unicast {
        return Err(NetlinkError::NotUnicast {
            dest,
            route_type: route_type_name(msg.header.kind),
        });
    }
    let mut ifindex = None;
    let mut gateway = None;
    let mut via = None;
    let mut prefsrc = None;
    let mut multipath = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Oif(index) => ifindex = Some(*index),
            RouteAttribute::Gateway(addr) => gateway = ip_of_route_address(addr),
            // RFC 5549: an IPv4 route through an IPv6 gateway.
            RouteAttribute::Via(RouteVia::Inet(a)) => via = Some(IpAddr::V4(*a)),
            RouteAttribute::Via(RouteVia::Inet6(a)) => via = Some(IpAddr::V6(*a)),
            RouteAttribute::PrefSource(addr) => prefsrc = ip_of_route_address(addr),
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    let mut gateway = gateway.or(via);
    // A lookup answers with the one path it chose; should a kernel ever send
    // the whole set instead, take the first live path of it.
    if ifindex.is_none()
        && let Some(hops) = multipath
        && let Some(hop) = hops.iter().find(|h| {
            h.interface_index != 0
                && !h
                    .flags
                    .intersects(RouteNextHopFlags::Dead | RouteNextHopFlags::Linkdown)
        })
    {
        ifindex = Some(hop.interface_index);
        gateway = hop.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(addr) => ip_of_route_address(addr),
            RouteAttribute::Via(RouteVia::Inet(a)) => Some(IpAddr::V4(*a)),
            RouteAttribute::Via(RouteVia::Inet6(a)) => Some(IpAddr::V6(*a)),
            _ => None,
        });
    }
    let Some(ifindex) = ifindex.filter(|&i| i != 0) else {
        return Err(NetlinkError::Unexpected {
            op: OP_ROUTE,
            dest,
            reason: "the route names no output interface".to_owned(),
        });
    };
    Ok(Route {
        ifindex,
        gateway,
        prefsrc: prefsrc.filter(|src| src.is_ipv4() == dest.is_ipv4()),
    })
}

fn route_type_name(kind: RouteType) -> &'static str {
    match kind {
        RouteType::Unicast => "unicast",
        RouteType::Local => "local",
        RouteType::Broadcast => "broadcast",
        RouteType::Anycast => "anycast",
        RouteType::Multicast => "multicast",
        RouteType::BlackHole => "blackhole",
        RouteType::Unreachable => "unreachable",
        RouteType::Prohibit => "prohibit",
        RouteType::Throw => "throw",
        RouteType::Nat => "nat",
        RouteType::ExternalResolve => "external resolve",
        _ => "unknown",
    }
}

/// What the link answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    name: String,
    mac: [u8; 6],
    mtu: u32,
}

fn parse_link(dest: IpAddr, ifindex: u32, msg: &LinkMessage) -> Result<Link, NetlinkError> {
    let mut name = None;
    let mut mac = None;
    let mut mtu = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::Mtu(m) => mtu = Some(*m),
            _ => {}
        }
    }
    let unexpected = |reason: &str| NetlinkError::Unexpected {
        op: OP_LINK,
        dest,
        reason: format!("interface index {ifindex}: {reason}"),
    };
    let name = name.ok_or_else(|| unexpected("no name"))?;
    // Tunnels, loopback and other non-Ethernet links have no MAC header for
    // the XDP program to rewrite.
    let mac = match mac {
        Some(mac) if msg.header.link_layer_type == LinkLayerType::Ether => mac,
        _ => {
            return Err(NetlinkError::NotEthernet {
                dest,
                ifindex,
                ifname: name,
            });
        }
    };
    let mtu = mtu.ok_or_else(|| unexpected("no MTU"))?;
    Ok(Link { name, mac, mtu })
}

/// A source address for tunnels when the route has no preferred one: an
/// address of `dest`'s family on the interface, global scope first.
fn pick_source(dest: IpAddr, ifindex: u32, addresses: &[AddressMessage]) -> Option<IpAddr> {
    let candidates = addresses
        .iter()
        .filter(|a| a.header.index == ifindex)
        .filter_map(|a| {
            // IFA_LOCAL is ours; IFA_ADDRESS is the peer on point-to-point
            // links, and the only one IPv6 sends otherwise.
            let local = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            local
                .or(address)
                .filter(|ip| ip.is_ipv4() == dest.is_ipv4())
                .map(|ip| (a.header.scope == AddressScope::Universe, ip))
        });
    let mut fallback = None;
    for (global, ip) in candidates {
        if global {
            return Some(ip);
        }
        fallback.get_or_insert(ip);
    }
    fallback
}

/// A neighbour entry, as far as forwarding is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Neighbour {
    Usable([u8; 6]),
    Pending(Pending),
}

/// Why a neighbour entry has no usable MAC yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Absent,
    Incomplete,
    Failed,
    /// NUD_NONE: created, never probed.
    Created,
    Unknown,
}

impl Pending {
    fn name(self) -> &'static str {
        match self {
            Pending::Absent => "absent",
            Pending::Incomplete => "incomplete",
            Pending::Failed => "failed",
            Pending::Created => "none",
            Pending::Unknown => "unknown",
        }
    }

    /// Whether the kernel needs a nudge to (re)start ARP/ND: an incomplete
    /// entry is being probed already.
    fn needs_solicitation(self) -> bool {
        self != Pending::Incomplete
    }
}

/// NUD_VALID in the kernel: the states in which the link-layer address is
/// known (possibly to be reconfirmed).
const NUD_VALID: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

fn parse_neighbour(msg: &NeighbourMessage) -> Result<Neighbour, String> {
    let valid = match msg.header.state {
        NeighbourState::Reachable
        | NeighbourState::Stale
        | NeighbourState::Delay
        | NeighbourState::Probe
        | NeighbourState::Permanent
        | NeighbourState::Noarp => true,
        NeighbourState::Incomplete => return Ok(Neighbour::Pending(Pending::Incomplete)),
        NeighbourState::Failed => return Ok(Neighbour::Pending(Pending::Failed)),
        NeighbourState::None => return Ok(Neighbour::Pending(Pending::Created)),
        NeighbourState::Other(bits) => bits & NUD_VALID != 0,
        _ => false,
    };
    if !valid {
        return Ok(Neighbour::Pending(Pending::Unknown));
    }
    let lladdr = msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => Some(l.as_slice()),
        _ => None,
    });
    match lladdr.map(<[u8; 6]>::try_from) {
        Some(Ok(mac)) => Ok(Neighbour::Usable(mac)),
        Some(Err(_)) => Err(format!(
            "neighbour link-layer address is not 6 bytes: {:?}",
            lladdr.unwrap_or_default()
        )),
        None => Err(format!(
            "neighbour in state {:?} has no link-layer address",
            msg.header.state
        )),
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn full_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

fn ip_of_route_address(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// Which tables changed in one burst of notifications. Coarse on purpose:
/// the daemon re-resolves its backends on any of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    pub links: bool,
    pub neighbours: bool,
    pub routes: bool,
    /// The socket overflowed and notifications were lost: anything may have
    /// changed.
    pub lost: bool,
}

impl Change {
    pub fn any(&self) -> bool {
        self.links || self.neighbours || self.routes || self.lost
    }

    fn absorb(&mut self, msg: &NetlinkMessage<RouteNetlinkMessage>) {
        match &msg.payload {
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::DelLink(_),
            ) => self.links = true,
            // The same group carries bridge FDB entries (AF_BRIDGE), which
            // say nothing about IP next hops and can be very chatty.
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewNeighbour(n) | RouteNetlinkMessage::DelNeighbour(n),
            ) if matches!(n.header.family, AddressFamily::Inet | AddressFamily::Inet6) => {
                self.neighbours = true
            }
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewRoute(_) | RouteNetlinkMessage::DelRoute(_),
            ) => self.routes = true,
            NetlinkPayload::Overrun(_) => self.lost = true,
            _ => {}
        }
    }
}

/// A subscription to link, neighbour and IPv4/IPv6 route notifications.
pub struct ChangeWatcher {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    connection: JoinHandle<()>,
}

impl Drop for ChangeWatcher {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Subscribe, in the calling thread's network namespace, to the RTNLGRP_LINK,
/// RTNLGRP_NEIGH, RTNLGRP_IPV4_ROUTE and RTNLGRP_IPV6_ROUTE groups. Must be
/// called inside a tokio runtime. Changes made after this returns are seen.
pub async fn watch_changes() -> Result<ChangeWatcher, NetlinkError> {
    let (connection, _handle, messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Neigh,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ])
    .map_err(NetlinkError::Io)?;
    Ok(ChangeWatcher {
        messages,
        connection: tokio::spawn(connection),
    })
}

impl ChangeWatcher {
    /// Wait for the next burst of relevant notifications (everything already
    /// received is folded into one `Change`). `None` once the subscription
    /// has ended (the socket failed): subscribe again and re-resolve.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            let (first, _) = self.messages.next().await?;
            let mut change = Change::default();
            change.absorb(&first);
            while let Ok((msg, _)) = self.messages.try_recv() {
                change.absorb(&msg);
            }
            if change.any() {
                return Some(change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use rtnetlink::packet_route::route::RouteNextHop;

    use super::*;

    const DEST: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 10));
    const GW: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1));
    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));

    fn route(kind: RouteType, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.kind = kind;
        msg.attributes = attributes;
        msg
    }

    #[test]
    fn an_on_link_route_has_no_gateway() {
        let msg = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Oif(3),
                RouteAttribute::PrefSource(RouteAddress::Inet(Ipv4Addr::new(198, 18, 1, 2))),
            ],
        );
        assert_eq!(
            parse_route(DEST, &msg).unwrap(),
            Route {
                ifindex: 3,
                gateway: None,
                prefsrc: Some(SRC)
            }
        );
    }

    #[test]
    fn a_gateway_or_via_becomes_the_next_hop() {
        let msg = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(198, 18, 1, 1))),
                RouteAttribute::Oif(2),
            ],
        );
        assert_eq!(parse_route(DEST, &msg).unwrap().gateway, Some(GW));
        let v6_gw = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let msg = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Via(RouteVia::Inet6(v6_gw)),
                RouteAttribute::Oif(2),
            ],
        );
        assert_eq!(
            parse_route(DEST, &msg).unwrap().gateway,
            Some(IpAddr::V6(v6_gw))
        );
    }

    #[test]
    fn a_multipath_answer_takes_its_first_live_path() {
        let mut dead = RouteNextHop::default();
        dead.interface_index = 4;
        dead.flags = RouteNextHopFlags::Dead;
        let mut live = RouteNextHop::default();
        live.interface_index = 5;
        live.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
            198, 18, 1, 1,
        )))];
        let msg = route(
            RouteType::Unicast,
            vec![RouteAttribute::MultiPath(vec![dead, live])],
        );
        let r = parse_route(DEST, &msg).unwrap();
        assert_eq!((r.ifindex, r.gateway), (5, Some(GW)));
    }

    #[test]
    fn non_unicast_routes_and_routes_without_an_interface_are_errors() {
        let msg = route(RouteType::Local, vec![RouteAttribute::Oif(1)]);
        assert!(matches!(
            parse_route(DEST, &msg),
            Err(NetlinkError::NotUnicast {
                route_type: "local",
                ..
            })
        ));
        let msg = route(RouteType::Unicast, vec![]);
        assert!(matches!(
            parse_route(DEST, &msg),
            Err(NetlinkError::Unexpected { op: OP_ROUTE, .. })
        ));
        let msg = route(RouteType::Unicast, vec![RouteAttribute::Oif(0)]);
        assert!(parse_route(DEST, &msg).is_err());
    }

    #[test]
    fn a_preferred_source_of_the_other_family_is_ignored() {
        let msg = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Oif(3),
                RouteAttribute::PrefSource(RouteAddress::Inet6(Ipv6Addr::LOCALHOST)),
            ],
        );
        assert_eq!(parse_route(DEST, &msg).unwrap().prefsrc, None);
    }

    fn link(kind: LinkLayerType, attributes: Vec<LinkAttribute>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.link_layer_type = kind;
        msg.attributes = attributes;
        msg
    }

    #[test]
    fn an_ethernet_link_gives_name_mac_and_mtu() {
        let msg = link(
            LinkLayerType::Ether,
            vec![
                LinkAttribute::IfName("eth0".into()),
                LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
                LinkAttribute::Mtu(1500),
            ],
        );
        assert_eq!(
            parse_link(DEST, 2, &msg).unwrap(),
            Link {
                name: "eth0".into(),
                mac: [2, 0, 0, 0, 0, 1],
                mtu: 1500
            }
        );
    }

    #[test]
    fn links_without_an_ethernet_address_are_refused() {
        for msg in [
            link(
                LinkLayerType::Loopback,
                vec![
                    LinkAttribute::IfName("lo".into()),
                    LinkAttribute::Address(vec![0; 6]),
                    LinkAttribute::Mtu(65536),
                ],
            ),
            link(
                LinkLayerType::Ether,
                vec![
                    LinkAttribute::IfName("odd".into()),
                    LinkAttribute::Address(vec![1, 2, 3]),
                    LinkAttribute::Mtu(1500),
                ],
            ),
        ] {
            assert!(matches!(
                parse_link(DEST, 1, &msg),
                Err(NetlinkError::NotEthernet { ifindex: 1, .. })
            ));
        }
        let nameless = link(LinkLayerType::Ether, vec![LinkAttribute::Mtu(1500)]);
        assert!(matches!(
            parse_link(DEST, 1, &nameless),
            Err(NetlinkError::Unexpected { .. })
        ));
    }

    fn neighbour(state: NeighbourState, lladdr: Option<Vec<u8>>) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.state = state;
        msg.attributes = lladdr
            .into_iter()
            .map(NeighbourAttribute::LinkLayerAddress)
            .collect();
        msg
    }

    #[test]
    fn neighbour_states_map_to_usable_or_pending() {
        let mac = vec![2, 0, 0, 0, 0, 9];
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
            NeighbourState::Other(0x02 | 0x80),
        ] {
            assert_eq!(
                parse_neighbour(&neighbour(state, Some(mac.clone()))),
                Ok(Neighbour::Usable([2, 0, 0, 0, 0, 9])),
                "{state:?}"
            );
        }
        for (state, pending) in [
            (NeighbourState::Incomplete, Pending::Incomplete),
            (NeighbourState::Failed, Pending::Failed),
            (NeighbourState::None, Pending::Created),
            (NeighbourState::Other(0x100), Pending::Unknown),
        ] {
            assert_eq!(
                parse_neighbour(&neighbour(state, None)),
                Ok(Neighbour::Pending(pending)),
                "{state:?}"
            );
        }
        assert!(parse_neighbour(&neighbour(NeighbourState::Reachable, None)).is_err());
        assert!(parse_neighbour(&neighbour(NeighbourState::Reachable, Some(vec![1]))).is_err());
        assert!(!Pending::Incomplete.needs_solicitation());
        assert!(Pending::Failed.needs_solicitation());
    }

    fn address(
        index: u32,
        scope: AddressScope,
        attributes: Vec<AddressAttribute>,
    ) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.scope = scope;
        msg.attributes = attributes;
        msg
    }

    #[test]
    fn the_tunnel_source_prefers_a_global_address_of_the_right_family() {
        let link_local = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let global = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
        let addresses = [
            address(
                2,
                AddressScope::Universe,
                vec![AddressAttribute::Local(SRC)],
            ),
            address(
                3,
                AddressScope::Universe,
                vec![AddressAttribute::Address(IpAddr::V6(Ipv6Addr::new(
                    0x2001, 0xdb8, 0, 9, 0, 0, 0, 1,
                )))],
            ),
            address(
                2,
                AddressScope::Link,
                vec![AddressAttribute::Address(IpAddr::V6(link_local))],
            ),
            address(
                2,
                AddressScope::Universe,
                vec![AddressAttribute::Address(IpAddr::V6(global))],
            ),
        ];
        let v6_dest = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x10));
        assert_eq!(
            pick_source(v6_dest, 2, &addresses),
            Some(IpAddr::V6(global))
        );
        assert_eq!(pick_source(DEST, 2, &addresses), Some(SRC));
        assert_eq!(
            pick_source(v6_dest, 2, &addresses[..3]),
            Some(IpAddr::V6(link_local))
        );
        assert_eq!(pick_source(DEST, 7, &addresses), None);
    }

    /// The daemon may run these on a multi-threaded runtime.
    #[allow(dead_code)]
    fn futures_are_send(r: &Resolver, w: &mut ChangeWatcher) {
        fn send<T: Send>(_: T) {}
        send(r.resolve(DEST, Duration::ZERO));
        send(w.next());
        send(Resolver::new());
        send(watch_changes());
    }

    #[test]
    fn bridge_fdb_notifications_are_not_changes() {
        let mut fdb = NeighbourMessage::default();
        fdb.header.family = AddressFamily::Bridge;
        let mut change = Change::default();
        change.absorb(&NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(
            fdb,
        )));
        assert!(!change.any());
        let mut arp = NeighbourMessage::default();
        arp.header.family = AddressFamily::Inet;
        change.absorb(&NetlinkMessage::from(RouteNetlinkMessage::DelNeighbour(
            arp,
        )));
        change.absorb(&NetlinkMessage::from(RouteNetlinkMessage::NewRoute(
            RouteMessage::default(),
        )));
        assert_eq!(
            change,
            Change {
                neighbours: true,
                routes: true,
                ..Change::default()
            }
        );
    }
}
