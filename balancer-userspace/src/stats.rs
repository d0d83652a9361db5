//! Reading and presenting the data-plane counters.

use std::borrow::Borrow;

use aya::maps::{MapData, MapError, PerCpuArray};
use balancer_common::stats::{CLASS_COUNT, Class, Counter};

/// Per-class counters summed over all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub classes: [Counter; CLASS_COUNT],
}

impl Stats {
    pub fn read<T: Borrow<MapData>>(array: &PerCpuArray<T, Counter>) -> Result<Self, MapError> {
        let mut stats = Stats::default();
        for class in Class::ALL {
            let per_cpu = array.get(&class.index(), 0)?;
            let slot = &mut stats.classes[class.index() as usize];
            for c in per_cpu.iter() {
                slot.packets += c.packets;
                slot.bytes += c.bytes;
            }
        }
        Ok(stats)
    }

    pub fn get(&self, class: Class) -> Counter {
        self.classes[class.index() as usize]
    }

    pub fn total(&self) -> Counter {
        self.classes
            .iter()
            .fold(Counter::default(), |acc, c| Counter {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
            })
    }

    /// Counters accumulated since `earlier` (counters only grow).
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut out = *self;
        for (o, e) in out.classes.iter_mut().zip(earlier.classes.iter()) {
            o.packets = o.packets.saturating_sub(e.packets);
            o.bytes = o.bytes.saturating_sub(e.bytes);
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut classes = serde_json::Map::new();
        for class in Class::ALL {
            let c = self.get(class);
            classes.insert(
                class.name().to_owned(),
                serde_json::json!({ "packets": c.packets, "bytes": c.bytes }),
            );
        }
        let t = self.total();
        serde_json::json!({
            "classes": classes,
            "total": { "packets": t.packets, "bytes": t.bytes },
        })
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut out = format!("{:<12} {:>14} {:>16}\n", "class", "packets", "bytes");
        for class in Class::ALL {
            let c = self.get(class);
            out += &format!("{:<12} {:>14} {:>16}\n", class.name(), c.packets, c.bytes);
        }
        let t = self.total();
        out += &format!("{:<12} {:>14} {:>16}\n", "total", t.packets, t.bytes);
        out
    }

    /// Parse what `to_json` wrote (used by tests and xtask on CLI output).
    pub fn from_json(v: &serde_json::Value) -> Option<Stats> {
        let mut stats = Stats::default();
        for class in Class::ALL {
            let c = v.get("classes")?.get(class.name())?;
            stats.classes[class.index() as usize] = Counter {
                packets: c.get("packets")?.as_u64()?,
                bytes: c.get("bytes")?.as_u64()?,
            };
        }
        Some(stats)
    }
}
