//! ARC, the adaptive replacement cache (Megiddo & Modha, FAST '03).

use super::{Capacity, DList, Node, SimPolicy};
use crate::trace::Req;

const NOWHERE: u8 = 0;
const T1: u8 = 1;
const T2: u8 = 2;
const B1: u8 = 3;
const B2: u8 = 4;

/// ARC: recency list T1 and frequency list T2, each with a ghost list (B1,
/// B2) of recently evicted ids that steers the target size `p` of T1. With
/// sizes in bytes every count of the paper becomes a sum of weights.
#[derive(Debug)]
pub struct Arc {
    nodes: Vec<Node>,
    list_of: Vec<u8>,
    weight: Vec<u32>,
    lists: [DList; 5],
    bytes: [u64; 5],
    p: f64,
    cap: Capacity,
}

impl Arc {
    /// An empty cache for `objects` distinct ids.
    pub fn new(cap: Capacity, objects: usize) -> Self {
        Arc {
            nodes: vec![Node::default(); objects],
            list_of: vec![NOWHERE; objects],
            weight: vec![0; objects],
            lists: [DList::default(); 5],
            bytes: [0; 5],
            p: 0.0,
            cap,
        }
    }

    fn unlink(&mut self, id: u32) {
        let l = self.list_of[id as usize] as usize;
        if l != 0 {
            self.lists[l].unlink(&mut self.nodes, id);
            self.bytes[l] -= u64::from(self.weight[id as usize]);
            self.list_of[id as usize] = NOWHERE;
        }
    }

    fn push(&mut self, l: u8, id: u32) {
        self.lists[l as usize].push_front(&mut self.nodes, id);
        self.bytes[l as usize] += u64::from(self.weight[id as usize]);
        self.list_of[id as usize] = l;
    }

    fn pop(&mut self, l: u8) -> Option<u32> {
        let v = self.lists[l as usize].tail;
        if v == super::NIL {
            return None;
        }
        self.unlink(v);
        Some(v)
    }

    /// Move T1's or T2's LRU object to its ghost list.
    fn replace(&mut self, in_b2: bool) {
        let t1 = self.bytes[T1 as usize] as f64;
        let from_t1 = self.bytes[T1 as usize] > 0
            && (t1 > self.p || (in_b2 && t1 >= self.p) || self.bytes[T2 as usize] == 0);
        let (from, to) = if from_t1 { (T1, B1) } else { (T2, B2) };
        if let Some(v) = self.pop(from) {
            self.push(to, v);
        }
    }

    fn resident(&self) -> u64 {
        self.bytes[T1 as usize] + self.bytes[T2 as usize]
    }
}

impl SimPolicy for Arc {
    fn request(&mut self, r: &Req) -> bool {
        let id = r.id;
        let i = id as usize;
        let c = self.cap.size;
        let place = self.list_of[i];
        if place == T1 || place == T2 {
            self.unlink(id);
            self.push(T2, id);
            return true;
        }
        let w = self.cap.weight(r).max(1);
        if w > c {
            self.unlink(id);
            return false;
        }
        let (b1, b2) = (
            self.bytes[B1 as usize] as f64,
            self.bytes[B2 as usize] as f64,
        );
        let wf = w as f64;
        match place {
            B1 => {
                let delta = if b1 > 0.0 { (b2 / b1).max(1.0) } else { 1.0 };
                self.p = (self.p + delta * wf).min(c as f64);
                self.unlink(id);
                while self.resident() + w > c {
                    self.replace(false);
                }
                self.weight[i] = w as u32;
                self.push(T2, id);
            }
            B2 => {
                let delta = if b2 > 0.0 { (b1 / b2).max(1.0) } else { 1.0 };
                self.p = (self.p - delta * wf).max(0.0);
                self.unlink(id);
                while self.resident() + w > c {
                    self.replace(true);
                }
                self.weight[i] = w as u32;
                self.push(T2, id);
            }
            _ => {
                // L1 = T1 + B1 is kept within c, L1 + L2 within 2c.
                while self.bytes[T1 as usize] + self.bytes[B1 as usize] + w > c {
                    if self.bytes[B1 as usize] > 0 && self.bytes[T1 as usize] + w <= c {
                        self.pop(B1);
                    } else if self.pop(B1).is_none() {
                        // B1 empty and T1 alone too big: drop T1's LRU.
                        if self.pop(T1).is_none() {
                            break;
                        }
                    }
                }
                let total = |s: &Self| s.bytes.iter().sum::<u64>();
                while total(self) + w > 2 * c && self.pop(B2).is_some() {}
                while self.resident() + w > c {
                    self.replace(false);
                }
                self.weight[i] = w as u32;
                self.push(T1, id);
            }
        }
        false
    }
}
