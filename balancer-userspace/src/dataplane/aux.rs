//! The object's small helper programs (`decap` for backends, `pass` for
//! veth peers, the benchmarks' references), each attached on its own.

use std::os::fd::{AsFd as _, BorrowedFd};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, PerCpuArray},
    programs::{Xdp, xdp::XdpLinkId},
};
use balancer_common::maps::*;
use log::{info, warn};

use super::{DataplaneError, attach_xdp, map_err, typed};
use crate::{config::XdpMode, util::error_chain};

/// One of the object's small helper programs (`decap` for backends, `pass`
/// for veth peers), attached to one interface until dropped; or, with
/// [`AuxProgram::load_from`] and [`AuxProgram::attach_from`], a program of
/// another object (the benchmarks' reference programs are in their own).
pub struct AuxProgram {
    ebpf: Ebpf,
    program: &'static str,
    link: Option<(String, XdpLinkId)>,
}

impl AuxProgram {
    /// `program` is `PASS_PROGRAM` (`decap` needs its sources first:
    /// [`AuxProgram::attach_decap`]).
    pub fn attach(
        program: &'static str,
        name: &str,
        mode: XdpMode,
    ) -> Result<Self, DataplaneError> {
        Self::attach_from(crate::OBJECT, program, name, mode)
    }

    /// The `decap` program on interface `name`, taking IP-in-IP from
    /// `sources` only (written before it is attached).
    pub fn attach_decap(
        name: &str,
        mode: XdpMode,
        sources: &[std::net::IpAddr],
    ) -> Result<Self, DataplaneError> {
        let mut aux = Self::load(DECAP_PROGRAM)?;
        aux.set_decap_sources(sources)?;
        aux.attach_loaded(name, mode)?;
        Ok(aux)
    }

    /// `decap` only: replace the outer source addresses it takes IP-in-IP
    /// from (at most `MAX_TUNNEL_SOURCES`; none: it refuses every one).
    pub fn set_decap_sources(
        &mut self,
        sources: &[std::net::IpAddr],
    ) -> Result<(), DataplaneError> {
        let err = map_err(DECAP_SOURCES_MAP);
        let map = self
            .ebpf
            .map_mut(DECAP_SOURCES_MAP)
            .ok_or(missing(DECAP_SOURCES_MAP))?;
        let mut m: HashMap<_, TunnelSource, u32> = typed(DECAP_SOURCES_MAP, map)?;
        let want: Vec<TunnelSource> = sources.iter().map(|&a| TunnelSource::new(a)).collect();
        let old: Vec<TunnelSource> = m.keys().collect::<Result<_, _>>().map_err(&err)?;
        for k in old.iter().filter(|k| !want.contains(k)) {
            m.remove(k).map_err(&err)?;
        }
        for k in &want {
            m.insert(k, 1, 0).map_err(&err)?;
        }
        Ok(())
    }

    /// [`AuxProgram::attach`] for a program of `object`.
    pub fn attach_from(
        object: &[u8],
        program: &'static str,
        name: &str,
        mode: XdpMode,
    ) -> Result<Self, DataplaneError> {
        let mut aux = Self::load_from(object, program)?;
        aux.attach_loaded(name, mode)?;
        Ok(aux)
    }

    fn attach_loaded(&mut self, name: &str, mode: XdpMode) -> Result<(), DataplaneError> {
        let program = self.program;
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(program)
            .ok_or(DataplaneError::MissingProgram { name: program })?
            .try_into()
            .map_err(DataplaneError::Program)?;
        let (link, _) = attach_xdp(prog, name, mode)?;
        self.link = Some((name.to_owned(), link));
        Ok(())
    }

    /// Load `program` (any of the object's programs) without attaching it,
    /// e.g. for BPF_PROG_TEST_RUN.
    pub fn load(program: &'static str) -> Result<Self, DataplaneError> {
        Self::load_from(crate::OBJECT, program)
    }

    /// [`AuxProgram::load`] for a program of `object`.
    pub fn load_from(object: &[u8], program: &'static str) -> Result<Self, DataplaneError> {
        // The object's other maps are created too: keep them minimal.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(STICK_MAP, 64)
            .map_max_entries(VIP_STATS_MAP, 1)
            .map_max_entries(MAGLEV_MAP, 1)
            .map_max_entries(BACKENDS_MAP, 1)
            .map_max_entries(BACKEND_STATS_MAP, 1)
            .load(object)?;
        let prog: &mut Xdp = ebpf
            .program_mut(program)
            .ok_or(DataplaneError::MissingProgram { name: program })?
            .try_into()
            .map_err(DataplaneError::Program)?;
        prog.load().map_err(DataplaneError::Program)?;
        Ok(AuxProgram {
            ebpf,
            program,
            link: None,
        })
    }

    /// The loaded program's fd, for BPF_PROG_TEST_RUN.
    pub fn program_fd(&self) -> Result<BorrowedFd<'_>, DataplaneError> {
        let prog: &Xdp = self
            .ebpf
            .program(self.program)
            .ok_or(DataplaneError::MissingProgram { name: self.program })?
            .try_into()
            .map_err(DataplaneError::Program)?;
        Ok(prog.fd().map_err(DataplaneError::Program)?.as_fd())
    }

    /// The loaded object (e.g. to write the generator's settings).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// `decap` only: its counters so far, by `DECAP_*` slot (named by
    /// `DECAP_COUNTER_NAMES`): packets decapsulated, IP-in-IP refused.
    pub fn counts(&self) -> Result<[u64; DECAP_COUNTERS as usize], DataplaneError> {
        let map = self
            .ebpf
            .map(DECAP_STATS_MAP)
            .ok_or(missing(DECAP_STATS_MAP))?;
        let a: PerCpuArray<_, u64> = typed(DECAP_STATS_MAP, map)?;
        let sum = |i: u32| -> Result<u64, DataplaneError> {
            Ok(a.get(&i, 0).map_err(map_err(DECAP_STATS_MAP))?.iter().sum())
        };
        let mut out = [0; DECAP_COUNTERS as usize];
        for (i, n) in out.iter_mut().enumerate() {
            *n = sum(i as u32)?;
        }
        Ok(out)
    }
}

const fn missing(name: &'static str) -> DataplaneError {
    DataplaneError::MissingMap { name }
}

impl Drop for AuxProgram {
    fn drop(&mut self) {
        let program = self.program;
        if let Some((name, link)) = self.link.take()
            && let Some(p) = self.ebpf.program_mut(program)
            && let Ok(prog) = <&mut Xdp>::try_from(p)
        {
            match prog.detach(link) {
                Ok(()) => info!("detached {program} from {name}"),
                Err(e) => warn!("detaching {program} from {name}: {}", error_chain(&e)),
            }
        }
    }
}
