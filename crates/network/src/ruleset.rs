//! Rules kept per key (a Service, a pod): each key owns some chains and some elements of
//! shared verdict maps. [`Keyed::apply`] brings changed keys to the kernel in one atomic batch,
//! touching only their own chains and elements.

use std::collections::{BTreeMap, HashMap};

use crate::nft::{Batch, Rule, Verdict};

/// The chains and map elements one key's rules consist of.
#[derive(Default)]
pub struct Layout {
    /// Chain name -> its rules.
    pub chains: BTreeMap<String, Vec<Rule>>,
    /// (map, key bytes) -> the verdict.
    pub elements: BTreeMap<(String, Vec<u8>), Verdict>,
    /// Address sets the rules update, with their element lifetime in seconds.
    pub sets: BTreeMap<String, u32>,
}

/// The installed rules of every key of a table.
pub struct Keyed<T> {
    table: String,
    installed: HashMap<String, T>,
    layout: fn(&str, &T) -> Layout,
}

impl<T: PartialEq> Keyed<T> {
    /// Keys of `table` laid out by `layout`; nothing installed yet.
    pub fn new(table: &str, layout: fn(&str, &T) -> Layout) -> Keyed<T> {
        Keyed {
            table: table.to_string(),
            installed: HashMap::new(),
            layout,
        }
    }

    /// Brings the keys in `changes` (`None`: gone) to the kernel in one batch; unchanged keys
    /// cost nothing. Returns how many keys changed.
    pub fn apply(
        &mut self,
        changes: impl IntoIterator<Item = (String, Option<T>)>,
    ) -> anyhow::Result<usize> {
        let t = self.table.clone();
        let mut b = Batch::new();
        let mut done = Vec::new();
        for (key, new) in changes {
            let old = self.installed.get(&key);
            if old == new.as_ref() {
                continue;
            }
            let old_l = old.map(|o| (self.layout)(&key, o)).unwrap_or_default();
            let new_l = new
                .as_ref()
                .map(|n| (self.layout)(&key, n))
                .unwrap_or_default();
            // Unhook what goes away or changes, rewrite the chains, then hook up.
            for (el, verdict) in &old_l.elements {
                if new_l.elements.get(el) != Some(verdict) {
                    b.delete_map_element(&t, &el.0, &el.1);
                }
            }
            for chain in old_l.chains.keys() {
                b.flush_chain(&t, chain);
            }
            // Every set and chain exists before any rule refers to it. A set that stays
            // keeps its elements.
            for (set, seconds) in &new_l.sets {
                if old_l.sets.get(set) != Some(seconds) {
                    if old_l.sets.contains_key(set) {
                        b.delete_set(&t, set);
                    }
                    b.add_address_set(&t, set, *seconds);
                }
            }
            for chain in new_l.chains.keys() {
                b.add_chain(&t, chain, None);
            }
            for (chain, rules) in &new_l.chains {
                for r in rules {
                    b.add_rule(&t, chain, r);
                }
            }
            for (el, verdict) in &new_l.elements {
                if old_l.elements.get(el) != Some(verdict) {
                    b.add_map_element(&t, &el.0, &el.1, verdict);
                }
            }
            // Flushed above, so nothing refers to them any more.
            for chain in old_l.chains.keys() {
                if !new_l.chains.contains_key(chain) {
                    b.delete_chain(&t, chain);
                }
            }
            for set in old_l.sets.keys() {
                if !new_l.sets.contains_key(set) {
                    b.delete_set(&t, set);
                }
            }
            done.push((key, new));
        }
        if done.is_empty() {
            return Ok(0);
        }
        b.commit()?;
        let n = done.len();
        for (key, new) in done {
            match new {
                Some(n) => self.installed.insert(key, n),
                None => self.installed.remove(&key),
            };
        }
        Ok(n)
    }

    /// What is installed for `key`.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.installed.get(key)
    }

    /// The keys currently installed.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.installed.keys()
    }
}
