//! Empty on purpose: this library target lets balancer-userspace name the
//! eBPF crate as a build dependency, so cargo rebuilds the embedded object
//! when these sources change. The program itself is the `balancer-xdp` binary.
#![no_std]
