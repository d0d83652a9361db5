//! Builds the XDP programs (balancer-ebpf) for bpfel-unknown-none and leaves
//! them in OUT_DIR; src/lib.rs embeds OUT_DIR/balancer-xdp.
fn main() -> anyhow::Result<()> {
    balancer_ebpf::build_objects()
}
