//! Backend and VIP ids: kept by name in the pinned id maps, so a restarted
//! or reloaded daemon gives every server and frontend the id its stick
//! entries name.

use std::collections::{BTreeMap, BTreeSet};

use balancer_common::maps as m;
use log::info;

use super::ControlError;
use crate::dataplane::{Dataplane, DataplaneError};

/// Give each of `names` its id from the id map `map` (SERVER_IDS or
/// FRONTEND_IDS, pinned with the stick table): the id it had before if it
/// had one, else the lowest free id. Names in the map but not in `names`
/// lose their id, and their stick entries are deleted so that a later
/// owner of the id does not inherit them.
pub(super) fn assign_ids(
    dp: &mut Dataplane,
    map: &'static str,
    names: &[String],
) -> Result<Vec<u32>, ControlError> {
    let max = if map == m::SERVER_IDS_MAP {
        dp.options().max_backends
    } else {
        dp.options().max_vips
    };
    let old: BTreeMap<String, u32> = dp
        .id_names(map)?
        .into_iter()
        .map(|(id, n)| (n, id))
        .collect();
    let mut used: BTreeSet<u32> = names.iter().filter_map(|n| old.get(n).copied()).collect();
    for (name, &id) in &old {
        if names.contains(name) {
            continue;
        }
        dp.set_id_name(map, id, None)?;
        let purged = if map == m::SERVER_IDS_MAP {
            dp.stick_purge_backend(id)?
        } else {
            dp.stick_clear(Some(id))?
        };
        info!("{name} is gone: id {id} freed, {purged} stick entries deleted");
    }
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let id = match old.get(name) {
            Some(&id) => id,
            None => {
                let id = (0..max)
                    .find(|i| !used.contains(i))
                    .ok_or(DataplaneError::NoFreeId { map, max })?;
                used.insert(id);
                dp.set_id_name(map, id, Some(name))?;
                id
            }
        };
        ids.push(id);
    }
    Ok(ids)
}

/// The lowest free backend id for a new server `name`, recorded in SERVER_IDS.
pub(super) fn assign_one_id(dp: &mut Dataplane, name: &str) -> Result<u32, ControlError> {
    let max = dp.options().max_backends;
    let used: BTreeSet<u32> = dp
        .id_names(m::SERVER_IDS_MAP)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let id = (0..max)
        .find(|i| !used.contains(i))
        .ok_or(DataplaneError::NoFreeId {
            map: m::SERVER_IDS_MAP,
            max,
        })?;
    dp.set_id_name(m::SERVER_IDS_MAP, id, Some(name))?;
    Ok(id)
}
