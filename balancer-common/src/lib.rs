//! Everything that crosses the kernel/user boundary, and the pure logic both
//! sides need.
//!
//! `#![no_std]`: the XDP program links it. Map values are `#[repr(C)]`
//! plain data with `bytemuck::Pod` (which refuses implicit padding at compile
//! time), no `bool`/`Option`/enums: integers with named constants.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod classify;
#[cfg(feature = "alloc")]
pub mod decap;
pub mod hash;
pub mod layout;
#[cfg(feature = "alloc")]
pub mod maglev;
pub mod maps;
#[cfg(feature = "alloc")]
pub mod model;
pub mod packet;
pub mod stats;
pub mod vip_index;
